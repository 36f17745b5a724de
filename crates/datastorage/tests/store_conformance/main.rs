//! The store's conformance suites: the same checks against PostgreSQL and SQLite, through the
//! traits, with no HTTP in between; one module per trait (`log`: `EventLog`, `tree`:
//! `TreeStore`, `holds`: `HoldStore`).

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
mod holds;
mod log;
mod tree;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use audit_model::merkle::Hash;
use audit_model::subtrees::NodeId;
use audit_model::{AuditEvent, EventField, FieldValue, Receipt, StoredEvent, Writer};
use chrono::Utc;
use datastorage::store::{
    self, AppendOutcome, CheckpointQuery, EventFilter, EventLog, EventQuery, HoldRequest, LogEntry,
    LogStore, Order, PlaceHold, PreparedEvent, RecordQuery, RowFields, ScannedLeaf, StoreError,
    StoredCheckpoint, StoredCosignature, StoredRecord, TreeStore,
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
    PreparedEvent::new(AuditEvent::parse(v, Receipt::new(Utc::now(), WRITER)).unwrap())
}

/// The writer the events of these tests are attested for.
const WRITER: Writer<'static> = Writer {
    principal: "conformance-test",
    authenticated: true,
};

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
