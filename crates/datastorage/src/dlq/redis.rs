//! The Redis Streams DLQ (`redis://…`).
//!
//! `<prefix>:events` holds waiting entries (field `entry`, the JSON of a [`DlqEntry`]), read by
//! the consumer group `replay` so that every replica shares the work; `<prefix>:dead` holds dead
//! letters. An entry is acknowledged *and deleted* (`XACK` + `XDEL` in one `MULTI`) only after its
//! event is committed, and entries left pending by a replica that died are taken over with
//! `XAUTOCLAIM` once idle long enough. The stream is never trimmed: `enqueue` is a Lua script that
//! refuses entries beyond the capacity instead of evicting older ones.

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::streams::{StreamAutoClaimReply, StreamId, StreamRangeReply, StreamReadReply};
use ::redis::{Client, Script};
use async_trait::async_trait;
use chrono::Utc;

use super::{Claimed, DeadLetter, DlqBackend, DlqEntry, DlqError, DlqStats};

const GROUP: &str = "replay";
const FIELD: &str = "entry";

/// Adds all entries, or none when they would not fit. KEYS[1] stream; ARGV[1] capacity; the rest
/// are entries. Returns the number added, or -1 when full.
const ENQUEUE: &str = r"
local capacity = tonumber(ARGV[1])
if redis.call('XLEN', KEYS[1]) + (#ARGV - 1) > capacity then
  return -1
end
for i = 2, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'entry', ARGV[i])
end
return #ARGV - 1
";

