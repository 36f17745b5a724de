//! The log refuses UPDATE and DELETE at the database level.

use crate::helpers::{event, TestApp};
use crate::on_both_stores;

on_both_stores!(stored_events_cannot_be_updated_or_deleted);

async fn stored_events_cannot_be_updated_or_deleted(app: TestApp) {
    let (_, stored) = app
        .post("/api/v1/audit/events", &event("rr-immutable"))
        .await;
    let id = stored["event_id"].as_str().unwrap();
    let (content, leaves) = (app.db.content_table(), app.db.leaf_table());
    let update = app
        .db
        .execute(&format!(
            "UPDATE {content} SET correlation_id = 'forged' \
             WHERE seq = (SELECT seq FROM audit_events WHERE event_id = '{id}')"
        ))
        .await;
    let err = update.expect_err("UPDATE must be refused");
    assert!(err.contains("append-only"), "{err}");
    let update = app
        .db
        .execute(&format!(
            "UPDATE {leaves} SET leaf_hash = leaf_hash WHERE event_id = '{id}'"
        ))
        .await;
    let err = update.expect_err("UPDATE must be refused");
    assert!(err.contains("append-only"), "{err}");
    for table in [content, leaves] {
        let delete = app.db.execute(&format!("DELETE FROM {table}")).await;
        let err = delete.expect_err("DELETE must be refused");
        assert!(err.contains("append-only"), "{table}: {err}");
    }
    if matches!(app.db.as_ref(), crate::helpers::TestDb::Postgres { .. }) {
        // The log as one table is a view there: not written through.
        let err = app
            .db
            .execute("DELETE FROM audit_events")
            .await
            .expect_err("the view is not writable");
        assert!(err.contains("cannot delete from view"), "{err}");
    }
    assert_eq!(app.db.count().await, 1);
    let correlation = app
        .db
        .text(&format!(
            "SELECT correlation_id FROM audit_events WHERE event_id = '{id}'"
        ))
        .await;
    assert_eq!(correlation, "rr-immutable");
}

#[tokio::test]
async fn truncate_is_refused_on_postgres() {
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await else {
        return;
    };
    app.post("/api/v1/audit/events", &event("rr-truncate"))
        .await;
    for table in ["audit_content", "audit_leaves"] {
        let err = app
            .db
            .execute(&format!("TRUNCATE {table}"))
            .await
            .expect_err("TRUNCATE must be refused");
        assert!(err.contains("append-only"), "{table}: {err}");
    }
    assert_eq!(app.db.count().await, 1);
}
