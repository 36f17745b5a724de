//! Black-box tests of the HTTP API against real PostgreSQL and SQLite.

#[allow(dead_code)] // shared by several test binaries; each uses a part
mod helpers;

mod append_only;
mod auth;
mod batch;
mod checkpoints;
mod concurrency;
mod contract;
mod export;
mod health;
mod hostile;
mod kubernetes_auth;
mod monitor;
mod partitions;
mod platform;
mod query;
mod records;
mod replica;
mod retention;
mod stream;
mod timeline;
mod tls;
mod trace_context;
mod witnesses;
mod write;
