//! # plexus-client: a client of the Plexus daemon's HTTP API
//!
//! One [`Client`] talks to one daemon over TCP or a Unix socket ([`Listen`]),
//! sends the bearer token, and turns a non-2xx answer into
//! [`ClientError::Refused`] carrying the daemon's error code, message and
//! details. Every call blocks the calling thread on the client's own
//! single-threaded tokio runtime.
//!
//! ```no_run
//! use plexus_client::{Client, Listen};
//!
//! let listen = Listen::parse("127.0.0.1:7070")?;
//! let client = Client::new(listen, std::fs::read_to_string("token")?.trim())?;
//! let health = client.get("/v1/health")?;
//! println!("{}", health["status"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::Value;
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
    /// [`ClientError::Address`] naming the text.
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ClientError::Address("listen: `unix:` needs a socket path".into()));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        text.parse::<std::net::SocketAddr>()
            .map(|_| Self::Tcp(text.to_owned()))
            .map_err(|e| ClientError::Address(format!("listen: `{text}` is neither host:port nor unix:/path ({e})")))
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

/// What a request to the daemon can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon answered with a non-2xx status.
    #[error("{message} ({code}){}", details.iter().map(|d| format!("\n  {d}")).collect::<String>())]
    Refused {
        /// HTTP status.
        status: u16,
        /// The daemon's error code (QtForge's codes, e.g. `WorkflowNotFound`).
        code: String,
        /// The message.
        message: String,
        /// Details (e.g. each problem of a workflow).
        details: Vec<String>,
    },
    /// The daemon could not be reached, or the connection broke.
    #[error(
        "cannot reach the plexus daemon at {address}: {cause} (is `plexus daemon` running? set --url or $PLEXUS_URL)"
    )]
    Unreachable {
        /// Where it was looked for.
        address: String,
        /// Why it could not be reached.
        cause: String,
    },
    /// An address that is neither `host:port` nor `unix:/path`.
    #[error("{0}")]
    Address(String),
    /// The request could not be built (e.g. a path that is not a valid URI).
    #[error("invalid request: {0}")]
    Request(String),
}

impl ClientError {
    /// The HTTP status of a refused request (`None` for the other errors).
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client of one daemon.
pub struct Client {
    listen: Listen,
    token: String,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    /// A client of the daemon at `listen`, sending `token` as the bearer token.
    ///
    /// # Errors
    /// [`ClientError::Request`] when the client's runtime cannot start.
    pub fn new(listen: Listen, token: impl Into<String>) -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Request(format!("cannot start the client's runtime: {e}")))?;
        Ok(Self { listen, token: token.into(), runtime })
    }

    /// Where this client sends its requests.
    pub fn listen(&self) -> &Listen {
        &self.listen
    }

    /// `GET path`.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.request("GET", path, None)
    }

    /// `POST path` with a JSON body.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub fn post(&self, path: &str, body: Value) -> Result<Value, ClientError> {
        self.request("POST", path, Some(body))
    }

    /// `DELETE path`.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.request("DELETE", path, None)
    }

    /// Send one request and read the JSON answer (a body that is not JSON is
    /// returned as a string; an empty one as `null`).
    ///
    /// # Errors
    /// [`ClientError::Refused`] for a non-2xx answer, [`ClientError::Unreachable`]
    /// when the daemon cannot be reached, [`ClientError::Request`] for a
    /// request that cannot be built.
    pub fn request(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, ClientError> {
        self.runtime.block_on(self.send(method, path, body))
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, ClientError> {
        let unreachable = |cause: String| ClientError::Unreachable { address: self.listen.to_string(), cause };
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "plexus")
            .header("authorization", format!("Bearer {}", self.token));
        if !bytes.is_empty() {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder.body(Full::new(Bytes::from(bytes))).map_err(|e| ClientError::Request(e.to_string()))?;
        let (status, text) = match &self.listen {
            Listen::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| unreachable(e.to_string()))?;
                exchange(TokioIo::new(stream), request).await
            }
            #[cfg(unix)]
            Listen::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(|e| unreachable(e.to_string()))?;
                exchange(TokioIo::new(stream), request).await
            }
            #[cfg(not(unix))]
            Listen::Unix(_) => return Err(unreachable("Unix sockets need a Unix system".into())),
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&text).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&text).into_owned()))
        };
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let field = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        Err(ClientError::Refused {
            status,
            code: field("code"),
            message: field("message"),
            details: value
                .get("details")
                .and_then(Value::as_array)
                .map(|d| d.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
        })
    }
}

async fn exchange<I>(io: TokioIo<I>, request: Request<Full<Bytes>>) -> Result<(u16, Bytes), hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
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
            assert!(matches!(Listen::parse(bad), Err(ClientError::Address(_))), "{bad}");
        }
    }

    #[test]
    fn a_daemon_that_is_not_there_is_unreachable() {
        // Bind and drop a listener: nothing listens on that port afterwards.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let client = Client::new(Listen::Tcp(addr.to_string()), "t").unwrap();
        let err = client.get("/v1/health").unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
        assert_eq!(err.status(), None);
    }
}
