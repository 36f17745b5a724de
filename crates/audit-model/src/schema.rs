//! JSON Schemas of request bodies, made from the same rules the parsers check, for the API
//! document: a body's schema says exactly what its parser takes, so a client (or a fuzzer)
//! that follows the document is never refused for a rule the document does not show.
//!
//! Bodies read with an [`ObjectReader`](crate::ObjectReader) are described by running their
//! parser under [`crate::describe`]; the unified event, which is typed by serde first, is
//! described from the constants its checks use ([`event_request`]), and a test holds the two to
//! each other at every boundary.

use serde_json::{json, Map, Value};

use crate::event::{
    EventOutcome, MAX_ACTOR_IP, MAX_EVENT_DATA_DEPTH, MAX_SHORT, MAX_TEXT, MAX_VERSION,
};
use crate::fields::{DescribedField, FieldRule};

/// Unicode White_Space, what Rust's `trim` takes away, as ranges.
const WHITE_SPACE: [(u32, u32); 10] = [
    (0x0009, 0x000D),
    (0x0020, 0x0020),
    (0x0085, 0x0085),
    (0x00A0, 0x00A0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
];

/// Text holding a character outside `forbidden` and `blank`, and none of `forbidden`. Written
/// with explicit `\uXXXX` classes (and surrogate pairs above U+FFFF avoided: those ranges are
/// left to the parser's own message) so that every regex dialect reads it alike.
fn text_pattern(forbidden: &[(u32, u32)], blank: &[(u32, u32)]) -> String {
    let class = |ranges: &[&[(u32, u32)]]| -> String {
        ranges
            .iter()
            .flat_map(|r| r.iter())
            .filter(|(low, _)| *low <= 0xFFFF)
            .map(|(low, high)| {
                if low == high {
                    format!("\\u{low:04x}")
                } else {
                    format!("\\u{low:04x}-\\u{:04x}", (*high).min(0xFFFF))
                }
            })
            .collect()
    };
    let never = class(&[forbidden]);
    let not_blank = class(&[forbidden, blank]);
    format!("^[^{never}]*[^{not_blank}][^{never}]*$")
}

/// Text that is not blank (not only White_Space, as Rust's `trim` sees it) and holds no NUL.
pub fn non_blank() -> String {
    text_pattern(&[(0, 0)], &WHITE_SPACE)
}

/// An identifier (`event_type`, `event_category`, `event_action`): not blank, and no control or
/// default-ignorable character (see `identifier`).
pub fn identifier() -> String {
    let forbidden: Vec<(u32, u32)> = crate::identifier::CONTROL
        .iter()
        .chain(crate::identifier::DEFAULT_IGNORABLE.iter())
        .copied()
        .collect();
    text_pattern(&forbidden, &WHITE_SPACE)
}

/// The schema of an object read field by field: every described field, no other.
pub fn object(fields: &[DescribedField], description: &str) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for f in fields {
        properties.insert(f.name.clone(), property(&f.rule, f.required));
        if f.required {
            required.push(Value::String(f.name.clone()));
        }
    }
    json!({
        "type": "object",
        "description": description,
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// One field's schema; an optional one may also be `null` (read as absent).
fn property(rule: &FieldRule, required: bool) -> Value {
    let kind = |t: &str| {
        if required {
            json!(t)
        } else {
            json!([t, "null"])
        }
    };
    match rule {
        FieldRule::Text { max } => {
            json!({"type": kind("string"), "minLength": 1, "maxLength": max, "pattern": non_blank()})
        }
        FieldRule::Enum { values } => json!({
            "type": kind("string"),
            "pattern": any_case(values),
            "description": format!("one of {} (any case; stored lower-case)", values.join(", ")),
        }),
        FieldRule::Timestamp => json!({
            "type": kind("string"), "format": "date-time",
            "description": "RFC 3339; years 0001-9999, no leap second; kept to the microsecond",
        }),
        FieldRule::Uuid => json!({"type": kind("string"), "format": "uuid"}),
        FieldRule::Int { min, max } => {
            json!({"type": kind("integer"), "minimum": min, "maximum": max})
        }
        FieldRule::Number { min, max } => {
            json!({"type": kind("number"), "minimum": min, "maximum": max})
        }
        FieldRule::Bool => json!({"type": kind("boolean")}),
        FieldRule::Object => json!({
            "type": kind("object"),
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": JSON_VALUE_REF},
        }),
        FieldRule::Array => json!({"type": kind("array"), "items": {"$ref": JSON_VALUE_REF}}),
        FieldRule::Numbers { len } => {
            let mut s = json!({"type": kind("array"), "items": {"type": "number"}});
            if let Some(n) = len {
                s["minItems"] = json!(n);
                s["maxItems"] = json!(n);
            }
            s
        }
    }
}

/// A pattern that matches any of `values` in any letter case (`[sS][eE][nN][tT]`), which every
/// regex dialect reads alike (inline case flags are not portable).
fn any_case(values: &[String]) -> String {
    format!("^({})$", any_case_alternatives(values))
}

/// `a|b|…` of [`any_case`].
fn any_case_alternatives(values: &[String]) -> String {
    let alternatives: Vec<String> = values
        .iter()
        .map(|v| {
            v.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                    } else if c.is_ascii_alphanumeric() || c == '_' {
                        c.to_string()
                    } else {
                        format!("\\{c}")
                    }
                })
                .collect()
        })
        .collect();
    alternatives.join("|")
}

