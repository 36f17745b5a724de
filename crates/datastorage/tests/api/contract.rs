//! The platform's Data Storage API document (`api/platform/data-storage-v1.yaml`) as the tests
//! use it: the event types it names with their payload schemas, a valid payload of each made
//! from its schema, and validators of answers against its schemas.
//!
//! Answers are checked as the platform's generated client decodes them: the envelope against
//! the document's schema, and each event's `event_data` against the payload schema its
//! discriminator (`event_type`) selects.

use std::sync::LazyLock;

use serde_json::{json, Map, Value};

/// The document, as JSON, with OpenAPI 3.0's `nullable` written as JSON Schema types.
pub static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../api/platform/data-storage-v1.yaml"
    ))
    .expect("api/platform/data-storage-v1.yaml");
    let mut doc: Value = serde_yaml_ng::from_str(&text).expect("the document is YAML");
    nullable_as_types(&mut doc);
    doc
});

fn nullable_as_types(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.remove("nullable") == Some(json!(true)) {
                if let Some(Value::String(t)) = map.get("type").cloned() {
                    map.insert("type".into(), json!([t, "null"]));
                }
            }
            map.values_mut().for_each(nullable_as_types);
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_as_types),
        _ => {}
    }
}

/// A schema of the document by name.
pub fn schema(name: &str) -> &'static Value {
    let s = &DOCUMENT["components"]["schemas"][name];
    assert!(s.is_object(), "the document has no schema {name}");
    s
}

/// The event types the document names (its `event_data` discriminator) with their payload
/// schemas' names, in the document's order.
pub fn event_types() -> Vec<(String, String)> {
    let mapping =
        &schema("AuditEventRequest")["properties"]["event_data"]["discriminator"]["mapping"];
    mapping
        .as_object()
        .expect("a discriminator mapping")
        .iter()
        .map(|(t, r)| {
            let name = r.as_str().unwrap().rsplit('/').next().unwrap();
            (t.clone(), name.to_string())
        })
        .collect()
}

/// The document's `event_category` for an event type: its first segment when that is a
/// category, else the domain the segment belongs to.
pub fn category(event_type: &str) -> &'static str {
    let categories = schema("AuditEventRequest")["properties"]["event_category"]["enum"]
        .as_array()
        .unwrap();
    let first = event_type.split('.').next().unwrap();
    if let Some(c) = categories.iter().find(|c| *c == first) {
        return c.as_str().unwrap();
    }
    match first {
        "orchestrator" | "remediation" => "orchestration",
        "aianalysis" => "analysis",
        "remediationworkflow" | "authwebhook" => "workflow",
        "webhook" if event_type.contains("notification") => "notification",
        "webhook" if event_type.contains("approval") => "approval",
        _ => "orchestration",
    }
}

/// An event as the platform's generated client writes it: every field it always sends
/// (`version`, its own time to the nanosecond, `cluster_id` empty in a single cluster,
/// `is_sensitive`), no `event_id`.
pub fn platform_event(event_type: &str, event_data: Value, correlation_id: &str, n: u32) -> Value {
    let segments: Vec<&str> = event_type.split('.').collect();
    json!({
        "version": "1.0",
        "event_type": event_type,
        "event_timestamp": format!("2026-12-01T10:{:02}:{:02}.{:09}Z", n / 60 % 60, n % 60, 123_456_789 + n),
        "event_category": category(event_type),
        "event_action": segments.last().unwrap(),
        "event_outcome": "success",
        "actor_type": "service",
        "actor_id": format!("{}-controller", segments[0]),
        "actor_ip": "10.0.0.7",
        "resource_type": "RemediationRequest",
        "resource_id": correlation_id,
        "correlation_id": correlation_id,
        "namespace": "kubernaut-system",
        "cluster_id": "",
        "is_sensitive": false,
        "event_data": event_data,
    })
}

