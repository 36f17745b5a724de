//! What the client counts over its life, and the report [`AuditClient::close`] gives of it.
//!
//! [`AuditClient::close`]: crate::AuditClient::close

use std::sync::atomic::{AtomicU64, Ordering};

/// What the client did over its life, returned by [`AuditClient::close`](crate::AuditClient::close).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloseReport {
    /// Stored by the server (or durably queued by it).
    pub sent: u64,
    /// Already stored on the server (a resend).
    pub duplicates: u64,
    /// Refused by the server (invalid or conflicting); logged, never retried.
    pub rejected: u64,
    /// Written to the disk spill, for a later resend.
    pub spilled: u64,
    /// Given up without a trace on the server or on disk.
    pub dropped: u64,
}

/// Shared counters (also the source of the close report).
#[derive(Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub spilled: AtomicU64,
    pub dropped: AtomicU64,
}

impl Counters {
    pub(crate) fn report(&self) -> CloseReport {
        CloseReport {
            sent: self.sent.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            spilled: self.spilled.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}
