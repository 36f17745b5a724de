//! The witness scenarios: `audit-witness` processes beside the service.
//!
//! * (w1)/(w2): single-event ingest without witnesses and with a 2-of-3 policy, in turns.
//! * (w3): at a fixed rate, how long an event waits from its commit until a checkpoint cosigned
//!   by the quorum covers it (sampled every 20 ms: the log's head seq from the database, the
//!   witnessed size from the API).
//! * (w4): one witness's rate of cosigned `add-checkpoint` requests on one core (pinned with
//!   `taskset`, one Tokio worker), eight logs submitting in turn-taking closed loops.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use audit_model::checkpoint::{Checkpoint, CheckpointSigner};
use audit_model::merkle::{consistency_proof, leaf_hash, root, Hash};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `audit-witness serve`.
pub struct WitnessProcess {
    child: Child,
    pub url: String,
    /// Its verifier key.
    pub key: String,
    _dir: tempfile::TempDir,
}

/// The `audit-witness` binary, next to this one.
pub fn binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("audit-witness")))
        .unwrap_or_else(|| PathBuf::from("target/release/audit-witness"))
}

impl WitnessProcess {
    /// Makes a key and serves it for the logs of `log_keys`; `pinned`: on CPU 0 with one
    /// worker thread.
    pub async fn start(name: &str, log_keys: &[String], pinned: bool) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let key_file = dir.path().join("witness.key");
        let out = Command::new(binary())
            .args(["keygen", "--name", name, "--out"])
            .arg(&key_file)
            .output()
            .await
            .context("cannot run audit-witness (build it with cargo build --release)")?;
        ensure!(out.status.success(), "audit-witness keygen failed");
        let key = String::from_utf8(out.stdout)?.trim().to_string();
        let mut command = if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(binary());
            c.env("TOKIO_WORKER_THREADS", "1");
            c
        } else {
            Command::new(binary())
        };
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--key-file"])
            .arg(&key_file)
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_LOG", "warn,audit_witness=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for log in log_keys {
            command.args(["--log-key", log]);
        }
        let mut child = command.spawn()?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if v["fields"]["message"] == "audit-witness serving" {
                    return Ok(format!(
                        "http://{}",
                        v["fields"]["addr"].as_str().unwrap_or_default()
                    ));
                }
            }
            anyhow::bail!("audit-witness exited before serving")
        })
        .await
        .context("audit-witness did not start within 30 s")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(WitnessProcess {
            child,
            url,
            key,
            _dir: dir,
        })
    }

    /// `<verifier key>@<URL>`, as Data Storage's configuration names it.
    pub fn entry(&self) -> String {
        format!("{}@{}", self.key, self.url)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A checkpoint signing key for a log named `origin`, written to `dir`; its path and verifier
/// key. (Each log a witness follows needs its own origin.)
pub async fn log_key(bin: &Path, dir: &Path, origin: &str) -> anyhow::Result<(PathBuf, String)> {
    let path = dir.join(format!("{}.key", origin.replace('/', "_")));
    let out = Command::new(bin)
        .args(["keygen", "--origin", origin, "--out"])
        .arg(&path)
        .output()
        .await?;
    ensure!(out.status.success(), "datastorage keygen failed");
    Ok((path, String::from_utf8(out.stdout)?.trim().to_string()))
}

/// (w3): samples of (time, head seq, witnessed size), and from them each sampled head's wait
/// until the witnessed size covered it; p50 and p99 in ms.
pub async fn witnessed_lag(
    base: &str,
    db_url: &str,
    duration: Duration,
) -> anyhow::Result<(f64, f64, usize)> {
    let pool = sqlx::PgPool::connect(db_url).await?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut samples: Vec<(Instant, i64, i64)> = Vec::new();
    while started.elapsed() < duration {
        let head: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM audit_events")
            .fetch_one(&pool)
            .await?;
        let witnessed = match http
            .get(format!(
                "{base}/api/v1/audit/checkpoints/latest?witnessed=true"
            ))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r
                .json::<serde_json::Value>()
                .await?
                .get("tree_size")
                .and_then(|v| v.as_i64())
                .unwrap_or(0),
            _ => 0,
        };
        samples.push((Instant::now(), head.unwrap_or(0), witnessed));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut waits: Vec<f64> = Vec::new();
    for (i, (t, head, _)) in samples.iter().enumerate() {
        if *head == 0 {
            continue;
        }
        if let Some((t2, _, _)) = samples[i..].iter().find(|(_, _, w)| w >= head) {
            waits.push(t2.duration_since(*t).as_secs_f64() * 1000.0);
        }
    }
    ensure!(!waits.is_empty(), "no event was witnessed during the run");
    waits.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| waits[((waits.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99), waits.len()))
}

/// (w4): cosigned `add-checkpoint` requests per second of one pinned witness, `logs` logs each
/// growing by one leaf per request, for `duration`.
pub async fn witness_rate(logs: usize, duration: Duration) -> anyhow::Result<(f64, u64)> {
    let signers: Vec<CheckpointSigner> = (0..logs)
        .map(|i| CheckpointSigner::from_seed(&format!("bench.example/log{i}"), [i as u8 + 1; 32]))
        .collect::<Result<_, _>>()?;
    let keys: Vec<String> = signers.iter().map(|s| s.verifier().to_text()).collect();
    let witness = WitnessProcess::start("bench.example/witness", &keys, true).await?;
    let url = Arc::new(format!("{}/add-checkpoint", witness.url));
    let stop = Instant::now() + duration;
    let tasks: Vec<_> = signers
        .into_iter()
        .map(|signer| {
            let url = url.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut leaves: Vec<Hash> = Vec::new();
                let mut size = 0usize;
                let mut cosigned = 0u64;
                while Instant::now() < stop {
                    leaves.push(leaf_hash(format!("{}-{size}", signer.name()).as_bytes()));
                    let new = size + 1;
                    let note = signer.sign(&Checkpoint {
                        origin: signer.name().to_string(),
                        tree_size: new as u64,
                        root_hash: root(&leaves),
                        timestamp: chrono::Utc::now(),
                    });
                    let mut body = format!("old {size}\n");
                    if size > 0 {
                        for h in consistency_proof(&leaves, size as u64)? {
                            body.push_str(&B64.encode(h));
                            body.push('\n');
                        }
                    }
                    body.push('\n');
                    body.push_str(&note);
                    let r = http.post(url.as_str()).body(body).send().await?;
                    ensure!(
                        r.status().is_success(),
                        "the witness answered {}",
                        r.status()
                    );
                    cosigned += 1;
                    size = new;
                }
                anyhow::Ok(cosigned)
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    witness.stop().await;
    Ok((total as f64 / duration.as_secs_f64(), total))
}