/// Text without NUL.
pub const NO_NUL: &str = "^[^\\u0000]*$";

/// Where the API document keeps [`json_value`].
pub const JSON_VALUE_REF: &str = "#/components/schemas/JsonValue";

/// Any JSON value with no NUL in a string or a key, at any depth (what `event_data` may hold).
pub fn json_value() -> Value {
    json!({
        "description": "Any JSON value; no string or key at any depth holds NUL",
        "anyOf": [
            {"type": ["null", "boolean", "number"]},
            {"type": "string", "pattern": NO_NUL},
            {"type": "array", "items": {"$ref": JSON_VALUE_REF}},
            {"type": "object", "propertyNames": {"pattern": NO_NUL},
             "additionalProperties": {"$ref": JSON_VALUE_REF}},
        ],
    })
}

/// The schema of `POST /api/v1/audit/events` (and of each item of a batch): the checks of
/// `WireEvent::into_event`, from the same constants.
pub fn event_request() -> Value {
    let mut fields: Vec<DescribedField> = Vec::new();
    let mut add = |name: &str, rule: FieldRule, required: bool| {
        fields.push(DescribedField {
            name: name.to_string(),
            rule,
            required,
        })
    };
    add("event_id", FieldRule::Uuid, false);
    add("event_version", FieldRule::Text { max: MAX_VERSION }, false);
    add("version", FieldRule::Text { max: MAX_VERSION }, false);
    add("event_timestamp", FieldRule::Timestamp, false);
    for name in ["event_type", "event_category", "event_action"] {
        add(name, FieldRule::Text { max: MAX_SHORT }, true);
    }
    add(
        "event_outcome",
        FieldRule::Enum {
            values: EventOutcome::ALL.iter().map(|s| s.to_string()).collect(),
        },
        true,
    );
    for name in ["actor_type", "actor_id"] {
        add(name, FieldRule::Text { max: MAX_SHORT }, false);
    }
    add("actor_ip", FieldRule::Text { max: MAX_ACTOR_IP }, false);
    for name in ["resource_type", "resource_id", "resource_name"] {
        add(name, FieldRule::Text { max: MAX_SHORT }, false);
    }
    add("correlation_id", FieldRule::Text { max: MAX_SHORT }, true);
    add("parent_event_id", FieldRule::Uuid, false);
    add("parent_event_date", FieldRule::Timestamp, false);
    for name in ["trace_id", "span_id", "namespace", "cluster_id"] {
        add(name, FieldRule::Text { max: MAX_SHORT }, false);
    }
    add("severity", FieldRule::Text { max: 50 }, false);
    add(
        "duration_ms",
        FieldRule::Int {
            min: 0,
            max: i64::MAX,
        },
        false,
    );
    add("error_code", FieldRule::Text { max: MAX_SHORT }, false);
    add("error_message", FieldRule::Text { max: MAX_TEXT }, false);
    add("event_data", FieldRule::Object, true);
    add(
        "retention_days",
        FieldRule::Int {
            min: 1,
            max: crate::event::MAX_RETENTION_DAYS,
        },
        false,
    );
    add("is_sensitive", FieldRule::Bool, false);
    let mut schema = object(
        &fields,
        "An audit event (ADR-034 fields). Absent optional fields get the platform's defaults.",
    );
    let p = &mut schema["properties"];
    // An optional text may be empty: the platform's client writes an unset value as "".
    for (name, property) in p.as_object_mut().into_iter().flatten() {
        let optional_text = property["maxLength"].is_u64() && property["type"].is_array();
        if optional_text && !name.contains("version") {
            property["minLength"] = json!(0);
            property["pattern"] = json!(format!("^$|{}", non_blank()));
            property["description"] = json!("empty is the same as absent");
        }
    }
    for name in ["event_type", "event_category", "event_action"] {
        p[name]["pattern"] = json!(identifier());
    }
    // The reserved prefix, in any letter case (its compatibility forms, such as full-width
    // letters, are refused too but not spelled out here).
    let reserved = crate::event::SYSTEM_EVENT_PREFIX.to_string();
    let identifier = identifier();
    p["event_type"]["pattern"] = json!(format!(
        "^(?!({})){}",
        any_case_alternatives(std::slice::from_ref(&reserved)),
        &identifier[1..]
    ));
    p["event_type"]["description"] = json!(format!(
        "not starting with {reserved}, the prefix of the events Data Storage writes itself"
    ));
    p["version"]["description"] =
        json!("the platform's name for event_version; give one of the two");
    p["event_data"]["propertyNames"] = json!({"pattern": NO_NUL});
    p["event_data"]["additionalProperties"] = json!({"$ref": JSON_VALUE_REF});
    p["event_data"]["description"] = json!(format!(
        "at most {} KiB as JSON, nested at most {MAX_EVENT_DATA_DEPTH} levels, no NUL in any string or key",
        crate::event::MAX_EVENT_DATA_BYTES / 1024
    ));
    schema["not"] = json!({
        "required": ["event_version", "version"],
        "properties": {"event_version": {}, "version": {}},
    });
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_case_matches_every_spelling_and_nothing_else() {
        let p = any_case(&["success".to_string(), "pending_human_review".to_string()]);
        assert_eq!(p, "^([sS][uU][cC][cC][eE][sS][sS]|[pP][eE][nN][dD][iI][nN][gG]_[hH][uU][mM][aA][nN]_[rR][eE][vV][iI][eE][wW])$");
    }
}

