//! # plexus-client: the Plexus daemon's HTTP API, typed
//!
//! The request and response types of every route (`/v1/plugins`,
//! `/v1/workflows`, `/v1/executions`, `/v1/schedules`, …) and the execution
//! statuses ([`status`]) live here; the daemon serves them, the CLI, the
//! tests and the benchmarks read them. With the default `http` feature,
//! [`Client`] offers one method per route over TCP or a Unix socket
//! ([`Listen`]), sends the bearer token, percent-encodes every path segment
//! and query value ([`path`]), and turns a non-2xx answer into
//! [`ClientError::Refused`] carrying the daemon's [`DaemonError`] (a code
//! from QtForge's list, a message and details). Without `http`, only the
//! types are compiled (no tokio or hyper). The `openapi` feature derives
//! `utoipa::ToSchema` for the daemon's OpenAPI document.
//!
//! ```no_run
//! # #[cfg(feature = "http")] {
//! use plexus_client::status::WorkflowStatus;
//! use plexus_client::{Client, Listen};
//!
//! let listen = Listen::parse("127.0.0.1:7070")?;
//! let client = Client::new(listen, std::fs::read_to_string("token")?.trim())?;
//! let started = client.start("weather-pipeline", serde_json::Map::new())?;
//! let done = client.execution(&started.execution_id, Some(30_000))?;
//! assert_eq!(done.status.status, WorkflowStatus::Completed);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod executions;
pub mod hooks;
#[cfg(feature = "http")]
mod http;
mod nodes;
mod plugins;
mod schedules;
mod secrets;
pub mod status;
mod templates;
mod transactions;
mod workflows;

pub use error::{DaemonError, ErrorCode};
pub use executions::*;
pub use hooks::{HookCreated, HookDelivery, HookDetails, HookList, HookSpec, HookView};
#[cfg(feature = "http")]
pub use http::{Client, ClientError};
pub use nodes::*;
pub use plugins::*;
pub use schedules::*;
pub use secrets::*;
pub use templates::*;
pub use transactions::*;
pub use workflows::*;

use serde::Serialize;
use std::path::PathBuf;

/// Where a daemon listens: `host:port` or `unix:/path/to/socket`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Listen {
    /// A TCP address, e.g. `127.0.0.1:7070`.
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl Listen {
    /// Parse `host:port` (an IP address and a port) or `unix:/path`.
    ///
    /// # Errors
    /// [`AddressError`] naming the text.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(AddressError("listen: `unix:` needs a socket path".into()));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        text.parse::<std::net::SocketAddr>()
            .map(|_| Self::Tcp(text.to_owned()))
            .map_err(|e| AddressError(format!("listen: `{text}` is neither host:port nor unix:/path ({e})")))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// An address that is neither `host:port` nor `unix:/path`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AddressError(pub String);

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`)
/// is percent-encoded in a path segment or a query value.
const ENCODED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// An API path from its segments, each percent-encoded, and query pairs
/// whose values are given (`None` values are left out), e.g.
/// `path(&["v1", "executions", id], &[("wait_ms", Some("30000"))])`.
///
/// ```
/// assert_eq!(
///     plexus_client::path(&["v1", "workflows", "a b/c"], &[("version", Some("2")), ("x", None)]),
///     "/v1/workflows/a%20b%2Fc?version=2"
/// );
/// ```
pub fn path(segments: &[&str], query: &[(&str, Option<&str>)]) -> String {
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        out.extend(percent_encoding::utf8_percent_encode(segment, ENCODED));
    }
    let mut separator = '?';
    for (key, value) in query {
        if let Some(value) = value {
            out.push(separator);
            out.extend(percent_encoding::utf8_percent_encode(key, ENCODED));
            out.push('=');
            out.extend(percent_encoding::utf8_percent_encode(value, ENCODED));
            separator = '&';
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_host_port_or_a_unix_socket() {
        assert_eq!(Listen::parse("127.0.0.1:7070").unwrap(), Listen::Tcp("127.0.0.1:7070".into()));
        assert_eq!(Listen::parse("unix:/tmp/p.sock").unwrap(), Listen::Unix("/tmp/p.sock".into()));
        assert_eq!(Listen::parse("unix:/tmp/p.sock").unwrap().to_string(), "unix:/tmp/p.sock");
        for bad in ["localhost", "unix:", "127.0.0.1", ""] {
            assert!(matches!(Listen::parse(bad), Err(AddressError(_))), "{bad}");
        }
    }
}
