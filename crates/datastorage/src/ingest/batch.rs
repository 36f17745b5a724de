//! One batch of submissions, de-duplicated by `event_id`, and the answers to its submissions.

use std::collections::HashMap;

use audit_model::LeafHash;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{Answer, IngestOutcome, Source, Submission};
use crate::store::PreparedEvent;

/// A later occurrence of an `event_id` in the same batch: its leaf hash, and whether it holds
/// the first occurrence's content (however each was attested: a retry is received again).
#[derive(Clone, Copy)]
struct Repeat {
    same_as_first: bool,
    own: LeafHash,
}

/// One batch, de-duplicated by `event_id`.
/// What a batch's writer does with it, as a span in each submitter's trace.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stage {
    /// The batch's append to the store.
    Commit,
    /// The batch parked in the dead-letter queue.
    Dlq,
}

pub(super) struct Batch {
    pub(super) unique: Vec<PreparedEvent>,
    /// Whether a live submission holds the unique event at this index.
    pub(super) live: Vec<bool>,
    /// Per submission: for each event, the index of its first occurrence and, for a repeat, the
    /// hashes to tell a duplicate from a conflict.
    refs: Vec<Vec<(usize, Option<Repeat>)>>,
    pub(super) sources: Vec<Source>,
    pub(super) replies: Vec<oneshot::Sender<Answer>>,
    /// Per submission, the span that submitted it (see [`Batch::spans`]).
    parents: Vec<tracing::Span>,
}

impl Batch {
    pub(super) fn new(submissions: Vec<Submission>) -> Self {
        let total: usize = submissions.iter().map(|s| s.events.len()).sum();
        let mut batch = Batch {
            unique: Vec::with_capacity(total),
            live: Vec::with_capacity(total),
            refs: Vec::with_capacity(submissions.len()),
            sources: Vec::with_capacity(submissions.len()),
            replies: Vec::with_capacity(submissions.len()),
            parents: Vec::with_capacity(submissions.len()),
        };
        let mut first_index: HashMap<Uuid, usize> = HashMap::with_capacity(total);
        for sub in submissions {
            let live = sub.source == Source::Live;
            let mut sub_refs = Vec::with_capacity(sub.events.len());
            for event in sub.events {
                match first_index.get(&event.event.event_id()) {
                    Some(&i) => {
                        batch.live[i] |= live;
                        let first = &batch.unique[i];
                        let repeat = Repeat {
                            same_as_first: first.leaf_hash == event.leaf_hash
                                || event.event.attested_as(&first.event).leaf_hash()
                                    == first.leaf_hash,
                            own: event.leaf_hash,
                        };
                        sub_refs.push((i, Some(repeat)));
                    }
                    None => {
                        first_index.insert(event.event.event_id(), batch.unique.len());
                        sub_refs.push((batch.unique.len(), None));
                        batch.unique.push(event);
                        batch.live.push(live);
                    }
                }
            }
            batch.refs.push(sub_refs);
            batch.sources.push(sub.source);
            batch.replies.push(sub.reply);
            // Its `ingest.queue` span ends here: a writer has taken it.
            batch.parents.push(sub.parent);
        }
        batch
    }

    /// One span of `stage` per submission, each the child of the span that submitted it, so
    /// that every request's trace shows the shared commit (or DLQ write) it waited for. They
    /// end when dropped.
    pub(super) fn spans(&self, stage: Stage) -> Vec<tracing::Span> {
        let events = self.unique.len();
        self.parents
            .iter()
            .filter(|p| !p.is_disabled())
            .map(|parent| match stage {
                Stage::Commit => tracing::info_span!(target: audit_tracing::TARGET, parent: parent, "ingest.commit", events),
                Stage::Dlq => tracing::info_span!(target: audit_tracing::TARGET, parent: parent, "dlq.enqueue", events),
            })
            .collect()
    }

    /// The events submitted, repeats included.
    pub(super) fn submitted(&self) -> usize {
        self.refs.iter().map(Vec::len).sum()
    }

    /// Answers every submission from the outcomes of the unique events, moving each outcome to
    /// its last occurrence instead of cloning it (the common case: every event answered once).
    pub(super) fn answer_each(self, outcomes: Vec<IngestOutcome>) {
        let mut remaining = vec![0usize; outcomes.len()];
        for &(i, _) in self.refs.iter().flatten() {
            remaining[i] += 1;
        }
        let mut outcomes: Vec<Option<IngestOutcome>> = outcomes.into_iter().map(Some).collect();
        for (sub_refs, reply) in self.refs.into_iter().zip(self.replies) {
            let answer = sub_refs
                .iter()
                .map(|&(i, repeat)| {
                    remaining[i] -= 1;
                    let outcome = if remaining[i] == 0 {
                        outcomes[i].take()
                    } else {
                        outcomes[i].clone()
                    };
                    // Every index is counted above, so its outcome is there until its last use.
                    let outcome = outcome.expect("an outcome per unique event");
                    match repeat {
                        None => outcome,
                        Some(repeat) => occurrence(&outcome, repeat),
                    }
                })
                .collect();
            // A waiter that went away (client disconnected) needs no answer.
            let _ = reply.send(Ok(answer));
        }
    }

    /// Answers every submission: live ones from `live`, replayed ones from `replay`.
    pub(super) fn answer(self, live: &Answer, replay: &Answer) {
        for ((sub_refs, source), reply) in self.refs.into_iter().zip(self.sources).zip(self.replies)
        {
            let answer = match source {
                Source::Live => live,
                Source::Replay => replay,
            };
            let answer = answer.as_ref().map_err(Clone::clone).map(|outcomes| {
                sub_refs
                    .iter()
                    .map(|&(i, repeat)| match repeat {
                        None => outcomes[i].clone(),
                        Some(repeat) => occurrence(&outcomes[i], repeat),
                    })
                    .collect()
            });
            // A waiter that went away (client disconnected) needs no answer.
            let _ = reply.send(answer);
        }
    }
}

/// The answer for one occurrence of an event: the outcome of its first occurrence, or for a repeat
/// inside the same batch, a duplicate when it holds what is stored (or queued), else a conflict.
fn occurrence(outcome: &IngestOutcome, repeat: Repeat) -> IngestOutcome {
    let Repeat {
        same_as_first,
        own: hash,
    } = repeat;
    match outcome {
        IngestOutcome::Created(s) | IngestOutcome::Duplicate(s) if same_as_first => {
            IngestOutcome::Duplicate(s.clone())
        }
        IngestOutcome::Conflict(s) if same_as_first => IngestOutcome::Conflict(s.clone()),
        IngestOutcome::Created(s) | IngestOutcome::Duplicate(s) | IngestOutcome::Conflict(s) => {
            if s.leaf_hash == hash {
                IngestOutcome::Duplicate(s.clone())
            } else {
                IngestOutcome::Conflict(s.clone())
            }
        }
        IngestOutcome::Queued(id) if same_as_first => IngestOutcome::Queued(*id),
        IngestOutcome::Queued(id) | IngestOutcome::Refused { event_id: id, .. } => {
            IngestOutcome::Refused {
                event_id: *id,
                reason:
                    "another event with this event_id and different content is in the same batch"
                        .into(),
            }
        }
    }
}
