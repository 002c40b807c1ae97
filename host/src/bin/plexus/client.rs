//! The HTTP client of the daemon's API (TCP or Unix socket), and where its
//! address and token come from.

use crate::Global;
use anyhow::{Context as _, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use plexus_host::daemon::config::{DEFAULT_LISTEN, Listen, RawConfig, data_dir};
use serde_json::Value;
use std::path::PathBuf;

/// Exit code: the daemon refused the request (its error code is printed).
pub const REFUSED: u8 = 1;
/// Exit code: the daemon could not be reached.
pub const UNREACHABLE: u8 = 10;
/// Exit code: the token was refused.
pub const UNAUTHORIZED: u8 = 11;

/// A refused request: the daemon's error body and status.
#[derive(Debug, thiserror::Error)]
#[error("{message} ({code}){}", details.iter().map(|d| format!("\n  {d}")).collect::<String>())]
pub struct Refused {
    /// HTTP status.
    pub status: u16,
    /// The QtForge error code.
    pub code: String,
    /// The message.
    pub message: String,
    /// Details (e.g. each problem of a workflow).
    pub details: Vec<String>,
}

/// The daemon could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the plexus daemon at {address}: {cause} (is `plexus daemon` running? set --url or $PLEXUS_URL)")]
pub struct Unreachable {
    address: String,
    cause: String,
}

/// A client of one daemon.
pub struct Client {
    listen: Listen,
    token: String,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    /// The daemon named by `--url`, `$PLEXUS_URL`, or the config file's
    /// `listen` (default 127.0.0.1:7070), with the token from `$PLEXUS_TOKEN`,
    /// `--token-file`, `$PLEXUS_TOKEN_FILE`, the config's `token_file`, or
    /// the data directory's `token`.
    pub fn from_global(global: &Global) -> anyhow::Result<Self> {
        let config = match crate::config_path(global) {
            Some(path) => RawConfig::load(&path).map_err(anyhow::Error::msg)?,
            None => RawConfig::default(),
        };
        let url = global.url.clone().or_else(|| std::env::var("PLEXUS_URL").ok());
        let listen = match url {
            Some(url) => {
                let trimmed = url.trim_start_matches("http://").trim_end_matches('/');
                Listen::parse(trimmed).map_err(|e| anyhow!("--url {url}: {e}"))?
            }
            None => Listen::parse(config.listen.as_deref().unwrap_or(DEFAULT_LISTEN)).map_err(anyhow::Error::msg)?,
        };
        let token = match std::env::var("PLEXUS_TOKEN") {
            Ok(token) => token,
            Err(_) => {
                let file: PathBuf = global
                    .token_file
                    .clone()
                    .or_else(|| std::env::var_os("PLEXUS_TOKEN_FILE").map(PathBuf::from))
                    .or(config.token_file)
                    .unwrap_or_else(|| data_dir().join("token"));
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read the daemon's token from {}", file.display()))?
                    .trim()
                    .to_owned()
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Self { listen, token, runtime })
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.request("GET", path, None)
    }
    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.request("POST", path, Some(body))
    }
    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.request("DELETE", path, None)
    }

    /// Send one request; a non-2xx answer becomes a [`Refused`] error.
    pub fn request(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.runtime.block_on(self.send(method, path, body))
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let unreachable = |cause: String| Unreachable { address: self.listen.to_string(), cause };
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "plexus")
            .header("authorization", format!("Bearer {}", self.token));
        if !bytes.is_empty() {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder.body(Full::new(Bytes::from(bytes)))?;
        let response = match &self.listen {
            Listen::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| unreachable(e.to_string()))?;
                exchange(TokioIo::new(stream), request).await
            }
            Listen::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(|e| unreachable(e.to_string()))?;
                exchange(TokioIo::new(stream), request).await
            }
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let (status, text) = response;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&text).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&text).into_owned()))
        };
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let field = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        Err(Refused {
            status,
            code: field("code"),
            message: field("message"),
            details: value
                .get("details")
                .and_then(Value::as_array)
                .map(|d| d.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
        }
        .into())
    }
}

async fn exchange<I>(io: TokioIo<I>, request: Request<Full<Bytes>>) -> anyhow::Result<(u16, Bytes)>
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

/// The exit code for an error from a remote command.
pub fn exit_code(error: &anyhow::Error) -> Option<u8> {
    if error.downcast_ref::<Unreachable>().is_some() {
        return Some(UNREACHABLE);
    }
    error.downcast_ref::<Refused>().map(|r| if r.status == 401 { UNAUTHORIZED } else { REFUSED })
}
