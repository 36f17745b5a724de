//! Three `audit-witness` processes cosigning a running Data Storage's checkpoints under a
//! 2-of-3 policy: in normal operation every checkpoint ends up cosigned by at least two; with
//! one witness killed the quorum goes on and nothing waits, and once it is back it is caught up
//! with one submission; a witness killed and started again mid-run keeps its state.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use audit_model::checkpoint::CheckpointSigner;
use audit_model::cosignature::{CosignatureVerifier, WitnessPolicy};
use audit_witness::state::State;
use datastorage::config::{CheckpointSettings, Config, DatabaseTarget, ServerSettings, Settings};
use datastorage::store::{CheckpointQuery, LogStore};
use serde_json::{json, Value};

const ORIGIN: &str = "kubernaut.ai/audit";

/// A witness process, its directory (key and state) and its verifier key.
struct Witness {
    dir: tempfile::TempDir,
    key: CosignatureVerifier,
    process: Option<common::Process>,
    port: u16,
}

impl Witness {
    async fn start(i: usize, log_key: &str) -> Witness {
        let dir = tempfile::tempdir().unwrap();
        let key = common::keygen(dir.path(), &format!("w{i}.witness.test"));
        let process = common::serve(dir.path(), log_key, 0, &[]).await;
        Witness {
            port: process.port,
            dir,
            key,
            process: Some(process),
        }
    }

    fn name(&self) -> &str {
        self.key.name()
    }

    /// Killed without warning (SIGKILL).
    async fn kill(&mut self) {
        let mut process = self.process.take().expect("running");
        process.child.kill().await.unwrap();
    }

    /// Started again on the same port and state.
    async fn restart(&mut self, log_key: &str) {
        assert!(self.process.is_none());
        self.process = Some(common::serve(self.dir.path(), log_key, self.port, &[]).await);
    }

    /// The size this witness's own state says it cosigned.
    async fn state_size(&self) -> Option<u64> {
        let state = State::open(&State::default_url(&self.dir.path().join("data")))
            .await
            .unwrap();
        state.get(ORIGIN).await.unwrap().map(|s| s.tree_size)
    }
}

/// Data Storage served in the test, with its checkpoints submitted to `witnesses`.
struct Service {
    base: String,
    http: reqwest::Client,
    store: Arc<dyn LogStore>,
    written: usize,
}

