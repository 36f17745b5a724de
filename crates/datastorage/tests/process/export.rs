//! `datastorage export` and the offline `datastorage verify --export`: an export of 100 000
//! events verifies with the public key alone; a changed byte anywhere fails.

use std::io::Cursor;
use std::process::Command;
use std::sync::Arc;

use audit_model::checkpoint::CheckpointSigner;
use audit_model::export::verify_export;
use audit_model::AuditEvent;
use chrono::Utc;
use datastorage::config::DatabaseTarget;
use datastorage::evidence::export::{self as exporter, ExportFilter, ExportFormat};
use datastorage::evidence::tree::Checkpointer;
use datastorage::store::{self, LogStore, PreparedEvent};
use serde_json::json;

use crate::helpers::{event, Backend, TestDb};

async fn log_of(db: &TestDb, events: usize) -> (Arc<dyn LogStore>, CheckpointSigner) {
    let store = store::connect(
        &DatabaseTarget::Postgres {
            url: db.url(),
            password: None,
        },
        2,
    )
    .await
    .unwrap();
    let seed = [3; 32];
    let signer = Arc::new(CheckpointSigner::from_seed("export.test/log", seed).unwrap());
    let checkpointer = Checkpointer::new(store.clone(), signer);
    let mut written = 0;
    while written < events {
        let n = (events - written).min(2000);
        let batch: Vec<PreparedEvent> = (0..n)
            .map(|i| {
                let mut e = event(&format!("rr-export-{}", (written + i) % 50));
                e["event_data"] = json!({"i": written + i, "note": "disk 95% full on node-1"});
                PreparedEvent::new(AuditEvent::parse(e, Utc::now()).unwrap())
            })
            .collect();
        store.append(&batch).await.unwrap();
        written += n;
    }
    checkpointer.catch_up().await.unwrap();
    (
        store,
        CheckpointSigner::from_seed("export.test/log", seed).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_of_100_000_events_verifies_offline() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let (store, signer) = log_of(&db, 100_000).await;
    store.close().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.ndjson");
    let out = Command::new(env!("CARGO_BIN_EXE_datastorage"))
        .args(["export", "--database-url", &db.url(), "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = std::fs::read_to_string(&file).unwrap().lines().count();
    assert_eq!(lines, 100_001, "a checkpoint line and one line per event");

    let verify = |path: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_datastorage"))
            .args([
                "verify",
                "--public-key",
                &signer.verifier().to_text(),
                "--export",
            ])
            .arg(path)
            // No database: the export is checked offline.
            .env(
                "DATASTORAGE_DATABASE_URL",
                "postgres://nobody@127.0.0.1:1/none",
            )
            .output()
            .unwrap()
    };
    let ok = verify(&file);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(
        stdout
            .contains("OK: 100000 events proven against the signed checkpoint of tree size 100000"),
        "{stdout}"
    );

    // One changed byte in the middle of the file fails, naming its line.
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    let at = middle
        + bytes[middle..]
            .iter()
            .position(|b| b.is_ascii_digit())
            .unwrap();
    bytes[at] = if bytes[at] == b'9' {
        b'0'
    } else {
        bytes[at] + 1
    };
    let changed = dir.path().join("changed.ndjson");
    std::fs::write(&changed, &bytes).unwrap();
    let bad = verify(&changed);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).contains("FAILED: line "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipping_any_byte_of_an_export_fails_verification() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let (store, signer) = log_of(&db, 40).await;
    let mut export = Vec::new();
    let filter = ExportFilter {
        correlation_id: Some("rr-export-7".into()),
        ..ExportFilter::default()
    };
    exporter::write(
        store.clone(),
        filter,
        None,
        ExportFormat::Ndjson,
        &mut export,
    )
    .await
    .unwrap();
    let key = signer.verifier();
    let summary = verify_export(Cursor::new(&export), &key).unwrap();
    assert_eq!((summary.events, summary.tree_size), (1, 40));

    let mut whole = Vec::new();
    exporter::write(
        store.clone(),
        ExportFilter::default(),
        None,
        ExportFormat::Ndjson,
        &mut whole,
    )
    .await
    .unwrap();
    assert_eq!(verify_export(Cursor::new(&whole), &key).unwrap().events, 40);
    // Every byte of the checkpoint line and of the first three events, each bit flipped in turn
    // for the lowest and the case bit, and a spread of bytes over the rest.
    let head_end = whole
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(3)
        .unwrap()
        .0;
    let positions: Vec<usize> = (0..head_end)
        .chain((head_end..whole.len()).step_by(97))
        .collect();
    for at in positions {
        for bit in [0x01u8, 0x20] {
            let mut changed = whole.clone();
            changed[at] ^= bit;
            assert!(
                verify_export(Cursor::new(&changed), &key).is_err(),
                "byte {at} ({:?}) xor {bit:#x} still verified",
                whole[at] as char
            );
        }
    }
    // Dropping or duplicating an event line fails too.
    let text = String::from_utf8(whole).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let dropped = [&lines[..5], &lines[6..]].concat().join("\n");
    let repeated = [&lines[..6], &lines[5..]].concat().join("\n");
    let other_key = CheckpointSigner::from_seed("export.test/log", [4; 32])
        .unwrap()
        .verifier();
    assert!(verify_export(Cursor::new(repeated), &key).is_err());
    assert!(verify_export(Cursor::new(text.clone()), &other_key).is_err());
    // A dropped line is a selection, not a forgery: it still verifies, one event fewer.
    assert_eq!(
        verify_export(Cursor::new(dropped), &key).unwrap().events,
        39
    );
}
