//! The `LogStore` conformance suite: the same checks against PostgreSQL and SQLite, through the
//! trait, with no HTTP in between.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use audit_model::merkle::Hash;
use audit_model::subtrees::NodeId;
use audit_model::{AuditEvent, EventField, FieldValue, StoredEvent};
use chrono::Utc;
use datastorage::store::{
    self, AppendOutcome, CheckpointQuery, EventFilter, EventLog, EventQuery, HoldRequest, LogEntry,
    LogStore, Order, PlaceHold, PreparedEvent, RecordQuery, StoreError, StoredCheckpoint,
    StoredRecord, TreeStore,
};
use helpers::{Backend, TestDb};
use serde_json::json;

async fn open(db: &TestDb) -> Arc<dyn LogStore> {
    helpers::open_store(db, 4).await
}

/// The stored event of a read that must find live content.
fn live(entry: Option<LogEntry>) -> audit_model::StoredEvent {
    match entry {
        Some(LogEntry::Event(e)) => *e,
        other => panic!("expected a stored event, got {other:?}"),
    }
}

fn prepared(correlation: &str, data: serde_json::Value) -> PreparedEvent {
    let mut v = helpers::event(correlation);
    v["event_data"] = data;
    PreparedEvent::new(AuditEvent::parse(v, Utc::now()).unwrap())
}

/// The event with `key` set in its `event_data`: the same id, other content.
fn with_data(event: &AuditEvent, key: &str, value: serde_json::Value) -> AuditEvent {
    let mut data = event.event_data().clone();
    data.insert(key.into(), value);
    AuditEvent::from_fields(|field| {
        Ok::<_, std::convert::Infallible>(match field {
            EventField::EventData => FieldValue::Object(data.clone()),
            field => event.get(field).to_owned(),
        })
    })
    .unwrap()
}

async fn conformance(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    assert_eq!(store.count().await.unwrap(), 0);

    // A batch is appended in order with consecutive seqs.
    let batch: Vec<PreparedEvent> = (0..5).map(|i| prepared("rr-c", json!({"i": i}))).collect();
    let outcomes = store.append(&batch).await.unwrap();
    let seqs: Vec<i64> = outcomes
        .iter()
        .map(|o| match o {
            AppendOutcome::Created { seq, .. } => *seq,
            other => panic!("expected created, got {other:?}"),
        })
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);

    // The same ids again: duplicates; changed content: conflicts; nothing new stored.
    let changed = PreparedEvent::new(with_data(&batch[1].event, "i", json!(99)));
    let outcomes = store.append(&[batch[0].clone(), changed]).await.unwrap();
    assert!(matches!(&outcomes[0], AppendOutcome::Duplicate(s) if s.seq == 1));
    assert!(
        matches!(&outcomes[1], AppendOutcome::Conflict(s) if s.seq == 2 && s.event.event_data()["i"] == 1)
    );
    assert_eq!(store.count().await.unwrap(), 5);

    // New events continue the sequence after reopening the store.
    store.close().await;
    let store = open(&db).await;
    let outcomes = store.append(&[prepared("rr-d", json!({}))]).await.unwrap();
    assert!(matches!(
        &outcomes[0],
        AppendOutcome::Created { seq: 6, .. }
    ));

    // Stored and new ids mixed in one batch: the new ones are numbered in input order, after
    // the head, and the stored ones answered from the log.
    let (x, y) = (
        prepared("rr-m", json!({"x": 1})),
        prepared("rr-m", json!({"y": 1})),
    );
    let mixed = [batch[4].clone(), x.clone(), batch[0].clone(), y.clone()];
    let outcomes = store.append(&mixed).await.unwrap();
    assert!(
        matches!(
            &outcomes[..],
            [
                AppendOutcome::Duplicate(a),
                AppendOutcome::Created { seq: 7, .. },
                AppendOutcome::Duplicate(b),
                AppendOutcome::Created { seq: 8, .. },
            ] if a.seq == 5 && b.seq == 1
        ),
        "{outcomes:?}"
    );
    assert_eq!(live(store.get(x.event.event_id()).await.unwrap()).seq, 7);
    assert_eq!(live(store.get(y.event.event_id()).await.unwrap()).seq, 8);

    // Reads give back exactly what was appended, hash included.
    let got = live(store.get(batch[3].event.event_id()).await.unwrap());
    assert_eq!(got.event, batch[3].event);
    assert_eq!(got.leaf_hash, batch[3].leaf_hash);
    assert_eq!(
        got.event.leaf_hash(),
        got.leaf_hash,
        "hash survives the round trip"
    );
    assert!(store.get(uuid::Uuid::new_v4()).await.unwrap().is_none());

    let q = EventQuery {
        filters: vec![(EventFilter::CorrelationId, "rr-c".into())],
        order: Order::Desc,
        limit: 3,
        ..EventQuery::default()
    };
    let page: Vec<i64> = store
        .query(&q)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(page, [5, 4, 3]);
    db.assert_seq_gap_free().await;
    store.ping().await.unwrap();
    assert_eq!(
        store.backend(),
        match backend {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    );
}

