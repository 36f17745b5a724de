//! Query parameters shared by the list endpoints: time range, page size, unknown parameters.

use std::collections::HashMap;

use audit_model::{FieldErrors, Reason};
use chrono::{DateTime, Utc};

/// Takes `since` and `until` (RFC 3339, or a duration back from `now` such as `30m`, `24h`, `7d`).
pub(crate) fn time_range(
    params: &mut HashMap<String, String>,
    errors: &mut FieldErrors,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let mut take = |key: &str| {
        let text = params.remove(key)?;
        let parsed = parse_time(&text, now);
        if parsed.is_none() {
            errors.add(
                key,
                Reason::InvalidFormat,
                "must be an RFC 3339 time or a duration such as 30m, 24h, 7d",
            );
        }
        parsed
    };
    (take("since"), take("until"))
}

/// Takes `limit` (1..1000); `None` when absent or refused.
pub(crate) fn limit(params: &mut HashMap<String, String>, errors: &mut FieldErrors) -> Option<u32> {
    let text = params.remove("limit")?;
    match text.parse::<u32>() {
        Ok(n) if (1..=1000).contains(&n) => Some(n),
        _ => {
            errors.add(
                "limit",
                Reason::OutOfRange,
                "must be an integer from 1 to 1000",
            );
            None
        }
    }
}

/// Reports every parameter left over as unknown.
pub(crate) fn reject_unknown(params: HashMap<String, String>, errors: &mut FieldErrors) {
    for key in params.into_keys() {
        errors.add(key, Reason::UnknownField, "is not a known parameter");
    }
}

/// An RFC 3339 time, or a duration back from `now`; a duration reaching before year 0001 is
/// taken as the start of year 0001 (every store keeps years 0001-9999).
fn parse_time(text: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Ok(t) = audit_model::timestamp::parse(text) {
        return Some(t);
    }
    let d = humantime::parse_duration(text).ok()?;
    let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    Some(clamp_micros(now.timestamp_micros().saturating_sub(micros)))
}

/// The time `micros` after the epoch, within the years 0001-9999 every store keeps.
pub(crate) fn clamp_micros(micros: i64) -> DateTime<Utc> {
    // 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z.
    const FIRST: i64 = -62_135_596_800_000_000;
    const LAST: i64 = 253_402_300_799_999_999;
    DateTime::from_timestamp_micros(micros.clamp(FIRST, LAST)).unwrap_or_default()
}
