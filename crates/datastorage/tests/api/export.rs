//! `GET /api/v1/audit/export`: the streamed export verifies offline, is the same as the CLI's,
//! filters, resumes against the same checkpoint, and comes as CSV too.

use std::io::Cursor;

use audit_model::export::verify_export;
use audit_model::merkle::{verify_inclusion, Hash};
use datastorage::evidence::export::{self as exporter, ExportFilter, ExportFormat};
use serde_json::{json, Value};

use crate::helpers::{checkpoint_covering, event, TestApp};
use crate::on_both_stores;

const EVENTS: usize = 2500;

/// Writes `EVENTS` events over three correlations (`rr-a` gets every third).
async fn write_log(app: &TestApp) {
    let all: Vec<Value> = (0..EVENTS)
        .map(|i| {
            let mut e = event(["rr-a", "rr-b", "rr-c"][i % 3]);
            e["event_data"] = json!({"i": i, "note": "comma, \"quote\"\nnewline"});
            e
        })
        .collect();
    for chunk in all.chunks(1000) {
        let (status, body) = app.post("/api/v1/audit/events/batch", &json!(chunk)).await;
        assert_eq!(status, 200, "{body}");
    }
}

async fn download(app: &TestApp, query: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let r = app
        .client
        .get(app.url(&format!("/api/v1/audit/export{query}")))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

fn seqs(export: &[u8]) -> Vec<i64> {
    export
        .split(|b| *b == b'\n')
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice::<Value>(l).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

async fn the_export_endpoint_streams_a_verifiable_export(app: TestApp) {
    write_log(&app).await;
    let checkpoint = checkpoint_covering(&app, EVENTS as i64).await;
    let size = checkpoint["tree_size"].as_u64().unwrap();
    let key = app.verifier().await;

    let (status, headers, whole) = download(&app, &format!("?tree_size={size}")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/x-ndjson");
    assert_eq!(headers["x-audit-tree-size"], size.to_string().as_str());
    let summary = verify_export(Cursor::new(&whole), &key).unwrap();
    assert_eq!((summary.events, summary.tree_size), (size, size));
    // Byte for byte what the CLI writes.
    let mut offline = Vec::new();
    exporter::write(
        app.open_store().await,
        ExportFilter::default(),
        Some(size),
        ExportFormat::Ndjson,
        &mut offline,
    )
    .await
    .unwrap();
    assert!(offline == whole, "the HTTP and CLI exports differ");

    // One correlation.
    let (status, _, only_b) = download(&app, "?correlation_id=rr-b").await;
    assert_eq!(status, 200);
    let summary = verify_export(Cursor::new(&only_b), &key).unwrap();
    assert_eq!(summary.events, (EVENTS / 3) as u64);
    for line in only_b
        .split(|b| *b == b'\n')
        .skip(1)
        .filter(|l| !l.is_empty())
    {
        let item: Value = serde_json::from_slice(line).unwrap();
        assert_eq!(item["event"]["correlation_id"], "rr-b");
        // The writer and the receipt travel with the event, in what the proof covers.
        assert_eq!(item["event"]["submitted_by"], "anonymous");
        assert!(item["event"]["received_at"].is_string(), "{item}");
    }

    // Resumed after seq 1200 against the same checkpoint: the rest, and it verifies alone.
    let (status, _, rest) = download(&app, &format!("?tree_size={size}&after_seq=1200")).await;
    assert_eq!(status, 200);
    let summary = verify_export(Cursor::new(&rest), &key).unwrap();
    assert_eq!(summary.events, size - 1200);
    let got = seqs(&rest);
    assert_eq!(got.first(), Some(&1201));
    assert_eq!(seqs(&whole)[1200..], got[..]);

    // The event list's filters select too: five events of another actor, one of them failed.
    let others: Vec<Value> = (0..5)
        .map(|i| {
            let mut e = event("rr-b");
            e["actor_id"] = json!("auditor-x");
            if i == 0 {
                e["event_outcome"] = json!("failure");
            }
            e
        })
        .collect();
    let (status, body) = app.post("/api/v1/audit/events/batch", &json!(others)).await;
    assert_eq!(status, 200, "{body}");
    checkpoint_covering(&app, EVENTS as i64 + 5).await;
    let (status, _, by_actor) = download(&app, "?actor_id=auditor-x&format=ndjson").await;
    assert_eq!(status, 200);
    assert_eq!(
        verify_export(Cursor::new(&by_actor), &key).unwrap().events,
        5
    );
    let (_, _, failed) = download(
        &app,
        "?actor_id=auditor-x&event_outcome=failure&event_category=notification&format=ndjson",
    )
    .await;
    assert_eq!(verify_export(Cursor::new(&failed), &key).unwrap().events, 1);
    let (_, _, none) = download(&app, "?event_type=no.such.type&format=csv").await;
    assert_eq!(
        none.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        1,
        "the header alone"
    );
}

on_both_stores!(the_export_endpoint_streams_a_verifiable_export);

async fn the_csv_export_carries_content_and_proofs(app: TestApp) {
    write_log(&app).await;
    let checkpoint = checkpoint_covering(&app, EVENTS as i64).await;
    let size = checkpoint["tree_size"].as_u64().unwrap();
    let root: Hash = hex::decode(checkpoint["root_hash"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let (status, headers, body) = download(
        &app,
        &format!("?format=csv&correlation_id=rr-a&tree_size={size}"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    let mut reader = csv::Reader::from_reader(Cursor::new(body));
    let columns: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(columns[0], "seq");
    // seq, the event's fields, the leaf hash and the proof.
    assert_eq!(columns.len(), audit_model::EventField::ALL.len() + 3);
    let at = |name: &str| columns.iter().position(|c| c == name).unwrap();
    let mut rows = 0;
    for record in reader.records() {
        let record = record.unwrap();
        rows += 1;
        assert_eq!(&record[at("correlation_id")], "rr-a");
        let data: Value = serde_json::from_str(&record[at("event_data")]).unwrap();
        assert_eq!(data["note"], "comma, \"quote\"\nnewline");
        assert_eq!(data["i"].as_u64().unwrap() % 3, 0);
        // The leaf hash and proof in the row verify against the signed root.
        let seq: u64 = record[at("seq")].parse().unwrap();
        let leaf: Hash = hex::decode(&record[at("leaf_hash")])
            .unwrap()
            .try_into()
            .unwrap();
        let proof: Vec<Hash> = record[at("inclusion_proof")]
            .split(' ')
            .map(|h| hex::decode(h).unwrap().try_into().unwrap())
            .collect();
        assert!(
            verify_inclusion(&leaf, seq - 1, size, &proof, &root),
            "seq {seq}"
        );
    }
    assert_eq!(rows, EVENTS.div_ceil(3));
}

on_both_stores!(the_csv_export_carries_content_and_proofs);

async fn bad_export_requests_are_refused(app: TestApp) {
    write_log(&app).await;
    checkpoint_covering(&app, EVENTS as i64).await;
    for (query, field) in [
        ("?format=xml", "format"),
        ("?tree_size=ten", "tree_size"),
        ("?after_seq=-1", "after_seq"),
        ("?since=yesterday", "since"),
        ("?limit=10", "limit"),
    ] {
        let (status, headers, body) = download(&app, query).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(headers["content-type"], "application/problem+json");
        let problem: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            problem["field_errors"][field].is_string(),
            "{query}: {problem}"
        );
    }
    let (status, _, body) = download(&app, "?tree_size=99999999").await;
    assert_eq!(status, 404);
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("99999999"));
}

on_both_stores!(bad_export_requests_are_refused);
