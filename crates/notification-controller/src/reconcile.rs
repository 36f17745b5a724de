//! The reconciler: the thin I/O around [`crate::decide`].
//!
//! One reconcile walks a notification forward as far as it can go now: it asks
//! [`decide::next_step`] what to do, does it (a status write, or a round of deliveries followed
//! by a status write), and asks again, until the notification is finished or has to wait for a
//! retry. Every status write carries the `resourceVersion` it was computed from; on a conflict
//! the object is read again and the change re-applied to what is there now. Audit records are
//! written only after a status write succeeded, from the difference between the status before
//! and after it ([`crate::audit::intents`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use crate::audit::{self, AuditRecord, Subject};
use crate::breaker::CircuitBreakers;
use crate::channels::{Channels, DeliveryError, Message};
use crate::crd::{
    AttemptStatus, DeliveryAttempt, NotificationRequest, NotificationRequestStatus, Phase,
};
use crate::decide::{self, Step, Target, View};
use crate::losses::Auditing;
use crate::metrics::{self as m, PhaseGauge};

/// How many status writes one reconcile makes at most before it lets others have a turn.
const MAX_STEPS: usize = 8;
/// How often a status write is retried after a conflict.
const MAX_CONFLICT_RETRIES: usize = 5;

/// The time source (a test can freeze or move it).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Everything a reconcile needs.
pub struct Context {
    pub client: Client,
    pub channels: Channels,
    pub breakers: CircuitBreakers,
    /// None when auditing is disabled (tests of the delivery path only).
    pub audit: Option<Auditing>,
    pub recorder: Recorder,
    pub phases: PhaseGauge,
    pub clock: Clock,
}

impl Context {
    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }
}

/// Why a reconcile failed (it is retried by [`error_policy`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the status write kept conflicting after {0} attempts")]
    Conflict(usize),
    #[error("the object has no {0}")]
    MissingField(&'static str),
}

/// What a status write did.
enum WriteOutcome {
    /// Written: the object as stored and the status it replaced.
    Written {
        object: NotificationRequest,
        before: NotificationRequestStatus,
    },
    /// Nothing (left) to write: the object as last read from the API server.
    Unchanged(NotificationRequest),
}

/// Reconciles one object of the NotificationRequest kind as the API server gives it: reads it
/// as a [`NotificationRequest`] and reconciles that, or, when it cannot be read (a spec of a
/// newer CRD version, say, with a channel this version does not know), reports it (a warning
/// event on the object and `notification_unreadable_objects_total`) and leaves it until it
/// changes, serving every other object meanwhile.
pub async fn reconcile_object(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = reconcile_span(&obj);
    reconcile_read(obj, ctx).instrument(span).await
}

/// The annotation through which whoever created a NotificationRequest may hand over its trace
/// (a W3C `traceparent` value); its reconciles then continue that trace.
pub const TRACEPARENT_ANNOTATION: &str = "kubernaut.ai/traceparent";

/// The span of one reconcile (`reconcile`). Every reconcile of one object belongs to one trace:
/// the one its creator handed over in [`TRACEPARENT_ANNOTATION`], else one whose id is the
/// object's uid, so a notification's whole delivery (each reconcile, the audit client's
/// requests, Data Storage's commits) reads as one trace. Disabled when traces are off.
fn reconcile_span(obj: &DynamicObject) -> tracing::Span {
    let handed_over = obj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TRACEPARENT_ANNOTATION))
        .and_then(|t| audit_tracing::remote_context(t));
    let keyed = || {
        let uid = obj.metadata.uid.as_deref()?;
        let uid = uuid::Uuid::parse_str(uid).ok()?;
        Some(audit_tracing::keyed_context(
            *uid.as_bytes(),
            audit_tracing::sample_ratio(),
        ))
    };
    let parent = handed_over.or_else(keyed);
    if !audit_tracing::wanted(parent.as_ref()) {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: audit_tracing::TARGET,
        "reconcile",
        namespace = obj.metadata.namespace.as_deref().unwrap_or_default(),
        notification = obj.metadata.name.as_deref().unwrap_or_default(),
        uid = obj.metadata.uid.as_deref().unwrap_or_default(),
    );
    if let (false, Some(parent)) = (span.is_disabled(), &parent) {
        audit_tracing::set_remote_parent(&span, parent);
    }
    span
}

