//! Several `datastorage` processes on one PostgreSQL database, as deployed: one gap-free log
//! whose receipt times never step backwards along `seq`, which `datastorage verify` passes, even
//! when one replica is killed mid-write; and a log written by two replicas before receipt times
//! were taken under the log head still verifies, while a real reordering is still found.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use audit_model::AuditEvent;
use chrono::Utc;
use datastorage::evidence::tree::Checkpointer;
use datastorage::store::PreparedEvent;
use futures::future::join_all;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::child::{keygen, verify, ServerProcess};
use crate::helpers::{event, eventually, native_client, Backend, TestDb};

const CLIENTS: usize = 16;
const REQUESTS_PER_CLIENT: usize = 60;
/// Every sixth request is a batch of this many events; the others carry one.
const BATCH: usize = 10;

/// How many neighbours along `seq` have a receipt time earlier than the row before them.
/// Neighbours along `seq` whose commit time (before commit times were kept: receipt time) is
/// earlier than the row before them.
async fn backward_steps(db: &TestDb) -> i64 {
    let has_commit_times = db
        .scalar(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_name = 'audit_events' AND column_name = 'committed_at'",
        )
        .await
        > 0;
    let time = if has_commit_times {
        "COALESCE(committed_at, received_at)"
    } else {
        "received_at"
    };
    db.scalar(&format!(
        "SELECT count(*) FROM (SELECT t < lag(t) OVER (ORDER BY seq) AS back \
         FROM (SELECT seq, {time} AS t FROM audit_events) log) steps WHERE back"
    ))
    .await
}

/// One request's events, each with its own id and time (so a retry elsewhere is recognised).
fn request_body(client: usize, request: usize) -> (Value, Vec<Uuid>, &'static str) {
    let one = |k: usize| {
        let mut e = event(&format!("rr-two-{client}"));
        let id = Uuid::now_v7();
        e["event_id"] = json!(id);
        // A retry is the same event only with the same time (left out, it is the receipt's).
        e["event_timestamp"] = json!(audit_model::timestamp::format(&Utc::now()));
        e["event_data"] = json!({"client": client, "request": request, "k": k});
        (e, id)
    };
    if request.is_multiple_of(6) {
        let (events, ids): (Vec<Value>, Vec<Uuid>) = (0..BATCH).map(one).unzip();
        (Value::Array(events), ids, "/api/v1/audit/events/batch")
    } else {
        let (e, id) = one(0);
        (e, vec![id], "/api/v1/audit/events")
    }
}

