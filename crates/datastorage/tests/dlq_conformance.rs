//! The `DlqBackend` conformance suite: the same checks against Redis Streams and the journal.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::sync::Arc;
use std::time::Duration;

use audit_model::AuditEvent;
use chrono::Utc;
use datastorage::dlq::{self, DeadLetter, DlqBackend, DlqConfig, DlqEntry, DlqError};
use serde_json::json;

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A fresh backend (its own directory or key prefix), or `None` when Redis is unreachable
/// outside CI.
async fn backend(
    kind: &str,
    capacity: u64,
    dir: &tempfile::TempDir,
    prefix: &str,
) -> Option<Arc<dyn DlqBackend>> {
    let config = DlqConfig {
        url: match kind {
            "redis" => REDIS_URL.to_string(),
            _ => format!("file://{}", dir.path().display()),
        },
        capacity,
        redis_prefix: prefix.to_string(),
        claim_idle: Duration::from_millis(200),
        redis_ca_file: None,
    };
    match dlq::connect(&config).await {
        Ok(b) => Some(b),
        Err(e) => helpers::service_missing("Redis", &e.to_string()),
    }
}

fn entry(i: usize) -> DlqEntry {
    let mut v = helpers::event(&format!("rr-dlq-{i}"));
    v["event_data"] = json!({"i": i});
    DlqEntry::new(AuditEvent::parse(v, Utc::now()).unwrap(), "store down")
}

fn prefix() -> String {
    format!("test:{}", uuid::Uuid::new_v4().simple())
}

async fn settles_entries_in_every_way(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(q) = backend(kind, 100, &dir, &prefix()).await else {
        return;
    };
    q.enqueue((0..5).map(entry).collect()).await.unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.backend, stats.depth, stats.dead_letters),
        (kind, 5, 0)
    );
    assert!(stats.oldest_age_seconds.unwrap() >= 0.0);

    let first = q.claim(3).await.unwrap();
    let order: Vec<&str> = first
        .iter()
        .map(|c| c.entry.event.correlation_id())
        .collect();
    assert_eq!(order, ["rr-dlq-0", "rr-dlq-1", "rr-dlq-2"]);
    let rest = q.claim(3).await.unwrap();
    let order: Vec<&str> = rest
        .iter()
        .map(|c| c.entry.event.correlation_id())
        .collect();
    assert_eq!(
        order,
        ["rr-dlq-3", "rr-dlq-4"],
        "claimed entries are not handed out twice"
    );

    let ids: Vec<String> = first.iter().map(|c| c.id.clone()).collect();
    q.ack(&ids).await.unwrap();
    assert_eq!(q.stats().await.unwrap().depth, 2);

    let rest_ids: Vec<String> = rest.iter().map(|c| c.id.clone()).collect();
    q.release(&rest_ids).await.unwrap();
    let again = q.claim(10).await.unwrap();
    let order: Vec<&str> = again
        .iter()
        .map(|c| c.entry.event.correlation_id())
        .collect();
    assert_eq!(
        order,
        ["rr-dlq-3", "rr-dlq-4"],
        "released entries come back"
    );

    let mut updated = again[0].entry.clone();
    updated.attempts = 1;
    q.requeue(vec![(again[0].id.clone(), updated)])
        .await
        .unwrap();
    q.bury(vec![(
        again[1].id.clone(),
        DeadLetter {
            event: again[1].entry.event.clone(),
            attempts: 0,
            reason: "conflict".into(),
            dead_at: Utc::now(),
        },
    )])
    .await
    .unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.dead_letters), (1, 1));
    let requeued = q.claim(10).await.unwrap();
    assert_eq!(requeued.len(), 1);
    assert_eq!(
        (
            requeued[0].entry.attempts,
            requeued[0].entry.event.correlation_id()
        ),
        (1, "rr-dlq-3")
    );
    q.ack(&[requeued[0].id.clone()]).await.unwrap();

    let dead = q.dead_letters(10, None).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].1.reason.as_str(), dead[0].1.event.correlation_id()),
        ("conflict", "rr-dlq-4")
    );
    assert!(
        q.dead_letters(10, Some(dead[0].0.clone()))
            .await
            .unwrap()
            .is_empty(),
        "cursor is exclusive"
    );
    assert!(q.retry_dead_letter(&dead[0].0).await.unwrap());
    assert!(
        !q.retry_dead_letter(&dead[0].0).await.unwrap(),
        "a retried dead letter is gone"
    );
    assert!(!q.retry_dead_letter("no-such-id").await.unwrap());
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.dead_letters), (1, 0));
    let back = q.claim(10).await.unwrap();
    assert_eq!(
        (back[0].entry.attempts, back[0].entry.event.correlation_id()),
        (0, "rr-dlq-4")
    );
}

async fn refuses_beyond_capacity_without_evicting(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(q) = backend(kind, 3, &dir, &prefix()).await else {
        return;
    };
    q.enqueue((0..2).map(entry).collect()).await.unwrap();
    let err = q.enqueue((2..4).map(entry).collect()).await.unwrap_err();
    assert!(matches!(err, DlqError::Full { capacity: 3 }), "{err}");
    assert_eq!(q.stats().await.unwrap().depth, 2, "all or nothing");
    q.enqueue(vec![entry(2)]).await.unwrap();
    assert!(matches!(
        q.enqueue(vec![entry(3)]).await,
        Err(DlqError::Full { .. })
    ));
    let all = q.claim(10).await.unwrap();
    let order: Vec<&str> = all.iter().map(|c| c.entry.event.correlation_id()).collect();
    assert_eq!(
        order,
        ["rr-dlq-0", "rr-dlq-1", "rr-dlq-2"],
        "nothing was evicted"
    );
    q.ack(&all.iter().map(|c| c.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    q.enqueue(vec![entry(3)]).await.unwrap();
}

async fn unsettled_entries_survive_their_owner(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let Some(first) = backend(kind, 100, &dir, &prefix).await else {
        return;
    };
    first.enqueue((0..4).map(entry).collect()).await.unwrap();
    let claimed = first.claim(2).await.unwrap();
    first.ack(&[claimed[0].id.clone()]).await.unwrap();
    // The owner dies with one entry claimed and unsettled.
    drop(first);
    let second = backend(kind, 100, &dir, &prefix).await.unwrap();
    let mut got: Vec<String> = Vec::new();
    for _ in 0..50 {
        for c in second.claim(10).await.unwrap() {
            got.push(c.entry.event.correlation_id().to_string());
            second.ack(&[c.id]).await.unwrap();
        }
        if got.len() == 3 {
            break;
        }
        // Redis hands over another consumer's entries only after `claim_idle`.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    got.sort();
    assert_eq!(got, ["rr-dlq-1", "rr-dlq-2", "rr-dlq-3"]);
    assert_eq!(second.stats().await.unwrap().depth, 0);
}

macro_rules! on_both_backends {
    ($($test:ident),*) => {
        $(
            mod $test {
                #[tokio::test]
                async fn redis() {
                    super::$test("redis").await;
                }

                #[tokio::test]
                async fn journal() {
                    super::$test("journal").await;
                }
            }
        )*
    };
}

on_both_backends!(
    settles_entries_in_every_way,
    refuses_beyond_capacity_without_evicting,
    unsettled_entries_survive_their_owner
);
