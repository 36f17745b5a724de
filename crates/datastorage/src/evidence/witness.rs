//! A file witness: every checkpoint the service signs is also appended to a file kept outside
//! the database (a mounted volume, a WORM bucket's sync directory, another team's host), one JSON
//! line `{"tree_size":N,"note":"<signed note>"}` per checkpoint, synced before the next.
//!
//! Someone with write access to the database can rewrite the log and every checkpoint stored in
//! it consistently except for the signatures, or roll the whole log back to an earlier state
//! whose signatures are genuine. Neither survives a witness: `datastorage verify --witness FILE`
//! requires every witnessed checkpoint to be in the database unchanged and to be reproduced by
//! the content, so a rollback or a rewritten history is reported.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::store::StoredCheckpoint;

/// One witnessed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Witnessed {
    pub tree_size: i64,
    /// The C2SP signed note, as signed.
    pub note: String,
}

/// Appends checkpoints to the witness file.
#[derive(Debug, Clone)]
pub struct FileWitness {
    path: PathBuf,
}

impl FileWitness {
    pub fn new(path: PathBuf) -> FileWitness {
        FileWitness { path }
    }

    /// Appends the checkpoint and syncs the file.
    pub async fn record(&self, checkpoint: &StoredCheckpoint) -> std::io::Result<()> {
        let line = serde_json::to_string(&Witnessed {
            tree_size: checkpoint.tree_size,
            note: checkpoint.note.clone(),
        })?;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await?;
        file.write_all(format!("{line}\n").as_bytes()).await?;
        file.sync_data().await
    }
}

/// Reads a witness file (a torn last line, from a crash mid-append, is ignored).
pub fn read(path: &Path) -> std::io::Result<Vec<Witnessed>> {
    let file = std::fs::File::open(path)?;
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()?;
    let last = lines.len().saturating_sub(1);
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<Witnessed>(line) {
            Ok(w) => out.push(w),
            Err(_) if i == last => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("witness line {}: {e}", i + 1),
                ))
            }
        }
    }
    Ok(out)
}
