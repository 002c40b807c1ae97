//! [`DaemonError`]: why the daemon refused a request, with a code from
//! QtForge's `PluginErrorCode` list so clients can branch on it. The types
//! live in `plexus-client` (they are the API's error body).

use super::store::StoreError;
pub use plexus_client::{DaemonError, ErrorCode};

impl From<StoreError> for DaemonError {
    fn from(e: StoreError) -> Self {
        tracing::error!("{e}");
        Self::new(ErrorCode::Internal, e.to_string())
    }
}

/// The result of daemon operations.
pub type DaemonResult<T> = Result<T, DaemonError>;
