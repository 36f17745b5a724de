//! Query parameters, read into the type the API document shows.
//!
//! Each list route declares its parameters once, as a struct deriving `Deserialize` (what the
//! handler reads) and `IntoParams` (what the document shows). [`Params`] reads the query string
//! into it and, when that fails, names every bad or unknown parameter at once: each parameter
//! is read alone into the same type, so the errors come from the same rules. The value types
//! below carry the rules the document states (`limit` 1–1000, a time or a duration back, a
//! non-negative integer, …) with their reason and message.

use std::time::Duration;

use audit_model::{FieldErrors, Reason};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::Required;
use utoipa::IntoParams;

use super::problem::ApiError;

/// Separates a refusal's reason from its message inside a deserialization error.
const REASON_MARK: char = '\u{1f}';

/// A query string read into `T`; every bad or unknown parameter is refused at once (400).
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + IntoParams, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        read(parts.uri.query().unwrap_or_default())
            .map(Params)
            .map_err(|e| ApiError::validation(&e))
    }
}

/// Reads a query string into `T`, or names every parameter it refuses: each one given that
/// `T` refuses, and each one its document marks required that is not given.
pub(crate) fn read<T: DeserializeOwned + IntoParams>(query: &str) -> Result<T, FieldErrors> {
    let given = || form_urlencoded::parse(query.as_bytes());
    let mut errors = FieldErrors::default();
    for parameter in T::into_params(|| Some(ParameterIn::Query)) {
        let required = matches!(parameter.required, Required::True);
        if required && !given().any(|(name, _)| name == parameter.name) {
            errors.add(parameter.name, Reason::Required, "is required");
        }
    }
    let whole = match serde_urlencoded::from_str::<T>(query) {
        Ok(params) if errors.is_empty() => return Ok(params),
        Ok(_) => return Err(errors),
        Err(e) => e,
    };
    let before = errors.len();
    for (name, value) in given() {
        let one = serde_urlencoded::to_string([(&name, &value)]).unwrap_or_default();
        if let Err(e) = serde_urlencoded::from_str::<T>(&one) {
            let (reason, message) = refusal(&e.to_string());
            errors.add(name, reason, message);
        }
    }
    if errors.len() == before {
        // Every parameter is fine alone; the whole was refused for another reason.
        errors.add("query", Reason::InvalidValue, whole.to_string());
    }
    Err(errors)
}

/// The reason and message of one parameter's refusal.
fn refusal(error: &str) -> (Reason, String) {
    if let Some((reason, message)) = error.split_once(REASON_MARK) {
        let reason = [
            Reason::InvalidFormat,
            Reason::InvalidValue,
            Reason::OutOfRange,
        ]
        .into_iter()
        .find(|r| r.as_str() == reason)
        .unwrap_or(Reason::InvalidValue);
        return (reason, message.to_string());
    }
    if error.starts_with("unknown field") {
        return (Reason::UnknownField, "is not a known parameter".into());
    }
    (Reason::InvalidValue, error.to_string())
}

/// A deserialization error carrying a refusal's reason and message.
pub(crate) fn refuse<E: serde::de::Error>(reason: Reason, message: &str) -> E {
    E::custom(format!("{}{REASON_MARK}{message}", reason.as_str()))
}

/// A page size: 1 to 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub u32);

impl Limit {
    /// The page size asked for, or 100.
    pub fn or_default(limit: Option<Limit>) -> u32 {
        limit.map_or(100, |l| l.0)
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(Limit(n)),
            _ => Err(refuse(
                Reason::OutOfRange,
                "must be an integer from 1 to 1000",
            )),
        }
    }
}

/// A point in time: an RFC 3339 time, or a duration back from now such as `30m`, `24h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeParam {
    At(DateTime<Utc>),
    Ago(Duration),
}

impl TimeParam {
    /// The time meant, counting a duration back from `now`; one reaching before year 0001 is
    /// taken as the start of year 0001 (every store keeps years 0001-9999).
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            TimeParam::At(t) => t,
            TimeParam::Ago(d) => {
                let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
                clamp_micros(now.timestamp_micros().saturating_sub(micros))
            }
        }
    }
}

impl<'de> Deserialize<'de> for TimeParam {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if let Ok(t) = audit_model::timestamp::parse(&text) {
            return Ok(TimeParam::At(t));
        }
        humantime::parse_duration(&text)
            .map(TimeParam::Ago)
            .map_err(|_| {
                refuse(
                    Reason::InvalidFormat,
                    "must be an RFC 3339 time or a duration such as 30m, 24h, 7d",
                )
            })
    }
}

