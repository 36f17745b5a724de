//! `datastorage monitor --once` against a running service: it accepts a growing log, keeps its
//! state across runs, and reports a changed entry and a rolled-back log (stderr, exit status,
//! webhook) without accepting them.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::helpers::{checkpoint_covering, spawn_app, Backend, TestApp};

/// A webhook receiver: the findings posted to it.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let keep = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn write(app: &TestApp, n: usize, tag: &str) {
    crate::helpers::write_numbered(app, tag, n).await;
}

/// One `monitor --once` run: its exit code and what it printed.
async fn run(app: &TestApp, key: &str, state: &std::path::Path, hook: &str) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_datastorage"))
        .args(["monitor", "--once", "--url", &app.base, "--public-key", key])
        .arg("--state-file")
        .arg(state)
        .args(["--webhook", hook])
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn accepted(state: &std::path::Path) -> u64 {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
    v["tree_size"].as_u64().unwrap()
}

#[tokio::test]
async fn the_monitor_follows_the_log_and_reports_what_is_wrong() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let key = app.verifier().await.to_text();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("monitor.json");
    let (hook, received) = webhook().await;

    write(&app, 30, "rr-monitor").await;
    checkpoint_covering(&app, 30).await;
    let (code, err) = run(&app, &key, &state, &hook).await;
    assert_eq!(code, 0, "{err}");
    // (The service records each export in the log itself, so the log grows by those too.)
    assert!(accepted(&state) >= 30);

    write(&app, 20, "rr-monitor").await;
    checkpoint_covering(&app, 50).await;
    let (code, err) = run(&app, &key, &state, &hook).await;
    assert_eq!(code, 0, "{err}");
    assert!(accepted(&state) >= 50);
    assert_eq!(run(&app, &key, &state, &hook).await.0, 0);
    let before = accepted(&state);
    assert!(received.lock().unwrap().is_empty());

    // An entry changed in the database after it was signed: the new entries do not hash to
    // their leaves. Reported, not accepted, and reported again next round.
    write(&app, 20, "rr-monitor").await;
    checkpoint_covering(&app, 70).await;
    app.change_row("actor_id = 'someone-else'", 60).await;
    for _ in 0..2 {
        let (code, err) = run(&app, &key, &state, &hook).await;
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("\"kind\":\"entry\""), "{err}");
        assert_eq!(accepted(&state), before);
    }
    let findings = received.lock().unwrap().clone();
    assert_eq!(findings.len(), 2, "{findings:?}");
    assert_eq!(findings[0]["kind"], "entry");
    assert!(findings[0]["tree_size"].as_u64() >= Some(70));

    // A monitor that accepted a larger tree than the service now shows: a rollback.
    std::fs::write(
        &state,
        json!({"tree_size": 1000, "root_hash": "00".repeat(32)}).to_string(),
    )
    .unwrap();
    let (code, err) = run(&app, &key, &state, &hook).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("\"kind\":\"rollback\""), "{err}");
    assert_eq!(received.lock().unwrap().len(), 3);

    // Another key: the checkpoint's signature is refused.
    let other = audit_model::checkpoint::CheckpointSigner::from_seed("kubernaut.ai/audit", [5; 32])
        .unwrap()
        .verifier()
        .to_text();
    let (code, err) = run(&app, &other, &dir.path().join("fresh.json"), &hook).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("\"kind\":\"signature\""), "{err}");
}
