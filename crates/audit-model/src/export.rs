//! The verifiable export: NDJSON, checkable offline with the public key alone.
//!
//! The first line is the signed checkpoint the export proves against; every further line is one
//! event with its position and its RFC 9162 inclusion proof, in `seq` order:
//!
//! ```text
//! {"format":"kubernaut-audit-export/v1","tree_size":10000,"note":"<signed note>"}
//! {"seq":17,"inclusion_proof":["<hex>",…],"event":{…}}
//! ```
//!
//! Every line must be exactly the canonical encoding of what it carries (the encoding this module
//! writes), so no byte of an export can change without failing verification: a change of
//! meaning breaks a signature or a proof, and a change of form breaks the canonical encoding.

use std::io::BufRead;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::checkpoint::CheckpointVerifier;
use crate::event::AuditEvent;
use crate::event_field::FieldRef;
use crate::merkle::{verify_inclusion, Hash};
use crate::EventField;

/// The format name on the first line.
pub const FORMAT: &str = "kubernaut-audit-export/v1";

/// The first line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    pub format: String,
    pub tree_size: u64,
    /// The C2SP signed note of the checkpoint of `tree_size`.
    pub note: String,
}

/// One event line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedEvent {
    pub seq: i64,
    /// Lower-case hex hashes, RFC 9162 §2.1.3 order.
    pub inclusion_proof: Vec<String>,
    pub event: AuditEvent,
}

impl ExportHeader {
    pub fn to_line(&self) -> String {
        // A struct of strings and numbers always serialises.
        serde_json::to_string(self).expect("header serialises")
    }
}

impl ExportedEvent {
    /// The line of `event`, holding its signed content only (an event written before writers
    /// were recorded has its receipt time left out: it is not signed).
    pub fn new(seq: i64, proof: &[Hash], event: AuditEvent) -> ExportedEvent {
        ExportedEvent {
            seq,
            inclusion_proof: proof.iter().map(hex_text).collect(),
            event: event.signed_content(),
        }
    }

    pub fn to_line(&self) -> String {
        let mut line = Vec::new();
        self.write_line(&mut line);
        line.pop();
        // serde_json writes UTF-8.
        String::from_utf8(line).expect("JSON is UTF-8")
    }

    /// Appends the line and its newline to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        // An event holds JSON values only; serialising them into memory cannot fail.
        serde_json::to_writer(&mut *out, self).expect("event serialises");
        out.push(b'\n');
    }
}

/// Appends the line of an event at `seq` with its inclusion `proof`, and a newline, to `out`:
/// the bytes of [`ExportedEvent::new`]`(seq, proof, event).write_line(out)`, given the event's
/// JSON as [`write_event_json`] writes it; written without building and escaping a string per
/// proof hash (hex needs no escaping; the proof is most of a line, and its strings were a tenth
/// of an export's time).
pub fn write_event_line(out: &mut Vec<u8>, seq: i64, proof: &[Hash], event_json: &[u8]) {
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    out.extend_from_slice(b",\"inclusion_proof\":[");
    for (k, hash) in proof.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.push(b'"');
        let start = out.len();
        out.resize(start + 64, 0);
        hex::encode_to_slice(hash, &mut out[start..]).expect("64 bytes hold the hex of 32");
        out.push(b'"');
    }
    out.extend_from_slice(b"],\"event\":");
    out.extend_from_slice(event_json);
    out.extend_from_slice(b"}\n");
}

