//! Asking C2SP witnesses (`tlog-witness`) to cosign the checkpoints, and keeping their
//! cosignatures.
//!
//! One task per witness follows the signed checkpoints. While the witness answers, it submits
//! every checkpoint in order, each with the consistency proof from the size that witness
//! cosigned last (learnt from the stored cosignatures, or from the witness's 409 answer), checks
//! the cosignature it gets back against the witness's key and stores it beside the checkpoint:
//! in normal operation every checkpoint is cosigned by every witness. Ingest and the
//! checkpointer never wait for a witness: a witness that is down or slow only delays its own
//! cosignatures, and once it answers again (or when the next checkpoint in order is older than
//! [`IN_ORDER_WINDOW`]) it is brought up to date with one proof from its size to the newest
//! checkpoint (the checkpoints in between are not submitted to it).
//!
//! A witness that refuses for a reason catching up does not cure says the log forked or was
//! rolled back: a 422 (the proof from its size does not verify), a 409 naming a size above the
//! newest checkpoint here, or a 409 for the very size it cosigned (another root hash). Each is
//! logged as an error and counted in `datastorage_witness_refusals_total{witness, reason}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use audit_model::cosignature::CosignatureVerifier;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use tokio::sync::watch;

use crate::shutdown::Shutdown;
use crate::store::{CheckpointQuery, LogStore, StoreError, StoredCheckpoint, StoredCosignature};

/// A witness: where it takes submissions and its key (whose name is the witness's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessEndpoint {
    /// The submission prefix; requests go to `<url>/add-checkpoint`.
    pub url: String,
    pub key: CosignatureVerifier,
}

/// The witnesses asked, and how many must cosign a checkpoint for it to count as witnessed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessSet {
    pub witnesses: Vec<WitnessEndpoint>,
    pub quorum: usize,
    /// A bearer token sent with every submission, read from this file each time.
    pub token_file: Option<std::path::PathBuf>,
    /// A CA bundle for the witnesses' `https` certificates.
    pub ca_file: Option<std::path::PathBuf>,
}

impl WitnessSet {
    /// The witnesses' names.
    pub fn names(&self) -> Vec<String> {
        self.witnesses
            .iter()
            .map(|w| w.key.name().to_string())
            .collect()
    }

    /// The policy a verifier applies.
    pub fn policy(&self) -> audit_model::cosignature::WitnessPolicy {
        audit_model::cosignature::WitnessPolicy {
            witnesses: self.witnesses.iter().map(|w| w.key.clone()).collect(),
            quorum: self.quorum,
        }
    }
}

/// The longest a request to a witness may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The first and the longest wait after a failed submission.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A witness that answers is given the next checkpoint in order unless that one was signed
/// longer ago than this; then it is given the newest (a witness too slow to keep up, or one
/// newly added to an old log, is not walked through the history).
const IN_ORDER_WINDOW: Duration = Duration::from_secs(30);

/// What a witness answered.
#[derive(Debug)]
enum Answer {
    /// A valid cosignature (its timestamp and line).
    Cosigned { at: u64, line: String },
    /// 409: the witness's size is not the one submitted from.
    Conflict(u64),
    /// Anything else: the status (0: no answer) and why.
    Refused { status: u16, why: String },
}

/// The witnesses' tasks.
pub struct Cosigning {
    store: Arc<dyn LogStore>,
    set: WitnessSet,
    http: reqwest::Client,
    newest: watch::Sender<i64>,
}

impl Cosigning {
    pub fn new(store: Arc<dyn LogStore>, set: WitnessSet) -> anyhow::Result<Arc<Cosigning>> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(REQUEST_TIMEOUT);
        if let Some(path) = &set.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("the witnesses' CA file {}: {e}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build()?;
        Ok(Arc::new(Cosigning {
            store,
            set,
            http,
            newest: watch::channel(0).0,
        }))
    }

    pub fn set(&self) -> &WitnessSet {
        &self.set
    }

    /// A new checkpoint of `tree_size` is stored: the witnesses' tasks submit it.
    pub fn signed(&self, tree_size: i64) {
        self.newest.send_if_modified(|n| {
            let newer = tree_size > *n;
            if newer {
                *n = tree_size;
            }
            newer
        });
    }

