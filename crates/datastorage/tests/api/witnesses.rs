//! C2SP witnesses cosigning the log's checkpoints: a quorum reached while one witness is down,
//! that witness brought up to date with one submission once it is back, and a rewritten or
//! rolled-back log refused by the witnesses that saw the real one.

use std::path::Path;
use std::sync::Arc;

use audit_model::checkpoint::CheckpointSigner;
use audit_model::cosignature::{CosignatureVerifier, Cosigner, WitnessPolicy};
use audit_witness::state::State;
use audit_witness::Witness;
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app_with, AppOptions, Backend, TestApp};

const ORIGIN: &str = "kubernaut.ai/audit";

/// A witness served in the test on a port of its own, its state in a directory that outlives
/// it (so that it can be stopped and started again).
struct TestWitness {
    cosigner_seed: u8,
    name: String,
    port: u16,
    dir: tempfile::TempDir,
    server: Option<tokio::task::JoinHandle<()>>,
    /// Served over TLS with this CA's certificate, taking only this token.
    secured: Option<(Arc<test_pki::TestCa>, String)>,
}

impl TestWitness {
    fn new(i: u8) -> TestWitness {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        TestWitness {
            cosigner_seed: 100 + i,
            name: format!("w{i}.witness.test"),
            port,
            dir: tempfile::tempdir().unwrap(),
            server: None,
            secured: None,
        }
    }

    /// The same, served over TLS (a certificate of `ca`) to submitters with `token` only.
    fn secured(i: u8, ca: Arc<test_pki::TestCa>, token: &str) -> TestWitness {
        TestWitness {
            secured: Some((ca, token.to_string())),
            ..TestWitness::new(i)
        }
    }

    fn cosigner(&self) -> Cosigner {
        Cosigner::from_seed(&self.name, [self.cosigner_seed; 32]).unwrap()
    }

    fn verifier(&self) -> CosignatureVerifier {
        self.cosigner().verifier()
    }

    /// `<verifier key>@<URL>`, as the service's configuration names it.
    fn entry(&self) -> String {
        match self.secured {
            None => format!(
                "{}@http://127.0.0.1:{}",
                self.verifier().to_text(),
                self.port
            ),
            Some(_) => format!(
                "{}@https://localhost:{}",
                self.verifier().to_text(),
                self.port
            ),
        }
    }

    async fn start(&mut self, log: &CheckpointSigner) {
        let state = State::open(&State::default_url(self.dir.path()))
            .await
            .unwrap();
        let mut witness = Witness::new(self.cosigner(), vec![log.verifier()], state);
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        let Some((ca, token)) = &self.secured else {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
                .await
                .unwrap();
            let app = audit_witness::router(Arc::new(witness), metrics);
            self.server = Some(tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            }));
            return;
        };
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        witness = witness.with_submitters(audit_witness::Submitters::parse(&digest).unwrap());
        let (cert, key) = ca.server(&["localhost"]).write(self.dir.path(), "witness");
        let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
            .await
            .unwrap();
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let app = audit_witness::router(Arc::new(witness), metrics);
        self.server = Some(tokio::spawn(async move {
            axum_server::from_tcp_rustls(listener, config)
                .unwrap()
                .serve(app.into_make_service())
                .await
                .unwrap();
        }));
    }

    async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// The size of the newest checkpoint this witness cosigned (from its own state).
    async fn size(&self) -> Option<u64> {
        let state = State::open(&State::default_url(self.dir.path()))
            .await
            .unwrap();
        state.get(ORIGIN).await.unwrap().map(|s| s.tree_size)
    }
}

/// The log's key, written where the service reads it.
fn log_key(data_dir: &Path, seed: u8) -> CheckpointSigner {
    let signer = CheckpointSigner::from_seed(ORIGIN, [seed; 32]).unwrap();
    std::fs::write(data_dir.join("checkpoint.key"), signer.to_text()).unwrap();
    signer
}

async fn app_with_witnesses(
    backend: Backend,
    data_dir: Arc<tempfile::TempDir>,
    witnesses: &[&TestWitness],
) -> Option<TestApp> {
    spawn_app_with(
        backend,
        AppOptions {
            data_dir: Some(data_dir),
            witnesses: Some(witnesses.iter().map(|w| w.entry()).collect()),
            witness_quorum: Some(2),
            ..AppOptions::default()
        },
    )
    .await
}