/// Appends the JSON of the event whose fields `field` gives, as an export's line holds it (its
/// signed content, [`AuditEvent::signed_content`], as serde writes the struct: fields in
/// declaration order, absent ones left out), written from the fields without the event built
/// (a stored row's columns as they are read; rebuilding every event was a third of an export's
/// time).
pub fn write_event_json<'a>(out: &mut Vec<u8>, field: impl Fn(EventField) -> FieldRef<'a>) {
    let receipt_signed = field(EventField::SubmittedBy) != FieldRef::Absent;
    out.push(b'{');
    let mut first = true;
    for &f in EventField::ALL {
        if f == EventField::ReceivedAt && !receipt_signed {
            continue;
        }
        let value = field(f);
        if value == FieldRef::Absent {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(f.name().as_bytes());
        out.extend_from_slice(b"\":");
        // Strings and JSON maps always serialise into memory.
        match value {
            FieldRef::Absent => {}
            FieldRef::Uuid(u) => {
                let mut text = Uuid::encode_buffer();
                write_str(out, u.hyphenated().encode_lower(&mut text));
            }
            FieldRef::Text(t) => write_str(out, t),
            FieldRef::Time(t) => write_str(out, &crate::timestamp::format(&t)),
            FieldRef::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
            FieldRef::Object(o) => serde_json::to_writer(&mut *out, o).expect("a map serialises"),
            FieldRef::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        }
    }
    out.push(b'}');
}

/// A JSON string, with serde_json's escapes.
fn write_str(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("a string serialises");
}

/// A hash as lower-case hex, encoded at once (`hex::encode` builds its string a character at a
/// time, which was an eighth of an export's time).
fn hex_text(hash: &Hash) -> String {
    let mut text = [0u8; 64];
    // 64 bytes hold the hex of 32.
    hex::encode_to_slice(hash, &mut text).expect("a 64-byte buffer");
    String::from_utf8(text.to_vec()).expect("hex digits are ASCII")
}

/// Why an export does not verify (`line` counts from 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ExportError {
    pub line: usize,
    pub reason: String,
}

/// What a valid export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub tree_size: u64,
    pub events: u64,
    /// The header's signed note, with any cosignatures it carries.
    pub note: String,
}

fn canonical<T: Serialize + for<'de> Deserialize<'de>>(
    line: &str,
    n: usize,
    encode: impl Fn(&T) -> String,
) -> Result<T, ExportError> {
    let value: T = serde_json::from_str(line).map_err(|e| ExportError {
        line: n,
        reason: format!("not a valid line: {e}"),
    })?;
    if encode(&value) != line {
        return Err(ExportError {
            line: n,
            reason: "not in canonical form (the line was altered)".into(),
        });
    }
    Ok(value)
}

/// Verifies an export with the public key alone.
pub fn verify_export(
    reader: impl BufRead,
    key: &CheckpointVerifier,
) -> Result<ExportSummary, ExportError> {
    let mut lines = reader.lines().enumerate();
    let fail = |line: usize, reason: String| ExportError { line, reason };
    let (_, first) = lines
        .next()
        .ok_or_else(|| fail(1, "the export is empty".into()))?;
    let first = first.map_err(|e| fail(1, e.to_string()))?;
    let header: ExportHeader = canonical(&first, 1, ExportHeader::to_line)?;
    if header.format != FORMAT {
        return Err(fail(1, format!("unknown format {:?}", header.format)));
    }
    let checkpoint = key
        .verify(&header.note)
        .map_err(|e| fail(1, format!("the checkpoint does not verify: {e}")))?;
    if checkpoint.tree_size != header.tree_size {
        return Err(fail(1, "the tree size differs from the signed one".into()));
    }
    let mut last_seq = 0i64;
    let mut events = 0u64;
    for (i, line) in lines {
        let n = i + 1;
        let line = line.map_err(|e| fail(n, e.to_string()))?;
        let item: ExportedEvent = canonical(&line, n, ExportedEvent::to_line)?;
        if item.seq <= last_seq {
            return Err(fail(
                n,
                format!("seq {} does not follow {last_seq}", item.seq),
            ));
        }
        last_seq = item.seq;
        let index = (item.seq - 1) as u64;
        let proof: Vec<Hash> = item
            .inclusion_proof
            .iter()
            .map(|h| {
                hex::decode(h)
                    .ok()
                    .filter(|_| h.bytes().all(|b| !b.is_ascii_uppercase()))
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| fail(n, "a proof hash is not 32 bytes of lower-case hex".into()))
            })
            .collect::<Result<_, _>>()?;
        if item.event.submitted_by().is_none() && item.event.received_at().is_some() {
            return Err(fail(
                n,
                format!(
                    "seq {}: a receipt time without a writer is not signed content",
                    item.seq
                ),
            ));
        }
        let leaf = item.event.leaf_hash();
        if !verify_inclusion(
            leaf.as_bytes(),
            index,
            checkpoint.tree_size,
            &proof,
            &checkpoint.root_hash,
        ) {
            return Err(fail(
                n,
                format!("seq {}: not included in the signed tree", item.seq),
            ));
        }
        events += 1;
    }
    Ok(ExportSummary {
        tree_size: checkpoint.tree_size,
        events,
        note: header.note,
    })
}
