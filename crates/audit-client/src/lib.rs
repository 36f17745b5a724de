//! The audit client: what a controller links to write its audit trail to Data Storage.
//!
//! [`AuditClient::record`] never blocks and never awaits: it validates the event with
//! `audit-model` (so an invalid event is the caller's error, at once), gives it an `event_id`
//! and a timestamp, and puts it in a bounded in-memory buffer. A background task sends the buffer
//! in batches (`POST /api/v1/audit/events/batch`; typed records to their own endpoints), retrying
//! with exponential backoff and jitter. Events are never silently lost:
//!
//! * when the buffer is full, or a batch has exhausted its retries, and a spill directory is
//!   configured, events go to a local [`audit_journal`] and are re-sent, in order, when Data
//!   Storage answers again — with their original `event_id`s, so a resend after a lost answer is
//!   a duplicate on the server, not a second record. Events on their way to the journal wait in a
//!   second queue as large as the buffer; when the disk cannot keep up with that either, `record`
//!   returns [`RecordError::SpillBehind`] and the event is counted as dropped, so memory stays
//!   bounded whatever happens;
//! * without a spill directory, a full buffer makes `record` return [`RecordError::BufferFull`],
//!   and every event given up is counted (`audit_client_events_dropped_total{reason}` and the
//!   [`CloseReport`]).

mod builder;
mod client;
mod config;
mod pending;
mod report;
mod sender;
mod token;
mod transport;

pub use builder::AuditClientBuilder;
pub use client::{AuditClient, RecordError};
pub use config::Rejection;
pub use report::CloseReport;
pub use token::TokenSource;

/// The most events the server takes in one batch request (its default `batch_max_items`).
pub const SERVER_BATCH_LIMIT: usize = 1000;

/// Metric names (through the `metrics` facade; the host process picks the exporter).
pub mod metric_names {
    pub const RECORDED: &str = "audit_client_events_recorded_total";
    pub const SENT: &str = "audit_client_events_sent_total";
    pub const DROPPED: &str = "audit_client_events_dropped_total";
    pub const SPILLED: &str = "audit_client_events_spilled_total";
    pub const BUFFER_LEN: &str = "audit_client_buffer_len";
    pub const BATCH_DURATION: &str = "audit_client_batch_duration_seconds";
    /// Events sent from the disk spill once Data Storage answered again.
    pub const RESENT: &str = "audit_client_events_resent_total";

    /// Every family with its HELP text.
    pub const DESCRIPTIONS: &[(&str, &str)] = &[
        (RECORDED, "Audit events the process recorded, by service."),
        (SENT, "Audit events Data Storage acknowledged, by service."),
        (DROPPED, "Audit events given up on (not in the log), by service and reason."),
        (SPILLED, "Audit events written to the disk spill because Data Storage could not take them, by service."),
        (RESENT, "Audit events sent from the disk spill once Data Storage answered again, by service."),
        (BUFFER_LEN, "Audit events waiting in memory to be sent, by service."),
        (BATCH_DURATION, "Time to send one batch to Data Storage, in seconds."),
    ];

    /// Gives the client's families their HELP text in the process's metrics recorder (call it
    /// once the host has installed its recorder).
    pub fn describe() {
        for (name, help) in DESCRIPTIONS {
            metrics::describe_counter!(*name, *help);
        }
    }
}
