//! The host daemon (`plexus daemon`): keeps plugins loaded, runs workflows
//! submitted to it and fired by schedules, survives restarts, and is driven
//! over HTTP.
//!
//! * [`config`]: `plexus.toml`, raw and validated;
//! * [`store`]: durable state in SQLite (WAL, migrations) or PostgreSQL
//!   (several daemons on one database: a cluster, see [`Daemon::join_cluster`]);
//! * the database file's exclusive lock, start-up and identity checks
//!   ([`FileChanged`]);
//! * [`Daemon`]: workflows and executions, journalled to the store, with
//!   its [`Health`];
//! * [`metrics`]: Prometheus metrics;
//! * [`api`]: the HTTP API, whose types live in `plexus-client`, and its
//!   generated OpenAPI document ([`openapi`]); [`views`] turns the plugin
//!   host's types into the API's; [`ui`] the web UI it serves at `/ui/`,
//!   whose logins [`sessions`] keeps.
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
pub mod artifacts;
pub mod config;
mod core;
mod dbfile;
pub mod error;
mod health;
pub mod hooks;
mod journal;
pub mod metrics;
pub mod openapi;
pub mod orchestrate;
mod reload;
pub mod schedule;
pub mod schedules;
pub mod secrets;
pub mod server;
pub mod sessions;
mod slots;
pub mod store;
mod supervise;
#[doc(hidden)]
pub mod testing;
pub mod ui;
pub mod views;

pub use core::{CLAIM_BATCH, CLUSTER_POLL, DEFAULT_LEASE, Daemon, Origin, Registered, new_node_id, parse_workflow};
pub use dbfile::FileChanged;
pub use health::Health;
#[cfg(test)]
mod tests;
pub use error::{DaemonError, ErrorCode};