/// The ids a successful answer acknowledges with a seq.
fn acknowledged(path: &str, answer: &Value) -> Vec<Uuid> {
    let items: Vec<&Value> = if path.ends_with("/batch") {
        answer["results"].as_array().unwrap().iter().collect()
    } else {
        vec![answer]
    };
    items
        .into_iter()
        .filter(|item| item["seq"].as_i64().is_some())
        .map(|item| item["event_id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// Two replicas, 16 clients writing singles and batches to both; midway one replica is killed
/// with SIGKILL, and a client whose request it did not answer sends the same events to the
/// other, as the audit client does. Every event is then stored exactly once, `seq` is gap-free,
/// receipt times never step backwards along `seq`, the checkpoints of both replicas form one
/// consistent signed tree, and `datastorage verify` passes the whole log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_killed_midway_leave_a_log_that_verifies() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let key_dir = tempfile::tempdir().unwrap();
    let (key_file, public_key) = keygen(key_dir.path());
    let url = db.url();
    let args = [
        "--database-url",
        url.as_str(),
        "--checkpoint-key-file",
        key_file.as_str(),
        "--checkpoint-interval",
        "200ms",
    ];
    let survivor = ServerProcess::start(&args).await;
    let victim = ServerProcess::start(&args).await;
    let victim_pid = victim.pid();
    let client = native_client();
    let total = CLIENTS * (REQUESTS_PER_CLIENT / 6 * BATCH + REQUESTS_PER_CLIENT * 5 / 6);
    let done = Arc::new(AtomicUsize::new(0));
    let retried = Arc::new(AtomicUsize::new(0));
    let tasks = (0..CLIENTS).map(|c| {
        let client = client.clone();
        let bases = [survivor.base.clone(), victim.base.clone()];
        let (done, retried) = (done.clone(), retried.clone());
        tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut acked = Vec::new();
            for r in 0..REQUESTS_PER_CLIENT {
                let (body, ids, path) = request_body(c, r);
                let mut base = &bases[(c + r) % 2];
                let answer = loop {
                    match client
                        .post(format!("{base}{path}"))
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(answer) if answer.status().is_success() => {
                            break answer.json::<Value>().await.unwrap()
                        }
                        Ok(answer) if base == &bases[0] => {
                            panic!("the surviving replica answered {}", answer.status())
                        }
                        // The killed replica: the events go to the other one.
                        Ok(_) | Err(_) if base == &bases[1] => {
                            retried.fetch_add(1, Ordering::Relaxed);
                            base = &bases[0];
                        }
                        Ok(_) | Err(_) => panic!("the surviving replica failed"),
                    }
                };
                acked.extend(acknowledged(path, &answer));
                sent.extend(ids);
                // Halfway through all requests, one replica dies without a chance to finish.
                if done.fetch_add(1, Ordering::Relaxed) + 1 == CLIENTS * REQUESTS_PER_CLIENT / 2 {
                    nix::sys::signal::kill(victim_pid, nix::sys::signal::Signal::SIGKILL)
                        .expect("SIGKILL sent");
                }
            }
            (sent, acked)
        })
    });
    let (mut sent, mut acked) = (Vec::new(), Vec::new());
    for result in join_all(tasks).await {
        let (s, a) = result.unwrap();
        sent.extend(s);
        acked.extend(a);
    }
    assert_eq!(sent.len(), total);
    assert!(
        retried.load(Ordering::Relaxed) > 0,
        "no request met the killed replica"
    );
    // Every event was acknowledged (with a seq) and is stored exactly once.
    acked.sort_unstable();
    sent.sort_unstable();
    assert_eq!(acked, sent, "every event was acknowledged once");
    let TestDb::Postgres { pool, .. } = &db else {
        unreachable!()
    };
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE event_id = ANY($1) AND purged_at IS NULL",
    )
    .bind(&sent)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(stored, total as i64);
    assert_eq!(db.assert_seq_gap_free().await, total as i64, "no other row");
    assert_eq!(backward_steps(&db).await, 0, "receipt times step backwards");

    // The surviving replica's checkpointer covers the log; both replicas signed checkpoints.
    let latest = eventually("a checkpoint covering every event", || {
        let (client, base) = (client.clone(), survivor.base.clone());
        async move {
            let body: Value = client
                .get(format!("{base}/api/v1/audit/checkpoints/latest"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (body["tree_size"].as_i64() == Some(total as i64)).then_some(body)
        }
    })
    .await;
    assert_eq!(latest["tree_size"], total as i64);
    survivor.terminate();
    let (ok, out) = verify(&url, &public_key);
    assert!(ok, "verify failed a healthy log: {out}");
    assert!(
        out.contains(&format!("OK: {total} events"))
            && out.contains(&format!("verified tree size {total}")),
        "{out}"
    );
    drop((survivor, victim));
}

/// Appends `batch` as a replica before this change did: the receipt time stamped from the
/// replica's own clock (`clock`), the head moved by the batch.
async fn append_as_old_replica(
    pool: &PgPool,
    batch: &[PreparedEvent],
    clock: chrono::DateTime<Utc>,
) {
    let mut tx = pool.begin().await.unwrap();
    let head: i64 = sqlx::query_scalar(
        "UPDATE log_head SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq - $1",
    )
    .bind(batch.len() as i64)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    let rows: Vec<Value> = batch
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let mut row = serde_json::to_value(&p.event).unwrap();
            row["seq"] = json!(head + k as i64 + 1);
            row["leaf_hash"] = json!(format!("\\x{}", p.leaf_hash.to_hex()));
            row["received_at"] = json!(audit_model::timestamp::format(&clock));
            row
        })
        .collect();
    sqlx::query(
        "INSERT INTO audit_events SELECT * FROM jsonb_populate_recordset(NULL::audit_events, $1)",
    )
    .bind(Value::Array(rows))
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

fn prepared(correlation: &str, batch: usize, size: usize) -> Vec<PreparedEvent> {
    (0..size)
        .map(|i| {
            let mut e = event(correlation);
            e["event_data"] = json!({"batch": batch, "i": i});
            PreparedEvent::new(AuditEvent::parse(e, Utc::now()).unwrap())
        })
        .collect()
}