impl Service {
    async fn start(data_dir: &Path, witnesses: &[Witness]) -> Service {
        let settings = Settings {
            server: ServerSettings {
                listen: Some("127.0.0.1:0".into()),
                data_dir: Some(data_dir.to_path_buf()),
                shutdown_delay: Some("0s".into()),
                ..ServerSettings::default()
            },
            checkpoints: CheckpointSettings {
                interval: Some("200ms".into()),
                witnesses: Some(
                    witnesses
                        .iter()
                        .map(|w| format!("{}@http://127.0.0.1:{}", w.key.to_text(), w.port))
                        .collect(),
                ),
                witness_quorum: Some(2),
                ..CheckpointSettings::default()
            },
            ..Settings::default()
        };
        let app = datastorage::Application::build(Config::from_settings(settings).unwrap())
            .await
            .unwrap();
        let base = format!("http://{}", app.local_addr());
        tokio::spawn(app.run_until(std::future::pending()));
        let store = datastorage::store::connect(
            &DatabaseTarget::Sqlite {
                path: data_dir.join("audit.db"),
            },
            1,
        )
        .await
        .unwrap();
        Service {
            base,
            http: reqwest::Client::new(),
            store,
            written: 0,
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Writes `n` events in one batch.
    async fn write(&mut self, n: usize) {
        let batch: Vec<Value> = (0..n)
            .map(|i| {
                json!({
                    "event_type": "notification.message.sent",
                    "event_category": "notification",
                    "event_action": "sent",
                    "event_outcome": "success",
                    "correlation_id": "rr-witnessed-by-processes",
                    "event_data": {"i": self.written + i}
                })
            })
            .collect();
        let r = self
            .http
            .post(format!("{}/api/v1/audit/events/batch", self.base))
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        self.written += n;
    }

    /// Writes `n` events and waits until a signed checkpoint covers them: its size.
    async fn write_and_sign(&mut self, n: usize) -> i64 {
        self.write(n).await;
        let written = self.written as i64;
        eventually("a checkpoint over everything written", || async {
            let (status, c) = self.get("/api/v1/audit/checkpoints/latest").await;
            (status == 200 && c["tree_size"].as_i64() >= Some(written))
                .then(|| c["tree_size"].as_i64().unwrap())
        })
        .await
    }

    /// Every stored checkpoint, by size.
    async fn checkpoint_sizes(&self) -> Vec<i64> {
        let page = CheckpointQuery::Page {
            since: None,
            after_size: 0,
            limit: 10_000,
        };
        let checkpoints = self.store.checkpoints(&page).await.unwrap();
        checkpoints.iter().map(|c| c.tree_size).collect()
    }

    /// The witnesses that cosigned the checkpoint of `size`.
    async fn cosigners(&self, size: i64) -> Vec<String> {
        let cosignatures = self.store.cosignatures(size).await.unwrap();
        cosignatures.into_iter().map(|c| c.witness).collect()
    }

    /// How many checkpoints `witness` cosigned here.
    async fn cosigned_by(&self, witness: &str) -> usize {
        let mut n = 0;
        for size in self.checkpoint_sizes().await {
            n += self
                .cosigners(size)
                .await
                .iter()
                .filter(|w| *w == witness)
                .count();
        }
        n
    }

    /// Waits until `witness` has cosigned the checkpoint of `size`.
    async fn await_cosigned(&self, witness: &str, size: i64) {
        eventually(&format!("{witness} to cosign size {size}"), || async {
            let sizes = self.store.cosigned_sizes().await.ok()?;
            (sizes.get(witness) == Some(&size)).then_some(())
        })
        .await
    }
}

/// Polls `probe` until it answers (the cosigning tasks work in the background).
async fn eventually<T, Fut: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> Fut,
) -> T {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(found) = probe().await {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn log_key(data_dir: &Path) -> CheckpointSigner {
    let signer = CheckpointSigner::from_seed(ORIGIN, [41; 32]).unwrap();
    std::fs::write(data_dir.join("checkpoint.key"), signer.to_text()).unwrap();
    signer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_witness_processes_keep_a_two_of_three_policy_through_an_outage_and_a_restart() {
    let data_dir = tempfile::tempdir().unwrap();
    let log = log_key(data_dir.path());
    let log_key = log.verifier().to_text();
    let mut w = Vec::new();
    for i in 1..=3 {
        w.push(Witness::start(i, &log_key).await);
    }
    let policy = WitnessPolicy {
        witnesses: w.iter().map(|w| w.key.clone()).collect(),
        quorum: 2,
    };
    let mut service = Service::start(data_dir.path(), &w).await;

    // Normal operation: checkpoint after checkpoint, each cosigned by at least two witnesses.
    let mut newest = 0;
    for _ in 0..5 {
        newest = service.write_and_sign(10).await;
    }
    for witness in &w {
        service.await_cosigned(witness.name(), newest).await;
    }
    let sizes = service.checkpoint_sizes().await;
    assert!(sizes.len() >= 5, "{sizes:?}");
    for size in &sizes {
        let by = service.cosigners(*size).await;
        assert!(by.len() >= 2, "checkpoint {size} cosigned by {by:?} only");
    }
    let (status, witnessed) = service
        .get("/api/v1/audit/checkpoints/latest?witnessed=true")
        .await;
    assert_eq!(status, 200, "{witnessed}");
    assert_eq!(witnessed["tree_size"], newest);
    assert_eq!(
        policy
            .check(witnessed["note"].as_str().unwrap())
            .unwrap()
            .len(),
        3
    );

    // w3 is killed: the other two keep the quorum, ingest goes on.
    let before = service.cosigned_by(w[2].name()).await;
    let down_at = service.store.cosigned_sizes().await.unwrap()[w[2].name()];
    w[2].kill().await;
    for _ in 0..3 {
        newest = service.write_and_sign(10).await;
    }
    service.await_cosigned(w[0].name(), newest).await;
    service.await_cosigned(w[1].name(), newest).await;
    let (_, witnessed) = service
        .get("/api/v1/audit/checkpoints/latest?witnessed=true")
        .await;
    assert_eq!(witnessed["tree_size"], newest, "the quorum held without w3");
    assert_eq!(w[2].state_size().await, Some(down_at as u64));

    // Back: caught up to the newest checkpoint with one submission.
    w[2].restart(&log_key).await;
    service.await_cosigned(w[2].name(), newest).await;
    assert_eq!(
        service.cosigned_by(w[2].name()).await,
        before + 1,
        "w3 was caught up with one proof, not checkpoint by checkpoint"
    );
    assert_eq!(w[2].state_size().await, Some(newest as u64));

    // w1 is killed and started again while events keep coming: it resumes from its own state.
    let cosigned = service.store.cosigned_sizes().await.unwrap()[w[0].name()];
    w[0].kill().await;
    service.write(10).await;
    assert_eq!(
        w[0].state_size().await,
        Some(cosigned as u64),
        "w1's state outlived the kill"
    );
    w[0].restart(&log_key).await;
    for _ in 0..3 {
        newest = service.write_and_sign(10).await;
    }
    for witness in &w {
        service.await_cosigned(witness.name(), newest).await;
        assert_eq!(witness.state_size().await, Some(newest as u64));
    }
    // Nobody refused anything: no witness saw a history inconsistent with the one it cosigned.
    let refusals = datastorage::metrics::prometheus()
        .render()
        .lines()
        .filter(|l| l.starts_with("datastorage_witness_refusals_total"))
        .map(str::to_string)
        .collect::<Vec<_>>();
    assert!(refusals.is_empty(), "{refusals:?}");

    // Every event is in the log once, and the newest checkpoint is witnessed by the quorum.
    assert_eq!(newest, service.written as i64);
    let witnessed = datastorage::evidence::verify::witnessed_checkpoint(
        service.store.as_ref(),
        &log.verifier(),
        &policy,
    )
    .await
    .unwrap();
    assert_eq!(witnessed.map(|(size, _)| size), Ok(newest));
    let report = datastorage::evidence::verify::verify_store(&service.store, &log.verifier())
        .await
        .unwrap();
    assert!(report.is_valid(), "{report:?}");
}
