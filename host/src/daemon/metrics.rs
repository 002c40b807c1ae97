//! [`Metrics`]: the daemon's Prometheus metrics (`GET /metrics`, text format),
//! kept with `prometheus-client`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `plexus_executions_total` | counter | `status`: each execution end (and `started`) |
//! | `plexus_executions` | gauge | `status`: executions in the database, read at scrape time |
//! | `plexus_steps_total` | counter | `status`, `plugin`: each step end |
//! | `plexus_step_duration_seconds` | histogram | `plugin`: completed and failed steps, first attempt to end |
//! | `plexus_plugins_loaded` | gauge | — |
//! | `plexus_plugin_load_errors` | gauge | — |
//! | `plexus_scheduler_lag_seconds` | histogram | — : start time minus scheduled fire time |
//! | `plexus_journal_errors_total` | counter | — : state writes that failed |

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;

type Labels = Vec<(String, String)>;

/// The daemon's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    executions: Family<Labels, Counter>,
    executions_by_status: Family<Labels, Gauge>,
    steps: Family<Labels, Counter>,
    step_duration: Family<Labels, Histogram, fn() -> Histogram>,
    plugins_loaded: Gauge,
    load_errors: Gauge,
    scheduler_lag: Histogram,
    journal_errors: Counter,
}

fn duration_histogram() -> Histogram {
    // 100 µs … ~27 min.
    Histogram::new(exponential_buckets(0.0001, 4.0, 12))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("plexus");
        let executions = Family::<Labels, Counter>::default();
        registry.register("executions", "Executions started and ended, by status", executions.clone());
        let executions_by_status = Family::<Labels, Gauge>::default();
        registry.register("executions", "Executions in the state database, by status", executions_by_status.clone());
        let steps = Family::<Labels, Counter>::default();
        registry.register("steps", "Steps ended, by status and plugin", steps.clone());
        let step_duration = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        registry.register("step_duration_seconds", "Step durations, by plugin", step_duration.clone());
        let plugins_loaded = Gauge::default();
        registry.register("plugins_loaded", "Plugins loaded", plugins_loaded.clone());
        let load_errors = Gauge::default();
        registry.register("plugin_load_errors", "Plugin folders that did not load", load_errors.clone());
        let scheduler_lag = duration_histogram();
        registry.register("scheduler_lag_seconds", "Delay between a fire time and the start", scheduler_lag.clone());
        let journal_errors = Counter::default();
        registry.register("journal_errors", "State database writes that failed", journal_errors.clone());
        Self(Arc::new(Inner {
            registry,
            executions,
            executions_by_status,
            steps,
            step_duration,
            plugins_loaded,
            load_errors,
            scheduler_lag,
            journal_errors,
        }))
    }
}

impl Metrics {
    /// An execution started or ended with `status`.
    pub fn execution(&self, status: &str) {
        self.0.executions.get_or_create(&vec![("status".into(), status.into())]).inc();
    }
    /// A step of `plugin` ended with `status` after `duration_ms` (if it ran).
    pub fn step(&self, plugin: &str, status: &str, duration_ms: Option<u64>) {
        self.0.steps.get_or_create(&vec![("status".into(), status.into()), ("plugin".into(), plugin.into())]).inc();
        if let Some(ms) = duration_ms {
            self.0.step_duration.get_or_create(&vec![("plugin".into(), plugin.into())]).observe(ms as f64 / 1000.0);
        }
    }
    /// The plugin counts after a (re)load.
    pub fn plugins(&self, loaded: usize, errors: usize) {
        self.0.plugins_loaded.set(loaded as i64);
        self.0.load_errors.set(errors as i64);
    }
    /// A scheduled fire started `lag_ms` after its fire time.
    pub fn scheduler_lag(&self, lag_ms: u64) {
        self.0.scheduler_lag.observe(lag_ms as f64 / 1000.0);
    }
    /// A state write failed.
    pub fn journal_error(&self) {
        self.0.journal_errors.inc();
    }
    /// The text exposition, with `counts` (executions per status in the
    /// database) as the `plexus_executions` gauge.
    pub fn render(&self, counts: &[(String, u64)]) -> String {
        // Recomputed from the store at each scrape: statuses that reached 0 are dropped.
        self.0.executions_by_status.clear();
        for (status, n) in counts {
            self.0.executions_by_status.get_or_create(&vec![("status".into(), status.clone())]).set(*n as i64);
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.0.registry) {
            tracing::error!("metrics encoding failed: {e}");
        }
        out
    }
}