    /// Runs one task per witness until `shutdown` begins.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        let known = match self.store.cosigned_sizes().await {
            Ok(sizes) => sizes,
            Err(error) => {
                tracing::error!(%error, "cannot read the stored cosignatures; asking the witnesses their sizes");
                HashMap::new()
            }
        };
        if let Ok(Some(latest)) = self.latest().await {
            self.signed(latest.tree_size);
        }
        let mut tasks: Vec<_> = (0..self.set.witnesses.len())
            .map(|i| {
                let name = self.set.witnesses[i].key.name().to_string();
                let size = known.get(&name).copied().map(|s| s as u64);
                tokio::spawn(self.clone().follow(i, size, shutdown.clone()))
            })
            .collect();
        tasks.push(tokio::spawn(self.clone().follow_lag(shutdown.clone())));
        // They end together: at shutdown each finishes what it is doing; one that ends before
        // (a panic) ends them all, so that the supervisor starts the whole set again.
        let (ended, _, rest) = futures::future::select_all(tasks).await;
        for task in rest {
            if !shutdown.is_draining() {
                task.abort();
            }
            let _ = task.await;
        }
        if let Err(e) = ended {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }

    /// Publishes the witnessed lag at each new checkpoint, so that it grows while no witness
    /// answers (the witnesses' tasks publish it as they cosign).
    async fn follow_lag(self: Arc<Self>, shutdown: Shutdown) {
        let mut newest = self.newest.subscribe();
        loop {
            self.publish_lag().await;
            tokio::select! {
                changed = newest.changed() => if changed.is_err() { return },
                _ = shutdown.begun() => return,
            }
        }
    }

    /// The checkpoint to submit to a witness at `old`: the next one after it while that one is
    /// recent, else (or with `catch_up`) the newest.
    async fn next(&self, old: u64, catch_up: bool) -> Result<Option<StoredCheckpoint>, StoreError> {
        if !catch_up {
            let next = self
                .store
                .checkpoints(&CheckpointQuery::Covering(old as i64 + 1))
                .await?
                .into_iter()
                .next();
            let recent = chrono::Utc::now() - chrono::Duration::from_std(IN_ORDER_WINDOW).unwrap();
            if let Some(next) = next.filter(|c| c.signed_at > recent) {
                return Ok(Some(next));
            }
        }
        self.latest().await
    }

    async fn latest(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        Ok(self
            .store
            .checkpoints(&CheckpointQuery::Latest)
            .await?
            .into_iter()
            .next())
    }

    /// Keeps witness `i` cosigning the newest checkpoint; `cosigned`: the size of the newest
    /// checkpoint it cosigned, as stored here.
    async fn follow(self: Arc<Self>, i: usize, mut cosigned: Option<u64>, shutdown: Shutdown) {
        let witness = &self.set.witnesses[i];
        let name = witness.key.name().to_string();
        let mut newest = self.newest.subscribe();
        let mut wait = RETRY_MIN;
        // The size to submit from: what it cosigned here, or what it said it cosigned (a 409).
        // A size it only said is submitted from even when it is the newest here: the answer
        // is a cosignature of that checkpoint, or a 409 that says the roots differ.
        let mut from = cosigned.unwrap_or(0);
        // After a failure the witness is caught up to the newest checkpoint in one step.
        let mut catch_up = false;
        loop {
            let target = *newest.borrow_and_update();
            if target > 0 && cosigned.is_none_or(|s| (s as i64) < target) {
                match self.submit(witness, from, &name, catch_up).await {
                    Ok(Some(size)) => {
                        cosigned = Some(size);
                        from = size;
                        wait = RETRY_MIN;
                        catch_up = false;
                        continue;
                    }
                    Ok(None) => {}
                    Err(Retry {
                        learnt: Some(learnt),
                    }) => {
                        from = learnt;
                        continue;
                    }
                    Err(Retry { learnt: None }) => {
                        catch_up = true;
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = shutdown.begun() => return,
                        }
                        wait = (wait * 2).min(RETRY_MAX);
                        continue;
                    }
                }
            }
            tokio::select! {
                changed = newest.changed() => if changed.is_err() { return },
                _ = shutdown.begun() => return,
            }
        }
    }

    /// Submits to `witness` from `old` the next checkpoint after `old` (the newest with
    /// `catch_up`, or when the next is too old); the size cosigned, `None` when there is no
    /// checkpoint, or why to try again.
    async fn submit(
        &self,
        witness: &WitnessEndpoint,
        old: u64,
        name: &str,
        catch_up: bool,
    ) -> Result<Option<u64>, Retry> {
        let transient = |why: String| {
            tracing::warn!(witness = name, %why, "witness unavailable; trying again later");
            metrics::counter!(crate::metrics::WITNESS_SUBMISSION_FAILURES, "witness" => name.to_string())
                .increment(1);
            Retry { learnt: None }
        };
        let latest = match self.next(old, catch_up).await {
            Ok(Some(latest)) => latest,
            Ok(None) => return Ok(None),
            Err(e) => return Err(transient(format!("the store: {e}"))),
        };
        let new = latest.tree_size as u64;
        if old > new {
            self.refused(name, "ahead", format!("the witness cosigned size {old}, above the newest checkpoint here ({new}): the log was rolled back"));
            return Err(Retry { learnt: None });
        }
        let proof = if old == 0 || old == new {
            Vec::new()
        } else {
            super::tree::consistency_proof(self.store.as_ref(), old, new)
                .await
                .map_err(|e| transient(format!("the consistency proof: {e}")))?
        };
        let mut body = format!("old {old}\n");
        for hash in &proof {
            body.push_str(&B64.encode(hash));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&latest.note);
        match self.exchange(witness, body, &latest.note).await {
            Answer::Cosigned { at, line } => {
                let stored = StoredCosignature {
                    tree_size: latest.tree_size,
                    witness: name.to_string(),
                    cosigned_at: at as i64,
                    line,
                };
                if let Err(e) = self.store.add_cosignature(&stored).await {
                    return Err(transient(format!("cannot store the cosignature: {e}")));
                }
                metrics::counter!(crate::metrics::WITNESS_COSIGNATURES, "witness" => name.to_string())
                    .increment(1);
                metrics::gauge!(crate::metrics::WITNESS_COSIGNED_SIZE, "witness" => name.to_string())
                    .set(new as f64);
                self.publish_lag().await;
                Ok(Some(new))
            }
            Answer::Conflict(size) if size > new => {
                self.refused(name, "ahead", format!("the witness cosigned size {size}, above the newest checkpoint here ({new}): the log was rolled back"));
                Err(Retry { learnt: None })
            }
            Answer::Conflict(size) if size == old => {
                self.refused(
                    name,
                    "fork",
                    format!(
                        "the witness cosigned size {size} with another root hash: the log forked"
                    ),
                );
                Err(Retry { learnt: None })
            }
            Answer::Conflict(size) => Err(Retry { learnt: Some(size) }),
            Answer::Refused { status: 422, why } => {
                self.refused(name, "inconsistent", format!("the witness found size {new} inconsistent with size {old} it cosigned ({why}): the log forked"));
                Err(Retry { learnt: None })
            }
            Answer::Refused { status, why } => Err(transient(format!("HTTP {status}: {why}"))),
        }
    }

    async fn exchange(&self, witness: &WitnessEndpoint, body: String, note: &str) -> Answer {
        let refused = |status: u16, why: String| Answer::Refused { status, why };
        let mut request = self
            .http
            .post(format!("{}/add-checkpoint", witness.url))
            .body(body);
        if let Some(path) = &self.set.token_file {
            match std::fs::read_to_string(path) {
                Ok(token) => request = request.bearer_auth(token.trim()),
                Err(e) => return refused(0, format!("the token file {}: {e}", path.display())),
            }
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return refused(0, chain(&e)),
        };
        let status = response.status().as_u16();
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => return refused(status, e.to_string()),
        };
        match status {
            200 => {
                let (note_body, _) = match audit_model::checkpoint::split_note(note) {
                    Ok(split) => split,
                    Err(e) => return refused(status, e.to_string()),
                };
                let found = text
                    .lines()
                    .find_map(|l| Some((witness.key.find(note_body, l)?, l)));
                match found {
                    Some((at, line)) => Answer::Cosigned {
                        at,
                        line: line.to_string(),
                    },
                    None => refused(
                        status,
                        "the answer holds no valid cosignature by the witness's key".into(),
                    ),
                }
            }
            409 => match text.trim().parse() {
                Ok(size) => Answer::Conflict(size),
                Err(_) => refused(status, format!("a 409 without a size: {text:?}")),
            },
            _ => refused(status, text.trim().chars().take(200).collect()),
        }
    }

    fn refused(&self, witness: &str, reason: &'static str, why: String) {
        tracing::error!(witness, reason, %why, "a witness refuses the log's checkpoint");
        metrics::counter!(crate::metrics::WITNESS_REFUSALS, "witness" => witness.to_string(), "reason" => reason)
            .increment(1);
    }

    /// How many leaves the newest witnessed checkpoint lags the newest signed one.
    async fn publish_lag(&self) {
        let newest = *self.newest.borrow();
        if let Ok(witnessed) = self
            .store
            .witnessed(&self.set.names(), self.set.quorum)
            .await
        {
            metrics::gauge!(crate::metrics::WITNESSED_LAG)
                .set((newest - witnessed.unwrap_or(0)).max(0) as f64);
        }
    }
}

/// An error and its sources, for the log.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Try the submission again: at once from the size the witness named, or after a wait.
#[derive(Debug)]
struct Retry {
    learnt: Option<u64>,
}

/// `note` with the stored cosignatures of its checkpoint appended (as served).
pub async fn cosigned_note(
    store: &dyn LogStore,
    checkpoint: &StoredCheckpoint,
) -> Result<String, StoreError> {
    let mut note = checkpoint.note.clone();
    for c in store.cosignatures(checkpoint.tree_size).await? {
        note.push_str(&c.line);
        note.push('\n');
    }
    Ok(note)
}
