//! Audit records lost after they were queued, and objects the controller cannot read: both are
//! reported where an operator looks, a Kubernetes event on the object and a metric.
//!
//! The audit client sends records in the background. When Data Storage refuses one for good (it
//! is invalid, or its id is stored with other content) the client calls the hook made here; the
//! record is counted in `notification_audit_write_failures_total{reason="rejected"}` at once, and
//! an `AuditWriteFailed` warning is published on the object the record was about, which the
//! controller remembers for the last [`RECENT_RECORDS`] records it queued.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use audit_client::{AuditClient, AuditClientBuilder, RecordError, Rejection};
use k8s_openapi::api::core::v1::ObjectReference;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::metrics as m;

/// Records remembered by event id, to find the object of a later refusal.
pub const RECENT_RECORDS: usize = 16_384;

/// The audit client and where its refusals go.
#[derive(Clone)]
pub struct Auditing {
    pub client: AuditClient,
    pub losses: Arc<AuditLosses>,
}

impl Auditing {
    /// Builds the audit client with its refusals reported (see the module docs).
    pub fn build(builder: AuditClientBuilder) -> Result<Auditing, RecordError> {
        let losses = AuditLosses::new();
        let tx = losses.tx.clone();
        let client = builder
            .on_rejected(move |r| {
                metrics::counter!(m::AUDIT_FAILURES, "reason" => "rejected").increment(1);
                let _ = tx.send(r);
            })
            .build()?;
        Ok(Auditing { client, losses })
    }
}

/// The objects of recently queued records, and the refusals still to report.
pub struct AuditLosses {
    recent: Mutex<Recent>,
    tx: mpsc::UnboundedSender<Rejection>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Rejection>>>,
}

#[derive(Default)]
struct Recent {
    objects: HashMap<Uuid, ObjectReference>,
    order: VecDeque<Uuid>,
}

impl AuditLosses {
    fn new() -> Arc<AuditLosses> {
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::new(AuditLosses {
            recent: Mutex::default(),
            tx,
            rx: Mutex::new(Some(rx)),
        })
    }

    /// Remembers that record `event_id` is about `object`.
    pub(crate) fn remember(&self, event_id: Uuid, object: ObjectReference) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.objects.insert(event_id, object).is_none() {
            recent.order.push_back(event_id);
        }
        while recent.order.len() > RECENT_RECORDS {
            if let Some(old) = recent.order.pop_front() {
                recent.objects.remove(&old);
            }
        }
    }

    /// The object record `event_id` was about, if it is still remembered.
    pub(crate) fn object_of(&self, event_id: Uuid) -> Option<ObjectReference> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.objects.get(&event_id).cloned()
    }

    /// The refusals, for the one task that reports them (the controller loop starts it; a test
    /// driving [`crate::reconcile::reconcile`] directly may take them itself).
    pub fn take_refusals(&self) -> Option<mpsc::UnboundedReceiver<Rejection>> {
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
