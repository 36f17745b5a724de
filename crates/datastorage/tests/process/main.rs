//! Tests that run the real `datastorage` binary: graceful shutdown under load, two processes
//! on one PostgreSQL, the `migrate` subcommand, the embedded default, fail-fast configuration.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod child;

mod cli;
mod diagnostics;
mod export;
mod shutdown;
mod stream;
mod tamper;
mod two_writers;
