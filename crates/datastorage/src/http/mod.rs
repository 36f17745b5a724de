//! The HTTP API: router, shared state, middleware (request ids, body limit and budget, tracing).

pub mod admission;
pub mod answers;
pub mod authn;
pub mod connection;
pub mod extract;
pub mod openapi;
mod params;
pub mod platform_contract;
pub mod problem;
pub mod proxy_user;
pub mod routes;
pub mod serve;
mod text_params;

use std::sync::Arc;
use std::time::Instant;

use audit_model::ProblemKind;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
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

/// What every handler can reach. Axum clones the state for every request, so it is one `Arc`:
/// cloning the fields one by one (the queue's sender among them) showed in the profile
/// (`docs/benchmarks.md`, 2026-11-28).
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
    /// How writes are answered unless the request asks otherwise.
    pub write_answers: answers::WriteAnswers,
    /// The header an authenticating proxy in front passes the caller's identity in, if trusted.
    pub trusted_user_header: Option<axum::http::HeaderName>,
    /// Required length of an AI decision's embedding.
    pub embedding_dimension: usize,
    /// The checkpoint key, which also signs the platform's exports (None when checkpoints are
    /// disabled).
    pub signer: Option<Arc<audit_model::checkpoint::CheckpointSigner>>,
    /// The checkpoints' public key (None when checkpoints are disabled).
    pub verifier: Option<Arc<audit_model::checkpoint::CheckpointVerifier>>,
    /// How callers are authenticated.
    pub auth: crate::auth::Auth,
    /// The routes open without a credential besides health and the API document.
    pub open_routes: authn::OpenRoutes,
    /// Rate limits per principal and per client address.
    pub limits: Arc<crate::auth::limits::RateLimits>,
    /// The refusals counted for the access trail.
    pub denials: Arc<crate::access::Denials>,
    /// The C2SP witnesses and their quorum, when configured.
    pub witnesses: Option<crate::evidence::cosign::WitnessSet>,
    /// The live event streams' permits.
    pub subscribers: routes::stream::Subscribers,
    /// The log key the explorer's pages check checkpoints with.
    pub ui_public_key: Option<String>,
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The HTTP settings of [`app`].
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Request bodies: size limit and read timeouts.
    pub body: admission::BodyRules,
    /// Most bytes of request bodies held at once.
    pub body_budget: usize,
    /// Origins whose pages may call the API from a browser (CORS); none by default.
    pub cors_allowed_origins: Vec<HeaderValue>,
}

/// The HTTP service: the router, with the cross-cutting middleware around it.
///
/// Request ids, tracing, the request-id scope and the body budget wrap the router once, instead
/// of every route (as `Router::layer` does): the router clones the route it dispatches to for
/// every request, and a route that carried the whole middleware stack was cloned with all of it
/// (see `docs/benchmarks.md`).
pub fn app(
    state: AppState,
    settings: &HttpSettings,
) -> impl tower::Service<
    Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
       + Send
       + Sync
       + 'static {
    let cors = (!settings.cors_allowed_origins.is_empty()).then(|| cors(settings));
    ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        .map_request(drop_unusable_request_id)
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                // Server errors are logged by `request_context`, with the request they answer.
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(middleware::from_fn(request_metrics))
        .option_layer(cors)
        .layer(middleware::from_fn(request_context))
        .layer(middleware::from_fn_with_state(
            admission::BodyBudget::new(settings.body_budget, settings.body),
            admission::admit,
        ))
        .service(router(state))
}

/// The span of one request: `request`, continuing the caller's trace when it sent a W3C
/// `traceparent` (the audit client does), its name and status completed by [`request_metrics`]
/// once the route is known. It is only created when traces are exported and the request is
/// sampled (its caller's trace was, or this one is drawn).
fn request_span(req: &Request) -> tracing::Span {
    let parent = audit_tracing::context_of(req.headers());
    if !audit_tracing::wanted(parent.as_ref()) {
        return tracing::Span::none();
    }
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let span = tracing::info_span!(
        target: audit_tracing::TARGET,
        "request",
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = req.method().as_str(),
        url.path = req.uri().path(),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        request_id = id,
    );
    if let (false, Some(parent)) = (span.is_disabled(), &parent) {
        audit_tracing::set_remote_parent(&span, parent);
    }
    span
}

/// The route template that answered (set on the response by [`route_template`]).
#[derive(Clone)]
struct RouteTemplate(axum::extract::MatchedPath);

/// Copies the matched route's template onto the response, for [`request_metrics`] (the router
/// knows it only while it dispatches).
async fn route_template(path: axum::extract::MatchedPath, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    response.extensions_mut().insert(RouteTemplate(path));
    response
}

