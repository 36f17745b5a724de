//! The event's canonical encoding, written member by member, equals the JCS crate's encoding of
//! the whole struct for any content: the stored leaf hashes depend on every byte of it.

use audit_model::{AuditEvent, EventField, EventOutcome, FieldValue};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};
use uuid::Uuid;

/// Text with the characters JCS treats specially: quotes, backslashes, control characters,
/// solidus, DEL, non-ASCII and characters outside the BMP.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._-]{0,12}",
        any::<String>(),
        prop::collection::vec(
            prop_oneof![
                Just('"'),
                Just('\\'),
                Just('/'),
                Just('\u{7f}'),
                Just('\u{2028}'),
                Just('é'),
                Just('😀'),
                (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap()),
            ],
            0..8
        )
        .prop_map(|cs| cs.into_iter().collect()),
    ]
}

fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        // The integers of every day (counts, milliseconds), and those about 2^53, where a
        // double stops holding every integer.
        (-100_000i64..100_000).prop_map(Number::from),
        ((1i64 << 53) - 64..(1i64 << 53) + 64).prop_map(Number::from),
        ((1i64 << 53) - 64..(1i64 << 53) + 64).prop_map(|i| Number::from(-i)),
        ((1i64 << 53) - 64..(1i64 << 53) + 64).prop_map(|i| Number::from_f64(i as f64).unwrap()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Number::from_f64(f).unwrap()),
        prop_oneof![Just(1e21), Just(-0.0), Just(0.1), Just(5e-324), Just(1e-7)]
            .prop_map(|f| Number::from_f64(f).unwrap()),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(Value::Number),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn event_data() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(text(), value(), 0..8).prop_map(|m| m.into_iter().collect())
}

fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_102_444_800, 0u32..1_000_000)
        .prop_map(|(s, us)| DateTime::from_timestamp(s, us * 1_000).unwrap())
}

prop_compose! {
    fn event()(
        ids in (any::<u128>(), prop::option::of(any::<u128>())),
        version in text(),
        ts in timestamp(),
        names in prop::collection::vec(text(), 9),
        optional in prop::collection::vec(prop::option::of(text()), 11),
        received in prop::option::of(timestamp()),
        parent_date in prop::option::of(timestamp()),
        sensitive in prop::option::of(any::<bool>()),
        outcome in prop_oneof![Just(EventOutcome::Success), Just(EventOutcome::Failure), Just(EventOutcome::Pending)],
        duration_ms in prop::option::of(any::<i64>()),
        event_data in event_data(),
        retention_days in any::<i32>(),
    ) -> AuditEvent {
        let (text, optional_text) = (FieldValue::Text, FieldValue::text);
        AuditEvent::from_fields(|field| Ok::<_, std::convert::Infallible>(match field {
            EventField::EventId => FieldValue::Uuid(Uuid::from_u128(ids.0)),
            EventField::EventVersion => text(version.clone()),
            EventField::EventTimestamp => FieldValue::Time(ts),
            EventField::EventType => text(names[0].clone()),
            EventField::EventCategory => text(names[1].clone()),
            EventField::EventAction => text(names[2].clone()),
            EventField::EventOutcome => text(outcome.as_str().into()),
            EventField::ActorType => text(names[3].clone()),
            EventField::ActorId => text(names[4].clone()),
            EventField::ActorIp => optional_text(optional[8].clone()),
            EventField::ResourceType => text(names[5].clone()),
            EventField::ResourceId => text(names[6].clone()),
            EventField::ResourceName => optional_text(optional[0].clone()),
            EventField::CorrelationId => text(names[7].clone()),
            EventField::ParentEventId => ids.1.map_or(FieldValue::Absent, |u| FieldValue::Uuid(Uuid::from_u128(u))),
            EventField::ParentEventDate => parent_date.map_or(FieldValue::Absent, FieldValue::Time),
            EventField::TraceId => optional_text(optional[1].clone()),
            EventField::SpanId => optional_text(optional[2].clone()),
            EventField::Namespace => optional_text(optional[3].clone()),
            EventField::ClusterId => optional_text(optional[4].clone()),
            EventField::Severity => optional_text(optional[5].clone()),
            EventField::DurationMs => duration_ms.map_or(FieldValue::Absent, FieldValue::Int),
            EventField::ErrorCode => optional_text(optional[6].clone()),
            EventField::ErrorMessage => optional_text(optional[7].clone()),
            EventField::EventData => FieldValue::Object(event_data.clone()),
            EventField::RetentionDays => FieldValue::Int(i64::from(retention_days)),
            EventField::IsSensitive => sensitive.map_or(FieldValue::Absent, FieldValue::Bool),
            EventField::RecordKind => optional_text(optional[9].clone()),
            EventField::SubmittedBy => optional_text(optional[10].clone()),
            // The receipt time is signed with the writer (see the test below).
            EventField::ReceivedAt => match (&optional[10], received) {
                (Some(_), Some(t)) => FieldValue::Time(t),
                _ => FieldValue::Absent,
            },
        }))
        .unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn member_by_member_equals_the_crates_encoding_of_the_struct(e in event()) {
        let reference = serde_json_canonicalizer::to_vec(&e).unwrap();
        prop_assert_eq!(
            String::from_utf8(e.canonical_bytes()).unwrap(),
            String::from_utf8(reference).unwrap()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// An event without `submitted_by` (written before writers were recorded) has its receipt
    /// time outside its canonical form, so its leaf hash is what it was.
    #[test]
    fn a_receipt_time_without_a_writer_is_outside_the_canonical_form(e in event(), t in timestamp()) {
        let unattested = e.clone().with_attestation(None, None);
        let with_time = e.with_attestation(None, Some(t));
        prop_assert_eq!(with_time.canonical_bytes(), unattested.canonical_bytes());
        prop_assert!(!String::from_utf8(with_time.canonical_bytes()).unwrap().contains("received_at"));
        let attested = with_time.with_attestation(Some("nc".into()), Some(t));
        let text = String::from_utf8(attested.canonical_bytes()).unwrap();
        prop_assert!(text.contains("\"received_at\"") && text.contains("\"submitted_by\":\"nc\""), "{}", text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The export's line written directly is the line of its struct, byte for byte: the offline
    /// verifier re-encodes each line through the struct and refuses any other bytes.
    #[test]
    fn an_export_line_written_directly_is_its_structs_line(
        e in event(),
        seq in any::<i64>(),
        proof in prop::collection::vec(any::<[u8; 32]>(), 0..40),
        unsigned_receipt in prop::option::of(timestamp()),
    ) {
        // Also an event written before writers were recorded, whose receipt time is not signed.
        let e = match unsigned_receipt {
            Some(t) => e.with_attestation(None, Some(t)),
            None => e,
        };
        let mut json = Vec::new();
        audit_model::export::write_event_json(&mut json, |f| e.get(f));
        let mut direct = Vec::new();
        audit_model::export::write_event_line(&mut direct, seq, &proof, &json);
        let mut reference = Vec::new();
        audit_model::export::ExportedEvent::new(seq, &proof, e).write_line(&mut reference);
        prop_assert_eq!(String::from_utf8(direct).unwrap(), String::from_utf8(reference).unwrap());
    }
}
