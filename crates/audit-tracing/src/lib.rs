//! OpenTelemetry traces for the audit services: spans exported over OTLP/HTTP when an endpoint is
//! configured (off by default), and the W3C trace context (`traceparent`) carried across the
//! HTTP calls between them.
//!
//! The services log and trace through `tracing`; [`init`] gives the layer that turns their spans
//! into OpenTelemetry spans (or nothing when tracing is off, so an unconfigured service pays for
//! no span export at all). Sampling is parent-based: a trace the caller sampled is continued, a
//! trace that starts here is kept with the configured ratio. The ratio is applied before a span
//! is made ([`start_root`], [`keyed_context`]), so a request that is not sampled creates no span
//! at all: with 1 % sampling, 99 % of requests pay for nothing but the draw.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The header that carries the trace context (W3C Trace Context).
pub const TRACEPARENT: &str = "traceparent";

/// Where spans go and how many are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// The OTLP/HTTP endpoint's base URL (spans go to `<endpoint>/v1/traces`); `None` turns
    /// tracing off.
    pub endpoint: Option<String>,
    /// The share of traces started here that are kept (0 to 1); traces a caller sampled are
    /// always continued.
    pub sample_ratio: f64,
    /// The `service.name` of the spans.
    pub service_name: String,
}

impl TraceSettings {
    /// Off: no endpoint.
    pub fn off(service_name: &str) -> TraceSettings {
        TraceSettings {
            endpoint: None,
            sample_ratio: 1.0,
            service_name: service_name.to_string(),
        }
    }

    /// From the standard OpenTelemetry variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (tracing is off
    /// without it), `OTEL_TRACES_SAMPLER_ARG` (the ratio, default 1) and `OTEL_SERVICE_NAME`
    /// (default `service_name`).
    pub fn from_env(service_name: &str) -> Result<TraceSettings, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let sample_ratio = match var("OTEL_TRACES_SAMPLER_ARG") {
            Some(v) => parse_ratio(&v).map_err(|e| format!("OTEL_TRACES_SAMPLER_ARG: {e}"))?,
            None => 1.0,
        };
        Ok(TraceSettings {
            endpoint: var("OTEL_EXPORTER_OTLP_ENDPOINT"),
            sample_ratio,
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| service_name.to_string()),
        })
    }
}

static SAMPLE_RATIO: OnceLock<f64> = OnceLock::new();

/// The sampling ratio [`init`] was given (1 before, or when tracing is off).
pub fn sample_ratio() -> f64 {
    SAMPLE_RATIO.get().copied().unwrap_or(1.0)
}

