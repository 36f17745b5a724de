//! The Notification controller.
pub mod breaker;
pub mod crd;
pub mod decide;
pub mod redact;
