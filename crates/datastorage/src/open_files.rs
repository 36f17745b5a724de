//! Keeping the connection limit within the process's file descriptors.
//!
//! Each connection is a file descriptor; so are the database connections, the journal files and
//! the listener. A connection limit above the descriptor limit would let idle sockets exhaust it
//! (accept then fails, and so does every file the service opens). At start the soft limit is
//! raised to the hard one when it is lower than the connections need, and the connection limit
//! is lowered (with a warning) when even the hard limit is too low.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors kept for everything that is not a client connection.
const RESERVED: u64 = 256;

/// The connection limit the descriptors allow: `wanted`, or less when the hard limit is lower.
pub fn fit_connections(wanted: usize) -> usize {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return wanted;
    };
    let needed = wanted as u64 + RESERVED;
    let mut available = soft;
    if soft < needed {
        let raised = needed.min(hard);
        if setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_ok() {
            available = raised;
        }
    }
    let fitting = available.saturating_sub(RESERVED).max(1) as usize;
    if fitting < wanted {
        tracing::warn!(
            max_connections = wanted,
            open_files_limit = available,
            lowered_to = fitting,
            "the open-files limit is too low for max_connections; the connection limit is lowered"
        );
        return fitting;
    }
    wanted
}
