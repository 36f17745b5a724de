//! Reads from a real PostgreSQL streaming replica (`.ci/pg-replica` runs one on port 5433 as a
//! standby of the test cluster): lists are the replica's, what it lacks is read from the
//! primary, and while it lags or is away reads go to the primary and writes go on.
//!
//! These tests pause the replica's replay, which every database on it shares, so they run one
//! at a time (the `replica` test group in `.config/nextest.toml`).

use std::sync::Arc;

use audit_model::merkle::{verify_inclusion, Hash};
use audit_model::AuditEvent;
use fault_proxy::Proxy;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{
    eventually, hex_hash as hash, service_missing, start_on, write_numbered, AppOptions, Backend,
    TestApp, TestDb,
};

/// The replica cluster (`DATASTORAGE_TEST_PG_REPLICA`, or port 5433 on this host).
fn replica_base() -> String {
    std::env::var("DATASTORAGE_TEST_PG_REPLICA")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433".to_string())
}

/// A test database on the primary, its name, and an admin connection to the replica with its
/// replay running; `None` (a loud skip) when either cluster is missing outside CI.
async fn primary_and_replica() -> Option<(Arc<TestDb>, String, PgPool)> {
    let admin = match PgPool::connect(&format!("{}/postgres", replica_base())).await {
        Ok(pool) => pool,
        Err(e) => {
            return service_missing("the PostgreSQL replica (.ci/pg-replica)", &e.to_string())
        }
    };
    let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&admin)
        .await
        .expect("ask the replica");
    assert!(standby, "{} is not a standby", replica_base());
    // An earlier test that failed may have left replay paused.
    set_replay(&admin, true).await;
    let db = Arc::new(TestDb::create(Backend::Postgres).await?);
    let TestDb::Postgres { name, .. } = db.as_ref() else {
        unreachable!("a PostgreSQL test database")
    };
    let name = name.clone();
    // The database reaches the replica when its creation is replayed there.
    eventually("the test database on the replica", || async {
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_optional(&admin)
            .await
            .expect("ask the replica");
        found.map(|_| ())
    })
    .await;
    Some((db, name, admin))
}

/// Pauses or resumes the replica's replay, and waits until it is so.
async fn set_replay(admin: &PgPool, running: bool) {
    let call = if running {
        "SELECT pg_wal_replay_resume()"
    } else {
        "SELECT pg_wal_replay_pause()"
    };
    sqlx::query(call).execute(admin).await.expect(call);
    let wanted = if running { "not paused" } else { "paused" };
    eventually("the replica's replay state", || async {
        let state: String = sqlx::query_scalar("SELECT pg_get_wal_replay_pause_state()")
            .fetch_one(admin)
            .await
            .expect("the replay state");
        (state == wanted).then_some(())
    })
    .await;
}

/// Writes `n` events of `correlation` through the API; their ids.
async fn write(app: &TestApp, n: usize, correlation: &str) -> Vec<String> {
    write_numbered(app, correlation, n)
        .await
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect()
}

