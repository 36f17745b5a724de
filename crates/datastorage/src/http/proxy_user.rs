//! The identity an authenticating proxy in front of the service vouches for.
//!
//! The platform's deployments put an OAuth proxy in front of Data Storage; it authenticates the
//! caller and passes the identity on in a header (`X-Auth-Request-User`). The header is trusted
//! only when the deployment names it (`api.trusted_user_header`): anyone can send any header,
//! so without the setting it is never read. With it, the routes that record who acted (a legal
//! hold placed or released) require it, and an event written by a person (not a Kubernetes
//! ServiceAccount, whose calling service names its own actor) is attributed to that person.

use std::convert::Infallible;

use audit_model::{Problem, ProblemKind};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::http::problem::ApiError;
use crate::http::AppState;

/// What the trusted header says, when the deployment trusts one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyUser {
    /// No header is trusted (`api.trusted_user_header` is unset).
    NotTrusted,
    /// The trusted header's value (`None` when the request lacks it).
    Trusted {
        header: String,
        user: Option<String>,
    },
}

/// Kubernetes ServiceAccount identities, as the API server names them.
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

impl ProxyUser {
    /// Who acts: the trusted identity (required when a header is trusted), else `claimed` (what
    /// the body says), else `unknown`.
    pub fn who(&self, claimed: Option<String>) -> Result<String, Unauthorized> {
        match self {
            ProxyUser::NotTrusted => Ok(claimed.unwrap_or_else(|| "unknown".into())),
            ProxyUser::Trusted { user: Some(u), .. } => Ok(u.clone()),
            ProxyUser::Trusted { header, user: None } => Err(Unauthorized(header.clone())),
        }
    }

    /// The person an event is attributed to: a trusted identity that is not a ServiceAccount.
    pub fn person(&self) -> Option<&str> {
        match self {
            ProxyUser::Trusted { user: Some(u), .. } if !u.starts_with(SERVICE_ACCOUNT_PREFIX) => {
                Some(u)
            }
            _ => None,
        }
    }
}

/// 401: the request did not come through the authenticating proxy (it lacks the named header).
#[derive(Debug)]
pub struct Unauthorized(String);

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let mut response = ApiError::from(Problem::new(
            ProblemKind::Unauthorized,
            format!(
                "the {} header, which the authenticating proxy in front of this service sets, is missing",
                self.0
            ),
        ))
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"datastorage\""),
        );
        response
    }
}

impl FromRequestParts<AppState> for ProxyUser {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let Some(name) = &state.trusted_user_header else {
            return Ok(ProxyUser::NotTrusted);
        };
        let user = parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        Ok(ProxyUser::Trusted {
            header: name.to_string(),
            user,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trusted_identity_wins_and_is_required() {
        let untrusted = ProxyUser::NotTrusted;
        assert_eq!(untrusted.who(Some("alice".into())).unwrap(), "alice");
        assert_eq!(untrusted.who(None).unwrap(), "unknown");
        assert_eq!(untrusted.person(), None);
        let trusted = |user: Option<&str>| ProxyUser::Trusted {
            header: "x-auth-request-user".into(),
            user: user.map(String::from),
        };
        assert_eq!(
            trusted(Some("bob")).who(Some("alice".into())).unwrap(),
            "bob"
        );
        assert_eq!(trusted(Some("bob")).person(), Some("bob"));
        let sa = trusted(Some("system:serviceaccount:kubernaut:gateway"));
        assert_eq!(sa.person(), None);
        let missing = trusted(None)
            .who(Some("alice".into()))
            .unwrap_err()
            .into_response();
        assert_eq!(missing.status(), 401);
        assert!(missing.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