/// Counts every request by route template, method and status, and times it to its answer's
/// head (`datastorage_http_requests_total`, `datastorage_http_request_duration_seconds`). A
/// path no route matches is `unmatched`, and a method outside the standard ones `other`, so a
/// client cannot grow the number of series.
async fn request_metrics(req: Request, next: Next) -> Response {
    use axum::http::Method;
    let started = std::time::Instant::now();
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let response = next.run(req).await;
    let route = response
        .extensions()
        .get::<RouteTemplate>()
        .map_or_else(|| "unmatched".to_string(), |r| r.0.as_str().to_string());
    let span = tracing::Span::current();
    if !span.is_disabled() {
        audit_tracing::rename(&span, format!("{method} {route}"));
        span.record("http.route", route.as_str());
        span.record("http.response.status_code", response.status().as_u16());
        if response.status().is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }
    let status = response.status().as_u16().to_string();
    metrics::histogram!(crate::metrics::HTTP_REQUEST_DURATION, "route" => route.clone(), "method" => method)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(crate::metrics::HTTP_REQUESTS, "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

/// CORS for the configured origins only: the explorer is served from the same origin and
/// needs none, so by default no CORS header is sent and no other site's page may read answers.
fn cors(settings: &HttpSettings) -> tower_http::cors::CorsLayer {
    use axum::http::{header, Method};
    tower_http::cors::CorsLayer::new()
        .allow_origin(settings.cors_allowed_origins.clone())
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, X_REQUEST_ID])
        .expose_headers([X_REQUEST_ID, header::LOCATION])
}

/// Longest `X-Request-ID` kept from a client.
const MAX_REQUEST_ID: usize = 128;

/// Drops a client's `X-Request-ID` that is not a short token (letters, digits, `-._:/+=`), so
/// that a fresh one is made: the id is echoed in answers and problem `instance`s and written to
/// logs, which must not carry what a client smuggles in it.
fn drop_unusable_request_id(mut req: Request) -> Request {
    let usable = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-._:/+=".contains(c))
    };
    if req.headers().get(&X_REQUEST_ID).is_some_and(|v| !usable(v)) {
        req.headers_mut().remove(&X_REQUEST_ID);
    }
    req
}

/// The routes, each parameter checked (see [`text_params`]).
fn router(state: AppState) -> Router {
    Router::new()
        .route("/ui", get(routes::ui::root))
        .route("/ui/", get(routes::ui::index))
        .route("/ui/{file}", get(routes::ui::asset))
        .route("/api/v1/audit/events/stream", get(routes::stream::stream))
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
            "/api/v1/effectiveness/{correlation_id}",
            get(routes::derived::score),
        )
        .route(
            "/api/v1/audit/remediation-requests/{correlation_id}/reconstruct",
            post(routes::derived::reconstruct),
        )
        .route(
            "/api/v1/remediation-history/context",
            get(routes::derived::history_context),
        )
        .route(
            "/api/v1/audit/remediations/{correlation_id}/timeline",
            get(routes::derived::remediation_timeline),
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
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .route_layer(middleware::from_fn(text_params::check))
        .route_layer(middleware::from_fn(route_template))
        // Outside the parameter check: who calls is known before anything they sent is read.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            authn::authorize,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Makes the request id visible to error responses built anywhere below, and logs each server
/// error (5xx) with the request it answers.
///
/// The per-request span is at DEBUG (tower-http's default level): formatting its fields for
/// every request costs CPU on the hottest path (`docs/benchmarks.md`, 2026-12-01), and at the
/// default level nothing is logged inside a request but the failures logged here.
/// `RUST_LOG=debug` shows every request with its span.
async fn request_context(req: Request, next: Next) -> Response {
    // Set by the request-id layer before this one.
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .cloned()
        .unwrap_or(HeaderValue::from_static(""));
    let (method, uri, started) = (req.method().clone(), req.uri().clone(), Instant::now());
    let response = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if response.status().is_server_error() {
        tracing::error!(
            request_id = id.to_str().unwrap_or_default(),
            method = method.as_str(),
            uri = uri.path_and_query().map_or("", |pq| pq.as_str()),
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1e3,
            "request failed"
        );
    }
    response
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    use super::*;

    /// Log lines written by the service under test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn unavailable() -> Response {
        ApiError::new(ProblemKind::ServiceUnavailable, "the store is down").into_response()
    }

    /// The middleware of [`app`] around two routes: one fails with a 503, one answers 200.
    fn service() -> Router {
        Router::new()
            .route("/fails", get(unavailable))
            .route("/works", get(|| async { "ok" }))
            .layer(middleware::from_fn(request_context))
            .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
    }

    async fn call(uri: &str, request_id: &str) -> Response {
        let request = Request::builder()
            .uri(uri)
            .header(&X_REQUEST_ID, request_id)
            .body(Body::empty())
            .unwrap();
        service().oneshot(request).await.unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_server_error_is_logged_with_its_request_and_nothing_else_is() {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let failed = call("/fails?x=1", "req-503").await;
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(failed.into_body(), 1 << 16)
            .await
            .unwrap();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["instance"], "urn:request-id:req-503");
        assert_eq!(call("/works", "req-200").await.status(), StatusCode::OK);

        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "one line, for the failure: {text}");
        let fields = &lines[0]["fields"];
        assert_eq!(fields["message"], "request failed");
        assert_eq!(fields["request_id"], "req-503");
        assert_eq!(fields["method"], "GET");
        assert_eq!(fields["uri"], "/fails?x=1");
        assert_eq!(fields["status"], 503);
        assert_eq!(lines[0]["level"], "ERROR");
    }
}
