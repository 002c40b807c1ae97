//! Hot plugin reload: watch the plugin directories (`notify`) and rescan
//! them when something changes, after 300 ms without further events (a copy
//! of a plugin folder is many events). See [`plexus_host::Host::rescan`] for what a
//! rescan loads, reloads, unloads or reports.
//!
//! Supervised: a rescan that panics is logged, counted in
//! `plexus_background_restarts_total{task="plugin_watcher"}`, marks health
//! `plugin_watcher` degraded, and the watcher goes on after a backoff; the
//! next rescan that succeeds clears the mark.

use super::core::Daemon;
use super::supervise::{Backoff, panic_message};
use notify::{RecursiveMode, Watcher};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::Duration;

/// How long the directories must be quiet before a rescan.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(300);

/// Watches the plugin directories while it lives.
pub(crate) struct PluginWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl PluginWatcher {
    /// Watch `daemon`'s plugin directories. A directory that does not exist
    /// is reported and skipped.
    ///
    /// # Errors
    /// The platform's watcher cannot be created.
    pub(crate) fn start(daemon: Daemon) -> notify::Result<Self> {
        let (tx, rx) = mpsc::channel::<()>();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(e) if !e.kind.is_access() => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("plugin directory watch: {e}"),
        })?;
        for dir in daemon.host().plugin_dirs() {
            match watcher.watch(dir, RecursiveMode::Recursive) {
                Ok(()) => tracing::info!(dir = %dir.display(), "watching plugin directory"),
                Err(e) => tracing::warn!(dir = %dir.display(), "cannot watch plugin directory: {e}"),
            }
        }
        std::thread::Builder::new()
            .name("plexus-reload".into())
            .spawn(move || {
                // Ends when the watcher (and with it the sender) is dropped.
                let mut backoff = Backoff::default();
                while rx.recv().is_ok() {
                    while rx.recv_timeout(DEBOUNCE).is_ok() {}
                    match std::panic::catch_unwind(AssertUnwindSafe(|| daemon.reload_plugins())) {
                        Ok(changes) => {
                            backoff = Backoff::default();
                            daemon.health().recover("plugin_watcher");
                            if !changes.is_empty() {
                                tracing::info!(changes = changes.len(), "plugins reloaded");
                            }
                        }
                        Err(panic) => {
                            let why = panic_message(&*panic);
                            let wait = backoff.next(Duration::ZERO);
                            tracing::error!("plugin rescan panicked: {why}; watching again in {} ms", wait.as_millis());
                            daemon.metrics().background_restart("plugin_watcher");
                            daemon.health().degrade("plugin_watcher", format!("a plugin rescan panicked: {why}"));
                            std::thread::sleep(wait);
                        }
                    }
                }
            })
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        Ok(Self { _watcher: watcher })
    }
}
