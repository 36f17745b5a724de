//! The export: the selected events in `seq` order, each with its inclusion proof against one
//! signed checkpoint. Produced page by page, so its size is not bounded by memory, and resumable
//! with `after_seq` (against the same `tree_size`).
//!
//! Two formats:
//! * **NDJSON** ([`audit_model::export`]): the checkpoint's signed note first, then one line per
//!   event; verifiable offline with the public key alone.
//! * **CSV**: one row per event with its columns, `event_data` as JSON, the leaf hash and the
//!   inclusion proof; for spreadsheets and SIEM imports. It carries no signed note (the
//!   checkpoint of `tree_size` is at `/api/v1/audit/checkpoints`), so the verifiable form is
//!   NDJSON.
//!
//! Events whose content the retention purge removed have nothing to export and are left out.

use std::sync::Arc;

use audit_model::export::{ExportHeader, ExportedEvent, FORMAT};
use audit_model::merkle::Hash;
use audit_model::{EventField, FieldRef, StoredEvent};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::evidence::tree;
use crate::store::{
    CheckpointQuery, EventFilter, LogEntry, LogStore, StoreError, StoredCheckpoint,
};

/// Rows read (and proven) per round trip.
const PAGE: i64 = 1000;

/// Which events to export (all of them when empty).
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub correlation_id: Option<String>,
    /// Resume after this seq.
    pub after_seq: i64,
    /// Columns the events must hold exactly (the event list's filters).
    pub fields: Vec<(EventFilter, String)>,
}

impl ExportFilter {
    fn matches(&self, e: &StoredEvent) -> bool {
        self.since.is_none_or(|t| e.event.event_timestamp() >= t)
            && self.until.is_none_or(|t| e.event.event_timestamp() < t)
            && self
                .correlation_id
                .as_ref()
                .is_none_or(|c| e.event.correlation_id() == c)
            && self
                .fields
                .iter()
                .all(|(f, value)| column(&e.event, *f) == Some(value.as_str()))
    }
}

/// The value of a filtered column of `event`.
fn column(event: &audit_model::AuditEvent, filter: EventFilter) -> Option<&str> {
    match filter {
        EventFilter::CorrelationId => Some(event.correlation_id()),
        EventFilter::EventType => Some(event.event_type()),
        EventFilter::EventCategory => Some(event.event_category()),
        EventFilter::EventOutcome => Some(event.event_outcome().as_str()),
        EventFilter::ResourceType => Some(event.resource_type()),
        EventFilter::ResourceId => Some(event.resource_id()),
        EventFilter::ActorId => Some(event.actor_id()),
        EventFilter::Namespace => event.namespace(),
        EventFilter::Severity => event.severity(),
        EventFilter::ClusterId => event.cluster_id(),
        EventFilter::SubmittedBy => event.submitted_by(),
    }
}

/// The export's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportFormat {
    #[default]
    Ndjson,
    Csv,
}

impl ExportFormat {
    /// `ndjson` or `csv`.
    pub fn parse(text: &str) -> Option<ExportFormat> {
        match text {
            "ndjson" => Some(ExportFormat::Ndjson),
            "csv" => Some(ExportFormat::Csv),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Ndjson => "application/x-ndjson",
            ExportFormat::Csv => "text/csv; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Ndjson => "ndjson",
            ExportFormat::Csv => "csv",
        }
    }
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
    #[error("no checkpoint {0}")]
    NoCheckpoint(String),
}

/// The CSV columns, in order: the seq, the event's fields, the leaf hash and the proof.
fn csv_columns() -> Vec<&'static str> {
    std::iter::once("seq")
        .chain(EventField::ALL.iter().map(|f| f.name()))
        .chain(["leaf_hash", "inclusion_proof"])
        .collect()
}

/// An export in progress: call [`Export::next_chunk`] until it answers `None`.
pub struct Export {
    store: Arc<dyn LogStore>,
    filter: ExportFilter,
    format: ExportFormat,
    checkpoint: StoredCheckpoint,
    after: i64,
    started: bool,
    written: u64,
    /// The next pages, read while the one before them is proven and encoded: each read's first
    /// seq (after `after`) and the read.
    ahead: std::collections::VecDeque<(i64, Reading)>,
    /// The page before, encoded while this one is proven.
    encoding: Option<Encoding>,
}

