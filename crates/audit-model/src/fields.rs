//! Field-by-field reading of an untrusted JSON object that reports every bad field at once.
//!
//! [`ObjectReader`] takes fields out of the object as they are read; whatever is left at
//! [`ObjectReader::finish`] is an unknown field, which is an error: an audit trail must not
//! silently drop data it was given.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::holds_nul;

/// PostgreSQL cannot store U+0000 in text or JSONB, so no field may hold it.
pub const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";

/// Why a field was refused. A bounded set, so it can label a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Required,
    InvalidType,
    InvalidFormat,
    InvalidValue,
    TooLong,
    Blank,
    OutOfRange,
    TooLarge,
    TooDeep,
    UnknownField,
    DuplicateKey,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Required => "required",
            Reason::InvalidType => "invalid_type",
            Reason::InvalidFormat => "invalid_format",
            Reason::InvalidValue => "invalid_value",
            Reason::TooLong => "too_long",
            Reason::Blank => "blank",
            Reason::OutOfRange => "out_of_range",
            Reason::TooLarge => "too_large",
            Reason::TooDeep => "too_deep",
            Reason::UnknownField => "unknown_field",
            Reason::DuplicateKey => "duplicate_key",
        }
    }
}

/// One refused field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub reason: Reason,
    pub message: String,
}

/// Every refused field of one object, by field name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(BTreeMap<String, FieldError>);

impl FieldErrors {
    pub fn add(&mut self, field: impl Into<String>, reason: Reason, message: impl Into<String>) {
        self.0.entry(field.into()).or_insert(FieldError {
            reason,
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn get(&self, field: &str) -> Option<&FieldError> {
        self.0.get(field)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldError)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Field name to message, the shape of a problem's `field_errors` member.
    pub fn messages(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), v.message.clone()))
            .collect()
    }

    /// `Ok(value)` when nothing was refused.
    pub fn into_result<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.message))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for FieldErrors {}

/// The message of a string field that is not an RFC 3339 timestamp.
pub(crate) const TIMESTAMP_MESSAGE: &str =
    "must be an RFC 3339 timestamp such as 2026-01-02T03:04:05Z";
/// The message of a key an object names twice (see [`crate::json`]).
pub const DUPLICATE_KEY_MESSAGE: &str =
    "is given more than once; duplicate keys are refused, since parsers differ on which one they keep";
/// The message of a string field that is not a UUID.
pub(crate) const UUID_MESSAGE: &str = "must be a UUID";

// The checks of a value that has the right JSON type, shared by [`ObjectReader`] and by readers
// that type the fields another way. Each records why it refuses and then gives `None`.

/// `value`, or "is required" when it is absent (unless the field was refused already).
pub(crate) fn required<T>(errors: &mut FieldErrors, key: &str, value: Option<T>) -> Option<T> {
    if value.is_none() {
        errors.add(key, Reason::Required, "is required");
    }
    value
}

/// Text of at most `max` characters that is not blank and holds no NUL.
pub(crate) fn check_text(
    errors: &mut FieldErrors,
    key: &str,
    s: String,
    max: usize,
) -> Option<String> {
    if s.chars().count() > max {
        errors.add(
            key,
            Reason::TooLong,
            format!("must be at most {max} characters"),
        );
        return None;
    }
    if s.trim().is_empty() {
        errors.add(key, Reason::Blank, "must not be blank");
        return None;
    }
    if s.contains('\0') {
        errors.add(key, Reason::InvalidValue, NUL_MESSAGE);
        return None;
    }
    Some(s)
}

/// One of `allowed` (compared case-insensitively), as it is written there.
pub(crate) fn check_member(
    errors: &mut FieldErrors,
    key: &str,
    s: &str,
    allowed: &[&str],
) -> Option<String> {
    match allowed.iter().find(|a| a.eq_ignore_ascii_case(s)) {
        Some(a) => Some((*a).to_string()),
        None => {
            errors.add(
                key,
                Reason::InvalidValue,
                format!("must be one of: {}", allowed.join(", ")),
            );
            None
        }
    }
}

/// An RFC 3339 timestamp that every store keeps as it is hashed (see [`crate::timestamp`]),
/// truncated to microseconds.
pub(crate) fn check_timestamp(
    errors: &mut FieldErrors,
    key: &str,
    s: &str,
) -> Option<DateTime<Utc>> {
    use crate::timestamp::TimestampError;
    match crate::timestamp::parse(s) {
        Ok(ts) => Some(ts),
        Err(TimestampError::Format(_)) => {
            errors.add(key, Reason::InvalidFormat, TIMESTAMP_MESSAGE);
            None
        }
        Err(e @ (TimestampError::LeapSecond | TimestampError::YearOutOfRange)) => {
            errors.add(key, Reason::OutOfRange, format!("{e}"));
            None
        }
    }
}

