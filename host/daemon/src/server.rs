//! [`serve`]: the daemon's life — open the store (taking its exclusive lock
//! and checking it), load plugins, resume unfinished executions, fire
//! schedules, watch plugins, serve the API, and on SIGTERM/SIGINT stop
//! accepting work and starting steps at once, let running steps and requests
//! finish within the grace period, and return (exit 0) by its end whatever
//! clients do: long-polls are answered at once, connections still open at the
//! deadline (a half-sent request, a slow client) are closed.

use super::api::{ApiState, router};
use super::config::{DaemonConfig, Listen, ensure_token};
use super::core::Daemon;
use super::error::{DaemonError, ErrorCode};
use super::metrics::Metrics;
use super::reload::PluginWatcher;
use super::schedules::Schedules;
use super::store::{PgStore, SqliteStore, Store};
use plexus_host::HostBuilder;
use plexus_workflow::SystemClock;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

/// Open the store `config.state_db` names: a PostgreSQL database for a
/// `postgres://` URL, else the SQLite file (returned too, for the plugins'
/// grants to keep out).
async fn open_store(config: &DaemonConfig) -> Result<(Arc<dyn Store>, Option<std::path::PathBuf>), DaemonError> {
    match config.state_db.url() {
        Some(url) => {
            let store = PgStore::connect(url).await?;
            tracing::info!(database = %store.name(), "state in PostgreSQL");
            Ok((Arc::new(store), None))
        }
        None => Ok((Arc::new(SqliteStore::open(&config.state_db.0)?), Some(config.state_db.0.clone()))),
    }
}

