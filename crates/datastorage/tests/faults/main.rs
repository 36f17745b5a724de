//! Fault tests: the database or Redis goes away, the service is killed; every acknowledged
//! event ends up stored exactly once.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

#[allow(dead_code)]
#[path = "../process/child.rs"]
mod child;

mod proxy;
mod redis_server;

mod capacity;
mod full_disk;
mod outage;
mod replay;
mod restarts;
mod tls;