async fn reconcile_read(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    match read(&obj) {
        Ok(nr) => reconcile(Arc::new(nr), ctx).await,
        Err(why) => {
            let namespace = obj.metadata.namespace.clone().unwrap_or_default();
            metrics::counter!(m::UNREADABLE, "namespace" => namespace).increment(1);
            tracing::warn!(
                namespace = obj.metadata.namespace.as_deref().unwrap_or_default(),
                notification = obj.metadata.name.as_deref().unwrap_or_default(),
                reason = %why,
                "cannot read this NotificationRequest; it is left alone until it changes"
            );
            let event = Event {
                type_: EventType::Warning,
                reason: "Unreadable".to_string(),
                note: Some(why),
                action: "Read".to_string(),
                secondary: None,
            };
            let ar = ApiResource::erase::<NotificationRequest>(&());
            publish_on(&ctx, &obj.object_ref(&ar), event).await;
            Ok(Action::await_change())
        }
    }
}

/// The object as a NotificationRequest, or why it is not one this version can serve. The reason
/// names where reading stopped and why, never a value of the spec beyond an enum's (a string
/// field could hold a secret).
fn read(obj: &DynamicObject) -> Result<NotificationRequest, String> {
    let value = serde_json::to_value(obj).map_err(|e| format!("cannot encode the object: {e}"))?;
    serde_path_to_error::deserialize::<_, NotificationRequest>(value).map_err(|e| {
        let inner = e.inner().to_string();
        let safe = ["unknown variant", "unknown field", "missing field"]
            .iter()
            .any(|kind| inner.starts_with(kind));
        let why = if safe {
            inner
        } else {
            "a value of a type or form this controller version does not know".to_string()
        };
        format!(
            "`{}` cannot be read by this controller version: {why}",
            e.path()
        )
    })
}

/// [`error_policy`] for [`reconcile_object`].
pub fn error_policy_object(obj: Arc<DynamicObject>, error: &Error, _ctx: Arc<Context>) -> Action {
    metrics::counter!(m::RECONCILE_ERRORS).increment(1);
    tracing::warn!(
        notification = obj.metadata.name.as_deref().unwrap_or_default(),
        %error,
        "reconcile failed; retrying"
    );
    Action::requeue(Duration::from_secs(5))
}

/// Reconciles one NotificationRequest.
pub async fn reconcile(nr: Arc<NotificationRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    metrics::counter!(m::RECONCILES).increment(1);
    let namespace = nr.namespace().ok_or(Error::MissingField("namespace"))?;
    let api: Api<NotificationRequest> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut current = (*nr).clone();
    if current.metadata.deletion_timestamp.is_some() {
        ctx.phases.set(&namespace, &current.name_any(), None);
        return Ok(Action::await_change());
    }
    // The object handed in comes from the controller's cache, which may lag behind our own
    // last write. Writes are guarded by resourceVersion, but a delivery is not: before one,
    // read the object from the API server unless this reconcile already holds what it wrote.
    let mut fresh = false;
    for _ in 0..MAX_STEPS {
        let now = ctx.now();
        let status = current.status.clone().unwrap_or_default();
        let uid = current.uid().unwrap_or_default();
        let view = View {
            uid: &uid,
            generation: current.metadata.generation,
            spec: &current.spec,
            status: &status,
        };
        let step = decide::next_step(&view, now, &|t| ctx.breakers.blocked_until(t, now));
        match step {
            Step::Done => {
                ctx.phases
                    .set(&namespace, &current.name_any(), status.phase);
                return Ok(Action::await_change());
            }
            Step::Wait(wait) => {
                ctx.phases
                    .set(&namespace, &current.name_any(), status.phase);
                return Ok(Action::requeue(wait));
            }
            Step::Write(_) => {
                let written = write_status(&api, &current, |obj, fresh| {
                    let uid = obj.uid().unwrap_or_default();
                    let view = View {
                        uid: &uid,
                        generation: obj.metadata.generation,
                        spec: &obj.spec,
                        status: fresh,
                    };
                    match decide::next_step(&view, now, &|t| ctx.breakers.blocked_until(t, now)) {
                        Step::Write(next) => Some(next),
                        _ => None,
                    }
                })
                .await?;
                current = match written {
                    WriteOutcome::Written { object, before } => {
                        after_write(&ctx, object, before, now).await
                    }
                    WriteOutcome::Unchanged(object) => object,
                };
                fresh = true;
            }
            Step::Deliver(_) if !fresh => {
                current = api.get_status(&current.name_any()).await?;
                fresh = true;
            }
            Step::Deliver(targets) => {
                let message = Message::from_request(&current);
                let attempts = deliver_all(&ctx, &message, &targets).await;
                let now = ctx.now();
                for a in &attempts {
                    m::delivery(&namespace, a);
                }
                if attempts.is_empty() {
                    // Every channel's breaker refused at the last moment; look again soon.
                    return Ok(Action::requeue(Duration::from_secs(1)));
                }
                let written = write_status(&api, &current, |obj, fresh| {
                    let next = decide::apply_attempts(&obj.spec, fresh, &attempts, now);
                    (next != *fresh).then_some(next)
                })
                .await?;
                current = match written {
                    WriteOutcome::Written { object, before } => {
                        after_write(&ctx, object, before, now).await
                    }
                    WriteOutcome::Unchanged(object) => object,
                };
                fresh = true;
            }
        }
    }
    Ok(Action::requeue(Duration::from_millis(100)))
}

