//! Who is calling and what they may do: authentication of bearer tokens (a static tokens file,
//! Kubernetes ServiceAccount tokens), the three roles, checked per route from one table
//! ([`policy`]), and the event types each writer may write.
//!
//! Fail closed: with authentication on, a request without a credential the service can check
//! is refused (401), a credential that cannot be checked right now (the API server is down and
//! the token is not cached) is answered 503 so that the client keeps its event and retries, and
//! a route without an entry in the table is refused to everyone. See `docs/security.md`.

pub mod kubernetes;
pub mod limits;
pub mod policy;
pub mod tokens;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What a principal may do; each route needs one (see [`policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Writes events: `POST` events, batches and the six typed records.
    Writer,
    /// Reads the log: events, records, proofs, checkpoints, exports, chain checks, holds.
    Reader,
    /// Places and releases legal holds, administers the dead-letter queue; reads as a reader.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Writer, Role::Reader, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Admin => "admin",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a principal was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Authentication is disabled: the caller is `anonymous` and may do everything.
    Disabled,
    /// A token of the tokens file.
    StaticToken,
    /// A Kubernetes ServiceAccount token, reviewed by the API server.
    ServiceAccount,
    /// A client certificate verified by the listener's client CA, named in the tokens file.
    Certificate,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Recorded as `submitted_by` on every event it writes.
    pub name: String,
    pub via: Via,
    roles: BTreeSet<Role>,
    /// The event-type prefixes it may write; `None`: any.
    scopes: Option<Vec<String>>,
    /// What the API server said of a ServiceAccount (for its access reviews).
    identity: Option<kubernetes::Identity>,
}

/// The principal of every request when authentication is disabled.
pub const ANONYMOUS: &str = "anonymous";

/// The principal of the events the service writes itself (legal holds, retention runs, access).
pub const SERVICE_PRINCIPAL: &str = "datastorage";

impl Principal {
    pub fn new(
        name: impl Into<String>,
        via: Via,
        roles: impl IntoIterator<Item = Role>,
        scopes: Option<Vec<String>>,
    ) -> Principal {
        Principal {
            name: name.into(),
            via,
            roles: roles.into_iter().collect(),
            scopes,
            identity: None,
        }
    }

    /// The principal with what the API server said of it.
    pub fn with_identity(mut self, identity: kubernetes::Identity) -> Principal {
        self.identity = Some(identity);
        self
    }

    pub fn identity(&self) -> Option<&kubernetes::Identity> {
        self.identity.as_ref()
    }

    /// The caller when authentication is disabled: `anonymous`, every role, any event type.
    pub fn anonymous() -> Arc<Principal> {
        static ANON: std::sync::LazyLock<Arc<Principal>> = std::sync::LazyLock::new(|| {
            Arc::new(Principal::new(ANONYMOUS, Via::Disabled, Role::ALL, None))
        });
        ANON.clone()
    }

    /// Whether the principal holds `role` (an admin also reads).
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role) || (role == Role::Reader && self.roles.contains(&Role::Admin))
    }

    pub fn roles(&self) -> impl Iterator<Item = Role> + '_ {
        self.roles.iter().copied()
    }

    /// The event-type prefixes it may write (`None`: any).
    pub fn scopes(&self) -> Option<&[String]> {
        self.scopes.as_deref()
    }

    /// Whether it may write an event of `event_type`.
    pub fn may_write(&self, event_type: &str) -> bool {
        self.scopes
            .as_ref()
            .is_none_or(|prefixes| prefixes.iter().any(|p| event_type.starts_with(p.as_str())))
    }

    /// Why it may not write an event of `event_type`, for the answer.
    pub fn scope_refusal(&self, event_type: &str) -> String {
        format!(
            "{} may write only event types starting with {}; {event_type:?} is outside them",
            self.name,
            self.scopes
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// Who acts: an authenticated principal is who it is, whatever a body claims; without
    /// authentication, the claim (a trusted proxy's header wins over both, see `proxy_user`).
    pub fn claim_or_name(&self, claimed: Option<String>) -> Option<String> {
        match self.via {
            Via::Disabled => claimed,
            _ => Some(self.name.clone()),
        }
    }

    /// The writer the events it writes are attested for.
    pub fn writer(&self) -> audit_model::Writer<'_> {
        audit_model::Writer {
            principal: &self.name,
            authenticated: self.via != Via::Disabled,
        }
    }
}

/// Why a request has no principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credential, a malformed one, an unknown or expired one: 401.
    Unauthenticated(String),
    /// The credential cannot be checked now (the API server is unreachable and the token is
    /// not cached): 503, so that the client keeps the event and retries.
    Unavailable(String),
}

/// The authenticators enabled by configuration, tried in order: the static tokens (a token
/// made for the file, `dsat_…`, goes no further), then the API server's TokenReview.
pub struct Authenticators {
    pub tokens: Option<Arc<tokens::StaticTokens>>,
    pub kubernetes: Option<kubernetes::Reviews>,
}

impl Authenticators {
    /// The principal of a bearer token.
    pub async fn bearer(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        if let Some(tokens) = &self.tokens {
            if let Some(principal) = tokens.authenticate(token)? {
                return Ok(principal);
            }
        }
        if let Some(reviews) = &self.kubernetes {
            if !token.starts_with(tokens::TOKEN_PREFIX) {
                if let Some(principal) = reviews.authenticate(token).await? {
                    return Ok(principal);
                }
            }
        }
        Err(AuthError::Unauthenticated(
            "the bearer token is not known (or has expired)".into(),
        ))
    }

    /// The principal of a verified client certificate, by its entry in the tokens file.
    pub fn certificate(&self, subject: &str) -> Result<Arc<Principal>, AuthError> {
        self.tokens
            .as_ref()
            .map(|tokens| tokens.certificate(subject))
            .transpose()?
            .flatten()
            .ok_or_else(|| {
                AuthError::Unauthenticated(format!(
                    "the client certificate of {subject:?} has no entry in the tokens file"
                ))
            })
    }

    /// Whether `principal` holds `role` on the route `template`: from its entry for a static
    /// token, from the API server's SubjectAccessReview for a ServiceAccount.
    pub async fn allows(
        &self,
        principal: &Principal,
        role: Role,
        template: &str,
    ) -> Result<bool, AuthError> {
        match (&principal.via, &self.kubernetes) {
            (Via::ServiceAccount, Some(reviews)) => reviews.allows(principal, role, template).await,
            _ => Ok(principal.has(role)),
        }
    }
}

/// How requests are authenticated.
#[derive(Clone)]
pub enum Auth {
    /// Every caller is [`Principal::anonymous`] (a loopback listener, or `--auth disabled`).
    Disabled,
    Required(Arc<Authenticators>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admin_reads_but_does_not_write() {
        let admin = Principal::new("ops", Via::StaticToken, [Role::Admin], None);
        assert!(admin.has(Role::Admin) && admin.has(Role::Reader));
        assert!(!admin.has(Role::Writer));
        let writer = Principal::new("nc", Via::StaticToken, [Role::Writer], None);
        assert!(!writer.has(Role::Reader));
    }

    #[test]
    fn scopes_are_prefixes_of_the_event_type() {
        let scoped = Principal::new(
            "notification-controller",
            Via::StaticToken,
            [Role::Writer],
            Some(vec!["notification.".into()]),
        );
        assert!(scoped.may_write("notification.message.sent"));
        assert!(!scoped.may_write("workflowexecution.workflow.started"));
        assert!(!scoped.may_write("notification"));
        let refusal = scoped.scope_refusal("workflowexecution.x");
        assert!(refusal.contains("\"notification.\"") && refusal.contains("workflowexecution.x"));
        let any = Principal::new("gw", Via::StaticToken, [Role::Writer], None);
        assert!(any.may_write("workflowexecution.workflow.started"));
        assert!(Principal::anonymous().may_write("anything"));
        assert!(!Principal::anonymous().writer().authenticated);
        assert!(scoped.writer().authenticated);
    }
}
