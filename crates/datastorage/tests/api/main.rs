//! Black-box tests of the HTTP API against real PostgreSQL and SQLite.

mod helpers;

mod append_only;
mod batch;
mod concurrency;
mod health;
mod query;
mod write;
