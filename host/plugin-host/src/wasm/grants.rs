//! What a WASM plugin may reach outside its sandbox: directories opened once at
//! load, environment variables by name, and network endpoints.
//!
//! Directories are checked and opened when the plugin loads, never re-resolved
//! by path afterwards: the WASI preopens are built once from the directory
//! handles opened then (on Linux through `/proc/self/fd/N`, which names the
//! open directory itself, not a path), and every call shares them (an `Arc` of
//! the open directory per preopen, no system call per call). Renaming a
//! granted directory, or replacing it (or one of its parents) with a symbolic
//! link, changes nothing for the plugin: it keeps seeing the directory that
//! was granted when it loaded.
//!
//! Refused at load, with the field named: a grant that does not exist or is
//! not a directory; two grants that are the same or nested once symbolic links
//! are resolved; a read-write grant containing the plugin's own folder or
//! artifact (the plugin could rewrite its `plugin.toml` and grant itself more at
//! the next reload); any grant reaching a path the host protects (the component
//! cache, whose files the host runs as native code; the daemon's state database
//! and token).

use crate::error::LoadErrorKind;
use crate::manifest::{DirAccess, Endpoint, Manifest, Network, Permissions, nested, resolve};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// A plugin's grants, checked and opened at load.
pub(crate) struct Grants {
    /// The granted directories as WASI preopens, opened at load; cloned into
    /// every call's context (the clones share the open directories).
    filesystem: WasiFilesystemCtx,
    env: Vec<String>,
    network: Arc<Network>,
    /// For `Network::Allow`: the entries and their resolved names, shared by every call.
    allowlist: Option<Arc<AllowList>>,
}

/// A network allowlist with a cache of what its names resolve to.
struct AllowList {
    entries: Vec<Endpoint>,
    /// Name → (when resolved, addresses), kept for [`RESOLVED_FOR`].
    resolved: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Vec<std::net::IpAddr>)>>,
}

/// How long a resolved allowlist name is trusted before it is resolved again.
const RESOLVED_FOR: std::time::Duration = std::time::Duration::from_secs(30);

impl Grants {
    /// Check `manifest`'s `[permissions]` against the plugin's own files and the
    /// host's `protected` paths, and open every granted directory.
    ///
    /// # Errors
    /// [`LoadErrorKind::InvalidManifest`] naming `permissions.dirs` and the directory.
    pub(crate) fn open(
        manifest: &Manifest,
        protected: &[(PathBuf, &str)],
        plugin_dirs: &[PathBuf],
    ) -> Result<Self, LoadErrorKind> {
        let Permissions { dirs, env, network, orchestration: _, secrets: _ } = &manifest.permissions;
        let invalid = |m: String| LoadErrorKind::InvalidManifest(format!("permissions.dirs: {m}"));
        let folder = resolve(&manifest.dir);
        let own = [Some(folder.clone()), manifest.artifact.canonicalize().ok()];
        let mut resolved: Vec<PathBuf> = Vec::with_capacity(dirs.len());
        let mut preopens = WasiCtxBuilder::new();
        for dir in dirs {
            let host = dir.host.canonicalize().map_err(|e| invalid(format!("{}: {e}", dir.host.display())))?;
            if !host.is_dir() {
                return Err(invalid(format!("{} is not a directory", dir.host.display())));
            }
            if let Some(other) = resolved.iter().find(|other| nested(other, &host)) {
                return Err(invalid(format!(
                    "{} and {} are the same or nested once symbolic links are resolved; grant one directory once",
                    other.display(),
                    host.display()
                )));
            }
            if dir.access == DirAccess::ReadWrite
                && let Some(mine) = own.iter().flatten().find(|mine| mine.starts_with(&host))
            {
                return Err(invalid(format!(
                    "{} is granted read-write but contains the plugin's own {}; grant a subfolder such as `data` instead",
                    dir.host.display(),
                    mine.display()
                )));
            }
            if dir.access == DirAccess::ReadWrite
                && let Some(plugins) = plugin_dirs
                    .iter()
                    .find(|d| d.starts_with(&host) || host.starts_with(d) && !host.starts_with(&folder))
            {
                return Err(invalid(format!(
                    "{} is granted read-write but reaches the plugins directory {} (other plugins' folders); grant a subfolder of this plugin's own folder, or a directory elsewhere",
                    dir.host.display(),
                    plugins.display()
                )));
            }
            if let Some((path, what)) = protected.iter().find(|(p, _)| nested(p, &host)) {
                return Err(invalid(format!(
                    "{} overlaps {what} {}, which the host keeps from plugins",
                    dir.host.display(),
                    path.display()
                )));
            }
            preopen(&mut preopens, &host, &dir.guest, dir.access)
                .map_err(|e| invalid(format!("{}: {e:#}", host.display())))?;
            resolved.push(host);
        }
        let allowlist = match network {
            Network::Allow(entries) => {
                Some(Arc::new(AllowList { entries: entries.clone(), resolved: Default::default() }))
            }
            _ => None,
        };
        let filesystem = preopens.build().filesystem().clone();
        Ok(Self { filesystem, env: env.clone(), network: Arc::new(network.clone()), allowlist })
    }

