//! `datastorage verify` against a real PostgreSQL log of 10 000 events with signed checkpoints,
//! tampered with directly in SQL as a superuser (triggers disabled), one way per copy of the
//! database. Each fault is detected, the first bad seq named, the exit status non-zero; the
//! untouched log verifies.

use std::sync::Arc;

use audit_model::checkpoint::CheckpointSigner;
use audit_model::subtrees;
use audit_model::AuditEvent;
use chrono::Utc;
use datastorage::config::DatabaseTarget;
use datastorage::evidence::tree::Checkpointer;
use datastorage::store::{self, PreparedEvent};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{event, Backend, TestDb, PG_ADMIN_URL};

const EVENTS: usize = 10_000;

/// Builds the log: 20 batches of 500, a checkpoint every 2 000 events.
async fn build_log(db: &TestDb) -> String {
    let store = store::connect(
        &DatabaseTarget::Postgres {
            url: db.url(),
            password: None,
        },
        2,
    )
    .await
    .unwrap();
    let signer = Arc::new(CheckpointSigner::from_seed("tamper.test/log", [5; 32]).unwrap());
    let public = signer.verifier().to_text();
    let checkpointer = Checkpointer::new(store.clone(), signer);
    for batch in 0..EVENTS / 500 {
        let events: Vec<PreparedEvent> = (0..500)
            .map(|i| {
                let mut e = event(&format!("rr-tamper-{}", batch % 7));
                e["event_data"] = json!({"batch": batch, "i": i});
                PreparedEvent::new(AuditEvent::parse(e, Utc::now()).unwrap())
            })
            .collect();
        store.append(&events).await.unwrap();
        if (batch + 1) % 4 == 0 {
            checkpointer.catch_up().await.unwrap();
        }
    }
    store.close().await;
    public
}

/// A fresh copy of the template database.
async fn copy_of(template: &str, admin: &PgPool) -> (String, PgPool) {
    let name = format!("ds_tamper_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .execute(admin)
        .await
        .unwrap();
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let pool = PgPool::connect(&url).await.unwrap();
    (name, pool)
}

/// Runs `sql` as the superuser with triggers disabled.
async fn tamper(pool: &PgPool, sql: &str) {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&mut *conn).await.unwrap();
}

/// `datastorage verify` of the copy `name`.
fn verify(name: &str, public_key: &str) -> (bool, String) {
    crate::child::verify(
        &format!("postgres://postgres@127.0.0.1:5432/{name}"),
        public_key,
    )
}

/// The leaf hash of the row now stored at `seq`, recomputed from its content.
async fn recomputed_leaf(pool: &PgPool, seq: i64) -> Vec<u8> {
    let url = pool.connect_options().get_database().unwrap().to_string();
    let store = store::connect(
        &DatabaseTarget::Postgres {
            url: format!("postgres://postgres@127.0.0.1:5432/{url}"),
            password: None,
        },
        1,
    )
    .await
    .unwrap();
    let row = store.scan(seq - 1, 1).await.unwrap().remove(0);
    store.close().await;
    let datastorage::store::LogEntry::Event(row) = row else {
        panic!("seq {seq} is purged")
    };
    row.event.leaf_hash().as_bytes().to_vec()
}

