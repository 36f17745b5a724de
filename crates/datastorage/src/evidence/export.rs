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

use audit_model::export::{write_event_line, ExportHeader, FORMAT};
use audit_model::merkle::Hash;
use audit_model::{EventField, FieldRef, StoredEvent};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::evidence::pages::Pages;
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
    /// The log up to the checkpoint's size, the next pages read while one is proven and encoded.
    pages: Pages<LogEntry>,
    started: bool,
    written: u64,
    /// The page before, encoded while this one is proven.
    encoding: Option<Encoding>,
}

/// Pages read at once ahead of the one being proven.
const READS_AHEAD: usize = 2;

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
        // An export abandoned by its reader reads no further (its pages are dropped with it).
        let pages = Pages::new(
            store.clone(),
            filter.after_seq,
            Some(checkpoint.tree_size),
            PAGE,
            READS_AHEAD,
        );
        Ok(Export {
            store,
            filter,
            format,
            checkpoint,
            pages,
            started: false,
            written: 0,
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
        while let Some(page) = self.pages.next().await? {
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
                write_event_line(&mut chunk, e.seq, &proof, e.event);
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