/// An integer from 0 to 2^63 − 1 (a tree size, a seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonNegative(pub u64);

impl<'de> Deserialize<'de> for NonNegative {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<u64>()
            .ok()
            .filter(|n| *n <= i64::MAX as u64)
            .map(NonNegative)
            .ok_or_else(|| refuse(Reason::InvalidFormat, "must be a non-negative integer"))
    }
}

/// A position in a list ordered by an integer (a seq, a tree size): 1 to 18 digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionCursor(pub i64);

impl PositionCursor {
    pub fn encode(position: i64) -> String {
        position.to_string()
    }
}

impl<'de> Deserialize<'de> for PositionCursor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let valid = (1..=18).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
        valid
            .then(|| text.parse().ok().map(PositionCursor))
            .flatten()
            .ok_or_else(|| refuse(Reason::InvalidFormat, "is not a cursor of this list"))
    }
}

/// `true` or `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "true" => Ok(Flag(true)),
            "false" => Ok(Flag(false)),
            _ => Err(refuse(Reason::InvalidValue, "must be true or false")),
        }
    }
}

/// The order of a page of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

impl<'de> Deserialize<'de> for SortOrder {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "asc" => Ok(SortOrder::Asc),
            "desc" => Ok(SortOrder::Desc),
            _ => Err(refuse(Reason::InvalidValue, "must be asc or desc")),
        }
    }
}

/// The time `micros` after the epoch, within the years 0001-9999 every store keeps.
pub(crate) fn clamp_micros(micros: i64) -> DateTime<Utc> {
    // 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z.
    const FIRST: i64 = -62_135_596_800_000_000;
    const LAST: i64 = 253_402_300_799_999_999;
    DateTime::from_timestamp_micros(micros.clamp(FIRST, LAST)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq, IntoParams)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[param(value_type = Option<u32>)]
        limit: Option<Limit>,
        #[param(value_type = Option<String>)]
        since: Option<TimeParam>,
        #[param(value_type = Option<SortOrder>)]
        order: Option<SortOrder>,
        name: Option<String>,
        #[param(value_type = u32, required = true)]
        needed: Option<Limit>,
    }

    #[test]
    fn a_good_query_is_read_into_its_type() {
        let s: Sample = read("limit=5&since=24h&order=desc&name=a+b&needed=1").unwrap();
        assert_eq!(s.limit, Some(Limit(5)));
        assert_eq!(s.since, Some(TimeParam::Ago(Duration::from_secs(86_400))));
        assert_eq!(s.order, Some(SortOrder::Desc));
        assert_eq!(s.name.as_deref(), Some("a b"));
        assert_eq!(read::<Sample>("needed=2").unwrap().limit, None);
    }

    #[test]
    fn every_refused_parameter_is_named_with_its_reason() {
        let errors =
            read::<Sample>("limit=0&since=yesterday&order=up&colour=red&name=x").unwrap_err();
        let required = read::<Sample>("name=x").unwrap_err();
        assert_eq!(required.get("needed").unwrap().reason, Reason::Required);
        let got: Vec<(String, Reason)> = errors
            .iter()
            .map(|(k, e)| (k.to_string(), e.reason))
            .collect();
        assert_eq!(
            got,
            [
                ("colour".to_string(), Reason::UnknownField),
                ("limit".to_string(), Reason::OutOfRange),
                ("needed".to_string(), Reason::Required),
                ("order".to_string(), Reason::InvalidValue),
                ("since".to_string(), Reason::InvalidFormat),
            ]
        );
        assert_eq!(
            errors.get("limit").unwrap().message,
            "must be an integer from 1 to 1000"
        );
    }

    #[test]
    fn a_duration_back_reaching_before_year_one_is_its_start() {
        let now = audit_model::timestamp::parse("2026-01-08T00:00:00Z").unwrap();
        let week = TimeParam::Ago(Duration::from_secs(7 * 86_400)).resolve(now);
        assert_eq!(week.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        let ages = TimeParam::Ago(Duration::from_secs(u64::MAX)).resolve(now);
        assert_eq!(
            audit_model::timestamp::format(&ages),
            "0001-01-01T00:00:00.000000Z"
        );
    }
}
