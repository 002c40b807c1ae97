//! `wasi:http` outgoing requests for components (`wasi:http/outgoing-handler`
//! and `wasi:http/types` of WASI 0.2, by `wasmtime-wasi-http`), gated by the
//! plugin's `permissions.network` grant.
//!
//! The host sends the request itself (hyper, with rustls and the webpki
//! roots for `https`), so WASI's socket checks never see it: the gate here
//! decides from the request's URI, before any name is looked up or any
//! connection opened:
//!
//! * `network = false` (the default): every request is denied
//!   (`HTTP-request-denied` to the guest).
//! * `network = true`: any request.
//! * An allowlist: the URI's host must be an entry's host *as written* (a
//!   name matches the same name, case-insensitively; an IP address matches
//!   a URL with that literal address) and its port (given, else 80 for
//!   `http` and 443 for `https`) the entry's port or `*`. A name is never
//!   resolved to compare with an address entry: a resolver the plugin's
//!   request could influence must not open the allowlist.
//!
//! The guest cannot set `Host` and the other hop-by-hop headers
//! (wasmtime-wasi-http's forbidden headers); the call's deadline and cancel
//! drop every request in flight with the call's store.

use crate::manifest::{Endpoint, Network};
use std::sync::Arc;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// One call's gate on outgoing requests: the plugin's network grant.
pub(crate) struct HttpGate {
    plugin: String,
    network: Arc<Network>,
    /// Requests denied in this call: the first is a warning, the rest debug
    /// lines (a plugin looping on a denied URL does not flood the log).
    denied: u32,
}

impl HttpGate {
    /// The gate for one call of `plugin` under `network`.
    pub(crate) fn new(plugin: &str, network: Arc<Network>) -> Self {
        Self { plugin: plugin.to_owned(), network, denied: 0 }
    }

    /// Whether `uri` may be requested: see the module's documentation.
    pub(crate) fn allows(&self, uri: &http::Uri) -> bool {
        let entries = match &*self.network {
            Network::None => return false,
            Network::Any => return true,
            Network::Allow(entries) => entries,
        };
        let Some(host) = uri.host() else { return false };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 });
        entries.iter().any(|Endpoint { host: allowed, port: allowed_port }| {
            allowed_port.is_none_or(|p| p == port) && same_host(allowed, &host)
        })
    }
}

/// Whether an allowlist entry's host names `host` (both lowercase): the same
/// name, or the same address when both are IP addresses.
fn same_host(allowed: &str, host: &str) -> bool {
    match (allowed.parse::<std::net::IpAddr>(), host.parse::<std::net::IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        (Err(_), Err(_)) => allowed.eq_ignore_ascii_case(host),
        _ => false,
    }
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
)>;

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        _ = fut;
        if !self.allows(request.uri()) {
            self.denied = self.denied.saturating_add(1);
            let (plugin, host, port) = (&self.plugin, request.uri().host().unwrap_or(""), request.uri().port_u16());
            if self.denied == 1 {
                tracing::warn!(%plugin, host, port, "outgoing HTTP request denied: not granted by permissions.network");
            } else {
                tracing::debug!(%plugin, host, port, denied = self.denied, "outgoing HTTP request denied");
            }
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        tracing::debug!(plugin = %self.plugin, method = %request.method(), uri = %request.uri(), "outgoing HTTP request");
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(network: Network) -> HttpGate {
        HttpGate::new("t", Arc::new(network))
    }

    fn allow(entries: &[&str]) -> HttpGate {
        gate(Network::Allow(entries.iter().map(|e| Endpoint::parse(e).unwrap()).collect()))
    }

    fn uri(s: &str) -> http::Uri {
        s.parse().unwrap()
    }

    #[test]
    fn no_grant_denies_and_any_allows() {
        assert!(!gate(Network::None).allows(&uri("http://127.0.0.1:80/")));
        assert!(gate(Network::Any).allows(&uri("https://example.com/x")));
    }

    #[test]
    fn an_allowlist_matches_host_as_written_and_port_with_scheme_defaults() {
        let g = allow(&["api.example.com:443", "127.0.0.1:*", "[::1]:8080"]);
        assert!(g.allows(&uri("https://API.example.com/v1")));
        assert!(!g.allows(&uri("http://api.example.com/v1")), "http defaults to port 80");
        assert!(g.allows(&uri("http://api.example.com:443/")));
        assert!(!g.allows(&uri("https://api.example.com.evil.test/")));
        assert!(!g.allows(&uri("https://evil.test/?api.example.com")));
        assert!(g.allows(&uri("http://127.0.0.1:9999/")));
        assert!(!g.allows(&uri("http://localhost:9999/")), "names are never resolved to match an address");
        assert!(g.allows(&uri("http://[::1]:8080/")));
        assert!(!g.allows(&uri("http://[::1]:8081/")));
        assert!(!g.allows(&uri("/relative")));
    }
}