/// A UUID.
pub(crate) fn check_uuid(errors: &mut FieldErrors, key: &str, s: &str) -> Option<Uuid> {
    let parsed = Uuid::parse_str(s).ok();
    if parsed.is_none() {
        errors.add(key, Reason::InvalidFormat, UUID_MESSAGE);
    }
    parsed
}

/// An integer within `min..=max`.
pub(crate) fn check_range(
    errors: &mut FieldErrors,
    key: &str,
    n: i64,
    min: i64,
    max: i64,
) -> Option<i64> {
    if n < min || n > max {
        errors.add(
            key,
            Reason::OutOfRange,
            format!("must be between {min} and {max}"),
        );
        return None;
    }
    Some(n)
}

/// Reads typed fields out of a JSON object, collecting errors instead of stopping at the first.
///
/// The same calls that check a body also describe it: run under [`describe`], a parser records
/// each field it reads with the rule it checks, which is where the API document's schema of the
/// body comes from ([`crate::schema`]), so the two cannot drift apart.
pub struct ObjectReader {
    map: Map<String, Value>,
    errors: FieldErrors,
}

/// What a reader checks of one field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldRule {
    /// Not blank, no NUL, at most `max` characters.
    Text {
        max: usize,
    },
    /// One of `values` (compared case-insensitively).
    Enum {
        values: Vec<String>,
    },
    Timestamp,
    Uuid,
    Int {
        min: i64,
        max: i64,
    },
    Number {
        min: f64,
        max: f64,
    },
    Bool,
    Object,
    /// An array of finite numbers, exactly `len` of them when given.
    Numbers {
        len: Option<usize>,
    },
    Array,
}

/// One field of a described body.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribedField {
    pub name: String,
    pub rule: FieldRule,
    pub required: bool,
}

/// A field being described: its rule once a typed read gave one.
struct Noted {
    name: String,
    rule: Option<FieldRule>,
    required: bool,
}

thread_local! {
    /// The fields read while [`describe`] runs on this thread.
    static DESCRIBING: std::cell::RefCell<Option<Vec<Noted>>> =
        const { std::cell::RefCell::new(None) };
}

/// The fields `parse` reads, in order, with their rules: `parse` runs a parser on an empty
/// object (every read finds nothing; the result is ignored).
pub fn describe(parse: impl FnOnce()) -> Vec<DescribedField> {
    DESCRIBING.with(|d| *d.borrow_mut() = Some(Vec::new()));
    parse();
    let noted = DESCRIBING
        .with(|d| d.borrow_mut().take())
        .unwrap_or_default();
    noted
        .into_iter()
        .map(|n| DescribedField {
            name: n.name,
            rule: n.rule.unwrap_or(FieldRule::Array),
            required: n.required,
        })
        .collect()
}

/// Records a field read under [`describe`]; the first rule given for a field counts (a typed
/// read calls the looser reads it is made of after it has noted its own rule).
fn note(key: &str, rule: Option<FieldRule>, required: bool) {
    DESCRIBING.with(|d| {
        let mut d = d.borrow_mut();
        let Some(fields) = d.as_mut() else {
            return;
        };
        match fields.iter_mut().find(|f| f.name == key) {
            Some(f) => {
                f.required |= required;
                if f.rule.is_none() {
                    f.rule = rule;
                }
            }
            None => fields.push(Noted {
                name: key.to_string(),
                rule,
                required,
            }),
        }
    });
}

fn describing() -> bool {
    DESCRIBING.with(|d| d.borrow().is_some())
}

impl ObjectReader {
    /// Starts reading `value`, which must be a JSON object.
    pub fn new(value: Value) -> Result<Self, FieldErrors> {
        match value {
            Value::Object(map) => Ok(Self {
                map,
                errors: FieldErrors::default(),
            }),
            _ => {
                let mut errors = FieldErrors::default();
                errors.add("$", Reason::InvalidType, "expected a JSON object");
                Err(errors)
            }
        }
    }

    /// Tells [`describe`] the rule of a field this reader's caller checks itself (read with a
    /// looser call, such as [`ObjectReader::opt_array`]).
    pub fn describe_field(&mut self, key: &str, rule: FieldRule) {
        DESCRIBING.with(|d| {
            if let Some(fields) = d.borrow_mut().as_mut() {
                fields.retain(|f| f.name != key);
            }
        });
        note(key, Some(rule), false);
        // (Not required: the reads that require a field note it themselves.)
    }

