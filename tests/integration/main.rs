//! Integration tests of the plugin host and the workflow runner: one binary,
//! one module per area (`cli`: the `plexus` binary's plugin commands;
//! `cluster`: three daemons on one PostgreSQL, a node killed, a schedule's
//! leader killed;
//! `daemon`: a real `plexus daemon` over HTTP, its CLI client, crash and
//! reload (`daemon_support` starts it); `daemon_faults`: two daemons on one
//! database, a read-only database, SIGTERM with clients that do not finish;
//! `discovery`: bad plugins among good ones; `hostile`: a hostile plugin
//! against every promise of the sandbox; `isolation`: native plugins in
//! worker processes that crash, hang and exceed their limits; `runtimes`: one source through
//! both runtimes; `sandbox`: limits and crash isolation; `workflows`: the
//! three examples end to end on the real dataset; `seeds`: the seed
//! systems' own workflow files (QtForge, Codomyrmex, the project
//! orchestrator) end to end, and aliases; `properties`: property
//! tests that no input to the readers panics; `secrets`: a secret from the
//! CLI to plugins, and nowhere else; `hooks`: webhook triggers through the CLI; `map`: a map step of 1,000
//! items across a `kill -9` of the daemon).
//!
//! The example plugins are built from source once per run by
//! `scripts/build-plugins.sh` (see `support`), so these tests exercise real
//! native libraries and real WASM components.

mod artifacts;
mod cli;
mod cluster;
mod daemon;
mod daemon_faults;
mod daemon_support;
mod discovery;
mod hooks;
mod hostile;
mod isolation;
mod lifecycle;
mod map;
mod properties;
mod runtimes;
mod sandbox;
mod sdk;
mod secrets;
mod seeds;
mod support;
mod ui;
mod workflows;
