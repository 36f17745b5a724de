//! The local-journal DLQ (`file://DIR`): `DIR/events` is an [`audit_journal::Journal`] of
//! entries, `DIR/dead/<id>.json` holds one dead letter per file.
//!
//! The journal acknowledges in order, while the replay worker settles entries in any order, so
//! settled ids above the journal's cursor are remembered in memory and the cursor moves over
//! the settled prefix. After a restart, entries settled but not yet passed by the cursor are
//! replayed again; replays are idempotent by `event_id`, so that costs time, not correctness.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use audit_journal::{Journal, JournalOptions};
use chrono::Utc;
use tokio::sync::Mutex;

use super::{Claimed, DeadLetter, DlqBackend, DlqEntry, DlqError, DlqStats};

struct ReadState {
    /// Next id to hand out by `claim`.
    read_pos: u64,
    /// Settled ids at or above the journal's cursor.
    settled: BTreeSet<u64>,
}

/// The journal-backed DLQ.
pub struct JournalDlq {
    journal: Journal,
    dead_dir: PathBuf,
    capacity: u64,
    state: Mutex<ReadState>,
    /// Serialises capacity check and append, so concurrent enqueues cannot overfill.
    append: Mutex<()>,
}

impl JournalDlq {
    pub fn open(dir: &Path, capacity: u64) -> Result<Self, DlqError> {
        let journal = Journal::open(dir.join("events"), JournalOptions::default())?;
        if let Some(torn) = &journal.recovery().torn_tail {
            tracing::warn!(%torn, "DLQ journal recovered from a torn write");
        }
        if let Some(error) = &journal.recovery().cursor_not_prepared {
            tracing::warn!(%error, "DLQ journal cursor not written at open; the first replay writes it");
        }
        let dead_dir = dir.join("dead");
        fs::create_dir_all(&dead_dir)?;
        let read_pos = journal.cursor();
        Ok(Self {
            journal,
            dead_dir,
            capacity,
            state: Mutex::new(ReadState {
                read_pos,
                settled: BTreeSet::new(),
            }),
            append: Mutex::new(()),
        })
    }

    async fn depth(&self) -> u64 {
        let settled = self.state.lock().await.settled.len() as u64;
        self.journal.len().saturating_sub(settled)
    }

    async fn append(&self, entries: &[DlqEntry], check_capacity: bool) -> Result<(), DlqError> {
        if entries.is_empty() {
            return Ok(());
        }
        let _guard = self.append.lock().await;
        if check_capacity && self.depth().await + entries.len() as u64 > self.capacity {
            return Err(DlqError::Full {
                capacity: self.capacity,
            });
        }
        self.journal
            .append_batch(entries.iter().map(DlqEntry::to_bytes).collect())
            .await?;
        Ok(())
    }

    /// Marks ids settled and moves the journal cursor over the settled prefix. The ids stay
    /// remembered until the cursor has durably passed them, so a cursor that could not be
    /// written (a full disk) is moved by the next call rather than leaving them unaccounted
    /// for until a restart.
    async fn settle(&self, ids: &[String]) -> Result<(), DlqError> {
        let mut state = self.state.lock().await;
        for id in ids {
            state.settled.insert(parse_id(id)?);
        }
        let start = self.journal.cursor();
        let mut cursor = start;
        while state.settled.contains(&cursor) {
            cursor += 1;
        }
        if cursor > start {
            let journal = self.journal.clone();
            tokio::task::spawn_blocking(move || journal.ack_through(cursor - 1))
                .await
                .map_err(|e| DlqError::Corrupt(e.to_string()))??;
            state.settled.retain(|id| *id >= cursor);
        }
        Ok(())
    }

    fn dead_path(&self, id: &str) -> Option<PathBuf> {
        uuid::Uuid::parse_str(id)
            .ok()
            .map(|u| self.dead_dir.join(format!("{u}.json")))
    }

    fn write_dead(&self, letter: &DeadLetter) -> Result<(), DlqError> {
        let id = uuid::Uuid::now_v7();
        let tmp = self.dead_dir.join(format!("{id}.tmp"));
        let bytes = serde_json::to_vec(letter).map_err(|e| DlqError::Corrupt(e.to_string()))?;
        {
            use std::io::Write;
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dead_dir.join(format!("{id}.json")))?;
        fs::File::open(&self.dead_dir)?.sync_all()?;
        Ok(())
    }

    fn dead_ids(&self) -> Result<Vec<String>, DlqError> {
        let mut ids: Vec<String> = fs::read_dir(&self.dead_dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .collect();
        ids.sort();
        Ok(ids)
    }
}

fn parse_id(id: &str) -> Result<u64, DlqError> {
    id.parse()
        .map_err(|_| DlqError::Corrupt(format!("not a journal entry id: {id}")))
}

#[async_trait]
impl DlqBackend for JournalDlq {
    fn name(&self) -> &'static str {
        "journal"
    }

