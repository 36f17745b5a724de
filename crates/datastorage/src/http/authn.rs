//! Authentication and authorization of every routed request, before its parameters or body are
//! read: the route's entry in [`crate::auth::policy`] says what it needs, the bearer token (or,
//! without one, the connection's verified client certificate) says who calls. The principal is left in the request for the handler ([`Caller`]).

use std::sync::Arc;

use audit_model::{Problem, ProblemKind};
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::access::Denial;
use crate::auth::limits::{retry_after_seconds, Exceeded};
use crate::auth::policy::{self, Access};
use crate::auth::{Auth, AuthError, Principal, Role};
use crate::http::problem::ApiError;
use crate::http::AppState;
use crate::tls::PeerSubject;

/// The realm named in `WWW-Authenticate`.
const REALM: &str = "datastorage";

/// The principal of the request (anonymous where authentication is disabled).
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>);

/// The client's address, when the connection gave one.
fn client_address(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The client's address, for a handler.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &AppState,
    ) -> Result<Self, std::convert::Infallible> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Charges `events` more to the caller's rate limit (a batch, once its items are counted).
pub fn charge(
    state: &AppState,
    caller: &Principal,
    address: Option<IpAddr>,
    events: u32,
) -> Result<(), ApiError> {
    state
        .limits
        .principal(&caller.name, address, events)
        .map_err(|exceeded| {
            state.denials.note(Denial::RateLimited, caller.name.clone());
            too_many(exceeded)
        })
}

/// Who a refusal is counted against when no principal is known: the client's address.
fn by_address(address: Option<IpAddr>) -> String {
    address.map_or_else(
        || "address:unknown".to_string(),
        |ip| format!("address:{ip}"),
    )
}

/// 429 with `Retry-After`.
pub fn too_many(exceeded: Exceeded) -> ApiError {
    let seconds = retry_after_seconds(exceeded.retry_after);
    let detail = format!("the rate limit is exceeded; retry after {seconds} s");
    Problem::new(ProblemKind::TooManyRequests, detail)
        .with_extension("retry_after_seconds", seconds)
        .into()
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::new(ProblemKind::Internal, "the request was not authenticated")
        })
    }
}

/// Which routes are open without a credential, besides liveness, readiness and the document.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenRoutes {
    pub metrics: bool,
    pub checkpoints: bool,
}

/// Checks the caller against the route's entry; refuses with 401, 403 or 503.
pub async fn authorize(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // The template is shared (an `Arc`), not copied.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let template = matched.as_ref().map_or("", MatchedPath::as_str);
    let Some(access) = policy::access(req.method(), template) else {
        return forbidden(format!(
            "{} {template} has no entry in the access policy and is refused to everyone",
            req.method()
        ));
    };
    let open = &state.open_routes;
    let needed = match access {
        Access::Open => None,
        Access::Metrics if open.metrics => None,
        Access::Checkpoints if open.checkpoints => None,
        Access::Metrics | Access::Checkpoints => Some(Role::Reader),
        Access::Role(role) => Some(role),
    };
    let Some(needed) = needed else {
        return next.run(req).await;
    };
    let address = client_address(&req);
    if let Some(ip) = address {
        if let Err(exceeded) = state.limits.address(ip) {
            state.denials.note(Denial::RateLimited, by_address(address));
            return too_many(exceeded).into_response();
        }
    }
    let principal = match &state.auth {
        Auth::Disabled => Principal::anonymous(),
        Auth::Required(authenticators) => {
            let subject = req.extensions().get::<PeerSubject>().cloned();
            let credential = match (bearer(req.headers()), subject) {
                (Ok(token), _) => authenticators.bearer(token).await,
                // No token: the verified client certificate, if the connection presented one.
                (Err(Refusal { error: None, .. }), Some(PeerSubject(subject))) => {
                    authenticators.certificate(&subject)
                }
                (Err(Refusal { detail, error }), _) => {
                    state
                        .denials
                        .note(Denial::Unauthenticated, by_address(address));
                    return unauthorized(detail, error);
                }
            };
            let checked = match credential {
                Ok(principal) => authenticators
                    .allows(&principal, needed, template)
                    .await
                    .map(|allowed| (principal, allowed)),
                Err(e) => Err(e),
            };
            match checked {
                Ok((principal, true)) => principal,
                Ok((principal, false)) => {
                    state
                        .denials
                        .note(Denial::Forbidden, principal.name.clone());
                    return forbidden_role(&principal, needed, req.method(), template);
                }
                Err(AuthError::Unauthenticated(why)) => {
                    state
                        .denials
                        .note(Denial::Unauthenticated, by_address(address));
                    return unauthorized(&why, Some("invalid_token"));
                }
                Err(AuthError::Unavailable(why)) => return unavailable(&why),
            }
        }
    };
    if let Err(exceeded) = state.limits.principal(&principal.name, address, 1) {
        state
            .denials
            .note(Denial::RateLimited, principal.name.clone());
        return too_many(exceeded).into_response();
    }
    req.extensions_mut().insert(Caller(principal));
    next.run(req).await
}

/// Why a request carries no usable bearer token: the 401's detail and RFC 6750 error code.
struct Refusal {
    detail: &'static str,
    error: Option<&'static str>,
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Result<&str, Refusal> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Refusal {
            detail: "this route needs a credential: Authorization: Bearer <token>",
            error: None,
        });
    };
    let text = value.to_str().unwrap_or_default();
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Refusal {
            detail: "the Authorization header is not of the form `Bearer <token>`",
            error: Some("invalid_request"),
        });
    }
    Ok(token)
}

/// 401 with `WWW-Authenticate` (RFC 6750's error code when a credential was given).
fn unauthorized(detail: &str, error: Option<&str>) -> Response {
    let mut response =
        ApiError::from(Problem::new(ProblemKind::Unauthorized, detail)).into_response();
    let challenge = match error {
        Some(code) => format!("Bearer realm=\"{REALM}\", error=\"{code}\""),
        None => format!("Bearer realm=\"{REALM}\""),
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn forbidden(detail: String) -> Response {
    ApiError::new(ProblemKind::Forbidden, detail).into_response()
}

/// 403 naming the role the route needs.
fn forbidden_role(
    principal: &Principal,
    needed: Role,
    method: &axum::http::Method,
    template: &str,
) -> Response {
    ApiError::from(
        Problem::new(
            ProblemKind::Forbidden,
            format!(
                "{} may not {method} {template}: it needs the {needed} role",
                principal.name
            ),
        )
        .with_extension("required_role", needed.as_str())
        .with_extension("principal", principal.name.as_str()),
    )
    .into_response()
}

/// 503: the credential cannot be checked now; the client keeps its request and retries.
fn unavailable(detail: &str) -> Response {
    ApiError::new(ProblemKind::ServiceUnavailable, detail).into_response()
}

/// 403 for an event outside the writer's event types (counted for the access trail).
pub fn out_of_scope(state: &AppState, principal: &Principal, event_type: &str) -> ApiError {
    state
        .denials
        .note(Denial::Forbidden, principal.name.clone());
    Problem::new(ProblemKind::Forbidden, principal.scope_refusal(event_type))
        .with_extension("event_type", event_type)
        .with_extension("principal", principal.name.as_str())
        .into()
}
