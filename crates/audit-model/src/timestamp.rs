//! One textual form for every timestamp: RFC 3339, UTC, exactly six fractional digits.
//!
//! PostgreSQL keeps microseconds, so every timestamp is truncated to microseconds when it is
//! parsed. The fixed width also makes the text sort in time order, which the SQLite store relies
//! on.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// Formats a timestamp in the canonical form, e.g. `2026-11-27T16:49:13.123456Z`.
pub fn format(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses RFC 3339 text (any offset) into UTC, truncated to microseconds.
pub fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc).trunc_subsecs(6))
}

/// Truncates to the precision every store keeps.
pub fn truncate(ts: DateTime<Utc>) -> DateTime<Utc> {
    ts.trunc_subsecs(6)
}

/// `serde(with = "audit_model::timestamp")` for a required timestamp.
pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(ts))
}

/// `serde(with = "audit_model::timestamp")` for a required timestamp.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// The same for an optional timestamp.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(ts: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => s.serialize_str(&format(ts)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| parse(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_normalised_to_utc_micros() {
        let ts = parse("2026-01-02T03:04:05.123456789+02:00").unwrap();
        assert_eq!(format(&ts), "2026-01-02T01:04:05.123456Z");
    }

    #[test]
    fn whole_seconds_keep_six_digits() {
        let ts = parse("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(format(&ts), "2026-01-02T03:04:05.000000Z");
    }
}
