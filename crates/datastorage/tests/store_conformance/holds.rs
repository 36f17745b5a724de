//! `HoldStore`: legal holds and the retention purge.

use super::*;

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
    // The verifier's scan reads the same rows, each live one with the leaf its columns hash to.
    let leaves = store.scan_leaves(0, 10).await.unwrap();
    let expected: Vec<ScannedLeaf> = rows.into_iter().map(ScannedLeaf::from).collect();
    assert_eq!(leaves, expected);
    assert!(
        matches!(&leaves[1], ScannedLeaf::Content { leaf_hash, content_leaf, .. }
        if *leaf_hash == held.leaf_hash && *content_leaf == held.leaf_hash)
    );
    // The export's scan renders the live rows only; the purged one keeps its leaf hash.
    let correlation = |fields: &RowFields<'_>| match fields.get(EventField::CorrelationId) {
        audit_model::FieldRef::Text(c) => Some(c.as_bytes().to_vec()),
        _ => None,
    };
    let rendered = store
        .scan_rendered(0, 10, Arc::new(correlation))
        .await
        .unwrap();
    let seen: Vec<(i64, Option<&[u8]>)> = rendered
        .iter()
        .map(|r| (r.seq, r.rendered.as_deref()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, None),
            (2, Some(&b"rr-held"[..])),
            (3, Some(&b"rr-fresh"[..]))
        ]
    );
    assert_eq!(rendered[0].leaf_hash, expired.leaf_hash);
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
    let purge = match &db {
        // The content goes; the leaf stays, marked.
        TestDb::Postgres { .. } => {
            |seq: i64, _stamp: &str| format!("DELETE FROM audit_content WHERE seq = {seq}")
        }
        TestDb::Sqlite { .. } => |seq: i64, stamp: &str| {
            format!(
                "UPDATE audit_events SET purged_at = '{stamp}', event_version = NULL, \
                 event_type = NULL, event_category = NULL, event_action = NULL, \
                 event_outcome = NULL, actor_type = NULL, actor_id = NULL, \
                 resource_type = NULL, resource_id = NULL, resource_name = NULL, \
                 correlation_id = NULL, parent_event_id = NULL, trace_id = NULL, span_id = NULL, \
                 namespace = NULL, cluster_id = NULL, severity = NULL, duration_ms = NULL, \
                 error_code = NULL, error_message = NULL, event_data = NULL WHERE seq = {seq}"
            )
        },
    };
    let stamp = audit_model::timestamp::format(&Utc::now());
    for seq in [2, 3] {
        let err = db
            .execute(&purge(seq, &stamp))
            .await
            .expect_err("a held or unexpired event cannot be purged");
        assert!(err.contains("append-only"), "{err}");
    }
    let err = db
        .execute(&format!(
            "UPDATE {} SET retention_days = 5000 WHERE seq = 1",
            db.leaf_table()
        ))
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
