//! Strict JSON: a text in which an object names a key twice is refused, at any depth.
//!
//! RFC 8259 leaves the meaning of a repeated key to the parser, and parsers differ: serde_json
//! keeps the last value, others keep the first. The same bytes could then be read as two
//! different events by two readers (the log and an auditor's tool), so an audit trail takes
//! neither and refuses the text, naming the key.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The start of the error message of a repeated key; the key follows as a JSON string.
const DUPLICATE: &str = "duplicate key ";

/// Why a text is not strict JSON.
#[derive(Debug, thiserror::Error)]
pub enum StrictJsonError {
    /// Not JSON at all.
    #[error("invalid JSON: {0}")]
    Syntax(serde_json::Error),
    /// An object names `key` twice; `path` is the key's dotted path from the top (`event_type`,
    /// `event_data.nested.k`; array items as `[2]`).
    #[error("{path}: is given more than once")]
    DuplicateKey { path: String },
}

/// Parses JSON text, refusing any object that repeats a key.
pub fn from_slice(text: &[u8]) -> Result<Value, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let StrictValue(value) =
        serde_path_to_error::deserialize(&mut de).map_err(|e: PathError| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            match duplicate_key(&inner) {
                Some(key) => StrictJsonError::DuplicateKey {
                    path: join(&path, &key),
                },
                None => StrictJsonError::Syntax(inner),
            }
        })?;
    de.end().map_err(StrictJsonError::Syntax)?;
    Ok(value)
}

type PathError = serde_path_to_error::Error<serde_json::Error>;

/// The key named by a duplicate-key error.
fn duplicate_key(e: &serde_json::Error) -> Option<String> {
    let message = e.to_string();
    let rest = message.strip_prefix(DUPLICATE)?;
    serde_json::Deserializer::from_str(rest)
        .into_iter::<String>()
        .next()?
        .ok()
}

/// `key` under the dotted `parent` path (`.` is the top).
fn join(parent: &str, key: &str) -> String {
    if parent == "." || parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A JSON value read strictly (see the module docs).
pub struct StrictValue(pub Value);

/// A JSON object read strictly.
#[derive(Debug, Default)]
pub struct StrictMap(pub Map<String, Value>);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor).map(StrictValue)
    }
}

impl<'de> Deserialize<'de> for StrictMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MapVisitor).map(StrictMap)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        // JSON text has no NaN or infinity, so every double it holds is a number.
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        MapVisitor.visit_map(map).map(Value::Object)
    }
}

struct MapVisitor;

impl<'de> Visitor<'de> for MapVisitor {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Map<String, Value>, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let quoted = Value::String(key).to_string();
                return Err(de::Error::custom(format_args!("{DUPLICATE}{quoted}")));
            }
            let StrictValue(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duplicate(text: &str) -> String {
        match from_slice(text.as_bytes()) {
            Err(StrictJsonError::DuplicateKey { path }) => path,
            other => panic!("expected a duplicate key, got {other:?}"),
        }
    }

    #[test]
    fn a_repeated_key_is_named_at_any_depth() {
        assert_eq!(
            duplicate(r#"{"event_type":"a.b","event_type":"c.d"}"#),
            "event_type"
        );
        assert_eq!(
            duplicate(r#"{"event_data":{"n":{"k":1,"k":2}}}"#),
            "event_data.n.k"
        );
        assert_eq!(duplicate(r#"{"a":[{"x":1},{"y":1,"y":1}]}"#), "a[1].y");
        assert_eq!(duplicate(r#"{"we\"ird":1,"we\"ird":2}"#), "we\"ird");
    }

    #[test]
    fn strict_text_reads_as_serde_json_reads_it() {
        let text = r#"{"a":[1,-0,1.5e300,18446744073709551615,-9223372036854775808],"b":{"c":null,"d":"é\u0001"},"e":true}"#;
        let strict = from_slice(text.as_bytes()).unwrap();
        let plain: Value = serde_json::from_str(text).unwrap();
        assert_eq!(strict, plain);
    }

    #[test]
    fn bad_json_is_a_syntax_error() {
        assert!(matches!(
            from_slice(b"{\"a\":1,}"),
            Err(StrictJsonError::Syntax(_))
        ));
        assert!(matches!(
            from_slice(b"{\"a\":1} x"),
            Err(StrictJsonError::Syntax(_))
        ));
    }
}
