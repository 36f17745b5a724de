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

use audit_model::export::{write_event_json, write_event_line, ExportHeader, FORMAT};
use audit_model::merkle::Hash;
use audit_model::{EventField, FieldRef};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::evidence::pages::Pages;
use crate::evidence::tree;
use crate::store::{
    CheckpointQuery, EventFilter, LogStore, Render, RenderedRow, RowFields, StoreError,
    StoredCheckpoint,
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
    fn matches(&self, fields: &RowFields<'_>) -> bool {
        let text = |field| match fields.get(field) {
            FieldRef::Text(t) => Some(t),
            _ => None,
        };
        let at = match fields.get(EventField::EventTimestamp) {
            FieldRef::Time(t) => Some(t),
            _ => None,
        };
        self.since.is_none_or(|t| at.is_some_and(|at| at >= t))
            && self.until.is_none_or(|t| at.is_some_and(|at| at < t))
            && self
                .correlation_id
                .as_deref()
                .is_none_or(|c| text(EventField::CorrelationId) == Some(c))
            && self
                .fields
                .iter()
                .all(|(f, value)| text(f.field()) == Some(value.as_str()))
    }

    /// What the export writes of a row that matches: the event's JSON (NDJSON), or its columns
    /// as CSV fields (the seq, the leaf hash and the proof go about them when the page is
    /// encoded).
    fn render(self, format: ExportFormat) -> Render {
        Arc::new(move |fields| {
            if !self.matches(fields) {
                return None;
            }
            Some(match format {
                ExportFormat::Ndjson => {
                    let mut json = Vec::with_capacity(1024);
                    write_event_json(&mut json, |f| fields.get(f));
                    json
                }
                ExportFormat::Csv => csv_fields(fields),
            })
        })
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
    format: ExportFormat,
    checkpoint: StoredCheckpoint,
    /// The log up to the checkpoint's size, the next pages read while one is proven and encoded.
    pages: Pages<RenderedRow>,
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
        let pages = Pages::rendered(
            store.clone(),
            filter.after_seq,
            Some(checkpoint.tree_size),
            PAGE,
            READS_AHEAD,
            filter.render(format),
        );
        Ok(Export {
            store,
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
            let selected: Vec<RenderedRow> = page
                .into_iter()
                .filter(|row| row.rendered.is_some())
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

/// A page's rendered events and their proofs, encoded.
fn encode(
    format: ExportFormat,
    rows: Vec<RenderedRow>,
    proofs: Vec<Vec<Hash>>,
) -> Result<Vec<u8>, ExportError> {
    let mut chunk = Vec::with_capacity(rows.len() * 2048);
    for (row, proof) in rows.iter().zip(proofs) {
        let rendered = row.rendered.as_deref().unwrap_or_default();
        match format {
            ExportFormat::Ndjson => write_event_line(&mut chunk, row.seq, &proof, rendered),
            // The seq, the hex of hashes and the spaces between them need no quoting.
            ExportFormat::Csv => {
                chunk.extend_from_slice(row.seq.to_string().as_bytes());
                chunk.push(b',');
                chunk.extend_from_slice(rendered);
                chunk.push(b',');
                chunk.extend_from_slice(row.leaf_hash.to_hex().as_bytes());
                chunk.push(b',');
                let proof: Vec<String> = proof.iter().map(hex::encode).collect();
                chunk.extend_from_slice(proof.join(" ").as_bytes());
                chunk.extend_from_slice(b"\r\n");
            }
        }
    }
    Ok(chunk)
}

/// An event's columns as CSV fields, quoted where needed (absent optional fields are empty).
fn csv_fields(fields: &RowFields<'_>) -> Vec<u8> {
    let mut out = csv::WriterBuilder::new()
        .buffer_capacity(1024)
        .from_writer(Vec::new());
    for &field in EventField::ALL {
        let text = match fields.get(field) {
            FieldRef::Absent => String::new(),
            FieldRef::Uuid(u) => u.to_string(),
            FieldRef::Text(t) => t.to_string(),
            FieldRef::Time(t) => audit_model::timestamp::format(&t),
            FieldRef::Int(i) => i.to_string(),
            FieldRef::Bool(b) => b.to_string(),
            FieldRef::Object(o) => serde_json::to_string(o).unwrap_or_default(),
        };
        // Writing into memory cannot fail.
        out.write_field(text).expect("a field is written to memory");
    }
    out.into_inner().unwrap_or_default()
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
