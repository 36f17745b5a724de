//! `EventLog`: appends, reads, receipt times, replicas and the append connections.

use super::*;
use datastorage::derived::timeline::TimelineRow;

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

    // The same event received again later, by another writer (a retry through another replica,
    // a replay): a duplicate of the stored one, whose attestation stands.
    let later = got.event.received_at().unwrap() + chrono::Duration::seconds(5);
    let again = PreparedEvent::new(
        batch[3]
            .event
            .clone()
            .with_attestation(Some("another-replica".into()), Some(later)),
    );
    assert_ne!(again.leaf_hash, got.leaf_hash);
    let outcomes = store.append(std::slice::from_ref(&again)).await.unwrap();
    assert!(
        matches!(&outcomes[..], [AppendOutcome::Duplicate(s)] if s.seq == got.seq && s.event == got.event),
        "{outcomes:?}"
    );

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

    // A timeline's rows: the few columns it reads, `event_data`'s phase and uid as text, the
    // same as read from the whole events.
    let timeline_events = [
        prepared(
            "rr-t",
            json!({"to_phase": "Sending", "notification_uid": "u-1"}),
        ),
        prepared("rr-t", json!({"new_phase": "Sent", "notification_uid": 7})),
        prepared("rr-t", json!({"from_phase": "Sent"})),
    ];
    store.append(&timeline_events).await.unwrap();
    let rows = store.timeline_rows("rr-t", 10).await.unwrap();
    let whole: Vec<TimelineRow> = store
        .query(&EventQuery {
            filters: vec![(EventFilter::CorrelationId, "rr-t".into())],
            order: Order::Asc,
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .unwrap()
        .iter()
        .map(TimelineRow::of)
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0], whole[0]);
    assert_eq!(rows[0].to_phase.as_deref(), Some("Sending"));
    assert_eq!(rows[0].notification_uid.as_deref(), Some("u-1"));
    assert_eq!(rows[1].to_phase.as_deref(), Some("Sent"));
    // A uid that is not a string is read as its text by the database.
    assert_eq!(rows[1].notification_uid.as_deref(), Some("7"));
    assert_eq!(rows[2], whole[2]);
    assert_eq!(store.timeline_rows("rr-t", 2).await.unwrap().len(), 2);
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

