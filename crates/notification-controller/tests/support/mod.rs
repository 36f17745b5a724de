//! Test doubles that speak the real protocols: a stateful Kubernetes API server, HTTP receivers
//! for the webhook-style channels and an SMTP server.
#![allow(dead_code)]

pub mod binary;
pub mod fake_api;
pub mod harness;
pub mod otlp;
pub mod receivers;
pub mod smtp;
