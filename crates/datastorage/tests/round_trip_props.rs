//! What is hashed is exactly what each store gives back: generated events with values of every
//! field type (times with any offset and precision, leap seconds and year 0000 among them;
//! integers and doubles in every JSON spelling; strings with any code point; nested
//! `event_data`) are either refused when they are parsed, or appended, read back (by id, and by
//! the scan `verify` reads) and re-hashed to the leaf hash they were stored with.
//!
//! Found this way: a double such as 3.744370668413131e30 came back from PostgreSQL's `jsonb` as
//! another double, because serde_json's fast float parsing is not correctly rounded for every
//! decimal; the workspace enables its `float_roundtrip` feature.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::cell::Cell;
use std::sync::Arc;

use audit_model::AuditEvent;
use chrono::Utc;
use datastorage::store::{AppendOutcome, LogEntry, LogStore, PreparedEvent};
use helpers::{Backend, TestDb};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value};

/// RFC 3339 text with any offset and up to nine fractional digits; sometimes a leap second,
/// year 0000 or a day that does not exist, which parsing must refuse.
fn time_text() -> impl Strategy<Value = String> {
    (
        prop_oneof![9 => 1970u32..2100, 1 => 0u32..=9999],
        1u32..=12,
        prop_oneof![9 => 1u32..=28, 1 => 29u32..=31],
        0u32..24,
        0u32..60,
        prop_oneof![19 => 0u32..60, 1 => Just(60u32)],
        prop_oneof![Just(String::new()), "\\.[0-9]{1,9}"],
        prop_oneof![
            Just("Z".to_string()),
            (any::<bool>(), 0u32..24, 0u32..60)
                .prop_map(|(plus, h, m)| format!("{}{h:02}:{m:02}", if plus { '+' } else { '-' })),
        ],
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, off)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{off}")
        })
}

/// A JSON number as a client could spell it.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        (-1e6f64..1e6).prop_map(|f| format!("{f}")),
        Just("-0".to_string()),
        Just("-0.0".to_string()),
        Just("1.0000000000000000000001".to_string()),
        Just("1E+2".to_string()),
    ]
}

/// A string with any code point: mostly one a field takes (not blank, no NUL), sometimes any
/// string at all (NUL and blank included, which parsing refuses).
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        16 => any::<String>().prop_map(|s| format!("x{}", s.replace('\0', ""))),
        4 => "[a-z]{1,12}",
        2 => Just("tab\t\"quote\" \\ é 😀 \u{1} \u{ffff} \u{10ffff}".to_string()),
        1 => any::<String>(),
    ]
}

/// A JSON value for `event_data`, nested a few levels, as text.
fn data_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        number_text(),
        any_text().prop_map(|s| Value::String(s).to_string()),
        time_text().prop_map(|s| Value::String(s).to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((any_text(), inner), 0..5).prop_map(|members| {
                let mut seen = std::collections::HashSet::new();
                let parts: Vec<String> = members
                    .into_iter()
                    .filter(|(k, _)| seen.insert(k.clone()))
                    .map(|(k, v)| format!("{}:{v}", Value::String(k)))
                    .collect();
                format!("{{{}}}", parts.join(","))
            }),
        ]
    })
}