/// A log written by two replicas before receipt times were taken under the log head (their
/// clocks 250 ms apart, so receipt times step backwards at every other batch), upgraded, signed
/// and written on: `verify` passes it, the new rows' receipt times follow on from the old ones,
/// and two old rows swapped in `seq` are still reported as reordered, at the right seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_by_two_replicas_before_the_change_verifies() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let TestDb::Postgres { pool, name, .. } = &db else {
        unreachable!()
    };
    // The schema as it was before receipt times moved under the log head.
    db.migrate_before(5).await;
    let start = Utc::now();
    for b in 0..40 {
        // Replica B's clock is 250 ms behind replica A's; they take turns at the head.
        let clock = start - chrono::Duration::seconds(2)
            + chrono::Duration::milliseconds(10 * b as i64)
            - chrono::Duration::milliseconds(if b % 2 == 1 { 250 } else { 0 });
        append_as_old_replica(pool, &prepared("rr-old", b, 50), clock).await;
    }
    assert_eq!(backward_steps(&db).await, 20, "the old log steps backwards");

    // The upgraded service: migrates, signs the old rows, and appends new ones.
    let store = crate::helpers::open_store(&db, 2).await;
    let signer = Arc::new(
        audit_model::checkpoint::CheckpointSigner::from_seed("two-replicas.test/log", [7; 32])
            .unwrap(),
    );
    let public_key = signer.verifier().to_text();
    let checkpointer = Checkpointer::new(store.clone(), signer);
    checkpointer.catch_up().await.unwrap();
    let newest_old: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT max(received_at) FROM audit_events")
            .fetch_one(pool)
            .await
            .unwrap();
    let outcomes = store.append(&prepared("rr-new", 0, 50)).await.unwrap();
    let datastorage::store::AppendOutcome::Created {
        committed_at: received_at,
        ..
    } = outcomes[0]
    else {
        panic!("not created: {:?}", outcomes[0])
    };
    assert!(
        received_at >= newest_old,
        "the new rows follow on from the old ones"
    );
    checkpointer.catch_up().await.unwrap();
    // Two more batches, pending (not yet signed).
    let mut pending_times = Vec::new();
    for b in 1..3 {
        let outcomes = store.append(&prepared("rr-new", b, 25)).await.unwrap();
        let datastorage::store::AppendOutcome::Created {
            committed_at: received_at,
            ..
        } = outcomes[0]
        else {
            panic!("not created: {:?}", outcomes[0])
        };
        pending_times.push(received_at);
    }
    assert!(pending_times[0] < pending_times[1]);
    store.close().await;
    assert_eq!(
        backward_steps(&db).await,
        20,
        "the new rows do not step backwards"
    );

    let (ok, out) = verify(&db.url(), &public_key);
    assert!(ok, "the old log failed: {out}");
    assert!(
        out.contains("OK: 2100 events")
            && out.contains("verified tree size 2050")
            && out.contains("50 pending"),
        "{out}"
    );

    let admin = PgPool::connect(crate::helpers::PG_ADMIN_URL).await.unwrap();
    pool.close().await;
    // Two old rows (of batches 2 and 30) swapped in seq: their receipt times say nothing (the
    // old replicas' clocks disagreed), the signed tree no longer matches from the first
    // checkpoint on.
    let (old, url) = swapped_copy(&admin, name, 120, 1520).await;
    let (ok, out) = verify(&url, &public_key);
    assert!(!ok, "a reordering of old rows was not detected: {out}");
    assert!(
        out.contains("CheckpointInconsistent") && out.contains("FAILED: first bad seq 1\n"),
        "{out}"
    );
    assert!(!out.contains("RowsReordered"), "{out}");
    // Two new rows of different batches, not yet signed, swapped: their receipt times, taken
    // under the log head, show which moved.
    let (new, url) = swapped_copy(&admin, name, 2060, 2090).await;
    let (ok, out) = verify(&url, &public_key);
    assert!(!ok, "a reordering of new rows was not detected: {out}");
    assert!(
        out.contains("RowsReordered") && out.contains("FAILED: first bad seq 2060\n"),
        "{out}"
    );
    for copy in [old, new] {
        sqlx::query(&format!("DROP DATABASE IF EXISTS {copy} WITH (FORCE)"))
            .execute(&admin)
            .await
            .unwrap();
    }
}

/// A copy of the database `template` with rows `a` and `b` swapped in `seq` by a superuser
/// (triggers off): its name and URL.
async fn swapped_copy(admin: &PgPool, template: &str, a: i64, b: i64) -> (String, String) {
    let copy = format!("ds_test_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {copy} TEMPLATE {template}"))
        .execute(admin)
        .await
        .unwrap();
    let url = format!("postgres://postgres@127.0.0.1:5432/{copy}");
    let pool = PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(&format!(
        "SET session_replication_role = replica; \
         UPDATE audit_leaves SET seq = -1 WHERE seq = {a}; \
         UPDATE audit_leaves SET seq = {a} WHERE seq = {b}; \
         UPDATE audit_leaves SET seq = {b} WHERE seq = -1; \
         UPDATE audit_content SET seq = -1 WHERE seq = {a}; \
         UPDATE audit_content SET seq = {a} WHERE seq = {b}; \
         UPDATE audit_content SET seq = {b} WHERE seq = -1"
    ))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    (copy, url)
}