    /// The granted directories, for one call's WASI context
    /// (`*ctx.filesystem() = grants.filesystem()`): shares the directories
    /// opened at load.
    pub(crate) fn filesystem(&self) -> WasiFilesystemCtx {
        self.filesystem.clone()
    }

    /// Grant one call's WASI context the environment variables and network
    /// the manifest grants, and nothing else (directories: [`Grants::filesystem`]).
    pub(crate) fn apply(&self, builder: &mut WasiCtxBuilder) {
        for name in &self.env {
            if let Ok(value) = std::env::var(name) {
                builder.env(name, value);
            }
        }
        match (&*self.network, &self.allowlist) {
            (Network::None, _) | (Network::Allow(_), None) => {}
            (Network::Any, _) => {
                builder.inherit_network().allow_ip_name_lookup(true).allow_tcp(true).allow_udp(true);
            }
            (Network::Allow(_), Some(list)) => {
                let list = list.clone();
                let names = list.entries.iter().any(|e| e.host.parse::<std::net::IpAddr>().is_err());
                builder
                    .socket_addr_check(move |addr, usage| Box::pin(allowed(list.clone(), addr, usage)))
                    .allow_ip_name_lookup(names)
                    .allow_tcp(true)
                    .allow_udp(true);
            }
        }
    }

    /// The gate on one call's `wasi:http` requests of `plugin`: the same
    /// network grant, matched on the request's URI.
    #[cfg(feature = "wasi-http")]
    pub(crate) fn http_gate(&self, plugin: &str) -> super::http_gate::HttpGate {
        super::http_gate::HttpGate::new(plugin, self.network.clone())
    }
}

/// Whether `addr` may be used for `usage` under an allowlist: binding to an
/// ephemeral port (what `connect` and `send` do implicitly) is allowed;
/// listening and accepting are not (a plugin is no server); connecting or
/// sending (or receiving a datagram) needs an entry whose port matches and whose host is that IP, or a
/// name that resolves to it.
async fn allowed(list: Arc<AllowList>, addr: SocketAddr, usage: SocketAddrUse) -> bool {
    match usage {
        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => return addr.port() == 0,
        SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => {}
        _ => return false,
    }
    for entry in &list.entries {
        if entry.port.is_some_and(|p| p != addr.port()) {
            continue;
        }
        match entry.host.parse::<std::net::IpAddr>() {
            Ok(ip) if ip == addr.ip() => return true,
            Ok(_) => {}
            // A name: allowed when it resolves to this address. A received
            // datagram is checked against names resolved already, never
            // resolves one (a flood of datagrams must not flood the resolver).
            Err(_) => {
                let fresh =
                    |resolved: &(std::time::Instant, Vec<std::net::IpAddr>)| resolved.0.elapsed() < RESOLVED_FOR;
                let cached = list
                    .resolved
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&entry.host)
                    .filter(|r| fresh(r))
                    .map(|r| r.1.clone());
                let ips = match cached {
                    Some(ips) => ips,
                    None if matches!(usage, SocketAddrUse::UdpReceive) => continue,
                    None => {
                        let name = (entry.host.clone(), addr.port());
                        let found = tokio::task::spawn_blocking(move || {
                            std::net::ToSocketAddrs::to_socket_addrs(&name)
                                .map(|found| found.map(|a| a.ip()).collect::<Vec<_>>())
                                .unwrap_or_default()
                        })
                        .await
                        .unwrap_or_default();
                        list.resolved
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert(entry.host.clone(), (std::time::Instant::now(), found.clone()));
                        found
                    }
                };
                if ips.contains(&addr.ip()) {
                    return true;
                }
            }
        }
    }
    false
}

/// Add `host` to `preopens` at `guest`, opened once: the directory is opened,
/// checked to be what `host` resolved to (no swap between the two), and the
/// preopen is made from that open directory.
fn preopen(preopens: &mut WasiCtxBuilder, host: &Path, guest: &str, access: DirAccess) -> wasmtime::Result<()> {
    let perms = match access {
        DirAccess::ReadOnly => FsPerms::ReadOnly,
        DirAccess::ReadWrite => FsPerms::ReadWrite,
    };
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let handle = std::fs::File::open(host)?;
        let opened = handle.metadata()?;
        let named = std::fs::metadata(host)?;
        if !opened.is_dir() || (opened.dev(), opened.ino()) != (named.dev(), named.ino()) {
            wasmtime::bail!("the directory changed while it was being opened");
        }
        let open_path = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
        if open_path.is_dir() {
            preopens.preopened_dir(&open_path, guest, perms)?;
            return Ok(());
        }
        tracing::warn!(dir = %host.display(), "/proc is not mounted: the grant is opened by its path");
    }
    preopens.preopened_dir(host, guest, perms)?;
    Ok(())
}