    pub fn errors_mut(&mut self) -> &mut FieldErrors {
        &mut self.errors
    }

    /// Takes a field out; JSON `null` counts as absent.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        match self.map.remove(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// Whether `key` holds a non-null value; records "is required" when it does not.
    fn require(&mut self, key: &str) -> bool {
        if describing() {
            note(key, None, true);
            return true;
        }
        let present = self.map.get(key).is_some_and(|v| !v.is_null());
        if !present {
            self.errors.add(key, Reason::Required, "is required");
        }
        present
    }

    /// A string of at most `max` characters that is not blank, or `None` (absent or refused).
    pub fn opt_string(&mut self, key: &str, max: usize) -> Option<String> {
        note(key, Some(FieldRule::Text { max }), false);
        let s = self.opt_any_string(key)?;
        check_text(&mut self.errors, key, s, max)
    }

    /// A string as it is (no checks but its type), or `None` (absent or refused).
    pub fn opt_any_string(&mut self, key: &str) -> Option<String> {
        self.opt_str_or(key, Reason::InvalidType, "must be a string")
    }

    /// A string that must have a format (a UUID, a timestamp): anything else is refused with
    /// `message` as an invalid format.
    pub fn opt_formatted(&mut self, key: &str, message: &str) -> Option<String> {
        self.opt_str_or(key, Reason::InvalidFormat, message)
    }

    /// A string, or `None` (absent, or refused for `reason` with `message`).
    fn opt_str_or(&mut self, key: &str, reason: Reason, message: &str) -> Option<String> {
        match self.take(key)? {
            Value::String(s) => Some(s),
            _ => {
                self.errors.add(key, reason, message);
                None
            }
        }
    }

    /// A required non-blank string of at most `max` characters.
    pub fn string(&mut self, key: &str, max: usize) -> Option<String> {
        if !self.require(key) {
            return None;
        }
        self.opt_string(key, max)
    }

    /// An optional string that is one of `allowed` (compared case-insensitively), returned lower-case.
    /// The length is checked before the membership, so an overlong value says so.
    pub fn opt_enum(&mut self, key: &str, allowed: &[&str], max: usize) -> Option<String> {
        let values = allowed.iter().map(|a| a.to_string()).collect();
        note(key, Some(FieldRule::Enum { values }), false);
        let s = self.opt_string(key, max)?;
        check_member(&mut self.errors, key, &s, allowed)
    }

    /// A required enum value, see [`ObjectReader::opt_enum`].
    pub fn enumeration(&mut self, key: &str, allowed: &[&str], max: usize) -> Option<String> {
        if !self.require(key) {
            return None;
        }
        self.opt_enum(key, allowed, max)
    }

    /// An optional RFC 3339 timestamp, truncated to microseconds.
    pub fn opt_timestamp(&mut self, key: &str) -> Option<DateTime<Utc>> {
        note(key, Some(FieldRule::Timestamp), false);
        let s = self.opt_formatted(key, TIMESTAMP_MESSAGE)?;
        check_timestamp(&mut self.errors, key, &s)
    }

    /// A required RFC 3339 timestamp.
    pub fn timestamp(&mut self, key: &str) -> Option<DateTime<Utc>> {
        if !self.require(key) {
            return None;
        }
        self.opt_timestamp(key)
    }

    /// An optional UUID.
    pub fn opt_uuid(&mut self, key: &str) -> Option<Uuid> {
        note(key, Some(FieldRule::Uuid), false);
        let s = self.opt_formatted(key, UUID_MESSAGE)?;
        check_uuid(&mut self.errors, key, &s)
    }

    /// An optional integer within `min..=max`.
    pub fn opt_int(&mut self, key: &str, min: i64, max: i64) -> Option<i64> {
        note(key, Some(FieldRule::Int { min, max }), false);
        let n = self.opt_any_int(key)?;
        check_range(&mut self.errors, key, n, min, max)
    }