async fn write(app: &TestApp, correlation: &str, n: usize) {
    crate::helpers::write_numbered(app, correlation, n).await;
}

/// The newest checkpoint the quorum cosigned, once it covers `size` events.
async fn witnessed(app: &TestApp, size: i64) -> Value {
    eventually(&format!("a witnessed checkpoint of {size}"), || async {
        let (status, body) = app
            .get("/api/v1/audit/checkpoints/latest?witnessed=true")
            .await;
        (status == 200 && body["tree_size"].as_i64() >= Some(size)).then_some(body)
    })
    .await
}

/// `datastorage verify` of the app's log with the log's key and the witnesses' keys, quorum 2:
/// whether it passed, and what it printed.
fn verify_with_quorum(app: &TestApp, log: &CheckpointSigner, w: &[TestWitness]) -> (bool, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_datastorage"));
    command
        .args(["verify", "--database-url", &app.db.url()])
        .args(["--public-key", &log.verifier().to_text()])
        .args(["--witness-quorum", "2"]);
    for witness in w {
        command.args(["--witness-key", &witness.verifier().to_text()]);
    }
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn metric(name_and_labels: &str) -> f64 {
    datastorage::metrics::prometheus()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_cosigns_while_one_witness_is_down_and_it_catches_up_in_one_step() {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let log = log_key(data_dir.path(), 21);
    let mut w: Vec<TestWitness> = (1..=3).map(TestWitness::new).collect();
    w[0].start(&log).await;
    w[1].start(&log).await;
    // w3 is down from the start.
    let Some(app) =
        app_with_witnesses(Backend::Sqlite, data_dir, &w.iter().collect::<Vec<_>>()).await
    else {
        return;
    };
    let (status, body) = app
        .get("/api/v1/audit/checkpoints/latest?witnessed=true")
        .await;
    assert_eq!(status, 404, "{body}");

    write(&app, "rr-witnessed", 40).await;
    let checkpoint = witnessed(&app, 40).await;
    assert_eq!(checkpoint["tree_size"], 40);
    let note = checkpoint["note"].as_str().unwrap();
    // The served note verifies with the log's key and carries the quorum's cosignatures.
    assert_eq!(log.verifier().verify(note).unwrap().tree_size, 40);
    let policy = WitnessPolicy {
        witnesses: w.iter().map(TestWitness::verifier).collect(),
        quorum: 2,
    };
    assert_eq!(
        policy.check(note).unwrap(),
        ["w1.witness.test", "w2.witness.test"]
    );
    assert!(
        metric("datastorage_witness_submission_failures_total{witness=\"w3.witness.test\"}") > 0.0
    );

    // w3 comes back: it is brought to the newest checkpoint with one submission.
    write(&app, "rr-witnessed", 25).await;
    let newest = witnessed(&app, 65).await["tree_size"].as_i64().unwrap();
    w[2].start(&log).await;
    let store = app.open_store().await;
    eventually("w3 to cosign the newest checkpoint", || async {
        let sizes = store.cosigned_sizes().await.ok()?;
        (sizes.get("w3.witness.test") == Some(&newest)).then_some(())
    })
    .await;
    assert_eq!(w[2].size().await, Some(newest as u64));
    assert_eq!(
        app.db
            .scalar(
                "SELECT count(*) FROM checkpoint_cosignatures WHERE witness = 'w3.witness.test'"
            )
            .await,
        1,
        "w3 was caught up with one proof, not checkpoint by checkpoint"
    );
    // The newest checkpoint's note now carries all three.
    let (_, latest) = app.get("/api/v1/audit/checkpoints/latest").await;
    let all = WitnessPolicy {
        quorum: 3,
        ..policy.clone()
    };
    assert_eq!(
        all.check(latest["note"].as_str().unwrap()).unwrap().len(),
        3
    );
    assert_eq!(app.db.count().await, 65);

    // verify-chain against the witnessed checkpoint, and against an older one by its size.
    let (status, verdict) = app
        .post(
            "/api/v1/audit/verify-chain",
            &json!({"correlation_id": "rr-witnessed", "witnessed": true}),
        )
        .await;
    assert_eq!(status, 200, "{verdict}");
    assert_eq!(verdict["tree_size"], newest);
    assert_eq!(verdict["verified_events"], 65);
    assert_eq!(verdict["is_valid"], true);
    assert!(policy
        .check(verdict["checkpoint"]["note"].as_str().unwrap())
        .is_ok());
    let (status, verdict) = app
        .post(
            "/api/v1/audit/verify-chain",
            &json!({"correlation_id": "rr-witnessed", "tree_size": 40}),
        )
        .await;
    assert_eq!(status, 200, "{verdict}");
    assert_eq!(
        (
            verdict["verified_events"].as_u64(),
            verdict["pending_events"].as_u64()
        ),
        (Some(40), Some(25))
    );
    let (status, problem) = app
        .post(
            "/api/v1/audit/verify-chain",
            &json!({"correlation_id": "rr-witnessed", "tree_size": 41}),
        )
        .await;
    assert_eq!(status, 404, "{problem}");
    // With both: that checkpoint, which the quorum must have cosigned (40 was, by w1 and w2;
    // 41 does not exist).
    let (status, verdict) = app
        .post(
            "/api/v1/audit/verify-chain",
            &json!({"correlation_id": "rr-witnessed", "tree_size": 40, "witnessed": true}),
        )
        .await;
    assert_eq!(status, 200, "{verdict}");
    assert_eq!(verdict["tree_size"], 40);
    let (status, problem) = app
        .post(
            "/api/v1/audit/verify-chain",
            &json!({"correlation_id": "rr-witnessed", "tree_size": 41, "witnessed": true}),
        )
        .await;
    assert_eq!(status, 404, "{problem}");
    assert!(problem.to_string().contains("cosigned by 0"), "{problem}");
    for witness in &mut w {
        witness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witnesses_refuse_a_rewritten_or_rolled_back_log() {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let log = log_key(data_dir.path(), 22);
    let mut w: Vec<TestWitness> = (1..=3).map(TestWitness::new).collect();
    for witness in &mut w {
        witness.start(&log).await;
    }
    let witnesses: Vec<&TestWitness> = w.iter().collect();
    let Some(real) = app_with_witnesses(Backend::Sqlite, data_dir, &witnesses).await else {
        return;
    };
    write(&real, "rr-real", 30).await;
    witnessed(&real, 30).await;
    real.shutdown.begin();
    drop(real);

    // Whoever holds the key writes another history of 50 events and lets the service sign it:
    // the witnesses, which cosigned the real one at 30, find the new one inconsistent with it.
    let forged_dir = Arc::new(tempfile::tempdir().unwrap());
    log_key(forged_dir.path(), 22);
    let forged = app_with_witnesses(Backend::Sqlite, forged_dir, &witnesses)
        .await
        .unwrap();
    write(&forged, "rr-forged", 50).await;
    eventually("the witnesses to refuse the rewritten log", || async {
        (metric("datastorage_witness_refusals_total{witness=\"w1.witness.test\",reason=\"inconsistent\"}") > 0.0)
            .then_some(())
    })
    .await;
    let (status, _) = forged
        .get("/api/v1/audit/checkpoints/latest?witnessed=true")
        .await;
    assert_eq!(status, 404, "a rewritten log got a witnessed checkpoint");
    // With no witness cosigning, the witnessed lag is the whole forged log.
    eventually("the witnessed lag to cover the forged log", || async {
        (metric("datastorage_witnessed_checkpoint_lag_leaves") == 50.0).then_some(())
    })
    .await;
    let (ok, out) = verify_with_quorum(&forged, &log, &w);
    assert!(
        !ok && out.contains("no checkpoint is cosigned by 2 of the 3 witnesses"),
        "{out}"
    );
    for witness in &w {
        assert_eq!(witness.size().await, Some(30), "{} moved", witness.name);
    }
    forged.shutdown.begin();
    drop(forged);

    // A log rolled back to fewer events than the witnesses saw: each names its larger size.
    let rolled_dir = Arc::new(tempfile::tempdir().unwrap());
    log_key(rolled_dir.path(), 22);
    let rolled = app_with_witnesses(Backend::Sqlite, rolled_dir, &witnesses)
        .await
        .unwrap();
    write(&rolled, "rr-rolled", 10).await;
    eventually("the witnesses to report the rollback", || async {
        (metric("datastorage_witness_refusals_total{witness=\"w2.witness.test\",reason=\"ahead\"}")
            > 0.0)
            .then_some(())
    })
    .await;
    for witness in &mut w {
        witness.stop().await;
    }
}

/// The attack witnesses exist for, in place: with the database and the signing key in hand, an
/// old event is rewritten, its leaf recomputed, the tree and every checkpoint rebuilt and signed
/// again by the service itself. A verifier of the database alone cannot tell; the witnesses that
/// cosigned the real history refuse the new one, and a verifier asking their quorum fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_event_rewritten_and_resigned_in_place_is_refused() {
    use crate::helpers::start_on;
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let log = log_key(data_dir.path(), 23);
    let mut w: Vec<TestWitness> = (1..=3).map(TestWitness::new).collect();
    for witness in &mut w {
        witness.start(&log).await;
    }
    let witnesses: Vec<&TestWitness> = w.iter().collect();
    let Some(app) = app_with_witnesses(Backend::Sqlite, data_dir.clone(), &witnesses).await else {
        return;
    };
    write(&app, "rr-history", 30).await;
    witnessed(&app, 30).await;
    // Two monitors follow the real log, one of them requiring the quorum.
    let monitor_state = data_dir.path().join("monitor.json");
    let (code, out) = monitor_once(&app, &log, &monitor_state, &[]).await;
    assert_eq!(code, 0, "{out}");
    let quorum_state = data_dir.path().join("quorum-monitor.json");
    let (code, out) = monitor_once(&app, &log, &quorum_state, &w).await;
    assert_eq!(code, 0, "{out}");
    // (Their exports are recorded in the log too; the witnesses cosign those as well.)
    let rows = app.db.scalar("SELECT count(*) FROM audit_events").await;
    assert_eq!(rows, 32);
    let real = witnessed(&app, rows).await["tree_size"].as_i64().unwrap();
    let (ok, out) = verify_with_quorum(&app, &log, &w);
    assert!(ok, "{out}");
    let TestApp {
        db,
        shutdown,
        handle,
        ..
    } = app;
    shutdown.begin();
    handle.await.unwrap().unwrap();

    // The insider: event 5 says someone else acted; its leaf, the tree and the checkpoints are
    // made to match, and the service signs them again at its next start.
    db.execute(
        "DROP TRIGGER audit_events_no_update; DROP TRIGGER merkle_nodes_no_delete; \
         DROP TRIGGER checkpoints_no_delete; DROP TRIGGER checkpoint_cosignatures_no_delete",
    )
    .await
    .unwrap();
    db.execute("UPDATE audit_events SET actor_id = 'nobody' WHERE seq = 5")
        .await
        .unwrap();
    let store = datastorage::store::connect(
        &datastorage::config::DatabaseTarget::Sqlite {
            path: db
                .url()
                .trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap()
                .into(),
        },
        1,
    )
    .await
    .unwrap();
    let rows = store.scan(4, 1).await.unwrap();
    let datastorage::store::LogEntry::Event(rewritten) = &rows[0] else {
        panic!("seq 5 is an event")
    };
    assert_eq!(rewritten.event.actor_id(), "nobody");
    let leaf = hex::encode(audit_model::AuditEvent::leaf_hash(&rewritten.event).as_bytes());
    store.close().await;
    db.execute(&format!(
        "UPDATE audit_events SET leaf_hash = x'{leaf}' WHERE seq = 5; \
         DELETE FROM checkpoint_cosignatures; DELETE FROM merkle_nodes; DELETE FROM checkpoints"
    ))
    .await
    .unwrap();

    let options = AppOptions {
        data_dir: Some(data_dir),
        witnesses: Some(witnesses.iter().map(|w| w.entry()).collect()),
        witness_quorum: Some(2),
        ..AppOptions::default()
    };
    let forged = start_on(db.clone(), Backend::Sqlite, options).await;
    let resigned = checkpoint_covering_forged(&forged, real).await;
    assert_eq!(
        log.verifier().verify(&resigned).unwrap().tree_size as i64,
        real,
        "the service signed the rewritten history"
    );
    // The database alone checks out: every leaf, node and checkpoint agrees with the content.
    let plain = std::process::Command::new(env!("CARGO_BIN_EXE_datastorage"))
        .args(["verify", "--database-url", &forged.db.url()])
        .args(["--public-key", &log.verifier().to_text()])
        .output()
        .unwrap();
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stdout)
    );
    // The witnesses do not move, the service counts their refusals, and the quorum fails.
    eventually("the witnesses to refuse the rewritten history", || async {
        (metric("datastorage_witness_refusals_total{witness=\"w1.witness.test\",reason=\"fork\"}") > 0.0
            || metric("datastorage_witness_refusals_total{witness=\"w1.witness.test\",reason=\"inconsistent\"}") > 0.0)
            .then_some(())
    })
    .await;
    for witness in &w {
        assert_eq!(
            witness.size().await,
            Some(real as u64),
            "{} moved",
            witness.name
        );
    }
    let (status, _) = forged
        .get("/api/v1/audit/checkpoints/latest?witnessed=true")
        .await;
    assert_eq!(status, 404);
    let (status, problem) = forged
        .post(
            "/api/v1/audit/verify-chain",
            &json!({"correlation_id": "rr-history", "witnessed": true}),
        )
        .await;
    assert_eq!(status, 404, "{problem}");
    let (ok, out) = verify_with_quorum(&forged, &log, &w);
    assert!(!ok, "{out}");
    // The monitors report it: the history changed under the one that follows the signed
    // checkpoints, and the witnessed history is gone for the one that requires the quorum.
    let (code, out) = monitor_once(&forged, &log, &monitor_state, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        ["fork", "inconsistent"]
            .iter()
            .any(|kind| out.contains(&format!("\"kind\":\"{kind}\""))),
        "{out}"
    );
    let (code, out) = monitor_once(&forged, &log, &quorum_state, &w).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("\"kind\":\"quorum\""), "{out}");
    for witness in &mut w {
        witness.stop().await;
    }
}