/// What the controller does when a reconcile fails: log, count, and try again soon.
pub fn error_policy(nr: Arc<NotificationRequest>, error: &Error, _ctx: Arc<Context>) -> Action {
    metrics::counter!(m::RECONCILE_ERRORS).increment(1);
    tracing::warn!(notification = %nr.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// Writes the status `change` computes from the object's current status, guarded by its
/// `resourceVersion`; on a conflict reads the object again and re-applies `change`. `None`
/// from `change` means there is nothing (left) to write; the object read is returned then.
async fn write_status(
    api: &Api<NotificationRequest>,
    object: &NotificationRequest,
    change: impl Fn(
        &NotificationRequest,
        &NotificationRequestStatus,
    ) -> Option<NotificationRequestStatus>,
) -> Result<WriteOutcome, Error> {
    let name = object.name_any();
    let mut base = object.clone();
    for _ in 0..MAX_CONFLICT_RETRIES {
        let before = base.status.clone().unwrap_or_default();
        let Some(next) = change(&base, &before) else {
            return Ok(WriteOutcome::Unchanged(base));
        };
        let patch = json!({
            "metadata": {"resourceVersion": base.resource_version()},
            "status": next,
        });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(object) => return Ok(WriteOutcome::Written { object, before }),
            Err(kube::Error::Api(s)) if s.is_conflict() => {
                tracing::debug!(notification = %name, "status conflict; re-reading");
                base = api.get_status(&name).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Conflict(MAX_CONFLICT_RETRIES))
}

/// Audits what a status write changed, publishes an event for a final phase, and returns the
/// object to continue from.
async fn after_write(
    ctx: &Context,
    object: NotificationRequest,
    before: NotificationRequestStatus,
    now: DateTime<Utc>,
) -> NotificationRequest {
    let after = object.status.clone().unwrap_or_default();
    let namespace = object.namespace().unwrap_or_default();
    ctx.phases.set(&namespace, &object.name_any(), after.phase);
    let intents = audit::intents(&object.spec, &before, &after, now);
    let failures = record_audit(ctx, &object, &intents);
    if failures > 0 {
        publish(
            ctx,
            &object,
            EventType::Warning,
            "AuditWriteFailed",
            format!("{failures} audit record(s) could not be queued for Data Storage"),
        )
        .await;
    }
    if let Some(phase) = after
        .phase
        .filter(|p| p.is_final() && before.phase != Some(*p))
    {
        let (kind, reason) = match phase {
            Phase::Sent => (EventType::Normal, "NotificationSent"),
            Phase::PartiallySent => (EventType::Warning, "NotificationPartiallySent"),
            _ => (EventType::Warning, "NotificationFailed"),
        };
        let note = after.message.clone().unwrap_or_default();
        publish(ctx, &object, kind, reason, note).await;
    }
    object
}

/// Hands the records to the audit client (which never waits); returns how many it refused.
fn record_audit(ctx: &Context, nr: &NotificationRequest, intents: &[audit::AuditIntent]) -> usize {
    let Some(Auditing { client, losses }) = &ctx.audit else {
        return 0;
    };
    let object = nr.object_ref(&());
    let name = nr.name_any();
    let subject = Subject {
        uid: nr.uid().unwrap_or_default(),
        namespace: nr.namespace().unwrap_or_default(),
        correlation_id: nr
            .spec
            .remediation_request_name()
            .unwrap_or(&name)
            .to_string(),
        summary: crate::redact::redact(&nr.spec.subject).into_owned(),
        name,
    };
    let mut failures = 0;
    for intent in intents {
        let result = match audit::record(&subject, intent) {
            AuditRecord::Event(e) => client.record(e),
            AuditRecord::Notification(r) => client.record_notification(&r),
        };
        match result {
            Ok(event_id) => losses.remember(event_id, object.clone()),
            Err(error) => {
                failures += 1;
                metrics::counter!(m::AUDIT_FAILURES, "reason" => "refused").increment(1);
                tracing::warn!(notification = %subject.name, %error, "audit record refused");
            }
        }
    }
    failures
}

/// Reports the records Data Storage refused for good, as the audit client hands them over: an
/// `AuditWriteFailed` warning on the object each was about (they are already counted).
pub async fn report_refusals(
    ctx: Arc<Context>,
    mut refusals: tokio::sync::mpsc::UnboundedReceiver<audit_client::Rejection>,
) {
    while let Some(refusal) = refusals.recv().await {
        let Some(object) = ctx
            .audit
            .as_ref()
            .and_then(|a| a.losses.object_of(refusal.event_id))
        else {
            continue;
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "AuditWriteFailed".to_string(),
            note: Some(format!(
                "Data Storage refused audit record {}: {}",
                refusal.event_id,
                audit_model::limits::fit(&refusal.reason, 512)
            )),
            action: "Deliver".to_string(),
            secondary: None,
        };
        publish_on(&ctx, &object, event).await;
    }
}

async fn publish(
    ctx: &Context,
    nr: &NotificationRequest,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Deliver".to_string(),
        secondary: None,
    };
    publish_on(ctx, &nr.object_ref(&()), event).await;
}

async fn publish_on(ctx: &Context, object: &ObjectReference, event: Event) {
    if let Err(error) = ctx.recorder.publish(&event, object).await {
        tracing::warn!(
            notification = object.name.as_deref().unwrap_or_default(),
            %error,
            "cannot publish a Kubernetes event"
        );
    }
}

/// Delivers to every target whose endpoint's breaker lets it through, concurrently.
async fn deliver_all(ctx: &Context, message: &Message, targets: &[Target]) -> Vec<DeliveryAttempt> {
    let rounds = targets.iter().filter_map(|t| {
        let now = ctx.now();
        let allowed = ctx.breakers.try_acquire(t, now);
        m::breaker(t.channel, ctx.breakers.channel_state(t.channel));
        allowed.then(|| deliver_one(ctx, message, t))
    });
    futures::future::join_all(rounds).await
}

async fn deliver_one(ctx: &Context, message: &Message, target: &Target) -> DeliveryAttempt {
    let started_at = ctx.now();
    let clock = Instant::now();
    let result = ctx
        .channels
        .deliver(target.channel, message, &target.address)
        .await;
    let duration_seconds = clock.elapsed().as_secs_f64();
    let healthy = matches!(result, Ok(_) | Err(DeliveryError::Permanent(_)));
    ctx.breakers.record(target, healthy, ctx.now());
    m::breaker(target.channel, ctx.breakers.channel_state(target.channel));
    let (status, provider_response, error) = match result {
        Ok(d) => (AttemptStatus::Success, Some(d.provider_response), None),
        Err(e @ DeliveryError::Timeout(_)) => (AttemptStatus::Timeout, None, Some(e.to_string())),
        Err(e @ DeliveryError::Retryable(_)) => (AttemptStatus::Failed, None, Some(e.to_string())),
        Err(e @ DeliveryError::Permanent(_)) => (AttemptStatus::Invalid, None, Some(e.to_string())),
    };
    if let Some(error) = &error {
        tracing::info!(
            notification = %message.name,
            channel = %target.channel,
            recipient = %target.recipient,
            %error,
            "delivery failed"
        );
    }
    DeliveryAttempt {
        channel: target.channel,
        recipient: target.recipient.clone(),
        attempt: 0, // numbered by decide::apply_attempts
        timestamp: started_at,
        status,
        error,
        provider_response,
        duration_seconds,
    }
}
