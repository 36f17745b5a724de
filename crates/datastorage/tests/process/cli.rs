//! The command line: embedded default, `migrate`, fail-fast configuration.

use std::process::Command;

use serde_json::Value;

use crate::child::ServerProcess;
use crate::helpers::{event, Backend, TestDb};

#[tokio::test]
async fn serve_with_no_database_url_runs_on_an_embedded_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = ServerProcess::start(&["--data-dir", data_dir.to_str().unwrap()]).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/api/v1/audit/events", server.base))
        .json(&event("rr-default"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let page: Value = client
        .get(format!(
            "{}/api/v1/audit/events?correlation_id=rr-default&include_all=true",
            server.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let file = data_dir.join("audit.db");
    assert!(
        file.exists(),
        "the embedded database lives under the data dir"
    );
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let (count, mode): (i64, String) = (
        sqlx::query_scalar("SELECT count(*) FROM audit_events")
            .fetch_one(&pool)
            .await
            .unwrap(),
        sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap(),
    );
    assert_eq!((count, mode.as_str()), (1, "wal"));
}

#[tokio::test]
async fn migrate_creates_the_schema_and_is_idempotent() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    for _ in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_datastorage"))
            .args(["migrate", "--database-url", &db.url()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(db.count().await, 0);
    assert_eq!(db.scalar("SELECT last_seq FROM log_head").await, 0);
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count() as i64;
    assert_eq!(
        db.scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .await,
        files
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM notification_audit").await,
        0,
        "the seed views exist"
    );
}

#[test]
fn invalid_configuration_fails_fast_naming_the_key() {
    for (args, key) in [
        (vec!["--batch-max-events", "0"], "--batch-max-events"),
        (vec!["--listen", "nowhere"], "--listen"),
        (vec!["--database-url", "mysql://x"], "--database-url"),
        (vec!["--shutdown-delay", "soon"], "--shutdown-delay"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_datastorage"))
            .arg("serve")
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{args:?}: {stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_datastorage"))
        .arg("serve")
        .env("DATASTORAGE_BATCH_MAX_ITEMS", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATASTORAGE_BATCH_MAX_ITEMS"));
}

#[test]
fn serve_refuses_to_start_without_a_signing_key_and_keygen_makes_one() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_datastorage"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no checkpoint signing key") && stderr.contains("keygen"),
        "{stderr}"
    );
    assert!(
        !data_dir.join("audit.db").exists(),
        "nothing was written before the refusal"
    );

    let key = dir.path().join("signing.key");
    let out = Command::new(env!("CARGO_BIN_EXE_datastorage"))
        .args(["keygen", "--origin", "audit.example/test", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = String::from_utf8(out.stdout).unwrap();
    let verifier = audit_model::checkpoint::CheckpointVerifier::parse(public.trim()).unwrap();
    let signer =
        audit_model::checkpoint::CheckpointSigner::parse(&std::fs::read_to_string(&key).unwrap())
            .unwrap();
    assert_eq!(signer.key_id(), verifier.key_id());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Never over an existing key.
    let again = Command::new(env!("CARGO_BIN_EXE_datastorage"))
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert_eq!(
        audit_model::checkpoint::CheckpointSigner::parse(&std::fs::read_to_string(&key).unwrap())
            .unwrap()
            .key_id(),
        verifier.key_id()
    );
}

/// `verify` and `export` never write to the log they check: no migrations, read-only sessions.
/// On a database without the schema they refuse and leave it empty; on a missing SQLite file they
/// refuse without creating it.
#[tokio::test]
async fn verify_and_export_never_change_the_database() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = Command::new(env!("CARGO_BIN_EXE_datastorage"))
        .args(["keygen", "--out"])
        .arg(dir.path().join("k"))
        .output()
        .unwrap();
    let public = String::from_utf8(key.stdout).unwrap();
    let missing = dir.path().join("absent.db");
    let sqlite = format!("sqlite://{}", missing.display());
    for url in [db.url(), sqlite] {
        for args in [
            vec!["verify", "--public-key", public.trim()],
            vec!["export"],
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_datastorage"))
                .args(&args)
                .args(["--database-url", &url])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} on {url}");
            assert!(
                stderr.contains("not a Data Storage log") || stderr.contains("does not exist"),
                "{args:?} on {url}: {stderr}"
            );
        }
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            .await,
        0,
        "no table was created"
    );
    assert!(!missing.exists(), "no SQLite file was created");
}