/// The Redis Streams DLQ.
pub struct RedisDlq {
    con: ConnectionManager,
    events: String,
    dead: String,
    consumer: String,
    capacity: u64,
    claim_idle: Duration,
    enqueue: Script,
    /// Entries this replica has claimed and not yet settled or released.
    in_flight: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Risks of data loss in a Redis configuration (empty when it keeps what it is given).
pub fn persistence_risks(appendonly: &str, maxmemory_policy: &str) -> Vec<String> {
    let mut risks = Vec::new();
    if appendonly != "yes" {
        risks.push(
            "appendonly is off: queued audit events are lost if Redis restarts (enable AOF)"
                .to_string(),
        );
    }
    if maxmemory_policy != "noeviction" {
        risks.push(format!(
            "maxmemory-policy is {maxmemory_policy}: Redis may evict queued audit events (use noeviction)"
        ));
    }
    risks
}

impl RedisDlq {
    /// Connects to `url`; a `rediss://` server's certificate is verified against `ca_file`
    /// (PEM) when given, else against the public web roots.
    pub async fn connect(
        url: &str,
        ca_file: Option<&std::path::Path>,
        prefix: &str,
        capacity: u64,
        claim_idle: Duration,
    ) -> Result<Self, DlqError> {
        let client = match ca_file {
            None => Client::open(url)?,
            Some(path) => {
                let root_cert = std::fs::read(path).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("the Redis CA file {}: {e}", path.display()),
                    )
                })?;
                Client::build_with_tls(
                    url,
                    ::redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )?
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let mut con = ConnectionManager::new_with_config(client, config).await?;
        let events = format!("{prefix}:events");
        let dead = format!("{prefix}:dead");
        let created: Result<(), _> = ::redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&events)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut con)
            .await;
        if let Err(e) = created {
            if e.code() != Some("BUSYGROUP") {
                return Err(e.into());
            }
        }
        let dlq = Self {
            con,
            events,
            dead,
            consumer: format!(
                "{}-{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "datastorage".into()),
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            capacity,
            claim_idle,
            enqueue: Script::new(ENQUEUE),
            in_flight: std::sync::Mutex::default(),
        };
        dlq.warn_about_persistence().await;
        Ok(dlq)
    }

    async fn warn_about_persistence(&self) {
        let mut con = self.con.clone();
        let read = async {
            let aof: Vec<String> = ::redis::cmd("CONFIG")
                .arg("GET")
                .arg("appendonly")
                .query_async(&mut con)
                .await?;
            let policy: Vec<String> = ::redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory-policy")
                .query_async(&mut con)
                .await?;
            Ok::<_, ::redis::RedisError>((
                aof.get(1).cloned().unwrap_or_default(),
                policy.get(1).cloned().unwrap_or_default(),
            ))
        };
        match read.await {
            Ok((aof, policy)) => {
                for risk in persistence_risks(&aof, &policy) {
                    tracing::warn!(risk = %risk, "Redis DLQ can lose data");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the Redis persistence settings; make sure AOF is on and maxmemory-policy is noeviction")
            }
        }
    }

    fn decode(ids: Vec<StreamId>) -> Result<Vec<Claimed>, DlqError> {
        ids.into_iter()
            .map(|s| {
                let raw: Vec<u8> = s.get(FIELD).ok_or_else(|| {
                    DlqError::Corrupt(format!("entry {} has no `{FIELD}` field", s.id))
                })?;
                Ok(Claimed {
                    entry: DlqEntry::from_bytes(&raw)?,
                    id: s.id,
                })
            })
            .collect()
    }

    async fn read_group(&self, start: &str, count: usize) -> Result<Vec<Claimed>, DlqError> {
        let mut con = self.con.clone();
        let reply: Option<StreamReadReply> = ::redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&self.events)
            .arg(start)
            .query_async(&mut con)
            .await?;
        let ids = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        Self::decode(ids)
    }

    /// Adds new entries to `stream` and removes the claimed ones they replace, in one MULTI.
    async fn move_to(&self, stream: &str, items: Vec<(String, Vec<u8>)>) -> Result<(), DlqError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        for (_, bytes) in &items {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg(FIELD)
                .arg(bytes)
                .ignore();
        }
        let ids: Vec<String> = items.into_iter().map(|(id, _)| id).collect();
        self.remove(&mut pipe, &ids);
        let mut con = self.con.clone();
        pipe.query_async::<()>(&mut con).await?;
        self.settled(&ids);
        Ok(())
    }

    /// ACK and DEL of `ids` added to a pipeline (inside its MULTI).
    fn remove(&self, pipe: &mut ::redis::Pipeline, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        pipe.cmd("XACK")
            .arg(&self.events)
            .arg(GROUP)
            .arg(ids)
            .ignore();
        pipe.cmd("XDEL").arg(&self.events).arg(ids).ignore();
    }

    async fn enqueue_entries(&self, entries: Vec<DlqEntry>) -> Result<(), DlqError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut con = self.con.clone();
        let mut invocation = self.enqueue.key(&self.events);
        invocation.arg(self.capacity);
        for e in &entries {
            invocation.arg(e.to_bytes());
        }
        let added: i64 = invocation.invoke_async(&mut con).await?;
        if added < 0 {
            return Err(DlqError::Full {
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn settled(&self, ids: &[String]) {
        let mut in_flight = self.in_flight();
        for id in ids {
            in_flight.remove(id);
        }
    }
}

#[async_trait]
impl DlqBackend for RedisDlq {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn enqueue(&self, entries: Vec<DlqEntry>) -> Result<(), DlqError> {
        self.enqueue_entries(entries).await
    }

    async fn claim(&self, max: usize) -> Result<Vec<Claimed>, DlqError> {
        // This replica's unsettled entries first (released earlier, or left by a crash of a pass),
        // then entries stuck with an idle replica, then new ones.
        let held: std::collections::HashSet<String> = self.in_flight().clone();
        let mut claimed: Vec<Claimed> = self
            .read_group("0", max + held.len())
            .await?
            .into_iter()
            .filter(|c| !held.contains(&c.id))
            .take(max)
            .collect();
        if claimed.len() < max {
            let mut con = self.con.clone();
            let reply: StreamAutoClaimReply = ::redis::cmd("XAUTOCLAIM")
                .arg(&self.events)
                .arg(GROUP)
                .arg(&self.consumer)
                .arg(self.claim_idle.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(max - claimed.len())
                .query_async(&mut con)
                .await?;
            let taken = Self::decode(reply.claimed)?;
            if !taken.is_empty() {
                tracing::info!(
                    entries = taken.len(),
                    "took over DLQ entries of an idle replica"
                );
            }
            claimed.extend(taken);
        }
        if claimed.len() < max {
            claimed.extend(self.read_group(">", max - claimed.len()).await?);
        }
        self.in_flight()
            .extend(claimed.iter().map(|c| c.id.clone()));
        Ok(claimed)
    }

    async fn ack(&self, ids: &[String]) -> Result<(), DlqError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        self.remove(&mut pipe, ids);
        let mut con = self.con.clone();
        pipe.query_async::<()>(&mut con).await?;
        self.settled(ids);
        Ok(())
    }

    async fn release(&self, ids: &[String]) -> Result<(), DlqError> {
        // They stay pending with this consumer; the next claim reads them first.
        self.settled(ids);
        Ok(())
    }

    async fn requeue(&self, items: Vec<(String, DlqEntry)>) -> Result<(), DlqError> {
        let moved = items
            .into_iter()
            .map(|(id, e)| (id, e.to_bytes()))
            .collect();
        self.move_to(&self.events, moved).await
    }

    async fn bury(&self, items: Vec<(String, DeadLetter)>) -> Result<(), DlqError> {
        let mut moved = Vec::with_capacity(items.len());
        for (id, letter) in items {
            let bytes =
                serde_json::to_vec(&letter).map_err(|e| DlqError::Corrupt(e.to_string()))?;
            moved.push((id, bytes));
        }
        self.move_to(&self.dead, moved).await
    }

    async fn stats(&self) -> Result<DlqStats, DlqError> {
        let mut con = self.con.clone();
        let (depth, dead, head): (u64, u64, StreamRangeReply) = ::redis::pipe()
            .cmd("XLEN")
            .arg(&self.events)
            .cmd("XLEN")
            .arg(&self.dead)
            .cmd("XRANGE")
            .arg(&self.events)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut con)
            .await?;
        let oldest = head
            .ids
            .into_iter()
            .next()
            .map(|s| Self::decode(vec![s]))
            .transpose()?
            .and_then(|mut v| v.pop());
        Ok(DlqStats {
            backend: "redis",
            depth,
            oldest_age_seconds: oldest.map(|c| {
                (Utc::now() - c.entry.enqueued_at).num_milliseconds().max(0) as f64 / 1000.0
            }),
            dead_letters: dead,
            capacity: self.capacity,
        })
    }

    async fn dead_letters(
        &self,
        limit: usize,
        after: Option<String>,
    ) -> Result<Vec<(String, DeadLetter)>, DlqError> {
        let start = after.map_or("-".to_string(), |a| format!("({a}"));
        let mut con = self.con.clone();
        let reply: StreamRangeReply = ::redis::cmd("XRANGE")
            .arg(&self.dead)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut con)
            .await?;
        reply
            .ids
            .into_iter()
            .map(|s| {
                let raw: Vec<u8> = s.get(FIELD).unwrap_or_default();
                let letter =
                    serde_json::from_slice(&raw).map_err(|e| DlqError::Corrupt(e.to_string()))?;
                Ok((s.id, letter))
            })
            .collect()
    }

    async fn retry_dead_letter(&self, id: &str) -> Result<bool, DlqError> {
        let mut con = self.con.clone();
        let found: Result<StreamRangeReply, _> = ::redis::cmd("XRANGE")
            .arg(&self.dead)
            .arg(id)
            .arg(id)
            .query_async(&mut con)
            .await;
        // A malformed id is simply not a dead letter.
        let Ok(found) = found else { return Ok(false) };
        let Some(stream_id) = found.ids.into_iter().next() else {
            return Ok(false);
        };
        let raw: Vec<u8> = stream_id.get(FIELD).unwrap_or_default();
        let letter: DeadLetter =
            serde_json::from_slice(&raw).map_err(|e| DlqError::Corrupt(e.to_string()))?;
        let entry = DlqEntry::new(
            letter.event,
            format!("retried by an operator after: {}", letter.reason),
        );
        self.enqueue_entries(vec![entry]).await?;
        ::redis::cmd("XDEL")
            .arg(&self.dead)
            .arg(id)
            .query_async::<()>(&mut con)
            .await?;
        Ok(true)
    }

    async fn ping(&self) -> Result<(), DlqError> {
        let mut con = self.con.clone();
        ::redis::cmd("PING").query_async::<()>(&mut con).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risky_settings_are_named() {
        assert!(persistence_risks("yes", "noeviction").is_empty());
        let risks = persistence_risks("no", "allkeys-lru");
        assert_eq!(risks.len(), 2);
        assert!(risks[0].contains("appendonly"));
        assert!(risks[1].contains("allkeys-lru"));
    }
}
