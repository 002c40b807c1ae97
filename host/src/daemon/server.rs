//! [`serve`]: the daemon's life — open the store, load plugins, resume
//! unfinished executions, fire schedules, watch plugins, serve the API, and
//! on SIGTERM/SIGINT stop accepting work, let running steps finish within the
//! grace period, and return (exit 0).

use super::api::{ApiState, router};
use super::config::{DaemonConfig, Listen, ensure_token};
use super::core::Daemon;
use super::metrics::Metrics;
use super::reload::PluginWatcher;
use super::schedules::Schedules;
use super::store::Store;
use crate::HostBuilder;
use crate::workflow::SystemClock;
use anyhow::Context;
use std::sync::Arc;

/// Run the daemon until SIGTERM or SIGINT. Prints one JSON line to stdout
/// when it listens: `{"listening": "<address>", "token_file": "<path>"}`.
///
/// # Errors
/// The store cannot be opened, the token file created, or the address bound.
pub async fn serve(config: DaemonConfig) -> anyhow::Result<()> {
    let store = Store::open(&config.state_db)?;
    let token = ensure_token(&config.token_file).map_err(anyhow::Error::msg)?;
    let mut builder = HostBuilder::new()
        .plugin_dirs(config.plugin_dirs.clone())
        .default_limits(config.defaults.clone())
        .max_limits(config.max_limits.clone())
        .protect(&config.state_db)
        .protect(&config.token_file);
    builder = match &config.cache_dir {
        Some(dir) => builder.cache_dir(dir),
        None => builder.no_cache(),
    };
    let host = tokio::task::spawn_blocking(move || builder.build()).await??;
    for error in host.load_errors() {
        tracing::warn!("plugin not loaded: {error}");
    }
    tracing::info!(plugins = host.plugins().count(), errors = host.load_errors().len(), "plugins loaded");
    let metrics = Metrics::default();
    let runtime = tokio::runtime::Handle::current();
    let daemon = Daemon::new(store, host, Arc::new(SystemClock), runtime, config.workers, metrics);
    let resumed = daemon.resume_unfinished()?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed unfinished executions");
    }
    let schedules = Schedules::new(daemon.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Supervised: a ticker that panics is logged, counted and restarted (see `supervise`).
    let ticker = {
        let (health, metrics, schedules) = (daemon.health().clone(), daemon.metrics().clone(), schedules.clone());
        let run = move || schedules.clone().run(std::future::pending());
        tokio::spawn(super::supervise::supervise("scheduler", health, metrics, stop_rx.clone(), run))
    };
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
    let app = router(ApiState::new(daemon.clone(), schedules, &token), config.max_body_bytes);
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: no new work; running steps may finish");
        let _ = stop_tx.send(true);
    };
    let announce = |address: String| {
        println!("{}", serde_json::json!({"listening": address, "token_file": config.token_file}));
        tracing::info!(%address, "plexus daemon listening");
    };
    match &config.listen {
        Listen::Tcp(addr) => {
            let listener =
                tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            announce(listener.local_addr()?.to_string());
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
        }
        Listen::Unix(path) => {
            let _ = std::fs::remove_file(path);
            let listener = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("cannot listen on unix:{}", path.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            announce(format!("unix:{}", path.display()));
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
            let _ = std::fs::remove_file(path);
        }
    }
    let _ = ticker.await;
    let left = daemon.shutdown(config.grace_period).await;
    tracing::info!(unfinished = left, "stopped");
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
