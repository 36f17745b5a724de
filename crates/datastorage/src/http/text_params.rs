//! Every text parameter of every route, path and query, checked in one place before a handler
//! sees it.
//!
//! A parameter must decode to UTF-8 without NUL: PostgreSQL cannot hold U+0000 in text, and a
//! filter holding it would reach the database only to fail there. A query parameter may be
//! given once: with `?limit=1&limit=1000` one reader takes the first and another the last. Each
//! refusal is a 400 problem naming the parameter.

use audit_model::{FieldErrors, Reason, NUL_MESSAGE as NUL};
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode;

use super::problem::ApiError;

const NOT_UTF8: &str = "must be percent-encoded UTF-8";

/// Route middleware: refuses a path or query parameter that no handler could use.
pub async fn check(
    path: Result<RawPathParams, RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    let mut errors = FieldErrors::default();
    match path {
        Ok(params) => {
            for (name, value) in &params {
                if value.contains('\0') {
                    errors.add(name, Reason::InvalidValue, NUL);
                }
            }
        }
        Err(_) => errors.add("path", Reason::InvalidFormat, NOT_UTF8),
    }
    if let Some(query) = req.uri().query() {
        check_query(query, &mut errors);
    }
    if errors.is_empty() {
        next.run(req).await
    } else {
        ApiError::validation(&errors).into_response()
    }
}

/// Records every bad parameter of a query string.
fn check_query(query: &str, errors: &mut FieldErrors) {
    let mut seen = std::collections::HashSet::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(name) = decode(name) else {
            errors.add(
                String::from_utf8_lossy(name.as_bytes()),
                Reason::InvalidFormat,
                NOT_UTF8,
            );
            continue;
        };
        if name.contains('\0') {
            errors.add(name.replace('\0', "\\u0000"), Reason::InvalidValue, NUL);
            continue;
        }
        match decode(value) {
            None => errors.add(&name, Reason::InvalidFormat, NOT_UTF8),
            Some(v) if v.contains('\0') => errors.add(&name, Reason::InvalidValue, NUL),
            Some(_) => {}
        }
        if !seen.insert(name.clone()) {
            errors.add(
                &name,
                Reason::DuplicateKey,
                "is given more than once; give each parameter once",
            );
        }
    }
}

/// A query component as `application/x-www-form-urlencoded` decodes it (`+` is a space).
fn decode(component: &str) -> Option<String> {
    let spaced = component.replace('+', " ");
    percent_decode(spaced.as_bytes())
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(query: &str) -> Vec<(String, Reason)> {
        let mut errors = FieldErrors::default();
        check_query(query, &mut errors);
        errors
            .iter()
            .map(|(k, e)| (k.to_string(), e.reason))
            .collect()
    }

    #[test]
    fn nul_bad_encoding_and_repeats_are_named() {
        assert_eq!(
            refused("correlation_id=a%00b&limit=5"),
            [("correlation_id".to_string(), Reason::InvalidValue)]
        );
        assert_eq!(
            refused("actor_id=%FF"),
            [("actor_id".to_string(), Reason::InvalidFormat)]
        );
        assert_eq!(
            refused("limit=1&limit=1000"),
            [("limit".to_string(), Reason::DuplicateKey)]
        );
        assert!(refused("correlation_id=rr+1&since=24h&x=%C3%A9").is_empty());
    }
}