/// Run the daemon until SIGTERM or SIGINT. Prints one JSON line to stdout
/// when it listens: `{"listening": "<address>", "token_file": "<path>",
/// "node": "<node id>", "ui": "http://<address>/ui/"}` (`ui` is null on a
/// Unix socket). On a PostgreSQL store it joins the cluster of
/// daemons on that database (see [`Daemon::join_cluster`]) once it listens,
/// and hands its unfinished executions back when it stops.
///
/// # Errors
/// A [`DaemonError`] (code `Internal`) when the store cannot be opened, the
/// token file created, the plugins' host built, or the address bound.
pub async fn serve(config: DaemonConfig) -> Result<(), DaemonError> {
    let (store, database) = open_store(&config).await?;
    let token = ensure_token(&config.token_file).map_err(startup)?;
    let keyring = crate::secrets::Keyring::load(config.secrets_key_file.as_deref()).map_err(startup)?;
    match &keyring {
        Some(k) => tracing::info!(key = %k.id(), "secrets store enabled"),
        None => tracing::info!(
            "no secrets key (${} or secrets_key_file): secrets cannot be set or used",
            crate::secrets::KEY_ENV
        ),
    }
    let secrets = crate::secrets::Secrets::load(store.clone(), keyring).await?;
    let mut builder = HostBuilder::new()
        .secrets(secrets.clone())
        .plugin_dirs(config.plugin_dirs.clone())
        .default_limits(config.defaults.clone())
        .max_limits(config.max_limits.clone())
        .native_isolation(config.native_isolation)
        .protect(&config.token_file);
    if let Some(file) = &config.secrets_key_file {
        builder = builder.protect(file);
    }
    if let Some(file) = &database {
        builder = builder.protect(file);
    }
    builder = builder.protect(&config.artifacts_dir);
    for (name, plugin) in &config.aliases {
        builder = builder.alias(name, plugin);
    }
    builder = match &config.cache_dir {
        Some(dir) => builder.cache_dir(dir),
        None => builder.no_cache(),
    };
    let open_files = plexus_host::process::raise_open_file_limit();
    tracing::info!(open_files, "open-file limit");
    let host = tokio::task::spawn_blocking(move || builder.build()).await.map_err(startup)?.map_err(startup)?;
    for error in host.load_errors() {
        tracing::warn!("plugin not loaded: {error}");
    }
    tracing::info!(plugins = host.plugins().count(), errors = host.load_errors().len(), "plugins loaded");
    let node = crate::core::new_node_id();
    let shared = store.cluster().is_some();
    // In a cluster every sample names its node; a lone daemon's series stay
    // the same across restarts (its node id is new at each).
    let metrics = if shared { Metrics::for_node(&node) } else { Metrics::default() };
    let runtime = tokio::runtime::Handle::current();
    let daemon = Daemon::new_node(store, host, Arc::new(SystemClock), runtime, config.workers, metrics, node);
    daemon.set_secrets(secrets);
    let artifacts = crate::artifacts::open(&daemon, &config.artifacts_dir).map_err(|e| {
        DaemonError::new(
            crate::error::ErrorCode::Internal,
            format!("cannot open the artifact store {}: {e}", config.artifacts_dir.display()),
        )
    })?;
    tracing::info!(dir = %config.artifacts_dir.display(), "artifact store");
    daemon.set_artifacts(artifacts);
    tracing::info!(node = %daemon.node_id(), "node");
    daemon.set_retention(config.retention);
    // On a shared store the claims resume what no node runs (see `join_cluster`, below).
    if !shared {
        let resumed = daemon.resume_unfinished().await?;
        if resumed > 0 {
            tracing::info!(resumed, "resumed unfinished executions");
        }
        resume_rollbacks(&daemon).await?;
    }
    let schedules = Schedules::new(daemon.clone());
    super::orchestrate::install(&schedules);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let _watcher = if config.watch {
        match PluginWatcher::start(daemon.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("hot reload disabled: {e}");
                None
            }
        }
    } else {
        None
    };
    let app = router(ApiState::new(daemon.clone(), schedules.clone(), &token), config.max_body_bytes);
    let node = daemon.node_id().to_owned();
    let announce = |address: String| {
        tracing::info!(%address, %node, "plexus daemon listening");
        if let Some(ui) = ui_url(&address) {
            tracing::info!("web UI at {ui} (log in with the token file's content)");
        }
        address
    };
    let mut stopping = stop_rx.clone();
    let graceful = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    let mut unix_socket = None;
    let address;
    let server: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match &config.listen {
        Listen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| startup(format!("cannot listen on {addr}: {e}")))?;
            address = announce(listener.local_addr().map_err(startup)?.to_string());
            Box::pin(axum::serve(listener, app).with_graceful_shutdown(graceful).into_future())
        }
        Listen::Unix(path) => {
            let _ = std::fs::remove_file(path);
            let listener = tokio::net::UnixListener::bind(path)
                .map_err(|e| startup(format!("cannot listen on unix:{}: {e}", path.display())))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(startup)?;
            }
            address = announce(format!("unix:{}", path.display()));
            unix_socket = Some(path.clone());
            Box::pin(axum::serve(listener, app).with_graceful_shutdown(graceful).into_future())
        }
    };
    if daemon.join_cluster(Some(address.clone()), config.node_lease).await? {
        // The rollbacks no live node carries on (each is claimed by one node).
        resume_rollbacks(&daemon).await?;
    }
    // Schedules fire from now on (in a cluster: once this node joined, by the leader).
    // Supervised: a ticker that panics is logged, counted and restarted (see `supervise`).
    let ticker = {
        let (health, metrics, schedules) = (daemon.health().clone(), daemon.metrics().clone(), schedules.clone());
        let run = move || schedules.clone().run(std::future::pending());
        tokio::spawn(super::supervise::supervise("scheduler", health, metrics, stop_rx.clone(), run))
    };
    // Announced once it serves (and, on a shared store, has joined the cluster).
    let ui = ui_url(&address);
    println!("{}", serde_json::json!({"listening": address, "token_file": config.token_file, "node": node, "ui": ui}));
    let mut server = server;
    let ended_by_itself = tokio::select! {
        served = &mut server => {
            served.map_err(startup)?;
            true
        }
        () = shutdown_signal() => false,
    };
    // From here on the grace period bounds everything: no step starts, the
    // server stops accepting and answers long-polls at once, running steps
    // and requests may finish until the deadline; then open connections are
    // closed (dropped with the runtime) and unfinished executions are left
    // to resume at the next start.
    tracing::info!(
        grace_ms = config.grace_period.as_millis() as u64,
        "shutting down: no new work; running steps may finish"
    );
    daemon.begin_shutdown();
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + config.grace_period;
    let server_closed =
        async { if ended_by_itself { Ok(Ok(())) } else { tokio::time::timeout_at(deadline, &mut server).await } };
    let ticker_stopped = tokio::time::timeout_at(deadline, ticker);
    let (left, served, _) = tokio::join!(daemon.shutdown(config.grace_period), server_closed, ticker_stopped);
    match served {
        Ok(Err(e)) => tracing::warn!("HTTP server: {e}"),
        Err(_) => tracing::warn!("grace period over: closing the HTTP connections still open"),
        Ok(Ok(())) => {}
    }
    if let Some(path) = unix_socket {
        let _ = std::fs::remove_file(path);
    }
    // The plugins' cleanup, now: abandoned calls' threads may still hold
    // the host when the process exits, so it might never be dropped.
    daemon.leave_cluster().await;
    let host = daemon.host();
    let _ = tokio::task::spawn_blocking(move || host.stop()).await;
    tracing::info!(unfinished = left, "stopped");
    Ok(())
}

/// Carry on with the transaction rollbacks a stop interrupted.
async fn resume_rollbacks(daemon: &Daemon) -> Result<(), DaemonError> {
    let rollbacks = daemon.resume_rollbacks().await?;
    if rollbacks > 0 {
        tracing::info!(rollbacks, "resumed interrupted transaction rollbacks");
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// A failure to start or run the server, as a [`DaemonError`].
/// Where a browser on this machine opens the web UI of a daemon listening on
/// `address` (`None` on a Unix socket): a wildcard address becomes loopback.
fn ui_url(address: &str) -> Option<String> {
    let addr: std::net::SocketAddr = address.parse().ok()?;
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    Some(format!("http://{}/ui/", std::net::SocketAddr::new(ip, addr.port())))
}

fn startup(e: impl std::fmt::Display) -> DaemonError {
    DaemonError::new(ErrorCode::Internal, e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ui_address_is_loopback_for_a_wildcard_and_none_on_a_socket() {
        assert_eq!(super::ui_url("127.0.0.1:7070").as_deref(), Some("http://127.0.0.1:7070/ui/"));
        assert_eq!(super::ui_url("0.0.0.0:80").as_deref(), Some("http://127.0.0.1:80/ui/"));
        assert_eq!(super::ui_url("[::]:9").as_deref(), Some("http://[::1]:9/ui/"));
        assert_eq!(super::ui_url("unix:/run/plexus.sock"), None);
    }
}