/// Pages read at once ahead of the one being proven. The log's `seq` has no gaps, so the page
/// after the next starts where the next one ends and can be read before it arrives.
const READS_AHEAD: usize = 2;

/// A page being read.
type Reading = JoinHandle<Result<Vec<LogEntry>, StoreError>>;

/// A page being encoded.
type Encoding = JoinHandle<Result<Vec<u8>, ExportError>>;

/// What a task gave (its panic, resumed here).
fn joined<T, E>(task: Result<Result<T, E>, tokio::task::JoinError>) -> Result<T, ExportError>
where
    ExportError: From<E>,
{
    task.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        .map_err(ExportError::from)
}

impl Drop for Export {
    fn drop(&mut self) {
        // An export abandoned by its reader reads no further.
        for (_, read) in self.ahead.drain(..) {
            read.abort();
        }
    }
}

impl Export {
    /// Starts an export proving against the checkpoint of `tree_size` (the latest when `None`).
    pub async fn open(
        store: Arc<dyn LogStore>,
        filter: ExportFilter,
        tree_size: Option<u64>,
        format: ExportFormat,
    ) -> Result<Export, ExportError> {
        let query = match tree_size {
            Some(n) => CheckpointQuery::Size(n as i64),
            None => CheckpointQuery::Latest,
        };
        let mut checkpoint = store.checkpoints(&query).await?.pop().ok_or_else(|| {
            ExportError::NoCheckpoint(tree_size.map_or("yet".into(), |n| format!("of size {n}")))
        })?;
        // The header carries the witnesses' cosignatures, for a verifier that asks a quorum.
        checkpoint.note = super::cosign::cosigned_note(store.as_ref(), &checkpoint).await?;
        Ok(Export {
            store,
            after: filter.after_seq,
            filter,
            format,
            checkpoint,
            started: false,
            written: 0,
            ahead: std::collections::VecDeque::new(),
            encoding: None,
        })
    }

    /// The tree size every proof is against.
    pub fn tree_size(&self) -> u64 {
        self.checkpoint.tree_size as u64
    }

    /// Events written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The next piece of the export (the header or a page of events); `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ExportError> {
        if !self.started {
            self.started = true;
            return Ok(Some(self.header()));
        }
        // A page is encoded on another thread while the next one is proven (and the two after
        // it read): a page is handed out once the next is under way, or the export has ended.
        loop {
            let next = self.next_page().await?;
            let end = next.is_none();
            match std::mem::replace(&mut self.encoding, next) {
                Some(encoding) => return Ok(Some(joined(encoding.await)?)),
                None if end => return Ok(None),
                None => {}
            }
        }
    }

    /// Reads and proves the next page holding selected events and starts encoding it; `None`
    /// at the end.
    async fn next_page(&mut self) -> Result<Option<Encoding>, ExportError> {
        let size = self.checkpoint.tree_size;
        while self.after < size {
            let read = match self.ahead.pop_front() {
                Some((after, read)) if after == self.after => read,
                // A page ended elsewhere than where the reads ahead took it to: read on from
                // where it did end.
                _ => {
                    for (_, read) in self.ahead.drain(..) {
                        read.abort();
                    }
                    self.read_after(self.after)
                }
            };
            let page = joined(read.await)?;
            let Some(last) = page.last() else {
                return Ok(None);
            };
            self.after = last.seq();
            self.read_ahead();
            let known = tree::page_leaves(&page);
            let selected: Vec<StoredEvent> = page
                .into_iter()
                .filter_map(|entry| match entry {
                    LogEntry::Event(e) if self.filter.matches(&e) => Some(*e),
                    _ => None,
                })
                .collect();
            if selected.is_empty() {
                continue;
            }
            let indices: Vec<u64> = selected.iter().map(|e| e.seq as u64 - 1).collect();
            let proofs = tree::inclusion_proofs_over(
                self.store.as_ref(),
                &indices,
                size as u64,
                known.as_ref(),
            )
            .await?;
            self.written += selected.len() as u64;
            let format = self.format;
            return Ok(Some(tokio::task::spawn_blocking(move || {
                encode(format, selected, proofs)
            })));
        }
        Ok(None)
    }

    /// Starts the reads of the pages after `after` up to [`READS_AHEAD`] of them (but past the
    /// checkpoint's size), each where the one before it ends.
    fn read_ahead(&mut self) {
        let mut next = self
            .ahead
            .back()
            .map_or(self.after, |(after, _)| after + self.page_size(*after));
        while self.ahead.len() < READS_AHEAD && next < self.checkpoint.tree_size {
            self.ahead.push_back((next, self.read_after(next)));
            next += self.page_size(next);
        }
    }

    /// The number of leaves in the page after `after`: a page, or what is left of the
    /// checkpoint's tree.
    fn page_size(&self, after: i64) -> i64 {
        PAGE.min(self.checkpoint.tree_size - after)
    }

    /// Starts reading the page after `after`, up to the checkpoint's size.
    fn read_after(&self, after: i64) -> Reading {
        let store = self.store.clone();
        let limit = self.page_size(after);
        tokio::spawn(async move { store.scan(after, limit).await })
    }

    fn header(&self) -> Vec<u8> {
        match self.format {
            ExportFormat::Ndjson => {
                let header = ExportHeader {
                    format: FORMAT.to_string(),
                    tree_size: self.tree_size(),
                    note: self.checkpoint.note.clone(),
                };
                let mut line = header.to_line().into_bytes();
                line.push(b'\n');
                line
            }
            ExportFormat::Csv => csv_columns()
                .join(",")
                .into_bytes()
                .into_iter()
                .chain(*b"\r\n")
                .collect(),
        }
    }
}

