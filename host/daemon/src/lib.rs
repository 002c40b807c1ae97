//! The host daemon (`plexus daemon`): keeps plugins loaded, runs workflows
//! submitted to it and fired by schedules, survives restarts, and is driven
//! over HTTP.
//!
//! * [`config`]: `plexus.toml`, raw and validated;
//! * [`store`]: durable state in SQLite (WAL, migrations);
//! * [`dbfile`]: the database file's exclusive lock, start-up and identity checks;
//! * [`core::Daemon`]: workflows and executions, journalled to the store;
//! * [`metrics`]: Prometheus metrics.
//!
//! Run one in a tokio runtime (what `plexus daemon` does):
//!
//! ```no_run
//! use plexus_daemon::config::RawConfig;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RawConfig::load("plexus.toml".as_ref())?.resolve()?;
//! plexus_daemon::server::serve(config).await?; // until SIGTERM or SIGINT
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod config;
pub mod core;
pub mod dbfile;
pub mod error;
pub mod health;
pub mod journal;
pub mod metrics;
pub mod openapi;
pub mod reload;
pub mod schedule;
pub mod schedules;
pub mod server;
pub mod store;
pub mod supervise;

pub use core::{Daemon, Origin};
#[cfg(test)]
mod tests;
pub use error::{DaemonError, ErrorCode};
