//! Kubernetes ServiceAccount tokens: authenticated by the API server's TokenReview
//! (`authentication.k8s.io/v1`, with the audience this service is configured for), authorized by
//! its SubjectAccessReview on the virtual resources of `audit.kubernaut.ai`.
//!
//! Both reviews are cached, by the token's SHA-256 and by (user, verb, resource), for a short
//! time in bounded caches, answers that refuse included (so a flood of bad tokens does not become
//! a flood of reviews). While the API server cannot be reached a cached answer holds until it
//! expires; a token or a question not cached is answered 503, not 401: the client keeps its
//! event and retries, nothing is lost and nothing is let in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

use super::{AuthError, Principal, Role, Via};

/// The API group of the virtual resources reviewed.
pub const GROUP: &str = "audit.kubernaut.ai";

/// What the API server says of a reviewed principal, kept for its access reviews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The reviews' settings.
#[derive(Debug, Clone)]
pub struct ReviewSettings {
    /// The audience the tokens must be issued for.
    pub audience: String,
    /// How long a review's answer is kept.
    pub cache_ttl: Duration,
    /// Most answers kept (per cache).
    pub cache_size: u64,
    /// Event-type prefixes per principal (`system:serviceaccount:<ns>:<name>`); a principal not
    /// listed may write any type.
    pub write_scopes: BTreeMap<String, Vec<String>>,
}

/// The reviewer: a client of the API server and the two caches.
pub struct Reviews {
    client: kube::Client,
    settings: ReviewSettings,
    tokens: moka::sync::Cache<[u8; 32], Option<Arc<Principal>>>,
    access: moka::sync::Cache<(String, &'static str, &'static str), bool>,
}

impl Reviews {
    pub fn new(client: kube::Client, settings: ReviewSettings) -> Reviews {
        Reviews {
            tokens: moka::sync::Cache::builder()
                .max_capacity(settings.cache_size)
                .time_to_live(settings.cache_ttl)
                .build(),
            access: moka::sync::Cache::builder()
                .max_capacity(settings.cache_size)
                .time_to_live(settings.cache_ttl)
                .build(),
            client,
            settings,
        }
    }

    /// The principal of `token`: `Ok(None)` when the API server does not authenticate it (for
    /// the audience), an error when it cannot be asked and the answer is not cached.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Arc<Principal>>, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(known) = self.tokens.get(&key) {
            return Ok(known);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: Some(vec![self.settings.audience.clone()]),
            },
            ..TokenReview::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| unavailable("TokenReview", e))?;
        let status = answer.status.unwrap_or_default();
        let audience_ok = status
            .audiences
            .as_ref()
            .is_none_or(|a| a.contains(&self.settings.audience));
        let principal = match (status.authenticated, status.user, audience_ok) {
            (Some(true), Some(user), true) => user.username.map(|name| {
                let scopes = self.settings.write_scopes.get(&name).cloned();
                Arc::new(
                    Principal::new(name, Via::ServiceAccount, BTreeSet::new(), scopes)
                        .with_identity(Identity {
                            uid: user.uid,
                            groups: user.groups.unwrap_or_default(),
                            extra: user.extra.unwrap_or_default(),
                        }),
                )
            }),
            _ => None,
        };
        self.tokens.insert(key, principal.clone());
        Ok(principal)
    }

    /// Whether the API server allows `principal` what `role` means on the route `template`
    /// (see [`review_of`]).
    pub async fn allows(
        &self,
        principal: &Principal,
        role: Role,
        template: &str,
    ) -> Result<bool, AuthError> {
        let (verb, resource) = review_of(role, template);
        let key = (principal.name.clone(), verb, resource);
        if let Some(allowed) = self.access.get(&key) {
            return Ok(allowed);
        }
        let identity = principal.identity().cloned().unwrap_or(Identity {
            uid: None,
            groups: Vec::new(),
            extra: BTreeMap::new(),
        });
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(principal.name.clone()),
                uid: identity.uid,
                groups: Some(identity.groups),
                extra: Some(identity.extra),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(GROUP.to_string()),
                    resource: Some(resource.to_string()),
                    verb: Some(verb.to_string()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| unavailable("SubjectAccessReview", e))?;
        let allowed = answer
            .status
            .is_some_and(|s| s.allowed && s.denied != Some(true));
        self.access.insert(key, allowed);
        Ok(allowed)
    }
}

/// What a role asks the API server on a route: writers `create events`, readers `get events`,
/// administrators `update legalholds` (the hold routes) or `update dlq` (the queue's).
pub fn review_of(role: Role, template: &str) -> (&'static str, &'static str) {
    match role {
        Role::Writer => ("create", "events"),
        Role::Reader => ("get", "events"),
        Role::Admin if template.contains("/legal-hold") => ("update", "legalholds"),
        Role::Admin => ("update", "dlq"),
    }
}

fn unavailable(review: &str, error: kube::Error) -> AuthError {
    tracing::warn!(%error, review, "the Kubernetes API server did not answer a review");
    AuthError::Unavailable(format!(
        "the credential cannot be checked now (the Kubernetes API server did not answer the {review}); retry shortly"
    ))
}

/// A client of the API server: the kubeconfig given, else the in-cluster configuration (or the
/// local kubeconfig, as kube infers it).
///
/// A review is not retried here and waits at most a few seconds: a request whose token cannot be
/// checked is answered 503 at once, and its client retries (kube's own retry of 503s and 429s
/// would hold the request for as long).
pub async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let mut config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer().await?,
    };
    config.default_retry = false;
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(5));
    Ok(kube::Client::try_from(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_asks_its_verb_on_its_resource() {
        assert_eq!(
            review_of(Role::Writer, "/api/v1/audit/events"),
            ("create", "events")
        );
        assert_eq!(
            review_of(Role::Reader, "/api/v1/audit/export"),
            ("get", "events")
        );
        assert_eq!(
            review_of(Role::Admin, "/api/v1/audit/legal-hold/{correlation_id}"),
            ("update", "legalholds")
        );
        assert_eq!(
            review_of(Role::Admin, "/api/v1/admin/dlq/replay"),
            ("update", "dlq")
        );
    }
}