    async fn enqueue(&self, entries: Vec<DlqEntry>) -> Result<(), DlqError> {
        self.append(&entries, true).await
    }

    async fn claim(&self, max: usize) -> Result<Vec<Claimed>, DlqError> {
        // A cursor move that failed earlier (a full disk) is tried again first: it frees the
        // segments behind it.
        if let Err(error) = self.settle(&[]).await {
            tracing::warn!(%error, "the DLQ journal's cursor cannot move yet");
        }
        let mut state = self.state.lock().await;
        let from = state.read_pos.max(self.journal.cursor());
        let journal = self.journal.clone();
        let want = max + state.settled.len();
        let records = tokio::task::spawn_blocking(move || journal.read(from, want))
            .await
            .map_err(|e| DlqError::Corrupt(e.to_string()))??;
        let mut claimed = Vec::with_capacity(max);
        for (id, bytes) in records {
            if claimed.len() == max {
                break;
            }
            state.read_pos = id + 1;
            if state.settled.contains(&id) {
                continue;
            }
            claimed.push(Claimed {
                id: id.to_string(),
                entry: DlqEntry::from_bytes(&bytes)?,
            });
        }
        Ok(claimed)
    }

    async fn ack(&self, ids: &[String]) -> Result<(), DlqError> {
        self.settle(ids).await
    }

    async fn release(&self, ids: &[String]) -> Result<(), DlqError> {
        let mut state = self.state.lock().await;
        if let Some(min) = ids.iter().filter_map(|i| i.parse::<u64>().ok()).min() {
            state.read_pos = state.read_pos.min(min);
        }
        Ok(())
    }

    async fn requeue(&self, items: Vec<(String, DlqEntry)>) -> Result<(), DlqError> {
        let (ids, entries): (Vec<String>, Vec<DlqEntry>) = items.into_iter().unzip();
        self.append(&entries, false).await?;
        self.settle(&ids).await
    }

    async fn bury(&self, items: Vec<(String, DeadLetter)>) -> Result<(), DlqError> {
        let mut ids = Vec::with_capacity(items.len());
        for (id, letter) in items {
            self.write_dead(&letter)?;
            ids.push(id);
        }
        self.settle(&ids).await
    }

    async fn stats(&self) -> Result<DlqStats, DlqError> {
        let (cursor, settled) = {
            let state = self.state.lock().await;
            (self.journal.cursor(), state.settled.clone())
        };
        let journal = self.journal.clone();
        let want = settled.len() + 1;
        let head = tokio::task::spawn_blocking(move || journal.read(cursor, want))
            .await
            .map_err(|e| DlqError::Corrupt(e.to_string()))??;
        let oldest = head
            .into_iter()
            .find(|(id, _)| !settled.contains(id))
            .map(|(_, bytes)| DlqEntry::from_bytes(&bytes))
            .transpose()?;
        Ok(DlqStats {
            backend: "journal",
            depth: self.depth().await,
            oldest_age_seconds: oldest
                .map(|e| (Utc::now() - e.enqueued_at).num_milliseconds().max(0) as f64 / 1000.0),
            dead_letters: self.dead_ids()?.len() as u64,
            capacity: self.capacity,
        })
    }

    async fn dead_letters(
        &self,
        limit: usize,
        after: Option<String>,
    ) -> Result<Vec<(String, DeadLetter)>, DlqError> {
        let mut out = Vec::new();
        for id in self.dead_ids()? {
            if after.as_ref().is_some_and(|a| id <= *a) {
                continue;
            }
            if out.len() == limit {
                break;
            }
            let bytes = fs::read(self.dead_dir.join(format!("{id}.json")))?;
            let letter =
                serde_json::from_slice(&bytes).map_err(|e| DlqError::Corrupt(e.to_string()))?;
            out.push((id, letter));
        }
        Ok(out)
    }

    async fn retry_dead_letter(&self, id: &str) -> Result<bool, DlqError> {
        let Some(path) = self.dead_path(id) else {
            return Ok(false);
        };
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let letter: DeadLetter =
            serde_json::from_slice(&bytes).map_err(|e| DlqError::Corrupt(e.to_string()))?;
        let entry = DlqEntry::new(
            letter.event,
            format!("retried by an operator after: {}", letter.reason),
        );
        self.append(&[entry], true).await?;
        fs::remove_file(&path)?;
        fs::File::open(&self.dead_dir)?.sync_all()?;
        Ok(true)
    }

    async fn ping(&self) -> Result<(), DlqError> {
        fs::metadata(&self.dead_dir)?;
        Ok(())
    }
}