    /// An integer as it is (no checks but its type), or `None` (absent or refused).
    pub fn opt_any_int(&mut self, key: &str) -> Option<i64> {
        let value = self.take(key)?;
        // JSON has one number type: 5.0 is the integer 5 (as JSON Schema's `integer` says).
        let n = value.as_i64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= -9.2e18 && *f <= 9.2e18)
                .map(|f| f as i64)
        });
        if n.is_none() {
            self.errors
                .add(key, Reason::InvalidType, "must be an integer");
        }
        n
    }

    /// A required integer within `min..=max`.
    pub fn int(&mut self, key: &str, min: i64, max: i64) -> Option<i64> {
        if !self.require(key) {
            return None;
        }
        self.opt_int(key, min, max)
    }

    /// An optional finite number within `min..=max`.
    pub fn opt_number(&mut self, key: &str, min: f64, max: f64) -> Option<f64> {
        note(key, Some(FieldRule::Number { min, max }), false);
        let value = self.take(key)?;
        let Some(n) = value.as_f64().filter(|n| n.is_finite()) else {
            self.errors
                .add(key, Reason::InvalidType, "must be a number");
            return None;
        };
        if n < min || n > max {
            self.errors.add(
                key,
                Reason::OutOfRange,
                format!("must be between {min} and {max}"),
            );
            return None;
        }
        Some(n)
    }

    /// A required finite number within `min..=max`.
    pub fn number(&mut self, key: &str, min: f64, max: f64) -> Option<f64> {
        if !self.require(key) {
            return None;
        }
        self.opt_number(key, min, max)
    }

    /// An optional boolean.
    pub fn opt_bool(&mut self, key: &str) -> Option<bool> {
        note(key, Some(FieldRule::Bool), false);
        let value = self.take(key)?;
        let b = value.as_bool();
        if b.is_none() {
            self.errors
                .add(key, Reason::InvalidType, "must be true or false");
        }
        b
    }

    /// An optional JSON object.
    pub fn opt_object(&mut self, key: &str) -> Option<Map<String, Value>> {
        note(key, Some(FieldRule::Object), false);
        match self.take(key)? {
            Value::Object(m) if m.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)) => {
                self.errors.add(key, Reason::InvalidValue, NUL_MESSAGE);
                None
            }
            Value::Object(m) => Some(m),
            _ => {
                self.errors
                    .add(key, Reason::InvalidType, "must be a JSON object");
                None
            }
        }
    }

    /// A required JSON object.
    pub fn object(&mut self, key: &str) -> Option<Map<String, Value>> {
        if !self.require(key) {
            return None;
        }
        self.opt_object(key)
    }

    /// An optional JSON array.
    pub fn opt_array(&mut self, key: &str) -> Option<Vec<Value>> {
        note(key, Some(FieldRule::Array), false);
        match self.take(key)? {
            Value::Array(a) if a.iter().any(holds_nul) => {
                self.errors.add(key, Reason::InvalidValue, NUL_MESSAGE);
                None
            }
            Value::Array(a) => Some(a),
            _ => {
                self.errors
                    .add(key, Reason::InvalidType, "must be a JSON array");
                None
            }
        }
    }

    /// A required JSON array.
    pub fn array(&mut self, key: &str) -> Option<Vec<Value>> {
        if !self.require(key) {
            return None;
        }
        self.opt_array(key)
    }

    /// Ends reading: every field not taken is reported as unknown.
    pub fn finish(mut self) -> FieldErrors {
        if describing() {
            // Describing reads an empty object as if every field were there: build nothing.
            self.errors
                .add("$", Reason::Required, "described, not parsed");
        }
        let unknown: Vec<String> = self.map.keys().cloned().collect();
        for key in unknown {
            self.errors
                .add(key, Reason::UnknownField, "is not a known field");
        }
        self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn collects_every_error_and_unknown_fields() {
        let mut r = ObjectReader::new(json!({
            "a": 5, "b": "  ", "c": "x".repeat(11), "d": "nope", "zzz": 1
        }))
        .unwrap();
        assert_eq!(r.opt_string("a", 10), None);
        assert_eq!(r.string("b", 10), None);
        assert_eq!(r.string("c", 10), None);
        assert_eq!(r.enumeration("d", &["yes"], 50), None);
        assert_eq!(r.string("missing", 10), None);
        let errors = r.finish();
        let reasons: Vec<_> = errors.iter().map(|(k, e)| (k, e.reason)).collect();
        assert_eq!(
            reasons,
            vec![
                ("a", Reason::InvalidType),
                ("b", Reason::Blank),
                ("c", Reason::TooLong),
                ("d", Reason::InvalidValue),
                ("missing", Reason::Required),
                ("zzz", Reason::UnknownField),
            ]
        );
    }

    #[test]
    fn enums_are_case_insensitive_and_lower_cased() {
        let mut r = ObjectReader::new(json!({"s": "SeNt"})).unwrap();
        assert_eq!(
            r.enumeration("s", &["sent", "failed"], 50).as_deref(),
            Some("sent")
        );
        assert!(r.finish().is_empty());
    }

    #[test]
    fn null_counts_as_absent() {
        let mut r = ObjectReader::new(json!({"s": null})).unwrap();
        assert_eq!(r.opt_string("s", 10), None);
        assert!(r.finish().is_empty());
    }
}