/// A valid value of `schema`: its example where it gives one, else the least its rules allow
/// (required members only, the first enum value, the first alternative).
pub fn instance(schema: &Value) -> Value {
    let s = resolve(schema);
    if let Some(e) = s.get("example") {
        return e.clone();
    }
    if let Some(first) = s["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(all) = s["allOf"].as_array() {
        let mut merged = Map::new();
        for part in all {
            if let Value::Object(m) = instance(part) {
                merged.extend(m);
            }
        }
        return Value::Object(merged);
    }
    for alternatives in ["oneOf", "anyOf"] {
        if let Some(first) = s[alternatives].as_array().and_then(|a| a.first()) {
            return instance(first);
        }
    }
    let kind = match &s["type"] {
        Value::String(t) => t.as_str(),
        Value::Array(types) => types[0].as_str().unwrap(),
        _ if s.get("properties").is_some() => "object",
        _ => return json!({}),
    };
    match kind {
        "object" => {
            let mut out = Map::new();
            let props = s["properties"].as_object();
            for name in s["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap();
                let p = props.and_then(|p| p.get(name)).unwrap_or(&Value::Null);
                out.insert(name.to_string(), instance(p));
            }
            Value::Object(out)
        }
        "array" => match s["minItems"].as_u64() {
            Some(n) if n > 0 => json!(vec![instance(&s["items"]); n as usize]),
            _ => json!([]),
        },
        "string" => match (s["format"].as_str(), s["pattern"].as_str()) {
            (Some("date-time"), _) => json!("2026-12-01T10:00:00Z"),
            (Some("date"), _) => json!("2026-12-01"),
            (Some("uuid"), _) => json!("0190b5a2-1c3d-7e4f-8a9b-000000000001"),
            (_, Some("^[a-f0-9]{64}$")) => json!("a".repeat(64)),
            (_, Some(p)) => panic!("no value for the pattern {p}: give the schema an example"),
            _ => json!("x".repeat(s["minLength"].as_u64().unwrap_or(1).max(1) as usize)),
        },
        "integer" => json!(s["minimum"].as_i64().unwrap_or(1)),
        "number" => json!(s["minimum"].as_f64().unwrap_or(1.0)),
        "boolean" => json!(true),
        other => panic!("no value for the type {other}"),
    }
}

/// A `$ref` followed (within the document).
fn resolve(schema: &Value) -> &Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let pointer = r
                .strip_prefix('#')
                .expect("a reference within the document");
            resolve(
                DOCUMENT
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("{r} resolves")),
            )
        }
        None => schema,
    }
}

/// A validator of one of the document's schemas, with the document's other schemas reachable
/// by reference. With `open_event_data`, an event's `event_data` may be any object (it is
/// checked against the schema its discriminator selects instead, as the platform's decoder
/// does; see [`check_events`]).
pub fn validator(name: &str, open_event_data: bool) -> jsonschema::Validator {
    let mut root = DOCUMENT.clone();
    if open_event_data {
        root["components"]["schemas"]["AuditEventRequest"]["properties"]["event_data"] =
            json!({"type": "object"});
    }
    root["$ref"] = json!(format!("#/components/schemas/{name}"));
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{name} compiles: {e}"))
}

/// Every error of `instance` against `validator`, as text.
pub fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Checks a query answer as the platform's client decodes it: the page against
/// `AuditEventsQueryResponse`, each event's `event_data` against its type's payload schema.
pub fn check_events(page: &Value) {
    let envelope = validator("AuditEventsQueryResponse", true);
    let found = errors(&envelope, page);
    assert!(found.is_empty(), "{found:#?}");
    let types: std::collections::HashMap<String, String> = event_types().into_iter().collect();
    for event in page["data"].as_array().unwrap() {
        let t = event["event_type"].as_str().unwrap();
        let payload = types
            .get(t)
            .unwrap_or_else(|| panic!("{t} is not a type the platform's decoder knows"));
        let found = errors(&validator(payload, false), &event["event_data"]);
        assert!(found.is_empty(), "{t}: {found:#?}");
    }
}
