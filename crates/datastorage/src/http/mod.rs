//! The HTTP API: router, shared state, middleware (request ids, body limit and budget, tracing).

pub mod admission;
pub mod extract;
pub mod openapi;
mod params;
pub mod problem;
pub mod routes;

use std::sync::Arc;

use audit_model::ProblemKind;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::dlq::DlqBackend;
use crate::ingest::IngestQueue;
use crate::replay::Replayer;
use crate::shutdown::Shutdown;
use crate::store::LogStore;
use problem::{ApiError, REQUEST_ID};
use routes::records;

/// What every handler can reach. Axum clones the state for every request, so it is one `Arc`
/// (cloning the fields one by one, the queue's sender among them, was 2 % of a request's CPU).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state behind [`AppState`].
pub struct Shared {
    pub queue: IngestQueue,
    pub store: Arc<dyn LogStore>,
    pub dlq: Arc<dyn DlqBackend>,
    pub replayer: Arc<Replayer>,
    pub shutdown: Shutdown,
    pub metrics: PrometheusHandle,
    pub batch_max_items: usize,
    /// Required length of an AI decision's embedding.
    pub embedding_dimension: usize,
    /// The checkpoints' public key (None when checkpoints are disabled).
    pub verifier: Option<Arc<audit_model::checkpoint::CheckpointVerifier>>,
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The HTTP service: the router, with the cross-cutting middleware around it.
///
/// Request ids, tracing and the request-id scope wrap the router once, instead of every route
/// (as `Router::layer` does): the router clones the route it dispatches to for every request,
/// and a route that carried the whole middleware stack was cloned with all of it (a few per
/// cent of a single-event request's CPU).
pub fn app(
    state: AppState,
    body_limit: usize,
    body_budget: usize,
) -> impl tower::Service<
    Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
       + Send
       + Sync
       + 'static {
    ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get(&X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            // Text fields, recorded as they are (no formatting machinery per request).
            let uri = req.uri().path_and_query().map_or("", |pq| pq.as_str());
            tracing::info_span!(
                "request",
                method = req.method().as_str(),
                uri,
                request_id = id
            )
        }))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(middleware::from_fn(scope_request_id))
        .service(router(state, body_limit, body_budget))
}

/// The routes, with the body limit and budget.
fn router(state: AppState, body_limit: usize, body_budget: usize) -> Router {
    let budget = admission::BodyBudget::new(body_budget, body_limit);
    Router::new()
        .route(
            "/api/v1/audit/events",
            post(routes::events::create_event).get(routes::events::list_events),
        )
        .route(
            "/api/v1/audit/events/batch",
            post(routes::events::create_batch),
        )
        .route(
            "/api/v1/audit/events/{event_id}",
            get(routes::events::get_event),
        )
        .route(
            "/api/v1/audit/notifications",
            post(records::create_notification).get(records::list_notifications),
        )
        .route(
            "/api/v1/audit/notifications/{id}",
            get(records::get_notification),
        )
        .route(
            "/api/v1/audit/signal-processing",
            post(records::create_signal_processing).get(records::list_signal_processing),
        )
        .route(
            "/api/v1/audit/signal-processing/{id}",
            get(records::get_signal_processing),
        )
        .route(
            "/api/v1/audit/orchestration",
            post(records::create_orchestration).get(records::list_orchestration),
        )
        .route(
            "/api/v1/audit/orchestration/{id}",
            get(records::get_orchestration),
        )
        .route(
            "/api/v1/audit/ai-decisions",
            post(records::create_ai_decision).get(records::list_ai_decisions),
        )
        .route(
            "/api/v1/audit/ai-decisions/similar",
            post(routes::similar::similar),
        )
        .route(
            "/api/v1/audit/ai-decisions/{id}",
            get(records::get_ai_decision),
        )
        .route(
            "/api/v1/audit/executions",
            post(records::create_execution).get(records::list_executions),
        )
        .route("/api/v1/audit/executions/{id}", get(records::get_execution))
        .route(
            "/api/v1/audit/effectiveness",
            post(records::create_effectiveness).get(records::list_effectiveness),
        )
        .route(
            "/api/v1/audit/effectiveness/{id}",
            get(records::get_effectiveness),
        )
        .route(
            "/api/v1/audit/events/{event_id}/proof",
            get(routes::checkpoints::event_proof),
        )
        .route("/api/v1/audit/checkpoints", get(routes::checkpoints::list))
        .route(
            "/api/v1/audit/checkpoints/latest",
            get(routes::checkpoints::latest),
        )
        .route(
            "/api/v1/audit/checkpoints/public-key",
            get(routes::checkpoints::public_key),
        )
        .route(
            "/api/v1/audit/verify-chain",
            post(routes::checkpoints::verify_chain),
        )
        .route(
            "/api/v1/audit/consistency",
            get(routes::checkpoints::consistency),
        )
        .route("/api/v1/audit/export", get(routes::export::export))
        .route(
            "/api/v1/audit/legal-hold",
            post(routes::legal_hold::place).get(routes::legal_hold::list),
        )
        .route(
            "/api/v1/audit/legal-hold/{correlation_id}",
            delete(routes::legal_hold::release),
        )
        .route("/api/v1/admin/dlq", get(routes::admin::stats))
        .route(
            "/api/v1/admin/dlq/dead-letters",
            get(routes::admin::dead_letters),
        )
        .route("/api/v1/admin/dlq/replay", post(routes::admin::replay))
        .route(
            "/api/v1/admin/dlq/dead-letters/{id}/retry",
            post(routes::admin::retry_dead_letter),
        )
        .route("/api/v1/openapi.json", get(routes::health::openapi))
        .route("/health/live", get(routes::health::live))
        .route("/health/ready", get(routes::health::ready))
        .route("/metrics", get(routes::health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(budget, admission::admit))
        .with_state(state)
}

/// Makes the request id visible to error responses built anywhere below.
async fn scope_request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    REQUEST_ID.scope(id, next.run(req)).await
}

async fn not_found(req: Request) -> Response {
    ApiError::not_found(format!("no route for {}", req.uri().path())).into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    ApiError::new(
        ProblemKind::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
    .into_response()
}
