//! What an execution looks like from outside: statuses, per-step records and
//! the step state machine. The types live in [`plexus_client::status`], which
//! the daemon's API serves and its clients read; they are re-exported here so
//! that the engine's users need one crate.

pub use plexus_client::status::*;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch of `t`.
pub fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
