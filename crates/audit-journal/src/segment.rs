//! Segment files: `<first id, 20 digits>.seg`, frames back to back.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use crate::frame::{self, Decoded};
use crate::JournalError;

/// One segment as known in memory: where each of its records starts.
#[derive(Debug)]
pub struct Segment {
    pub first_id: u64,
    pub path: PathBuf,
    /// Byte offset of each record, in id order (`first_id + index`).
    pub offsets: Vec<u64>,
    /// Bytes of valid frames.
    pub len: u64,
}

impl Segment {
    pub fn file_name(first_id: u64) -> String {
        format!("{first_id:020}.seg")
    }

    /// Id after the last record.
    pub fn end_id(&self) -> u64 {
        self.first_id + self.offsets.len() as u64
    }
}

/// Lists segment files in id order.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        let Ok(first_id) = stem.parse::<u64>() else {
            continue;
        };
        found.push((first_id, path));
    }
    found.sort_by_key(|(id, _)| *id);
    Ok(found)
}

/// Scans a segment. A sealed segment must be whole; the last (active) one may end in a torn
/// frame, which is cut off (the file is truncated and synced) and reported.
pub fn scan(
    first_id: u64,
    path: &Path,
    last: bool,
) -> Result<(Segment, Option<String>), JournalError> {
    let bytes = fs::read(path)?;
    let mut offsets = Vec::new();
    let mut pos = 0usize;
    let mut expected = first_id;
    let mut torn = None;
    loop {
        match frame::decode(&bytes[pos..]) {
            Decoded::End => break,
            Decoded::Frame { id, len, .. } if id == expected => {
                offsets.push(pos as u64);
                pos += len;
                expected += 1;
            }
            Decoded::Frame { id, .. } => {
                torn = Some(format!("record id {id} where {expected} was expected"));
                break;
            }
            Decoded::Invalid(why) => {
                torn = Some(why.to_string());
                break;
            }
        }
    }
    if let Some(why) = &torn {
        if !last {
            return Err(JournalError::Corrupt(format!(
                "{} at byte {pos}: {why} (a sealed segment must be whole)",
                path.display()
            )));
        }
        let dropped = bytes.len() - pos;
        tracing::warn!(segment = %path.display(), offset = pos, dropped, reason = %why, "torn tail truncated");
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(pos as u64)?;
        f.sync_all()?;
    }
    let report = torn.map(|why| {
        format!(
            "{}: {} bytes cut at {pos} ({why})",
            path.display(),
            bytes.len() - pos
        )
    });
    Ok((
        Segment {
            first_id,
            path: path.to_path_buf(),
            offsets,
            len: pos as u64,
        },
        report,
    ))
}