/// One `datastorage monitor --once` round against `app` (requiring a quorum of 2 of
/// `witnesses` when there are any): its exit code and what it printed.
async fn monitor_once(
    app: &TestApp,
    log: &CheckpointSigner,
    state: &Path,
    witnesses: &[TestWitness],
) -> (i32, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_datastorage"));
    command
        .args(["monitor", "--once", "--url", &app.base])
        .args(["--public-key", &log.verifier().to_text()])
        .arg("--state-file")
        .arg(state);
    if !witnesses.is_empty() {
        command.args(["--witness-quorum", "2"]);
        for witness in witnesses {
            command.args(["--witness-key", &witness.verifier().to_text()]);
        }
    }
    let out = command.output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The note of the checkpoint the restarted service signs over `size` leaves.
async fn checkpoint_covering_forged(app: &TestApp, size: i64) -> String {
    crate::helpers::checkpoint_covering(app, size).await["note"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Witnesses behind TLS with a private CA and a submitter's token: the service reaches them with
/// its CA bundle and token; a witness that does not take its token only fails to cosign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witnesses_over_tls_take_the_services_token() {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let log = log_key(data_dir.path(), 24);
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(test_pki::TestCa::new("witnesses' CA"));
    let ca_file = ca.write(ca_dir.path(), "ca");
    let token_file = ca_dir.path().join("token");
    std::fs::write(&token_file, "the-logs-token\n").unwrap();
    let mut w = vec![
        TestWitness::secured(1, ca.clone(), "the-logs-token"),
        TestWitness::secured(2, ca.clone(), "the-logs-token"),
        // Takes another submitter's token only.
        TestWitness::secured(3, ca, "another-token"),
    ];
    for witness in &mut w {
        witness.start(&log).await;
    }
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            data_dir: Some(data_dir),
            witnesses: Some(w.iter().map(TestWitness::entry).collect()),
            witness_quorum: Some(2),
            witness_token_file: Some(token_file),
            witness_ca_file: Some(ca_file),
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };
    write(&app, "rr-tls-witnessed", 12).await;
    let checkpoint = witnessed(&app, 12).await;
    let policy = WitnessPolicy {
        witnesses: w.iter().map(TestWitness::verifier).collect(),
        quorum: 2,
    };
    assert_eq!(
        policy.check(checkpoint["note"].as_str().unwrap()).unwrap(),
        ["w1.witness.test", "w2.witness.test"]
    );
    assert!(
        metric("datastorage_witness_submission_failures_total{witness=\"w3.witness.test\"}") > 0.0
    );
    assert_eq!(w[2].size().await, None, "w3 cosigned without the token");
    for witness in &mut w {
        witness.stop().await;
    }
}