/// A sampling ratio: a number from 0 to 1.
pub fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{text}` is not a ratio from 0 to 1")),
    }
}

/// Keeps the span exporter; dropping it exports what is buffered (waiting at most a few
/// seconds for the collector).
#[must_use = "dropping the guard stops the span exporter"]
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracingGuard {
    /// Exports the spans ended so far now, instead of at the next scheduled export.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            let _ = provider.force_flush();
        }
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown_with_timeout(Duration::from_secs(5));
        }
    }
}

/// A layer of a `tracing` subscriber `S` that exports its spans.
pub type SpanLayer<S> = Box<dyn Layer<S> + Send + Sync>;

/// The layer that exports the subscriber's spans (none when tracing is off), and its guard.
pub fn init<S>(settings: &TraceSettings) -> Result<(Option<SpanLayer<S>>, TracingGuard), String>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let Some(endpoint) = &settings.endpoint else {
        return Ok((None, TracingGuard { provider: None }));
    };
    let _ = SAMPLE_RATIO.set(settings.sample_ratio);
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("the OTLP exporter for {endpoint}: {e}"))?;
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        // Roots are drawn by the code that makes them (see `start_root`), so every root span
        // that reaches the SDK is kept; children follow their parent.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer(settings.service_name.clone());
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        // The span's name and fields say where it is; no source locations or threads.
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_filter(
            tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::INFO),
        );
    Ok((
        Some(Box::new(layer)),
        TracingGuard {
            provider: Some(provider),
        },
    ))
}

/// The target of every span meant for export (`tracing::info_span!(target: TARGET, …)`): only
/// these are exported (a dependency's spans, a database driver's for one, would multiply the
/// spans per request), and log lines leave them out. Filtering on a target keeps every other
/// callsite's interest static, so spans and events nobody wants cost nothing.
pub const TARGET: &str = "audit_trace";

/// The trace context a `traceparent` value carries, if it is a valid one.
pub fn remote_context(traceparent: &str) -> Option<SpanContext> {
    let mut headers = http::HeaderMap::new();
    headers.insert(TRACEPARENT, traceparent.parse().ok()?);
    context_of(&headers)
}

/// The trace context of `headers` (their `traceparent`), if they carry a valid one. Read in
/// place: a request's headers are not copied.
pub fn context_of(headers: &http::HeaderMap) -> Option<SpanContext> {
    if !headers.contains_key(TRACEPARENT) {
        return None;
    }
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let span = context.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// The `traceparent` value of a span context.
pub fn traceparent_of(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// The OpenTelemetry context of `span`, when tracing is on and the span is traced.
pub fn span_context(span: &tracing::Span) -> Option<SpanContext> {
    let context = span.context();
    let span = context.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// Makes `span` continue the trace of `parent` (a span context received from another process).
pub fn set_remote_parent(span: &tracing::Span, parent: &SpanContext) {
    let _ = span.set_parent(Context::new().with_remote_span_context(parent.clone()));
}

/// Renames `span` once it has started (a server span is named after its route, which is known
/// only once the router has matched it).
pub fn rename(span: &tracing::Span, name: String) {
    span.context().span().update_name(name);
}

/// Links `span` to another trace's span (work done for several traces at once: one request
/// carrying events recorded in different traces).
pub fn add_link(span: &tracing::Span, other: SpanContext) {
    span.add_link(other);
}

/// Adds the `traceparent` of `span` to outgoing request headers (nothing when it is not traced).
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    let context = span.context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
    }
}

/// The trace id (32 hex digits) and span id (16) of a span context, as audit events hold them.
pub fn ids(context: &SpanContext) -> (String, String) {
    (
        context.trace_id().to_string(),
        context.span_id().to_string(),
    )
}

/// Whether to start a trace here (a root span): drawn with the configured ratio. Code that makes
/// a root span asks first and makes none when the answer is no.
pub fn start_root() -> bool {
    let ratio = sample_ratio();
    ratio >= 1.0 || ratio_keeps(RandomIdGenerator::default().new_trace_id(), ratio)
}

/// Whether a span continuing `parent` (when there is one) should be made: a sampled parent's
/// always, an unsampled parent's never, and a root by [`start_root`].
pub fn wanted(parent: Option<&SpanContext>) -> bool {
    match parent {
        Some(parent) => parent.is_sampled(),
        None => start_root(),
    }
}

/// A trace context for work that has no caller to continue: the trace id derived from a stable
/// 16-byte key (a Kubernetes object's uid), so every pass over that object (each reconcile)
/// joins one trace. Sampled as a root started here would be, by the trace id and `ratio`.
pub fn keyed_context(key: [u8; 16], ratio: f64) -> SpanContext {
    let trace_id = TraceId::from_bytes(key);
    let mut span_id = [0u8; 8];
    span_id.copy_from_slice(&key[8..]);
    let sampled = ratio_keeps(trace_id, ratio);
    SpanContext::new(
        trace_id,
        SpanId::from_bytes(span_id),
        if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        true,
        TraceState::default(),
    )
}

/// Whether a trace-id ratio sampler keeps `trace_id`: its lower 64 bits, halved, fall below
/// `ratio` of 2^63 (the rule OpenTelemetry SDKs apply, so every service agrees).
fn ratio_keeps(trace_id: TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bytes = trace_id.to_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    (u64::from_be_bytes(low) >> 1) < bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_and_a_bad_one_is_none() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = remote_context(text).unwrap();
        assert_eq!(traceparent_of(&context), text);
        assert_eq!(
            ids(&context),
            (
                "4bf92f3577b34da6a3ce929d0e0e4736".to_string(),
                "00f067aa0ba902b7".to_string()
            )
        );
        assert!(context.is_sampled());
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "not a traceparent",
        ] {
            assert_eq!(remote_context(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_keyed_context_is_stable_and_sampled_by_ratio() {
        let key = *b"0123456789abcdef";
        let a = keyed_context(key, 1.0);
        assert_eq!(a, keyed_context(key, 1.0));
        assert!(a.is_sampled() && a.is_remote());
        assert!(!keyed_context(key, 0.0).is_sampled());
        // A ratio keeps about that share of keys.
        let kept = (0u32..10_000)
            .filter(|i| {
                let mut key = [0u8; 16];
                key[..4].copy_from_slice(&i.to_be_bytes());
                key[8..12].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
                keyed_context(key, 0.25).is_sampled()
            })
            .count();
        assert!((2_000..3_000).contains(&kept), "{kept}");
    }

    #[test]
    fn ratios_outside_zero_to_one_are_refused() {
        assert_eq!(parse_ratio("0.01"), Ok(0.01));
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_ratio("-1").is_err());
        assert!(parse_ratio("often").is_err());
    }
}
