//! PostgreSQL goes away while authentication is on and the DLQ is a Redis reached over
//! verified TLS: the parked events wait with their writer, and reach the log with it, once each.

use std::sync::Arc;

use datastorage::auth::tokens::{self, TokenEntry};
use datastorage::auth::Role;
use test_pki::TestCa;

use crate::helpers::{eventually, native_client_with, start_on, AppOptions, Backend, TestDb};
use crate::outage::identified_event;
use crate::proxy::postgres_proxy;
use crate::redis_server::{RedisServer, RedisTls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_keeps_each_writer_through_a_redis_dlq_over_tls() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let db = Arc::new(db);
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("redis test CA");
    let (cert, key) = ca.server(&["localhost"]).write(dir.path(), "redis");
    let ca_file = ca.write(dir.path(), "redis-ca");
    let tls = RedisTls {
        cert,
        key,
        ca: ca_file.clone(),
    };
    let Some(redis) = RedisServer::start_tls(dir.path().to_path_buf(), tls).await else {
        return;
    };
    let tokens_file = dir.path().join("tokens.yaml");
    let gateway = tokens::create(&tokens_file, TokenEntry::new("gateway", [Role::Writer])).unwrap();
    let notification = tokens::create(
        &tokens_file,
        TokenEntry::new("notification-controller", [Role::Writer])
            .with_event_types(["notification."]),
    )
    .unwrap();
    let proxy = postgres_proxy().await;
    let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
    let app = start_on(
        db.clone(),
        Backend::Postgres,
        AppOptions {
            database_url: Some(proxy.url_for(&db.url())),
            dlq_url: Some(redis.url()),
            dlq_redis_ca_file: Some(ca_file),
            dlq_redis_prefix: Some(prefix.clone()),
            tokens_file: Some(tokens_file),
            ..AppOptions::default()
        },
    )
    .await;

    proxy.cut();
    let mut ids = Vec::new();
    for (token, kind) in [(&gateway, "gateway"), (&notification, "notification")] {
        let client = native_client_with(Some(token));
        for i in 0..5 {
            let (id, mut e) = identified_event(&format!("rr-tls-outage-{kind}-{i}"));
            e["event_type"] = format!("{kind}.message.sent").into();
            let r = client
                .post(app.url("/api/v1/audit/events"))
                .json(&e)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
            ids.push(id);
        }
    }
    assert_eq!(db.count().await, 0);

    // The entries are in the Redis stream (read over TLS), each with its writer.
    let mut con = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("{prefix}:events"))
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .unwrap();
    let mut writers: Vec<String> = entries
        .iter()
        .map(|(_, fields)| {
            let entry: serde_json::Value = serde_json::from_str(&fields[0].1).unwrap();
            entry["event"]["submitted_by"].as_str().unwrap().to_owned()
        })
        .collect();
    writers.sort();
    writers.dedup_by(|a, b| a == b);
    assert_eq!(entries.len(), 10);
    assert_eq!(writers, ["gateway", "notification-controller"]);

    proxy.restore();
    eventually("the DLQ to drain into the log", || async {
        let stats = app.dlq.stats().await.ok()?;
        (stats.depth == 0 && db.count().await == 10).then_some(())
    })
    .await;
    db.assert_each_stored_once(&ids).await;
    assert_eq!(
        db.text(
            "SELECT string_agg(submitted_by || ':' || n, ',' ORDER BY submitted_by) FROM \
             (SELECT submitted_by, count(*) AS n FROM audit_events \
              WHERE event_type NOT LIKE 'datastorage.%' GROUP BY submitted_by) AS w"
        )
        .await,
        "gateway:5,notification-controller:5"
    );
}