/// The commit time is taken under the log head: concurrent appenders never make it step
/// backwards along `seq`, a clock behind the last commit time does not either (the time carries
/// on from the last one), and the time an append answers is the one stored.
async fn commit_times_follow_seq(backend: Backend) {
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
        "SELECT count(*) FROM (SELECT committed_at < lag(committed_at) OVER (ORDER BY seq) \
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
    let AppendOutcome::Created {
        committed_at: received_at,
        ..
    } = outcomes[0]
    else {
        panic!("not created: {:?}", outcomes[0])
    };
    assert_eq!(received_at, ahead);
    assert_eq!(
        live(store.get(e.event.event_id()).await.unwrap()).committed_at,
        ahead
    );
    assert_eq!(db.scalar(steps_back).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_commit_times_follow_seq() {
    commit_times_follow_seq(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commit_times_follow_seq() {
    commit_times_follow_seq(Backend::Sqlite).await;
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
    // The verifier's scan hashes the columns as read, without the event rebuilt: the same leaf.
    let leaves = store.scan_leaves(0, 10).await.unwrap();
    assert_eq!(
        leaves,
        vec![ScannedLeaf::Content {
            seq: got.seq,
            leaf_hash: e.leaf_hash,
            content_leaf: e.leaf_hash,
            committed_at: got.committed_at,
        }]
    );
    // The export's scan hands the same fields, read in place, to its render.
    let json = |fields: &RowFields<'_>| {
        let mut out = Vec::new();
        audit_model::export::write_event_json(&mut out, |f| fields.get(f));
        out
    };
    let rendered = store
        .scan_rendered(0, 10, Arc::new(move |fields| Some(json(fields))))
        .await
        .unwrap();
    assert_eq!(rendered.len(), 1);
    assert_eq!(
        (rendered[0].seq, rendered[0].leaf_hash),
        (got.seq, e.leaf_hash)
    );
    let text = String::from_utf8(rendered[0].rendered.clone().unwrap()).unwrap();
    let reread: AuditEvent = serde_json::from_str(&text).unwrap();
    assert_eq!(reread, got.event);
    assert_eq!(text, serde_json::to_string(&got.event).unwrap());
}

#[tokio::test]
async fn postgres_keeps_hashes_of_awkward_values() {
    awkward_values_round_trip(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_keeps_hashes_of_awkward_values() {
    awkward_values_round_trip(Backend::Sqlite).await;
}

/// The event log of a real store whose every append waits at a gate (and then fails, while
/// `down` is set, as a database that went away does).
struct Gated {
    inner: Arc<dyn LogStore>,
    gate: Gate,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl EventLog for Gated {
    async fn append(&self, events: &[PreparedEvent]) -> Result<Vec<AppendOutcome>, StoreError> {
        self.gate.pass().await;
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Io(std::io::Error::other(
                "the database is down",
            )));
        }
        self.inner.append(events).await
    }
    async fn get(&self, event_id: uuid::Uuid) -> Result<Option<LogEntry>, StoreError> {
        self.inner.get(event_id).await
    }
    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.query(query).await
    }
    async fn timeline_rows(
        &self,
        correlation_id: &str,
        limit: i64,
    ) -> Result<Vec<TimelineRow>, StoreError> {
        self.inner.timeline_rows(correlation_id, limit).await
    }
    async fn count_matching(&self, query: &EventQuery) -> Result<i64, StoreError> {
        self.inner.count_matching(query).await
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

/// A local-journal DLQ in `dir`, for tests that run an ingest writer.
async fn journal_dlq(dir: &std::path::Path) -> Arc<dyn datastorage::dlq::DlqBackend> {
    datastorage::dlq::connect(&datastorage::dlq::DlqConfig {
        url: format!("file://{}", dir.display()),
        capacity: 1_000,
        redis_prefix: String::new(),
        claim_idle: std::time::Duration::from_secs(30),
        redis_ca_file: None,
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
        down: false.into(),
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

/// Every connection the service and the auditors' tools open has PostgreSQL's JIT compiler
/// off: compiling a page's plan cost more than it saved (docs/operations.md).
#[tokio::test]
async fn connections_run_without_the_jit_compiler() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let TestDb::Postgres { url, pool, .. } = &db else {
        unreachable!()
    };
    let on_by_default: String = sqlx::query_scalar("SHOW jit")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(
        on_by_default, "on",
        "the server's default, for the test to mean anything"
    );
    let service = store::PostgresStore::connect(url, None, 2).await.unwrap();
    let audit = store::PostgresStore::connect_read_only(url, None)
        .await
        .unwrap();
    let replica = store::PostgresStore::connect_replica(url, None, 2).unwrap();
    for (name, store) in [
        ("service", &service),
        ("read-only", &audit),
        ("replica", &replica),
    ] {
        let jit: String = sqlx::query_scalar("SHOW jit")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(jit, "off", "{name} connections");
    }
}

/// On PostgreSQL a query reads the content alone, one row per event: the content holds its
/// leaf's copy, equal to the leaf (docs/architecture.md, "The log").
#[tokio::test]
async fn queries_read_the_content_alone_and_its_copy_of_the_leaf_is_the_leaf() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let TestDb::Postgres { url, pool, .. } = &db else {
        unreachable!()
    };
    let service = store::PostgresStore::connect(url, None, 2).await.unwrap();
    let events: Vec<PreparedEvent> = (0..20)
        .map(|i| prepared(&format!("rr-copy-{}", i % 2), json!({ "i": i })))
        .collect();
    service.append(&events).await.unwrap();
    let same: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_content c JOIN audit_leaves l USING (seq) \
         WHERE (c.event_id, c.leaf_hash, c.received_at, c.submitted_by, c.committed_at) \
           IS NOT DISTINCT FROM \
           (l.event_id, l.leaf_hash, l.received_at, l.submitted_by, l.committed_at)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(same, 20);
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT * FROM audit_events_present WHERE correlation_id = 'rr-copy-1' \
         ORDER BY event_timestamp DESC, seq DESC LIMIT 100",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("audit_content"), "{plan}");
    assert!(!plan.contains("audit_leaves"), "{plan}");
    service.close().await;
}

/// An event of `correlation` stamped `at`.
fn stamped(correlation: &str, at: chrono::DateTime<Utc>, i: usize) -> PreparedEvent {
    let mut v = helpers::event(correlation);
    v["event_timestamp"] = json!(audit_model::timestamp::format(&at));
    v["event_data"] = json!({ "i": i });
    PreparedEvent::new(AuditEvent::parse(v, Receipt::new(Utc::now(), WRITER)).unwrap())
}

/// Pages of one correlation: every event once, in time then log order, by cursor and by
/// offset, either way, within a time range; other correlations' events, written between them,
/// never among them.
async fn correlation_pages(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    // Three months (three partitions on PostgreSQL), written out of time order, with
    // timestamps shared by several events (ordered by seq then).
    let base = audit_model::timestamp::truncate(Utc::now());
    let times =
        [80, 0, 40, 0, 80, 40, 0, 40, 80, 0, 40, 80, 0].map(|d| base - chrono::Duration::days(d));
    let mut written = Vec::new();
    for (i, at) in times.iter().enumerate() {
        let ours = stamped("rr-pages", *at, i);
        let other = stamped("rr-other", *at, i);
        for outcome in store.append(&[other, ours.clone()]).await.unwrap() {
            assert!(
                matches!(outcome, AppendOutcome::Created { .. }),
                "{outcome:?}"
            );
        }
        written.push(ours.event.event_id());
    }
    let all = store
        .query(&EventQuery {
            filters: vec![(EventFilter::CorrelationId, "rr-pages".into())],
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    let key = |e: &StoredEvent| (e.event.event_timestamp(), e.seq);
    let mut expected: Vec<_> = all.iter().map(key).collect();
    expected.sort();
    assert_eq!(all.iter().map(key).collect::<Vec<_>>(), expected);
    let mut ids: Vec<_> = all.iter().map(|e| e.event.event_id()).collect();
    ids.sort();
    written.sort();
    assert_eq!(
        ids, written,
        "every event of the correlation, none of another"
    );
    assert!(all.iter().all(|e| e.event.correlation_id() == "rr-pages"));

    for order in [Order::Asc, Order::Desc] {
        let mut want = expected.clone();
        if order == Order::Desc {
            want.reverse();
        }
        let q = EventQuery {
            filters: vec![(EventFilter::CorrelationId, "rr-pages".into())],
            order,
            limit: 4,
            ..EventQuery::default()
        };
        // By cursor: pages of four, the last one short.
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .query(&EventQuery { after, ..q.clone() })
                .await
                .unwrap();
            paged.extend(page.iter().map(key));
            let Some(last) = page.last() else { break };
            after = Some(store::Cursor {
                event_timestamp: last.event.event_timestamp(),
                seq: last.seq,
            });
        }
        assert_eq!(paged, want, "{order:?} by cursor");
        // By offset.
        for offset in [0, 3, 11, 13, 20] {
            let page = store
                .query(&EventQuery {
                    offset,
                    ..q.clone()
                })
                .await
                .unwrap();
            let from = (offset as usize).min(want.len());
            let to = (from + 4).min(want.len());
            assert_eq!(
                page.iter().map(key).collect::<Vec<_>>(),
                want[from..to],
                "{order:?} from offset {offset}"
            );
        }
        // Within the middle month, from the events of the day before to those of that month.
        let month = base - chrono::Duration::days(40);
        let page = store
            .query(&EventQuery {
                since: Some(month - chrono::Duration::days(1)),
                until: Some(month),
                limit: 10,
                ..q.clone()
            })
            .await
            .unwrap();
        let within: Vec<_> = want.iter().filter(|(t, _)| *t == month).copied().collect();
        assert_eq!(within.len(), 4);
        assert_eq!(page.iter().map(key).collect::<Vec<_>>(), within);
    }
    let none = store
        .query(&EventQuery {
            filters: vec![(EventFilter::CorrelationId, "rr-none".into())],
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn postgres_correlation_pages() {
    correlation_pages(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_correlation_pages() {
    correlation_pages(Backend::Sqlite).await;
}

/// A span's name and its parent's.
type Made = (String, Option<String>);

/// Every span made in the thread while it is installed.
#[derive(Clone, Default)]
struct SpanLog(Arc<std::sync::Mutex<Vec<Made>>>);

impl<S> tracing_subscriber::Layer<S> for SpanLog
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        _: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let span = ctx.span(id).expect("a new span is registered");
        let parent = span.parent().map(|p| p.name().to_string());
        self.0
            .lock()
            .unwrap()
            .push((span.name().to_string(), parent));
    }
}

impl SpanLog {
    fn take(&self) -> Vec<Made> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// The ingest pipeline's spans (what traces export): a traced submission waits in
/// `ingest.queue` and goes out in an `ingest.commit`, or, with the database down, an
/// `dlq.enqueue`, each the child of the request that submitted it; an untraced one makes none.
#[tokio::test(flavor = "current_thread")]
async fn the_ingest_spans_are_children_of_the_submitting_request() {
    use datastorage::config::IngestConfig;
    use datastorage::ingest::{IngestOutcome, IngestQueue};
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;

    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let spans = SpanLog::default();
    let _installed =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let dir = tempfile::tempdir().unwrap();
    let (gate, _arrivals) = Gate::new();
    gate.open.add_permits(1_000);
    let store = Arc::new(Gated {
        inner: open(&db).await,
        gate,
        down: false.into(),
    });
    let (queue, writer) = IngestQueue::new(
        store.clone(),
        journal_dlq(dir.path()).await,
        IngestConfig::default(),
        std::time::Duration::ZERO,
    );
    let writer = tokio::spawn(writer.run());
    let submit = |correlation: &'static str| {
        let queue = queue.clone();
        async move {
            let event = prepared(correlation, json!({}));
            queue.submit(vec![event]).await.unwrap().remove(0)
        }
    };
    let traced = |correlation: &'static str| {
        submit(correlation).instrument(tracing::info_span!("request", correlation))
    };
    let under_request = |name: &str| (name.to_string(), Some("request".to_string()));

    assert!(matches!(traced("rr-up").await, IngestOutcome::Created(_)));
    assert_eq!(
        spans.take(),
        [
            ("request".to_string(), None),
            under_request("ingest.queue"),
            under_request("ingest.commit"),
        ]
    );

    store.down.store(true, Ordering::SeqCst);
    assert!(matches!(traced("rr-down").await, IngestOutcome::Queued(_)));
    assert_eq!(
        spans.take(),
        [
            ("request".to_string(), None),
            under_request("ingest.queue"),
            under_request("ingest.commit"),
            under_request("dlq.enqueue"),
        ]
    );

    store.down.store(false, Ordering::SeqCst);
    assert!(matches!(
        submit("rr-plain").await,
        IngestOutcome::Created(_)
    ));
    assert_eq!(spans.take(), []);
    drop(queue);
    writer.await.unwrap();
}
