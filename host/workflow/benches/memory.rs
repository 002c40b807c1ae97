//! Heap held per pending step (see README, "Speed"): a prepared 10,000-step
//! random DAG and a started-but-not-run execution record, counted by an
//! instrumented allocator (bytes requested, whatever allocator serves them).
//! Kept apart from the speed benchmarks, whose timings the counting would
//! slow down.
//!
//! Run with `bash scripts/bench.sh` or `cargo bench -p plexus-workflow --bench memory`.

mod common;

use plexus_workflow::engine::{Execution, Prepared};
use plexus_workflow::validate;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    let cache = tempfile::tempdir().unwrap();
    let host = common::host(cache.path());
    let docs = common::docs();
    let region = Region::new(GLOBAL);
    let valid = validate(&docs[2].1, Some(&host)).unwrap();
    let prepared = Prepared::new(valid);
    let exec = Execution::new("bench".into(), &prepared, Default::default());
    let held = region.change();
    let bytes = held.bytes_allocated as isize - held.bytes_deallocated as isize;
    let steps = common::STEPS;
    println!("memory per pending step: {} bytes ({steps} steps, {bytes} bytes held)", bytes / steps as isize);
    drop((exec, prepared));
}