/// The event ids the API lists for `correlation`, in time order.
async fn listed(app: &TestApp, correlation: &str) -> Vec<String> {
    let (status, page) = app
        .get(&format!(
            "/api/v1/audit/events?correlation_id={correlation}&limit=100&order=asc"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until the replica's copy of the test database holds `n` events.
async fn replicated(replica: &PgPool, n: i64) {
    eventually("the events on the replica", || async {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
            .fetch_one(replica)
            .await
            .ok()?;
        (count == n).then_some(())
    })
    .await;
}

/// Waits until the service reads from the replica (its probe runs once a second).
async fn replica_in_use(app: &TestApp) {
    eventually("the replica in use", || async {
        let page = app.metrics().await;
        (metric(&page, "datastorage_replica_usable") == 1.0).then_some(())
    })
    .await;
}

/// The value of the metric line that starts with `series` (0 when absent).
fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_come_from_the_replica_and_what_it_lacks_from_the_primary() {
    let Some((db, name, admin)) = primary_and_replica().await else {
        return;
    };
    let replica_url = format!("{}/{name}", replica_base());
    let app = start_on(
        db.clone(),
        Backend::Postgres,
        AppOptions {
            read_url: Some(replica_url.clone()),
            replica_max_lag: Some("1h".into()),
            ..AppOptions::default()
        },
    )
    .await;
    let replica = PgPool::connect(&replica_url)
        .await
        .expect("the replica's copy");

    let first = write(&app, 5, "rr-replica").await;
    replicated(&replica, 5).await;
    replica_in_use(&app).await;
    assert_eq!(listed(&app, "rr-replica").await, first);

    // Replay stopped: the primary has a sixth event, the replica does not.
    set_replay(&admin, false).await;
    let sixth = write(&app, 1, "rr-replica").await.remove(0);
    assert_eq!(db.count().await, 6, "the primary has all six");
    // The list is the replica's (five), within the configured lag.
    assert_eq!(listed(&app, "rr-replica").await, first);
    // Asked for by id, the event the replica lacks comes from the primary.
    let (status, got) = app.get(&format!("/api/v1/audit/events/{sixth}")).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["event_id"], sixth);
    assert_eq!(got["event_data"], json!({"i": 0}));

    // Its proof: the checkpoint covering it, its nodes and leaves exist on the primary only.
    let primary = match db.as_ref() {
        TestDb::Postgres { pool, .. } => pool.clone(),
        TestDb::Sqlite { .. } => unreachable!(),
    };
    eventually(
        "a checkpoint on the primary covering six events",
        || async {
            let size: Option<i64> = sqlx::query_scalar("SELECT max(tree_size) FROM checkpoints")
                .fetch_one(&primary)
                .await
                .ok()?;
            (size >= Some(6)).then_some(())
        },
    )
    .await;
    let on_replica: i64 =
        sqlx::query_scalar("SELECT count(*) FROM checkpoints WHERE tree_size >= 6")
            .fetch_one(&replica)
            .await
            .unwrap();
    assert_eq!(
        on_replica, 0,
        "the replica has no checkpoint covering the sixth event"
    );
    let (status, proof) = app
        .get(&format!("/api/v1/audit/events/{sixth}/proof"))
        .await;
    assert_eq!(status, 200, "{proof}");
    let stored: audit_model::StoredEvent = serde_json::from_value(proof["event"].clone()).unwrap();
    let path: Vec<Hash> = proof["inclusion_proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(hash)
        .collect();
    let size = proof["tree_size"].as_u64().unwrap();
    assert!(size >= 6, "{proof}");
    let root: Vec<u8> =
        sqlx::query_scalar("SELECT root_hash FROM checkpoints WHERE tree_size = $1")
            .bind(size as i64)
            .fetch_one(&primary)
            .await
            .unwrap();
    assert_eq!(hash(&proof["checkpoint"]["root_hash"]).to_vec(), root);
    assert!(verify_inclusion(
        AuditEvent::leaf_hash(&stored.event).as_bytes(),
        proof["leaf_index"].as_u64().unwrap(),
        size,
        &path,
        &root.try_into().unwrap(),
    ));

    let page = app.metrics().await;
    assert!(
        metric(
            &page,
            r#"datastorage_replica_reads_total{database="replica",reason="usable"}"#
        ) >= 1.0,
        "{page}"
    );
    assert!(
        metric(
            &page,
            r#"datastorage_replica_reads_total{database="primary",reason="not_replicated"}"#
        ) >= 1.0,
        "{page}"
    );

    // Replay resumed: the replica catches up and lists all six.
    set_replay(&admin, true).await;
    replicated(&replica, 6).await;
    let mut all = first.clone();
    all.push(sixth);
    assert_eq!(listed(&app, "rr-replica").await, all);
    app.shutdown.begin();
    app.handle.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_primary_while_the_replica_lags_or_is_away_and_writes_go_on() {
    let Some((db, name, admin)) = primary_and_replica().await else {
        return;
    };
    let replica_url = format!("{}/{name}", replica_base());
    let port: u16 = replica_base()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port in the replica's URL");
    let proxy = Proxy::start(([127, 0, 0, 1], port).into())
        .await
        .expect("a proxy");
    let app = start_on(
        db.clone(),
        Backend::Postgres,
        AppOptions {
            read_url: Some(format!("postgres://postgres@{}/{name}", proxy.addr)),
            replica_max_lag: Some("1s".into()),
            ..AppOptions::default()
        },
    )
    .await;
    let replica = PgPool::connect(&replica_url)
        .await
        .expect("the replica's copy");

    let mut written = write(&app, 3, "rr-lag").await;
    replicated(&replica, 3).await;
    replica_in_use(&app).await;
    assert_eq!(listed(&app, "rr-lag").await, written);

    // Replay stopped with a write behind it: once the replica is more than 1 s behind, the
    // list is the primary's.
    set_replay(&admin, false).await;
    written.extend(write(&app, 1, "rr-lag").await);
    let listed_now = eventually("the list from the primary", || async {
        let now = listed(&app, "rr-lag").await;
        (now.len() == 4).then_some(now)
    })
    .await;
    assert_eq!(listed_now, written);
    let page = app.metrics().await;
    assert_eq!(metric(&page, "datastorage_replica_usable"), 0.0, "{page}");
    assert!(
        metric(&page, "datastorage_replica_lag_seconds") > 1.0,
        "{page}"
    );
    set_replay(&admin, true).await;
    replicated(&replica, 4).await;

    // The replica away: reads are the primary's, writes go on, the service stays ready.
    proxy.cut();
    written.extend(write(&app, 2, "rr-lag").await);
    assert_eq!(listed(&app, "rr-lag").await, written);
    let (status, got) = app
        .get(&format!("/api/v1/audit/events/{}", written[5]))
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["event_id"], written[5].as_str());
    let (status, ready) = app.get("/health/ready").await;
    assert_eq!(status, 200, "{ready}");
    let page = app.metrics().await;
    assert_eq!(metric(&page, "datastorage_replica_usable"), 0.0, "{page}");

    // Back: the replica is used again and has every event.
    proxy.restore();
    replicated(&replica, 6).await;
    replica_in_use(&app).await;
    let before = metric(
        &app.metrics().await,
        r#"datastorage_replica_reads_total{database="replica",reason="usable"}"#,
    );
    assert_eq!(listed(&app, "rr-lag").await, written);
    let after = metric(
        &app.metrics().await,
        r#"datastorage_replica_reads_total{database="replica",reason="usable"}"#,
    );
    assert!(after > before, "the list was not read from the replica");
    assert_eq!(db.count().await, 6);
    db.assert_each_stored_once(&written).await;
    app.shutdown.begin();
    app.handle.await.unwrap().unwrap();
}