/// Sets the leaf hash of `seq`, in its leaf and in its content's copy, as a forger would.
async fn set_leaf_hash(conn: &mut sqlx::PgConnection, seq: i64, leaf: &[u8]) {
    for table in ["audit_leaves", "audit_content"] {
        sqlx::query(&format!("UPDATE {table} SET leaf_hash = $1 WHERE seq = $2"))
            .bind(leaf)
            .bind(seq)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
}

/// A forger without the signing key: changes event 2 500, recomputes its leaf hash, every tree
/// node above it and the root columns of the checkpoints (the signatures cannot be redone).
async fn rewrite_with_recomputed_tree(pool: &PgPool) {
    tamper(
        pool,
        "UPDATE audit_content SET event_data = jsonb_set(event_data, '{i}', '4242') WHERE seq = 2500",
    )
    .await;
    let leaf = recomputed_leaf(pool, 2500).await;
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    set_leaf_hash(&mut conn, 2500, &leaf).await;
    let leaves: Vec<[u8; 32]> =
        sqlx::query_scalar::<_, Vec<u8>>("SELECT leaf_hash FROM audit_events ORDER BY seq")
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.try_into().unwrap())
            .collect();
    let mut size = 0u64;
    let mut frontier: Vec<[u8; 32]> = vec![];
    for chunk in leaves.chunks(2000) {
        let ext = subtrees::extend(size, &frontier, chunk);
        for (id, hash) in &ext.created {
            sqlx::query("UPDATE merkle_nodes SET hash = $3 WHERE level = $1 AND idx = $2")
                .bind(i16::from(id.level))
                .bind(id.index as i64)
                .bind(hash.to_vec())
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        frontier = ext.frontier.iter().map(|(_, h)| *h).collect();
        size += chunk.len() as u64;
        sqlx::query("UPDATE checkpoints SET root_hash = $2 WHERE tree_size = $1")
            .bind(size as i64)
            .bind(subtrees::range_root(&frontier).to_vec())
            .execute(&mut *conn)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_detects_every_kind_of_tampering_and_passes_the_untouched_log() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let public_key = build_log(&db).await;
    let TestDb::Postgres {
        name: template,
        pool,
        ..
    } = &db
    else {
        unreachable!()
    };
    pool.close().await;
    let admin = PgPool::connect(PG_ADMIN_URL).await.unwrap();

    let (ok, out) = verify(template, &public_key);
    assert!(ok, "the untouched log failed: {out}");
    assert!(
        out.contains("OK: 10000 events, 5 checkpoints, verified tree size 10000"),
        "{out}"
    );

    struct Case {
        what: &'static str,
        sql: &'static str,
        fault: &'static str,
        first_bad: i64,
    }
    let cases = [
        Case {
            what: "one byte of one event's data",
            sql: "UPDATE audit_content SET event_data = jsonb_set(event_data, '{i}', '321') WHERE seq = 4321",
            fault: "ContentChanged",
            first_bad: 4321,
        },
        Case {
            what: "a deleted row",
            sql: "DELETE FROM audit_content WHERE seq = 5000; DELETE FROM audit_leaves WHERE seq = 5000",
            fault: "RowMissing",
            first_bad: 5000,
        },
        Case {
            what: "two rows' seq swapped",
            sql: "UPDATE audit_leaves SET seq = -1 WHERE seq = 100; \
                  UPDATE audit_leaves SET seq = 100 WHERE seq = 7000; \
                  UPDATE audit_leaves SET seq = 7000 WHERE seq = -1; \
                  UPDATE audit_content SET seq = -1 WHERE seq = 100; \
                  UPDATE audit_content SET seq = 100 WHERE seq = 7000; \
                  UPDATE audit_content SET seq = 7000 WHERE seq = -1",
            fault: "RowsReordered",
            first_bad: 100,
        },
        Case {
            what: "content purged before its retention ended",
            sql: "DELETE FROM audit_content WHERE seq = 2222; \
                  UPDATE audit_leaves SET purged_at = now() WHERE seq = 2222",
            fault: "PurgedEarly",
            first_bad: 2222,
        },
        Case {
            what: "a content row's copy of its leaf",
            sql: "UPDATE audit_content SET received_at = received_at + interval '1 second' \
                  WHERE seq = 6000",
            fault: "ContentChanged",
            first_bad: 6000,
        },
        Case {
            what: "content deleted with no purge",
            sql: "DELETE FROM audit_content WHERE seq = 3333",
            fault: "PurgedEarly",
            first_bad: 3333,
        },
    ];
    let mut dropped = vec![];
    for case in cases {
        let (name, pool) = copy_of(template, &admin).await;
        tamper(&pool, case.sql).await;
        pool.close().await;
        let (ok, out) = verify(&name, &public_key);
        assert!(!ok, "{}: not detected: {out}", case.what);
        assert!(out.contains(case.fault), "{}: {out}", case.what);
        assert!(
            out.contains(&format!("FAILED: first bad seq {}\n", case.first_bad)),
            "{}: {out}",
            case.what
        );
        dropped.push(name);
    }

    // A forged row, with a correct leaf hash for its content, appended after the last checkpoint
    // but dated in the past.
    let (name, pool) = copy_of(template, &admin).await;
    tamper(
        &pool,
        "INSERT INTO audit_leaves (seq, event_id, event_timestamp, retention_days, leaf_hash, \
           received_at) \
         SELECT 10001, gen_random_uuid(), event_timestamp, retention_days, leaf_hash, \
           '2026-01-01T00:00:00Z' FROM audit_leaves WHERE seq = 10; \
         CREATE TEMPORARY TABLE forged AS SELECT * FROM audit_content WHERE seq = 10; \
         UPDATE forged SET seq = 10001, received_at = '2026-01-01T00:00:00Z', committed_at = NULL, \
           event_id = (SELECT event_id FROM audit_leaves WHERE seq = 10001); \
         INSERT INTO audit_content SELECT * FROM forged",
    )
    .await;
    let leaf = recomputed_leaf(&pool, 10_001).await;
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    set_leaf_hash(&mut conn, 10_001, &leaf).await;
    drop(conn);
    pool.close().await;
    let (ok, out) = verify(&name, &public_key);
    assert!(!ok, "a forged row was not detected: {out}");
    assert!(
        out.contains("RowAdded") && out.contains("FAILED: first bad seq 10001\n"),
        "{out}"
    );
    assert!(
        !out.contains("ContentChanged"),
        "the forged row's hash was right: {out}"
    );
    dropped.push(name);

    // A leaf rewritten with everything above it recomputed, without the signing key.
    let (name, pool) = copy_of(template, &admin).await;
    rewrite_with_recomputed_tree(&pool).await;
    pool.close().await;
    let (ok, out) = verify(&name, &public_key);
    assert!(!ok, "a recomputed tree was not detected: {out}");
    assert!(
        out.contains("CheckpointInconsistent") && out.contains("CheckpointForged"),
        "{out}"
    );
    assert!(!out.contains("ContentChanged"), "{out}");
    // The content still reproduces checkpoint 2 000; the first seq that may be bad follows it.
    assert!(out.contains("FAILED: first bad seq 2001\n"), "{out}");
    dropped.push(name);

    for name in dropped {
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&admin)
            .await
            .unwrap();
    }
}
