//! What the platform's API derives from the audit log alone: each engine reads a remediation's
//! events and computes its answer, with no state of its own.

pub mod effectiveness;
pub mod history;
pub mod reconstruction;
pub mod redaction;
pub mod timeline;
