//! The Notification controller: delivers `NotificationRequest`s on their channels and leaves an
//! exact audit trail of every attempt and status change in Data Storage.
//!
//! Reading order: [`crd`] (the resource), [`decide`] (what to do next, without I/O),
//! [`reconcile`] (the I/O around it), [`channels`] (the protocol clients), [`audit`] (the records
//! written after each status change), [`controller`] (wiring, leader election, shutdown).

pub mod audit;
pub mod breaker;
pub mod channels;
pub mod config;
pub mod controller;
pub mod crd;
pub mod decide;
pub mod leader;
pub mod logging;
pub mod losses;
pub mod metrics;
pub mod reconcile;
pub mod redact;
