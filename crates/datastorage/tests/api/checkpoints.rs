//! Tamper evidence over HTTP: signed checkpoints verify with the published key, every event's
//! inclusion proof verifies against them, and consistency proofs link them.

use std::time::Duration;

use audit_model::checkpoint::CheckpointVerifier;
use audit_model::merkle::{verify_consistency, verify_inclusion, Hash};
use audit_model::AuditEvent;
use serde_json::{json, Value};

use crate::helpers::{event, TestApp};
use crate::on_both_stores;

fn hash(hex_text: &Value) -> Hash {
    hex::decode(hex_text.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

/// Waits until a checkpoint covers `size` events (checkpoints are signed every 200 ms here).
async fn checkpoint_covering(app: &TestApp, size: i64) -> Value {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (status, body) = app.get("/api/v1/audit/checkpoints/latest").await;
            if status == 200 && body["tree_size"].as_i64().unwrap() >= size {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("no checkpoint covered the events in time")
}

async fn write(app: &TestApp, n: usize, correlation: &str) -> Vec<Value> {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            let mut e = event(correlation);
            e["event_data"] = json!({"i": i});
            e
        })
        .collect();
    let (status, body) = app.post("/api/v1/audit/events/batch", &json!(events)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["summary"]["created"], n);
    body["results"].as_array().unwrap().clone()
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
            &leaf,
            index,
            signed.tree_size,
            &path,
            &signed.root_hash
        ));
        // Any change to the proof fails.
        let mut broken = path.clone();
        broken[0][0] ^= 1;
        assert!(!verify_inclusion(
            &leaf,
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
}

async fn bad_proof_requests_are_refused_clearly(app: TestApp) {
    write(&app, 3, "rr-bad").await;
    checkpoint_covering(&app, 3).await;
    let cases = [
        ("/api/v1/audit/consistency?from=3", 400, "to"),
        ("/api/v1/audit/consistency?from=3&to=1", 400, "from"),
        ("/api/v1/audit/consistency?from=1&to=999999", 400, "to"),
        ("/api/v1/audit/consistency?from=x&to=3", 400, "from"),
        ("/api/v1/audit/events/not-a-uuid/proof", 400, "event_id"),
        ("/api/v1/audit/checkpoints?cursor=abc", 400, "cursor"),
    ];
    for (path, code, field) in cases {
        let (status, body) = app.get(path).await;
        assert_eq!(status, code, "{path}: {body}");
        assert!(body["field_errors"][field].is_string(), "{path}: {body}");
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

on_both_stores!(
    checkpoints_and_proofs_verify,
    bad_proof_requests_are_refused_clearly
);
