//! Tamper evidence over HTTP: signed checkpoints verify with the published key, every event's
//! inclusion proof verifies against them, and consistency proofs link them.

use audit_model::checkpoint::CheckpointVerifier;
use audit_model::merkle::{verify_consistency, verify_inclusion, Hash};
use audit_model::AuditEvent;
use serde_json::{json, Value};

use crate::helpers::{checkpoint_covering, event, hex_hash as hash, write_numbered, TestApp};
use crate::on_both_stores;

async fn write(app: &TestApp, n: usize, correlation: &str) -> Vec<Value> {
    write_numbered(app, correlation, n).await
}

async fn checkpoints_and_proofs_verify(app: TestApp) {
    let (status, key) = app.get("/api/v1/audit/checkpoints/public-key").await;
    assert_eq!(status, 200, "{key}");
    let verifier = CheckpointVerifier::parse(key["public_key"].as_str().unwrap()).unwrap();
    assert_eq!(key["key_id"], verifier.key_id());

    let written = write(&app, 40, "rr-proof").await;
    let first = checkpoint_covering(&app, 40).await;
    let signed = verifier.verify(first["note"].as_str().unwrap()).unwrap();
    assert_eq!(signed.tree_size, first["tree_size"].as_u64().unwrap());
    assert_eq!(signed.root_hash, hash(&first["root_hash"]));

    for item in written.iter().step_by(7) {
        let id = item["event_id"].as_str().unwrap();
        let (status, proof) = app
            .get(&format!(
                "/api/v1/audit/events/{id}/proof?tree_size={}",
                signed.tree_size
            ))
            .await;
        assert_eq!(status, 200, "{proof}");
        // The leaf is recomputed from the event's content, not taken from the server.
        let stored: audit_model::StoredEvent =
            serde_json::from_value(proof["event"].clone()).unwrap();
        let leaf = AuditEvent::leaf_hash(&stored.event);
        let path: Vec<Hash> = proof["inclusion_proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(hash)
            .collect();
        let index = proof["leaf_index"].as_u64().unwrap();
        assert_eq!(index, stored.seq as u64 - 1);
        assert!(verify_inclusion(
            leaf.as_bytes(),
            index,
            signed.tree_size,
            &path,
            &signed.root_hash
        ));
        // Any change to the proof fails.
        let mut broken = path.clone();
        broken[0][0] ^= 1;
        assert!(!verify_inclusion(
            leaf.as_bytes(),
            index,
            signed.tree_size,
            &broken,
            &signed.root_hash
        ));
    }

    write(&app, 25, "rr-proof-2").await;
    let second = checkpoint_covering(&app, signed.tree_size as i64 + 25).await;
    let later = verifier.verify(second["note"].as_str().unwrap()).unwrap();
    let (status, consistency) = app
        .get(&format!(
            "/api/v1/audit/consistency?from={}&to={}",
            signed.tree_size, later.tree_size
        ))
        .await;
    assert_eq!(status, 200, "{consistency}");
    let path: Vec<Hash> = consistency["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(hash)
        .collect();
    assert!(verify_consistency(
        signed.tree_size,
        later.tree_size,
        &signed.root_hash,
        &later.root_hash,
        &path
    ));

    // The list pages through every checkpoint in size order.
    let mut sizes = vec![];
    let mut cursor = String::new();
    loop {
        let (status, page) = app
            .get(&format!("/api/v1/audit/checkpoints?limit=1{cursor}"))
            .await;
        assert_eq!(status, 200, "{page}");
        sizes.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["tree_size"].as_u64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
    assert!(sizes.contains(&signed.tree_size) && sizes.contains(&later.tree_size));

    // Only subtrees of 16 leaves and more are stored; the proofs above folded the lower ones.
    let db = app.db.as_ref();
    assert_eq!(
        db.scalar("SELECT count(*) FROM merkle_nodes WHERE level < 4")
            .await,
        0
    );
    let complete: u64 = (4..64).map(|level| later.tree_size >> level).sum();
    assert_eq!(
        db.scalar("SELECT count(*) FROM merkle_nodes").await as u64,
        complete,
        "one row per perfect subtree of level 4 and up"
    );
}

async fn bad_proof_requests_are_refused_clearly(app: TestApp) {
    write(&app, 3, "rr-bad").await;
    checkpoint_covering(&app, 3).await;
    let cases = [
        ("/api/v1/audit/consistency?from=3", 400, "to"),
        ("/api/v1/audit/consistency?from=x&to=3", 400, "from"),
        ("/api/v1/audit/consistency?from=-1&to=3", 400, "from"),
        ("/api/v1/audit/events/not-a-uuid/proof", 400, "event_id"),
        ("/api/v1/audit/checkpoints?cursor=abc", 400, "cursor"),
    ];
    for (path, code, field) in cases {
        let (status, body) = app.get(path).await;
        assert_eq!(status, code, "{path}: {body}");
        assert!(body["field_errors"][field].is_string(), "{path}: {body}");
    }
    // Proofs that cannot exist (a log that shrank, a size not reached) are not found.
    for path in [
        "/api/v1/audit/consistency?from=3&to=1",
        "/api/v1/audit/consistency?from=1&to=999999",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["status"], 404);
    }
    let missing = "/api/v1/audit/events/6d2f1d8e-0000-4000-8000-000000000000/proof";
    let (status, body) = app.get(missing).await;
    assert_eq!(status, 404, "{body}");
    let (_, events) = app.get("/api/v1/audit/events?correlation_id=rr-bad").await;
    let id = events["data"][0]["event_id"].as_str().unwrap();
    let (status, body) = app
        .get(&format!("/api/v1/audit/events/{id}/proof?tree_size=999"))
        .await;
    assert_eq!(status, 404, "{body}");
}

/// Changes one stored event's data behind the service's back (triggers bypassed).
async fn tamper_with(app: &TestApp, seq: i64) {
    app.change_row("event_data = '{\"i\": 999}'", seq).await;
}

async fn verify_chain_checks_every_event_of_a_correlation(app: TestApp) {
    write(&app, 5, "rr-other").await;
    let written = write(&app, 20, "rr-chain").await;
    checkpoint_covering(&app, 25).await;
    let (status, verdict) = app
        .post(
            "/api/v1/audit/verify-chain",
            &json!({"correlation_id": "rr-chain"}),
        )
        .await;
    assert_eq!(status, 200, "{verdict}");
    assert_eq!(
        (
            &verdict["is_valid"],
            &verdict["total_events"],
            &verdict["verified_events"],
            &verdict["pending_events"]
        ),
        (&json!(true), &json!(20), &json!(20), &json!(0)),
        "{verdict}"
    );
    assert!(verdict["tree_size"].as_u64().unwrap() >= 25);

    let victim = written[7]["seq"].as_i64().unwrap();
    tamper_with(&app, victim).await;
    let (status, verdict) = app
        .post(
            "/api/v1/audit/verify-chain",
            &json!({"correlation_id": "rr-chain"}),
        )
        .await;
    assert_eq!(status, 200, "{verdict}");
    assert_eq!(verdict["is_valid"], false);
    assert_eq!(verdict["verified_events"], 19);
    assert_eq!(
        verdict["failures"],
        json!([{"event_id": written[7]["event_id"], "seq": victim, "reason": "content_changed"}])
    );
    // The other correlation is untouched.
    let (_, other) = app
        .post(
            "/api/v1/audit/verify-chain",
            &json!({"correlation_id": "rr-other"}),
        )
        .await;
    assert_eq!(
        (&other["is_valid"], &other["verified_events"]),
        (&json!(true), &json!(5))
    );

    for (bad, field) in [
        (json!({}), "correlation_id"),
        (json!({"correlation_id": " "}), "correlation_id"),
        (json!({"correlation_id": 7}), "correlation_id"),
        (json!({"correlation_id": "rr-chain", "extra": 1}), "extra"),
    ] {
        let (status, body) = app.post("/api/v1/audit/verify-chain", &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["field_errors"][field].is_string(), "{body}");
    }
}

/// Events parked in the DLQ six hours ago (their timestamps and enqueue times say so) are
/// replayed after newer events were signed: they land at the end of the log and the whole log,
/// checkpoints included, still verifies.
async fn a_late_dlq_replay_verifies_cleanly(app: TestApp) {
    use chrono::{Duration as Age, Utc};
    use datastorage::dlq::DlqEntry;

    write(&app, 30, "rr-live").await;
    let before = checkpoint_covering(&app, 30).await;
    let hours_ago = Utc::now() - Age::hours(6);
    let parked: Vec<DlqEntry> = (0..12)
        .map(|i| {
            let mut e = event("rr-outage");
            e["event_timestamp"] = json!(audit_model::timestamp::format(
                &(hours_ago + Age::seconds(i))
            ));
            e["event_data"] = json!({"i": i});
            let mut entry =
                DlqEntry::new(AuditEvent::parse(e, Utc::now()).unwrap(), "database down");
            entry.enqueued_at = hours_ago + Age::seconds(i);
            entry
        })
        .collect();
    app.dlq.enqueue(parked).await.unwrap();
    let after = checkpoint_covering(&app, 42).await;

    let (_, replayed) = app
        .get("/api/v1/audit/events?correlation_id=rr-outage&limit=100")
        .await;
    let seqs: Vec<i64> = replayed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 12);
    assert!(
        seqs.iter().all(|s| *s > 30),
        "replays land at the end: {seqs:?}"
    );

    let report = app.assert_log_verifies(42).await;
    assert_eq!(report.events, 42);
    assert!(report.verified_tree_size >= 42);
    let (status, consistency) = app
        .get(&format!(
            "/api/v1/audit/consistency?from={}&to={}",
            before["tree_size"], after["tree_size"]
        ))
        .await;
    assert_eq!(status, 200, "{consistency}");
}

on_both_stores!(
    a_late_dlq_replay_verifies_cleanly,
    checkpoints_and_proofs_verify,
    bad_proof_requests_are_refused_clearly,
    verify_chain_checks_every_event_of_a_correlation
);

/// A log rolled back in the database (rows and checkpoints after seq 30 removed, genuine
/// signatures on what is left) passes a verifier that trusts the database, and fails one that
/// also reads the witness file the service appended every checkpoint to.
#[tokio::test]
async fn a_witness_reveals_a_rolled_back_log() {
    let witness_dir = tempfile::tempdir().unwrap();
    let witness_file = witness_dir.path().join("witness.ndjson");
    let options = crate::helpers::AppOptions {
        checkpoint_witness_file: Some(witness_file.clone()),
        ..Default::default()
    };
    let Some(app) =
        crate::helpers::spawn_app_with(crate::helpers::Backend::Postgres, options).await
    else {
        return;
    };
    write(&app, 30, "rr-early").await;
    checkpoint_covering(&app, 30).await;
    write(&app, 20, "rr-late").await;
    checkpoint_covering(&app, 50).await;
    let key = app.verifier().await;
    let store = app.open_store().await;
    app.shutdown.begin();
    app.handle.await.unwrap().unwrap();

    let witnessed = datastorage::evidence::witness::read(&witness_file).unwrap();
    let sizes: Vec<i64> = witnessed.iter().map(|w| w.tree_size).collect();
    assert!(sizes.windows(2).all(|p| p[0] < p[1]), "{sizes:?}");
    assert_eq!(sizes.last(), Some(&50));
    for w in &witnessed {
        assert_eq!(key.verify(&w.note).unwrap().tree_size as i64, w.tree_size);
        let stored = app
            .db
            .text(&format!(
                "SELECT note FROM checkpoints WHERE tree_size = {}",
                w.tree_size
            ))
            .await;
        assert_eq!(stored, w.note);
    }
    let report = datastorage::evidence::verify::verify_log(&store, &key, &witnessed)
        .await
        .unwrap();
    assert!(report.is_valid(), "{report:?}");

    let crate::helpers::TestDb::Postgres { pool, .. } = app.db.as_ref() else {
        unreachable!()
    };
    let mut tx = pool.begin().await.unwrap();
    for sql in [
        "SET LOCAL session_replication_role = replica",
        "DELETE FROM audit_content WHERE seq > 30",
        "DELETE FROM audit_leaves WHERE seq > 30",
        "DELETE FROM checkpoints WHERE tree_size > 30",
        "UPDATE log_head SET last_seq = 30",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();

    let blind = datastorage::evidence::verify::verify_store(&store, &key)
        .await
        .unwrap();
    assert!(
        blind.is_valid(),
        "without a witness the rollback is invisible: {blind:?}"
    );
    assert_eq!(blind.events, 30);
    let report = datastorage::evidence::verify::verify_log(&store, &key, &witnessed)
        .await
        .unwrap();
    assert!(!report.is_valid());
    let faults: Vec<_> = report.findings.iter().map(|f| f.fault).collect();
    assert!(
        faults.contains(&datastorage::evidence::verify::Fault::WitnessMismatch)
            && faults.contains(&datastorage::evidence::verify::Fault::RowMissing),
        "{report:?}"
    );
    assert_eq!(report.first_bad_seq(), Some(31));
}
