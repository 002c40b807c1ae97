//! Exit codes of `plexus`, one per kind of failure a script may want to tell apart.

use plexus_host::CallError;

/// Something else went wrong (I/O, bad input to the CLI).
pub const ERROR: u8 = 1;
/// The plugin returned an error.
pub const PLUGIN_ERROR: u8 = 3;
/// The call timed out.
pub const TIMEOUT: u8 = 4;
/// The plugin (or operation) is not loaded.
pub const NOT_LOADED: u8 = 5;
/// The plugin panicked, trapped, crashed its worker process or hit a resource limit.
pub const CRASHED: u8 = 6;
/// The host had no capacity for the call (every instance slot busy): retry later.
pub const NO_CAPACITY: u8 = 7;
/// A plugin did not load (`plugins list`) or has a problem (`plugins check`).
pub const LOAD_FAILED: u8 = 13;

/// The exit code for a failed call.
pub fn for_call_error(error: &CallError) -> u8 {
    match error {
        CallError::Plugin { .. } => PLUGIN_ERROR,
        CallError::Timeout { .. } | CallError::Cancelled { .. } => TIMEOUT,
        CallError::PluginNotFound(_) | CallError::OperationNotFound { .. } | CallError::Unavailable { .. } => {
            NOT_LOADED
        }
        CallError::Panic { .. }
        | CallError::Trap { .. }
        | CallError::Crashed { .. }
        | CallError::MemoryLimit { .. }
        | CallError::ResourceLimit { .. } => CRASHED,
        CallError::Capacity { .. } => NO_CAPACITY,
        CallError::Host { .. } => ERROR,
    }
}