#[cfg(test)]
mod drift {
    //! Each body schema against its parser, at every boundary the schema states: the document
    //! cannot say something the parser does not do.

    use super::*;
    use crate::records::{RecordRules, SeedRecord};
    use crate::{AuditEvent, FieldErrors};

    type Parse = dyn Fn(Value) -> Result<(), FieldErrors>;

    /// A value the schema of one property takes.
    fn valid(p: &Value) -> Value {
        let t = p["type"]
            .as_str()
            .or_else(|| p["type"][0].as_str())
            .unwrap();
        match t {
            "string" if p["format"] == "date-time" => json!("2026-01-02T03:04:05Z"),
            "string" if p["format"] == "uuid" => json!("0190b5a2-1c3d-7e4f-8a9b-000000000001"),
            "string" if p.get("maxLength").is_some() => json!("x"),
            "string" => {
                // An any-case enum pattern: its first alternative, lower-cased.
                let pattern = p["pattern"].as_str().unwrap();
                let first = pattern.trim_start_matches("^(").split('|').next().unwrap();
                let word: String = first
                    .split('[')
                    .filter_map(|part| part.chars().next())
                    .collect();
                json!(word.replace("]", ""))
            }
            "integer" => p["minimum"].clone(),
            "number" => p["minimum"].clone(),
            "boolean" => json!(true),
            "object" => json!({}),
            "array" => match p["minItems"].as_u64() {
                Some(n) => json!(vec![0.5; n as usize]),
                None => json!([]),
            },
            other => panic!("no example for {other}"),
        }
    }

