//! Parsing an event from JSON text gives the same event, or the same errors, as parsing the
//! text's JSON value, for any text: well typed or not, with unknown, repeated, null or missing
//! fields, or not JSON at all. A repeated member, at the top or inside `event_data`, is refused
//! both ways, naming it. The text way reads well-typed events without a JSON tree; the
//! tree way is the reference that names every bad field.

use audit_model::json::StrictJsonError;
use audit_model::{
    AuditEvent, EventField, FieldErrors, FieldValue, ParseError, Reason, DUPLICATE_KEY_MESSAGE,
};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::Value;
use uuid::Uuid;

const FIELDS: [&str; 24] = [
    "event_id",
    "event_version",
    "event_timestamp",
    "event_type",
    "event_category",
    "event_action",
    "event_outcome",
    "actor_type",
    "actor_id",
    "resource_type",
    "resource_id",
    "resource_name",
    "correlation_id",
    "parent_event_id",
    "trace_id",
    "span_id",
    "namespace",
    "cluster_id",
    "severity",
    "duration_ms",
    "error_code",
    "error_message",
    "event_data",
    "retention_days",
];

/// A member value as JSON text: mostly values a field accepts, and every kind it does not.
fn member_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9._-]{0,20}".prop_map(|s| format!("\"{s}\"")),
        1 => Just("\"SUCCESS\"".to_string()),
        1 => Just("\"failure\"".to_string()),
        1 => Just("\"  \"".to_string()),
        1 => Just("\"a\\u0000b\"".to_string()),
        1 => Just("\"caf\\u00e9 \\\"q\\\" \\\\ \\n\"".to_string()),
        1 => (256usize..300).prop_map(|n| format!("\"{}\"", "x".repeat(n))),
        1 => Just(format!("\"{}\"", Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001))),
        1 => Just("\"2026-01-02T03:04:05.123456789Z\"".to_string()),
        1 => Just("\"2026-01-02T03:04:05+02:00\"".to_string()),
        1 => Just("\"2999-01-01T00:00:00Z\"".to_string()),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        1 => (0i64..40_000).prop_map(|n| n.to_string()),
        1 => Just("18446744073709551615".to_string()),
        1 => Just("-0".to_string()),
        1 => Just("5.0".to_string()),
        1 => Just("1e3".to_string()),
        1 => Just("null".to_string()),
        1 => Just("true".to_string()),
        1 => Just("[1, \"a\"]".to_string()),
        3 => Just("{\"channel\": \"slack\", \"attempt\": 1, \"nested\": {\"ok\": true}}".to_string()),
        1 => Just("{}".to_string()),
        1 => Just("{\"k\": \"a\\u0000\"}".to_string()),
        1 => Just("{\"k\": 1, \"n\": {\"k\": 2, \"k\": 3}}".to_string()),
        1 => Just("\"2016-12-31T23:59:60Z\"".to_string()),
        1 => Just("\"0000-06-01T00:00:00Z\"".to_string()),
    ]
}

/// A member name: a known field most of the time, sometimes an unknown one.
fn member_name() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => (0..FIELDS.len()).prop_map(|i| FIELDS[i].to_string()),
        1 => Just("extra".to_string()),
        1 => Just("Event_Type".to_string()),
    ]
}

/// JSON text of an object whose members may repeat, or sometimes no object at all.
fn text() -> impl Strategy<Value = String> {
    // The fields every valid event needs, so that many texts are valid events.
    let valid = r#""event_type":"a.b.c","event_category":"notification","event_action":"sent","event_outcome":"success","correlation_id":"rr-1","event_data":{"k":1}"#;
    let object = (
        any::<bool>(),
        prop::collection::vec((member_name(), member_value()), 0..8),
    )
        .prop_map(move |(with_valid, members)| {
            let mut parts: Vec<String> = Vec::new();
            if with_valid {
                parts.push(valid.to_string());
            }
            parts.extend(members.iter().map(|(k, v)| format!("\"{k}\": {v}")));
            format!("{{{}}}", parts.join(", "))
        });
    prop_oneof![
        20 => object,
        1 => Just("[]".to_string()),
        1 => Just("\"event\"".to_string()),
        1 => Just("{\"event_type\": ".to_string()),
        1 => Just("{} trailing".to_string()),
        1 => Just(String::new()),
    ]
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Event(Box<AuditEvent>),
    Fields(FieldErrors),
    Json(String),
}

/// A server-assigned `event_id` is random; both ways are compared without it.
fn outcome(result: Result<AuditEvent, ParseError>, text: &str) -> Outcome {
    let given_id = serde_json::from_str::<Value>(text)
        .ok()
        .is_some_and(|v| v["event_id"].is_string());
    match result {
        Ok(mut event) => {
            if !given_id {
                event = AuditEvent::from_fields(|field| {
                    Ok::<_, std::convert::Infallible>(match field {
                        EventField::EventId => FieldValue::Uuid(Uuid::nil()),
                        field => event.get(field).to_owned(),
                    })
                })
                .unwrap();
            }
            Outcome::Event(Box::new(event))
        }
        Err(ParseError::Fields(errors)) => Outcome::Fields(errors),
        Err(ParseError::Json(e)) => Outcome::Json(e.to_string()),
    }
}

/// The reference: the strict JSON tree (a repeated key is refused, naming it), then the tree's
/// fields.
fn by_tree(text: &str, now: DateTime<Utc>) -> Result<AuditEvent, ParseError> {
    let value = audit_model::json::from_slice(text.as_bytes()).map_err(|e| match e {
        StrictJsonError::Syntax(e) => ParseError::Json(e),
        StrictJsonError::DuplicateKey { path } => {
            let mut errors = FieldErrors::default();
            errors.add(path, Reason::DuplicateKey, DUPLICATE_KEY_MESSAGE);
            ParseError::Fields(errors)
        }
    })?;
    AuditEvent::parse(value, now).map_err(ParseError::Fields)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn text_and_tree_parse_alike(text in text()) {
        let now: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().unwrap();
        let fast = outcome(AuditEvent::parse_json(text.as_bytes(), now), &text);
        let reference = outcome(by_tree(&text, now), &text);
        prop_assert_eq!(fast, reference, "text: {}", text);
    }
}

#[test]
fn both_ways_see_valid_and_invalid_events() {
    // The generator is useful only if it makes both kinds; a fixed sample of each.
    let now = Utc::now();
    let valid = r#"{"event_type":"a.b","event_category":"c","event_action":"d","event_outcome":"success","correlation_id":"rr","event_data":{}}"#;
    assert!(AuditEvent::parse_json(valid.as_bytes(), now).is_ok());
    let repeated = r#"{"event_type":"a.b","event_type":"x.y","event_category":"c","event_action":"d","event_outcome":"success","correlation_id":"rr","event_data":{}}"#;
    let Err(ParseError::Fields(errors)) = AuditEvent::parse_json(repeated.as_bytes(), now) else {
        panic!("a repeated member is refused")
    };
    assert_eq!(
        errors.get("event_type").map(|e| e.reason),
        Some(Reason::DuplicateKey)
    );
    let wrong = r#"{"event_type":5,"event_category":"c","event_action":"d","event_outcome":"nope","correlation_id":"rr","event_data":{},"extra":1}"#;
    let Err(ParseError::Fields(errors)) = AuditEvent::parse_json(wrong.as_bytes(), now) else {
        panic!("refused")
    };
    let fields: Vec<&str> = errors.iter().map(|(k, _)| k).collect();
    assert_eq!(fields, ["event_outcome", "event_type", "extra"]);
}
