//! Integration tests of the plugin host: one binary, one module per area.
//!
//! The example plugins are built from source once per run by
//! `scripts/build-plugins.sh` (see `support`), so these tests exercise real
//! native libraries and real WASM components.

mod cli;
mod discovery;
mod runtimes;
mod sandbox;
mod support;