#[tokio::test]
async fn postgres_store_conforms() {
    conformance(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_store_conforms() {
    conformance(Backend::Sqlite).await;
}

/// The receipt time is taken under the log head: concurrent appenders never make it step
/// backwards along `seq`, a clock behind the last receipt time does not either (the time carries
/// on from the last one), and the time an append answers is the one stored.
async fn receipt_times_follow_seq(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    assert_eq!(store.received_in_order_from().await.unwrap(), 1);
    let appenders = (0..8).map(|t| {
        let store = store.clone();
        tokio::spawn(async move {
            for b in 0..20 {
                let batch: Vec<PreparedEvent> = (0..1 + (t + b) % 5)
                    .map(|i| prepared("rr-receipt", json!({"t": t, "b": b, "i": i})))
                    .collect();
                store.append(&batch).await.unwrap();
            }
        })
    });
    for task in futures::future::join_all(appenders).await {
        task.unwrap();
    }
    let steps_back =
        "SELECT count(*) FROM (SELECT received_at < lag(received_at) OVER (ORDER BY seq) \
         AS back FROM audit_events) steps WHERE back";
    assert!(db.scalar("SELECT count(*) FROM audit_events").await >= 160);
    assert_eq!(db.scalar(steps_back).await, 0);

    // The database's clock (PostgreSQL) or the process's (SQLite) is an hour behind the last
    // receipt time, as after a clock stepped back or on a replica whose clock runs late.
    let ahead = audit_model::timestamp::truncate(Utc::now() + chrono::Duration::hours(1));
    db.execute(&format!(
        "UPDATE log_head SET last_received_at = '{}' WHERE id = 1",
        audit_model::timestamp::format(&ahead)
    ))
    .await
    .unwrap();
    let e = prepared("rr-receipt", json!({"after": "the step"}));
    let outcomes = store.append(std::slice::from_ref(&e)).await.unwrap();
    let AppendOutcome::Created { received_at, .. } = outcomes[0] else {
        panic!("not created: {:?}", outcomes[0])
    };
    assert_eq!(received_at, ahead);
    assert_eq!(
        live(store.get(e.event.event_id()).await.unwrap()).received_at,
        ahead
    );
    assert_eq!(db.scalar(steps_back).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_receipt_times_follow_seq() {
    receipt_times_follow_seq(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_receipt_times_follow_seq() {
    receipt_times_follow_seq(Backend::Sqlite).await;
}

/// Numbers and strings that a naive round trip could alter keep their hash in both stores.
async fn awkward_values_round_trip(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    let e = prepared(
        "rr-awkward",
        json!({"f": 1.0, "g": 0.1, "big": 12345678901234567890u64, "neg": -0.0, "exp": 1e21,
               "s": "tab\t\"quote\" é 😀 \\u0000 \u{1}", "nested": {"b": [1, {"a": null}]}}),
    );
    store.append(std::slice::from_ref(&e)).await.unwrap();
    let got = live(store.get(e.event.event_id()).await.unwrap());
    assert_eq!(got.event.leaf_hash(), e.leaf_hash);
}

#[tokio::test]
async fn postgres_keeps_hashes_of_awkward_values() {
    awkward_values_round_trip(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_keeps_hashes_of_awkward_values() {
    awkward_values_round_trip(Backend::Sqlite).await;
}

/// The stored tree: checkpoints over batches of every size, their roots equal to the RFC 9162
/// root of all leaf hashes, every inclusion and consistency proof read from the stored nodes
/// verifying, and the signed notes verifying with the public key.
async fn tree_conformance(backend: Backend) {
    use audit_model::checkpoint::CheckpointSigner;
    use audit_model::merkle;
    use datastorage::evidence::tree::{consistency_proof, inclusion_proof, Checkpointer};

    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    let signer = Arc::new(CheckpointSigner::from_seed("test.example/log", [9; 32]).unwrap());
    let verifier = signer.verifier();
    let checkpointer = Checkpointer::new(store.clone(), signer);
    assert_eq!(
        checkpointer.advance().await.unwrap(),
        None,
        "nothing to sign yet"
    );

    let mut checkpoints = vec![];
    for (round, size) in [1usize, 1, 2, 5, 8, 13, 64, 100, 1].into_iter().enumerate() {
        let batch: Vec<PreparedEvent> = (0..size)
            .map(|i| prepared("rr-tree", json!({"round": round, "i": i})))
            .collect();
        store.append(&batch).await.unwrap();
        let c = checkpointer
            .advance()
            .await
            .unwrap()
            .expect("a new checkpoint");
        assert_eq!(
            verifier.verify(&c.note).unwrap().tree_size,
            c.tree_size as u64
        );
        checkpoints.push(c);
    }
    let leaves: Vec<merkle::Hash> = store
        .leaf_hashes(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, h)| h)
        .collect();
    assert_eq!(leaves.len(), 195);
    for c in &checkpoints {
        let size = c.tree_size as usize;
        assert_eq!(c.root_hash, merkle::root(&leaves[..size]), "root of {size}");
        for index in [0, size / 3, size / 2, size - 1] {
            let proof = inclusion_proof(store.as_ref(), index as u64, size as u64)
                .await
                .unwrap();
            assert!(merkle::verify_inclusion(
                &leaves[index],
                index as u64,
                size as u64,
                &proof,
                &c.root_hash
            ));
        }
    }
    for a in &checkpoints {
        for b in checkpoints.iter().filter(|b| b.tree_size >= a.tree_size) {
            let proof = consistency_proof(store.as_ref(), a.tree_size as u64, b.tree_size as u64)
                .await
                .unwrap();
            assert!(merkle::verify_consistency(
                a.tree_size as u64,
                b.tree_size as u64,
                &a.root_hash,
                &b.root_hash,
                &proof
            ));
        }
    }
    let latest = store.checkpoints(&CheckpointQuery::Latest).await.unwrap();
    assert_eq!(latest, vec![checkpoints.last().unwrap().clone()]);
    let page = store
        .checkpoints(&CheckpointQuery::Page {
            since: None,
            after_size: 3,
            limit: 3,
        })
        .await
        .unwrap();
    let sizes: Vec<i64> = page.iter().map(|c| c.tree_size).collect();
    assert_eq!(sizes, [4, 9, 17]);
    let covering = store
        .checkpoints(&CheckpointQuery::Covering(10))
        .await
        .unwrap();
    assert_eq!(covering[0].tree_size, 17);
}

#[tokio::test]
async fn postgres_tree_conforms() {
    tree_conformance(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_tree_conforms() {
    tree_conformance(Backend::Sqlite).await;
}

/// The tree of a real store, busy: each time the checkpointer reads leaves, a writer commits one
/// more event (while `more` lasts), as happens while a checkpoint is being made under load.
struct Busy {
    inner: Arc<dyn LogStore>,
    more: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl TreeStore for Busy {
    async fn leaf_hashes(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Hash)>, StoreError> {
        let leaves = self.inner.leaf_hashes(after_seq, limit).await?;
        let left = self.more.load(Ordering::SeqCst);
        if left > 0 {
            self.more.store(left - 1, Ordering::SeqCst);
            self.inner
                .append(&[prepared("rr-busy", json!({"left": left}))])
                .await?;
        }
        Ok(leaves)
    }
    async fn nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, StoreError> {
        self.inner.nodes(ids).await
    }
    async fn add_checkpoint(
        &self,
        nodes: &[(NodeId, Hash)],
        checkpoint: &StoredCheckpoint,
    ) -> Result<bool, StoreError> {
        self.inner.add_checkpoint(nodes, checkpoint).await
    }
    async fn checkpoints(
        &self,
        query: &CheckpointQuery,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.inner.checkpoints(query).await
    }
}

/// The event log of a real store whose every append waits at a gate.
struct Gated {
    inner: Arc<dyn LogStore>,
    gate: Gate,
}

#[async_trait::async_trait]
impl EventLog for Gated {
    async fn append(&self, events: &[PreparedEvent]) -> Result<Vec<AppendOutcome>, StoreError> {
        self.gate.pass().await;
        self.inner.append(events).await
    }
    async fn get(&self, event_id: uuid::Uuid) -> Result<Option<LogEntry>, StoreError> {
        self.inner.get(event_id).await
    }
    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.query(query).await
    }
    async fn records(&self, query: &RecordQuery) -> Result<Vec<StoredRecord>, StoreError> {
        self.inner.records(query).await
    }
    async fn count(&self) -> Result<i64, StoreError> {
        self.inner.count().await
    }
    async fn scan(&self, after_seq: i64, limit: i64) -> Result<Vec<LogEntry>, StoreError> {
        self.inner.scan(after_seq, limit).await
    }
    async fn received_in_order_from(&self) -> Result<i64, StoreError> {
        self.inner.received_in_order_from().await
    }
}

/// Holds each append until the test lets one through, and tells when one arrives.
#[derive(Clone)]
struct Gate {
    arrived: tokio::sync::mpsc::UnboundedSender<usize>,
    open: Arc<tokio::sync::Semaphore>,
    count: Arc<std::sync::atomic::AtomicUsize>,
}

impl Gate {
    fn new() -> (Gate, tokio::sync::mpsc::UnboundedReceiver<usize>) {
        let (arrived, arrivals) = tokio::sync::mpsc::unbounded_channel();
        let gate = Gate {
            arrived,
            open: Arc::new(tokio::sync::Semaphore::new(0)),
            count: Arc::default(),
        };
        (gate, arrivals)
    }

    /// Lets the next waiting append through.
    fn let_one_through(&self) {
        self.open.add_permits(1);
    }

    async fn pass(&self) {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.arrived.send(n);
        self.open.acquire().await.expect("never closed").forget();
    }
}

/// The sizes of all stored checkpoints, ascending.
async fn checkpoint_sizes(store: &dyn LogStore) -> Vec<i64> {
    let page = CheckpointQuery::Page {
        since: None,
        after_size: 0,
        limit: 1_000,
    };
    let all = store.checkpoints(&page).await.unwrap();
    all.iter().map(|c| c.tree_size).collect()
}

/// A checkpointer tick covers what was committed when it began, even while writes go on (one
/// checkpoint per tick, not one per ingest batch), and a backlog of whole chunks in one tick.
async fn tick_covers_what_was_committed(backend: Backend) {
    use audit_model::checkpoint::CheckpointSigner;
    use datastorage::evidence::tree::Checkpointer;

    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let inner = open(&db).await;
    let signer = Arc::new(CheckpointSigner::from_seed("test.example/log", [9; 32]).unwrap());
    let busy: Arc<dyn TreeStore> = Arc::new(Busy {
        inner: inner.clone(),
        more: 4.into(),
    });
    let batch: Vec<PreparedEvent> = (0..3)
        .map(|i| prepared("rr-tick", json!({"i": i})))
        .collect();
    inner.append(&batch).await.unwrap();

    // Writes go on while the checkpointer works: each tick signs one checkpoint over the
    // leaves it found, and the event committed meanwhile waits for the next tick.
    let checkpointer = Checkpointer::new(busy.clone(), signer.clone());
    let first = checkpointer.tick().await.unwrap().expect("a checkpoint");
    assert_eq!(first.tree_size, 3);
    assert_eq!(inner.count().await.unwrap(), 4);
    let second = checkpointer.tick().await.unwrap().expect("a checkpoint");
    assert_eq!(second.tree_size, 4);
    assert_eq!(checkpoint_sizes(inner.as_ref()).await, [3, 4]);
    // Once writes stop, catching up covers everything (as at shutdown).
    let last = checkpointer
        .catch_up()
        .await
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(last.tree_size, 7);
    assert_eq!(inner.count().await.unwrap(), 7);
    assert_eq!(checkpoint_sizes(inner.as_ref()).await, [3, 4, 5, 6, 7]);

    // A backlog beyond one chunk is covered within one tick, a checkpoint per chunk.
    let backlog: Vec<PreparedEvent> = (0..5)
        .map(|i| prepared("rr-tick", json!({"b": i})))
        .collect();
    inner.append(&backlog).await.unwrap();
    let chunked = Checkpointer::new(inner.clone(), signer).with_chunk(2);
    let c = chunked.tick().await.unwrap().expect("a checkpoint");
    assert_eq!(c.tree_size, 12);
    assert_eq!(
        checkpoint_sizes(inner.as_ref()).await,
        [3, 4, 5, 6, 7, 9, 11, 12]
    );
}

#[tokio::test]
async fn postgres_tick_covers_what_was_committed() {
    tick_covers_what_was_committed(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_tick_covers_what_was_committed() {
    tick_covers_what_was_committed(Backend::Sqlite).await;
}

/// An event of `correlation` stamped `days_ago`, kept for `retention_days`.
fn aged(correlation: &str, days_ago: i64, retention_days: i64) -> PreparedEvent {
    let mut v = helpers::event(correlation);
    v["event_timestamp"] = json!(audit_model::timestamp::format(
        &(Utc::now() - chrono::Duration::days(days_ago))
    ));
    v["retention_days"] = json!(retention_days);
    PreparedEvent::new(AuditEvent::parse(v, Utc::now()).unwrap())
}

fn hold(correlation: &str, reason: &str) -> HoldRequest {
    HoldRequest {
        correlation_id: correlation.into(),
        reason: reason.into(),
        by: "legal@example.com".into(),
        at: audit_model::timestamp::truncate(Utc::now()),
    }
}

async fn retention(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    let expired = aged("rr-expired", 10, 1);
    let held = aged("rr-held", 10, 1);
    let fresh = aged("rr-fresh", 0, 1);
    store
        .append(&[expired.clone(), held.clone(), fresh.clone()])
        .await
        .unwrap();
    let placed = store.place_hold(&hold("rr-held", "case 7")).await.unwrap();
    let PlaceHold::Placed(h) = &placed else {
        panic!("{placed:?}")
    };
    assert_eq!(
        (h.correlation_id.as_str(), h.reason.as_str(), h.released_at),
        ("rr-held", "case 7", None)
    );
    let again = store.place_hold(&hold("rr-held", "other")).await.unwrap();
    assert!(matches!(&again, PlaceHold::AlreadyHeld(x) if x.id == h.id && x.reason == "case 7"));

    // Only the expired, unheld event is purged; the held one is counted.
    let now = Utc::now();
    assert_eq!(store.purge_expired(now, 100).await.unwrap(), vec![1]);
    assert_eq!(
        store.purge_expired(now, 100).await.unwrap(),
        Vec::<i64>::new()
    );
    assert_eq!(store.count_held_expired(now).await.unwrap(), 1);
    let Some(LogEntry::Purged(p)) = store.get(expired.event.event_id()).await.unwrap() else {
        panic!("seq 1 should be purged");
    };
    assert_eq!((p.seq, p.leaf_hash), (1, expired.leaf_hash));
    assert_eq!(p.event_timestamp, expired.event.event_timestamp());
    assert!(p.purged_at >= p.expired_at());
    let content = db
        .scalar(
            "SELECT count(*) FROM audit_events WHERE event_data IS NULL AND correlation_id IS NULL",
        )
        .await;
    assert_eq!(content, 1, "the purged row keeps no content");
    let rows = store.scan(0, 10).await.unwrap();
    assert!(matches!(&rows[0], LogEntry::Purged(p) if p.seq == 1));
    assert!(matches!(&rows[1], LogEntry::Event(e) if e.seq == 2));
    // Queries no longer see it.
    let all = store
        .query(&EventQuery {
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);

    // Re-sent, the purged event is a duplicate at its seq; with other content, a conflict.
    let outcomes = store.append(std::slice::from_ref(&expired)).await.unwrap();
    assert!(matches!(&outcomes[0], AppendOutcome::Duplicate(s) if s.seq == 1));
    let changed = with_data(&expired.event, "x", json!(1));
    let outcomes = store.append(&[PreparedEvent::new(changed)]).await.unwrap();
    assert!(matches!(&outcomes[0], AppendOutcome::Conflict(s) if s.seq == 1));
    assert_eq!(store.count().await.unwrap(), 3);

    // The database itself refuses to purge a held or unexpired event, or to touch a purged row.
    let blank = "event_version = NULL, event_type = NULL, event_category = NULL, \
        event_action = NULL, event_outcome = NULL, actor_type = NULL, actor_id = NULL, \
        resource_type = NULL, resource_id = NULL, resource_name = NULL, correlation_id = NULL, \
        parent_event_id = NULL, trace_id = NULL, span_id = NULL, namespace = NULL, \
        cluster_id = NULL, severity = NULL, duration_ms = NULL, error_code = NULL, \
        error_message = NULL, event_data = NULL";
    let stamp = audit_model::timestamp::format(&Utc::now());
    for seq in [2, 3] {
        let err = db
            .execute(&format!(
                "UPDATE audit_events SET purged_at = '{stamp}', {blank} WHERE seq = {seq}"
            ))
            .await
            .expect_err("a held or unexpired event cannot be purged");
        assert!(err.contains("append-only"), "{err}");
    }
    let err = db
        .execute("UPDATE audit_events SET retention_days = 5000 WHERE seq = 1")
        .await
        .expect_err("a purged row cannot change");
    assert!(err.contains("append-only"), "{err}");
    let err = db
        .execute("DELETE FROM legal_holds")
        .await
        .expect_err("holds keep their history");
    assert!(err.contains("history"), "{err}");

    // Released, the hold stops protecting: the next purge takes the event.
    let released = store
        .release_hold(&hold("rr-held", "case closed"))
        .await
        .unwrap()
        .expect("the hold was active");
    assert_eq!(released.release_reason.as_deref(), Some("case closed"));
    assert!(store
        .release_hold(&hold("rr-held", "again"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.purge_expired(Utc::now(), 100).await.unwrap(), vec![2]);
    assert_eq!(store.count_held_expired(Utc::now()).await.unwrap(), 0);
    let history = store.holds(Some("rr-held"), true).await.unwrap();
    assert_eq!(history.len(), 1);
    assert!(store.holds(None, false).await.unwrap().is_empty());
    assert!(matches!(
        store.get(fresh.event.event_id()).await.unwrap(),
        Some(LogEntry::Event(_))
    ));
}

#[tokio::test]
async fn postgres_retention_purges_only_expired_unheld_events() {
    retention(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_retention_purges_only_expired_unheld_events() {
    retention(Backend::Sqlite).await;
}

/// A local-journal DLQ in `dir`, for tests that run an ingest writer.
async fn journal_dlq(dir: &std::path::Path) -> Arc<dyn datastorage::dlq::DlqBackend> {
    datastorage::dlq::connect(&datastorage::dlq::DlqConfig {
        url: format!("file://{}", dir.display()),
        capacity: 1_000,
        redis_prefix: String::new(),
        claim_idle: std::time::Duration::from_secs(30),
    })
    .await
    .unwrap()
}

/// Two replicas (two stores, each with its own ingest writer) given the same events at the same
/// time: each event is stored once, answered `Created` by one replica and `Duplicate` (same seq)
/// by the other, and `seq` stays gap-free. Whichever replica loses a race for an id either sees
/// the other's row when its statement starts or fails the unique index and commits event by event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_racing_on_the_same_events_store_each_once() {
    use datastorage::config::IngestConfig;
    use datastorage::ingest::{IngestOutcome, IngestQueue};

    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut queues = Vec::new();
    let mut writers = Vec::new();
    let mut dlqs = Vec::new();
    for dir in &dirs {
        let dlq = journal_dlq(dir.path()).await;
        let (queue, writer) = IngestQueue::new(
            open(&db).await,
            dlq.clone(),
            IngestConfig::default(),
            std::time::Duration::from_secs(1),
        );
        queues.push(queue);
        writers.push(tokio::spawn(writer.run()));
        dlqs.push(dlq);
    }

    let rounds = 20;
    let per_round = 25;
    let mut created = 0;
    for round in 0..rounds {
        let events: Vec<PreparedEvent> = (0..per_round)
            .map(|i| prepared(&format!("rr-race-{round}"), json!({"i": i})))
            .collect();
        // Every event goes to both replicas, alone, from its own task: batches form differently.
        let tasks = events.iter().flat_map(|e| {
            queues.iter().map(|q| {
                let (q, e) = (q.clone(), e.clone());
                tokio::spawn(async move { q.submit(vec![e]).await.unwrap().remove(0) })
            })
        });
        let outcomes: Vec<IngestOutcome> = futures::future::join_all(tasks.collect::<Vec<_>>())
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        for (event, pair) in events.iter().zip(outcomes.chunks(2)) {
            let id = event.event.event_id();
            match pair {
                [IngestOutcome::Created(a), IngestOutcome::Duplicate(b)]
                | [IngestOutcome::Duplicate(b), IngestOutcome::Created(a)] => {
                    assert_eq!((a.event.event_id(), a.seq), (id, b.seq));
                    assert_eq!(b.event.event_id(), id);
                    created += 1;
                }
                other => {
                    panic!("event {id}: expected one created and one duplicate, got {other:?}")
                }
            }
        }
    }
    drop(queues);
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(created, rounds * per_round);
    for dlq in dlqs {
        assert_eq!(dlq.stats().await.unwrap().depth, 0, "nothing was parked");
    }
    assert_eq!(db.assert_seq_gap_free().await, (rounds * per_round) as i64);
    assert_eq!(
        db.scalar("SELECT count(DISTINCT event_id) FROM audit_events")
            .await,
        (rounds * per_round) as i64
    );
}

/// The writer answers a stored batch while the next one is still in the store (the answers do
/// not wait for the next commit), and answers the last one at once when nothing follows it.
#[tokio::test(flavor = "current_thread")]
async fn a_stored_batch_is_answered_while_the_next_one_commits() {
    use datastorage::config::IngestConfig;
    use datastorage::ingest::{IngestOutcome, IngestQueue};

    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dlq = journal_dlq(dir.path()).await;
    let (gate, mut arrivals) = Gate::new();
    let store: Arc<dyn EventLog> = Arc::new(Gated {
        inner: open(&db).await,
        gate: gate.clone(),
    });
    let (queue, writer) = IngestQueue::new(
        store,
        dlq,
        IngestConfig::default(),
        std::time::Duration::from_secs(1),
    );
    let writer = tokio::spawn(writer.run());
    let submit = |correlation: &str| {
        let (queue, event) = (queue.clone(), prepared(correlation, json!({})));
        tokio::spawn(async move { queue.submit(vec![event]).await.unwrap().remove(0) })
    };
    let seq = |outcome: IngestOutcome| match outcome {
        IngestOutcome::Created(stored) => stored.seq,
        other => panic!("expected created, got {other:?}"),
    };

    let first = submit("rr-first");
    assert_eq!(
        arrivals.recv().await,
        Some(1),
        "the first batch reached the store"
    );
    let second = submit("rr-second");
    // One thread: the second submission is queued once the test yields to it.
    while queue.depth() < 2 {
        tokio::task::yield_now().await;
    }
    gate.let_one_through();
    assert_eq!(
        arrivals.recv().await,
        Some(2),
        "the second batch reached the store"
    );
    // The second batch is held in the store; the first is answered all the same.
    let answered = tokio::time::timeout(std::time::Duration::from_secs(30), first).await;
    assert_eq!(
        seq(answered.expect("answered before the next commit").unwrap()),
        1
    );
    assert!(!second.is_finished());
    gate.let_one_through();
    assert_eq!(seq(second.await.unwrap()), 2);
    drop(queue);
    writer.await.unwrap();
    assert_eq!(db.assert_seq_gap_free().await, 2);
}

/// The append connection is killed by the server between two batches (a restart, a failover, an
/// administrator): the next batch is stored on a new connection, with no error and no gap.
#[tokio::test]
async fn an_append_connection_closed_by_the_server_is_replaced() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let store = open(&db).await;
    let first = prepared("rr-killed", json!({"i": 1}));
    assert!(matches!(
        &store.append(std::slice::from_ref(&first)).await.unwrap()[..],
        [AppendOutcome::Created { seq: 1, .. }]
    ));
    let TestDb::Postgres { name, .. } = &db else {
        unreachable!()
    };
    let killed = db
        .scalar(&format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND application_name = '{}') t",
            store::APPEND_APPLICATION_NAME
        ))
        .await;
    assert_eq!(killed, 1, "the store keeps one append connection");

    let second = prepared("rr-killed", json!({"i": 2}));
    let outcomes = store.append(std::slice::from_ref(&second)).await.unwrap();
    match &outcomes[..] {
        [AppendOutcome::Created { seq, .. }] => assert_eq!(*seq, 2),
        other => panic!("expected created, got {other:?}"),
    }
    assert_eq!(db.assert_seq_gap_free().await, 2);
    let stored = live(store.get(second.event.event_id()).await.unwrap());
    assert_eq!(stored.leaf_hash, second.leaf_hash);
}