/// A page's events and their proofs, encoded.
fn encode(
    format: ExportFormat,
    events: Vec<StoredEvent>,
    proofs: Vec<Vec<Hash>>,
) -> Result<Vec<u8>, ExportError> {
    match format {
        ExportFormat::Ndjson => {
            let mut chunk = Vec::with_capacity(events.len() * 4096);
            for (e, proof) in events.into_iter().zip(proofs) {
                ExportedEvent::new(e.seq, &proof, e.event).write_line(&mut chunk);
            }
            Ok(chunk)
        }
        ExportFormat::Csv => {
            let mut out = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(Vec::new());
            for (e, proof) in events.iter().zip(proofs) {
                out.write_record(csv_row(e, &proof))
                    .map_err(std::io::Error::other)?;
            }
            Ok(out.into_inner().map_err(|e| e.into_error())?)
        }
    }
}

/// One event as CSV fields (absent optional fields are empty).
fn csv_row(e: &StoredEvent, proof: &[Hash]) -> Vec<String> {
    let fields = EventField::ALL.iter().map(|&f| match e.event.get(f) {
        FieldRef::Absent => String::new(),
        FieldRef::Uuid(u) => u.to_string(),
        FieldRef::Text(t) => t.to_string(),
        FieldRef::Time(t) => audit_model::timestamp::format(&t),
        FieldRef::Int(i) => i.to_string(),
        FieldRef::Bool(b) => b.to_string(),
        FieldRef::Object(o) => serde_json::to_string(o).unwrap_or_default(),
    });
    std::iter::once(e.seq.to_string())
        .chain(fields)
        .chain([
            e.leaf_hash.to_hex(),
            proof.iter().map(hex::encode).collect::<Vec<_>>().join(" "),
        ])
        .collect()
}

/// Writes a whole export to `out`; returns the number of events written and the tree size.
pub async fn write(
    store: Arc<dyn LogStore>,
    filter: ExportFilter,
    tree_size: Option<u64>,
    format: ExportFormat,
    out: &mut (impl AsyncWrite + Unpin),
) -> Result<(u64, u64), ExportError> {
    let mut export = Export::open(store, filter, tree_size, format).await?;
    while let Some(chunk) = export.next_chunk().await? {
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    Ok((export.written(), export.tree_size()))
}
