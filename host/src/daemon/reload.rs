//! Hot plugin reload: watch the plugin directories (`notify`) and rescan
//! them when something changes, after 300 ms without further events (a copy
//! of a plugin folder is many events). See [`crate::Host::rescan`] for what a
//! rescan loads, reloads, unloads or reports.

use super::core::Daemon;
use notify::{RecursiveMode, Watcher};
use std::sync::mpsc;
use std::time::Duration;

/// How long the directories must be quiet before a rescan.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Watches the plugin directories while it lives.
pub struct PluginWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl PluginWatcher {
    /// Watch `daemon`'s plugin directories. A directory that does not exist
    /// is reported and skipped.
    ///
    /// # Errors
    /// The platform's watcher cannot be created.
    pub fn start(daemon: Daemon) -> notify::Result<Self> {
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
                while rx.recv().is_ok() {
                    while rx.recv_timeout(DEBOUNCE).is_ok() {}
                    let changes = daemon.reload_plugins();
                    if !changes.is_empty() {
                        tracing::info!(changes = changes.len(), "plugins reloaded");
                    }
                }
            })
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        Ok(Self { _watcher: watcher })
    }
}
