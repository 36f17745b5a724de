//! One textual form for every timestamp: RFC 3339, UTC, exactly six fractional digits.
//!
//! The rule every time field follows, so that what is hashed is exactly what each store gives
//! back (PostgreSQL keeps a `timestamptz`, SQLite this text):
//!
//! * microseconds: finer digits are truncated when the text is parsed (PostgreSQL's precision);
//! * years 0001 to 9999: RFC 3339 has four-digit years, and PostgreSQL refuses year 0000;
//! * no leap second: `23:59:60` is refused. PostgreSQL stores it as the next minute, so a hash
//!   of the text as written would never match the row again, and normalising it would record a
//!   time the client did not send. No platform service writes one (Go's `time.Time` and
//!   Kubernetes' timestamps cannot hold a leap second).
//!
//! The fixed width also makes the text sort in time order, which the SQLite store relies on.

use chrono::{DateTime, Datelike, SecondsFormat, SubsecRound, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// Why a text is not a timestamp of the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("not an RFC 3339 timestamp: {0}")]
    Format(#[from] chrono::ParseError),
    #[error("a leap second (:60) cannot be stored; use :59.999999 or the next minute")]
    LeapSecond,
    #[error("the year must be from 0001 to 9999")]
    YearOutOfRange,
}

/// Formats a timestamp in the canonical form, e.g. `2026-11-27T16:49:13.123456Z`.
pub fn format(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses RFC 3339 text (any offset) into UTC, truncated to microseconds; refuses what no store
/// can give back as it was hashed (see the module docs).
pub fn parse(text: &str) -> Result<DateTime<Utc>, TimestampError> {
    let parsed = DateTime::parse_from_rfc3339(text)?;
    // chrono keeps a leap second as a nanosecond count of a second or more.
    if parsed.nanosecond() >= 1_000_000_000 {
        return Err(TimestampError::LeapSecond);
    }
    let utc = parsed.with_timezone(&Utc).trunc_subsecs(6);
    if !(1..=9999).contains(&utc.year()) {
        return Err(TimestampError::YearOutOfRange);
    }
    Ok(utc)
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

    #[test]
    fn a_leap_second_is_refused_with_or_without_an_offset() {
        for text in [
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5Z",
            "2017-01-01T00:59:60+01:00",
        ] {
            assert_eq!(parse(text), Err(TimestampError::LeapSecond), "{text}");
        }
    }

    #[test]
    fn years_outside_one_to_9999_in_utc_are_refused() {
        assert_eq!(
            parse("0000-12-31T12:00:00Z"),
            Err(TimestampError::YearOutOfRange)
        );
        // Year 0001 in the offset's time, year 0000 in UTC.
        assert_eq!(
            parse("0001-01-01T00:30:00+01:00"),
            Err(TimestampError::YearOutOfRange)
        );
        assert_eq!(
            parse("9999-12-31T23:30:00-01:00"),
            Err(TimestampError::YearOutOfRange)
        );
        assert!(parse("0001-01-01T00:00:00Z").is_ok());
        assert!(parse("9999-12-31T23:59:59.999999Z").is_ok());
    }
}