    fn example(schema: &Value) -> Map<String, Value> {
        schema["properties"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, p)| (k.clone(), valid(p)))
            .collect()
    }

    fn refused_naming(parse: &Parse, body: Map<String, Value>, field: &str, why: &str) {
        match parse(Value::Object(body)) {
            Ok(()) => panic!("{field}: {why} was taken"),
            Err(e) => assert!(e.get(field).is_some(), "{field}: {why}: {e}"),
        }
    }

    fn check(schema: &Value, parse: &Parse) {
        let mut base = example(schema);
        // Of two fields that exclude each other, the example holds the first.
        let exclusive = schema["not"]["required"].as_array();
        if let Some(pair) = exclusive {
            base.remove(pair[1].as_str().unwrap());
            let mut both = base.clone();
            both.insert(pair[1].as_str().unwrap().into(), json!("x"));
            refused_naming(parse, both, pair[1].as_str().unwrap(), "both given");
        }
        if let Err(e) = parse(Value::Object(base.clone())) {
            panic!("the schema's own example is refused: {e}\n{base:?}");
        }
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut unknown = base.clone();
        unknown.insert("not_a_field".into(), json!(1));
        refused_naming(parse, unknown, "not_a_field", "an unknown field");
        for (name, p) in schema["properties"].as_object().unwrap() {
            let with = |v: Value| {
                let mut b = base.clone();
                // Of an exclusive pair, the field tried alone.
                for other in exclusive.into_iter().flatten() {
                    b.remove(other.as_str().unwrap());
                }
                b.insert(name.clone(), v);
                b
            };
            let mut without = base.clone();
            without.remove(name);
            if required.contains(&name.as_str()) {
                refused_naming(parse, without, name, "absent while required");
            } else {
                assert!(parse(Value::Object(without)).is_ok(), "{name} is optional");
                assert!(
                    parse(Value::Object(with(Value::Null))).is_ok(),
                    "{name}: null"
                );
            }
            if let Some(max) = p["maxLength"].as_u64() {
                let max = max as usize;
                assert!(
                    parse(Value::Object(with(json!("x".repeat(max))))).is_ok(),
                    "{name}: max"
                );
                refused_naming(parse, with(json!("x".repeat(max + 1))), name, "too long");
                refused_naming(parse, with(json!(" \u{3000}\t")), name, "blank");
                if p["minLength"] == 0 {
                    assert!(
                        parse(Value::Object(with(json!("")))).is_ok(),
                        "{name}: empty"
                    );
                }
                refused_naming(parse, with(json!("a\u{0}b")), name, "NUL");
            }
            if let (Some(min), Some(max)) = (p["minimum"].as_i64(), p["maximum"].as_i64()) {
                assert!(
                    parse(Value::Object(with(json!(max)))).is_ok(),
                    "{name}: max"
                );
                if min > i64::MIN {
                    refused_naming(parse, with(json!(min - 1)), name, "below the minimum");
                }
                if max < i64::MAX {
                    refused_naming(parse, with(json!(max + 1)), name, "above the maximum");
                }
            }
            if let (Some(min), Some(max)) = (p["minimum"].as_f64(), p["maximum"].as_f64()) {
                if p["type"].as_str().or_else(|| p["type"][0].as_str()) == Some("number") {
                    refused_naming(parse, with(json!(min - 0.5)), name, "below the minimum");
                    refused_naming(parse, with(json!(max + 0.5)), name, "above the maximum");
                }
            }
            if p["pattern"].as_str().is_some_and(|s| s.starts_with("^([")) {
                let v = valid(p);
                let upper = v.as_str().unwrap().to_uppercase();
                assert!(
                    parse(Value::Object(with(json!(upper)))).is_ok(),
                    "{name}: any case"
                );
                refused_naming(parse, with(json!("no-such-value")), name, "not a member");
            }
            if p["additionalProperties"].get("$ref").is_some() {
                refused_naming(parse, with(json!({"k": ["a\u{0}"]})), name, "NUL inside");
            }
            if p["items"].get("$ref").is_some() {
                refused_naming(parse, with(json!([{"k": "a\u{0}"}])), name, "NUL inside");
            }
            if let Some(n) = p["minItems"].as_u64() {
                refused_naming(
                    parse,
                    with(json!(vec![0.5; n as usize + 1])),
                    name,
                    "too many",
                );
            }
        }
    }

    #[test]
    fn the_event_schema_states_what_the_parser_checks() {
        let parse = |v: Value| AuditEvent::parse(v, chrono::Utc::now()).map(|_| ());
        check(&event_request(), &parse);
    }

    fn record<R: SeedRecord>() {
        let rules = RecordRules {
            now: chrono::Utc::now(),
            embedding_dimension: 4,
        };
        let fields = crate::describe(|| {
            let _ = R::parse(json!({}), &rules);
        });
        let schema = object(&fields, "");
        let parse = move |v: Value| R::parse(v, &rules).map(|_| ());
        check(&schema, &parse);
    }

    #[test]
    fn every_record_schema_states_what_its_parser_checks() {
        record::<crate::NotificationAudit>();
        record::<crate::SignalProcessingAudit>();
        record::<crate::OrchestrationAudit>();
        record::<crate::AiAnalysisAudit>();
        record::<crate::WorkflowExecutionAudit>();
        record::<crate::EffectivenessAudit>();
    }
}
