//! Who may call each route: one table, keyed by method and route template. The router's routes
//! and the API document's operations are checked against it by tests, and a route missing from
//! it is refused to everyone (403), so a new route cannot be open by omission.

use std::collections::HashMap;

use axum::http::Method;

use super::Role;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: liveness, readiness, the API document.
    Open,
    /// Prometheus' scrape: open when `auth.public_metrics` is set, else readers.
    Metrics,
    /// What witnesses and auditors fetch (the public key, checkpoints, consistency proofs):
    /// open when `auth.public_checkpoints` is set, else readers.
    Checkpoints,
    /// A principal holding the role.
    Role(Role),
}

use Access::{Checkpoints, Metrics, Open};
const WRITER: Access = Access::Role(Role::Writer);
const READER: Access = Access::Role(Role::Reader);
const ADMIN: Access = Access::Role(Role::Admin);

/// Every route of the service and what it needs.
pub const ROUTES: &[(Method, &str, Access)] = &[
    (Method::POST, "/api/v1/audit/events", WRITER),
    (Method::GET, "/api/v1/audit/events", READER),
    (Method::GET, "/api/v1/audit/events/stream", READER),
    (Method::POST, "/api/v1/audit/events/batch", WRITER),
    (Method::GET, "/api/v1/audit/events/{event_id}", READER),
    (Method::GET, "/api/v1/audit/events/{event_id}/proof", READER),
    (Method::POST, "/api/v1/audit/notifications", WRITER),
    (Method::GET, "/api/v1/audit/notifications", READER),
    (Method::GET, "/api/v1/audit/notifications/{id}", READER),
    (Method::POST, "/api/v1/audit/signal-processing", WRITER),
    (Method::GET, "/api/v1/audit/signal-processing", READER),
    (Method::GET, "/api/v1/audit/signal-processing/{id}", READER),
    (Method::POST, "/api/v1/audit/orchestration", WRITER),
    (Method::GET, "/api/v1/audit/orchestration", READER),
    (Method::GET, "/api/v1/audit/orchestration/{id}", READER),
    (Method::POST, "/api/v1/audit/ai-decisions", WRITER),
    (Method::GET, "/api/v1/audit/ai-decisions", READER),
    (Method::POST, "/api/v1/audit/ai-decisions/similar", READER),
    (Method::GET, "/api/v1/audit/ai-decisions/{id}", READER),
    (Method::POST, "/api/v1/audit/executions", WRITER),
    (Method::GET, "/api/v1/audit/executions", READER),
    (Method::GET, "/api/v1/audit/executions/{id}", READER),
    (Method::POST, "/api/v1/audit/effectiveness", WRITER),
    (Method::GET, "/api/v1/audit/effectiveness", READER),
    (Method::GET, "/api/v1/audit/effectiveness/{id}", READER),
    (Method::GET, "/api/v1/audit/checkpoints", Checkpoints),
    (Method::GET, "/api/v1/audit/checkpoints/latest", Checkpoints),
    (
        Method::GET,
        "/api/v1/audit/checkpoints/public-key",
        Checkpoints,
    ),
    (Method::GET, "/api/v1/audit/consistency", Checkpoints),
    (Method::POST, "/api/v1/audit/verify-chain", READER),
    (Method::GET, "/api/v1/audit/export", READER),
    (
        Method::GET,
        "/api/v1/effectiveness/{correlation_id}",
        READER,
    ),
    (
        Method::POST,
        "/api/v1/audit/remediation-requests/{correlation_id}/reconstruct",
        READER,
    ),
    (Method::GET, "/api/v1/remediation-history/context", READER),
    (
        Method::GET,
        "/api/v1/audit/remediations/{correlation_id}/timeline",
        READER,
    ),
    (Method::POST, "/api/v1/audit/legal-hold", ADMIN),
    (Method::GET, "/api/v1/audit/legal-hold", READER),
    (
        Method::DELETE,
        "/api/v1/audit/legal-hold/{correlation_id}",
        ADMIN,
    ),
    (Method::GET, "/api/v1/admin/dlq", ADMIN),
    (Method::GET, "/api/v1/admin/dlq/dead-letters", ADMIN),
    (Method::POST, "/api/v1/admin/dlq/replay", ADMIN),
    (
        Method::POST,
        "/api/v1/admin/dlq/dead-letters/{id}/retry",
        ADMIN,
    ),
    (Method::GET, "/api/v1/openapi.json", Open),
    (Method::GET, "/health/live", Open),
    (Method::GET, "/health/ready", Open),
    (Method::GET, "/healthz", Open),
    (Method::GET, "/ui", Open),
    (Method::GET, "/ui/", Open),
    (Method::GET, "/ui/{file}", Open),
    (Method::GET, "/readyz", Open),
    (Method::GET, "/metrics", Metrics),
];

/// What `method` on the route `template` needs (`HEAD` as `GET`); `None` for a route the
/// table does not know. Looked up in a map made once from [`ROUTES`].
pub fn access(method: &Method, template: &str) -> Option<Access> {
    static BY_ROUTE: std::sync::LazyLock<HashMap<(Method, &'static str), Access>> =
        std::sync::LazyLock::new(|| {
            ROUTES
                .iter()
                .map(|(m, t, a)| ((m.clone(), *t), *a))
                .collect()
        });
    let method = if method == Method::HEAD {
        Method::GET
    } else {
        method.clone()
    };
    BY_ROUTE.get(&(method, template)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for (m, t, _) in ROUTES {
            assert!(seen.insert((m.clone(), *t)), "{m} {t} is listed twice");
        }
        assert_eq!(
            access(&Method::HEAD, "/health/live"),
            Some(Open),
            "HEAD is GET"
        );
        assert_eq!(access(&Method::PUT, "/api/v1/audit/events"), None);
    }
}