/// An event's JSON text with every field given a generated value.
fn event_text() -> impl Strategy<Value = String> {
    let strings = prop::collection::vec(any_text(), 12);
    (
        strings,
        time_text(),
        any::<bool>(),
        prop_oneof![Just(None), (0i64..i64::MAX).prop_map(Some)],
        1i64..=36_500,
        prop::collection::vec(("[a-z_]{1,8}", data_value()), 0..6),
    )
        .prop_map(|(s, ts, with_parent, duration, retention, data)| {
            let mut event = Map::new();
            let text = |i: usize| Value::String(s[i].clone());
            event.insert("event_id".into(), uuid::Uuid::new_v4().to_string().into());
            event.insert("event_timestamp".into(), ts.into());
            event.insert("event_type".into(), format!("prop.{}", s[0].len()).into());
            event.insert("event_category".into(), "prop".into());
            event.insert("event_action".into(), "generated".into());
            event.insert("event_outcome".into(), "success".into());
            event.insert("correlation_id".into(), text(1));
            event.insert("actor_type".into(), text(2));
            event.insert("actor_id".into(), text(3));
            event.insert("resource_type".into(), text(4));
            event.insert("resource_id".into(), text(5));
            event.insert("resource_name".into(), text(6));
            event.insert("namespace".into(), text(7));
            event.insert("cluster_id".into(), text(8));
            event.insert(
                "severity".into(),
                Value::String(s[9].chars().take(50).collect()),
            );
            event.insert("error_code".into(), text(10));
            event.insert("error_message".into(), text(11));
            event.insert("trace_id".into(), text(0));
            event.insert("span_id".into(), text(1));
            if with_parent {
                event.insert(
                    "parent_event_id".into(),
                    uuid::Uuid::new_v4().to_string().into(),
                );
            }
            if let Some(d) = duration {
                event.insert("duration_ms".into(), d.into());
            }
            event.insert("retention_days".into(), retention.into());
            let mut text = Value::Object(event).to_string();
            // `event_data` goes in as text, so numbers keep the spelling generated for them.
            text.pop();
            // One member per name: a repeated name is refused, which is tested elsewhere.
            let members: Vec<String> = data
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect();
            format!("{text},\"event_data\":{{{}}}}}", members.join(","))
        })
}

async fn open(db: &TestDb) -> Arc<dyn LogStore> {
    helpers::open_store(db, 2).await
}

fn round_trips(backend: Backend, cases: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(db) = rt.block_on(TestDb::create(backend)) else {
        return;
    };
    let store = rt.block_on(open(&db));
    let (stored, refused) = (Cell::new(0u32), Cell::new(0u32));
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&event_text(), |text| {
            let event = match AuditEvent::parse_json(text.as_bytes(), Utc::now()) {
                Ok(event) => event,
                Err(_) => {
                    refused.set(refused.get() + 1);
                    return Ok(());
                }
            };
            stored.set(stored.get() + 1);
            let prepared = PreparedEvent::new(event.clone());
            let (by_id, scanned) = rt.block_on(async {
                let outcomes = store.append(std::slice::from_ref(&prepared)).await.unwrap();
                let seq = match &outcomes[0] {
                    AppendOutcome::Created { seq, .. } => *seq,
                    other => panic!("expected created, got {other:?}"),
                };
                let by_id = store.get(event.event_id()).await.unwrap();
                let scanned = store.scan(seq - 1, 1).await.unwrap();
                (by_id, scanned)
            });
            for entry in [by_id, scanned.into_iter().next()] {
                let Some(LogEntry::Event(back)) = entry else {
                    panic!("the event reads back: {entry:?}")
                };
                // Equal in canonical form: a number may come back spelled otherwise
                // (PostgreSQL writes 6.3e18 as 6300000000000000000), never as another number.
                let (got, want) = (back.event.canonical_bytes(), event.canonical_bytes());
                prop_assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want),
                    "text: {}",
                    text
                );
                prop_assert_eq!(back.leaf_hash, prepared.leaf_hash);
                prop_assert_eq!(back.event.leaf_hash(), back.leaf_hash);
            }
            Ok(())
        })
        .unwrap();
    // The generator is worth something only if it makes both kinds.
    let (stored, refused) = (stored.get(), refused.get());
    assert!(stored > cases / 4, "stored {stored} of {cases}");
    assert!(refused > 0, "refused none of {cases}");
    rt.block_on(store.close());
}

#[test]
fn postgres_gives_back_what_was_hashed() {
    round_trips(Backend::Postgres, 256);
}

#[test]
fn sqlite_gives_back_what_was_hashed() {
    round_trips(Backend::Sqlite, 256);
}
