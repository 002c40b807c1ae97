//! [`Metrics`]: the daemon's Prometheus metrics (`GET /metrics`, text format),
//! kept with `prometheus-client`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `plexus_executions_total` | counter | `status`: each execution end (and `started`) |
//! | `plexus_executions_in_store` | gauge | `status`: executions in the database, read at scrape time |
//! | `plexus_steps_total` | counter | `status`, `plugin`: each step end |
//! | `plexus_step_duration_seconds` | histogram | `plugin`: completed and failed steps, first attempt to end |
//! | `plexus_plugins_loaded` | gauge | — |
//! | `plexus_plugin_load_errors` | gauge | — |
//! | `plexus_scheduler_lag_seconds` | histogram | — : start time minus scheduled fire time |
//! | `plexus_journal_errors_total` | counter | — : state writes that failed |
//! | `plexus_background_restarts_total` | counter | `task`: background tasks restarted after a panic or an unexpected end |
//! | `plexus_abandoned_calls_total` | counter | `plugin`: native calls that timed out while their thread kept running |
//! | `plexus_health_degraded` | gauge | `component`: 1 while the component is degraded (see `GET /v1/health`) |
//!
//! In a cluster (several daemons on one PostgreSQL) every sample carries
//! the daemon's node id as a label (`node`, see [`Metrics::for_node`]).
//!
//! Every family has its own name (a strict OpenMetrics parser rejects two
//! families under one name); a test parses the real output to keep it so.

use plexus_workflow::WorkflowStatus;
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
    background_restarts: Family<Labels, Counter>,
    abandoned_calls: Family<Labels, Counter>,
    health_degraded: Family<Labels, Gauge>,
}

fn duration_histogram() -> Histogram {
    // 100 µs … ~27 min.
    Histogram::new(exponential_buckets(0.0001, 4.0, 12))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::with_registry(Registry::with_prefix("plexus"))
    }
}

impl Metrics {
    /// Metrics whose every sample carries `node="<node>"` (the daemon's node
    /// id: nodes of one cluster scraped together stay apart).
    pub fn for_node(node: &str) -> Self {
        let labels = [(std::borrow::Cow::Borrowed("node"), std::borrow::Cow::Owned(node.to_owned()))];
        Self::with_registry(Registry::with_prefix_and_labels("plexus", labels.into_iter()))
    }

    fn with_registry(mut registry: Registry) -> Self {
        let executions = Family::<Labels, Counter>::default();
        registry.register("executions", "Executions started and ended, by status", executions.clone());
        let executions_by_status = Family::<Labels, Gauge>::default();
        registry.register(
            "executions_in_store",
            "Executions in the state database, by status",
            executions_by_status.clone(),
        );
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
        let background_restarts = Family::<Labels, Counter>::default();
        registry.register(
            "background_restarts",
            "Background tasks restarted after a panic or an unexpected end, by task",
            background_restarts.clone(),
        );
        let abandoned_calls = Family::<Labels, Counter>::default();
        registry.register(
            "abandoned_calls",
            "Native calls that timed out while their thread kept running, by plugin",
            abandoned_calls.clone(),
        );
        let health_degraded = Family::<Labels, Gauge>::default();
        registry.register("health_degraded", "1 while a component is degraded, by component", health_degraded.clone());
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
            background_restarts,
            abandoned_calls,
            health_degraded,
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
    /// State writes that failed since the daemon started (`plexus_journal_errors_total`).
    pub fn journal_errors(&self) -> u64 {
        self.0.journal_errors.get()
    }
    /// Background task `task` was restarted.
    pub fn background_restart(&self, task: &str) {
        self.0.background_restarts.get_or_create(&vec![("task".into(), task.into())]).inc();
    }
    /// Set `plexus_abandoned_calls_total{plugin}` to `total` (a running count
    /// kept by the host, see [`plexus_host::runtime::abandoned_calls`]).
    pub fn abandoned_calls(&self, plugin: &str, total: u64) {
        let counter = self.0.abandoned_calls.get_or_create(&vec![("plugin".into(), plugin.into())]);
        counter.inc_by(total.saturating_sub(counter.get()));
    }
    /// The degraded components now: 1 for each in `degraded`, 0 for any seen before.
    pub fn health(&self, degraded: &std::collections::BTreeMap<String, String>) {
        for component in ["state_db", "scheduler", "plugin_watcher", "native_calls"]
            .into_iter()
            .map(str::to_owned)
            .chain(degraded.keys().cloned())
        {
            let gauge = self.0.health_degraded.get_or_create(&vec![("component".into(), component.clone())]);
            gauge.set(i64::from(degraded.contains_key(&component)));
        }
    }
    /// The text exposition, with `counts` (executions per status in the
    /// database) as the `plexus_executions_in_store` gauge.
    pub fn render(&self, counts: &[(WorkflowStatus, u64)]) -> String {
        // Recomputed from the store at each scrape: statuses that reached 0 are dropped.
        self.0.executions_by_status.clear();
        for (status, n) in counts {
            self.0.executions_by_status.get_or_create(&vec![("status".into(), status.as_str().into())]).set(*n as i64);
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.0.registry) {
            tracing::error!("metrics encoding failed: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exposition of a daemon that has seen one of everything.
    fn busy() -> String {
        let m = Metrics::default();
        m.execution("started");
        m.execution("completed");
        m.step("plexus.echo.native", "completed", Some(12));
        m.step("plexus.echo.wasm", "failed", None);
        m.plugins(3, 1);
        m.scheduler_lag(250);
        m.journal_error();
        m.background_restart("scheduler");
        m.abandoned_calls("plexus.echo.native", 2);
        m.abandoned_calls("plexus.echo.native", 5);
        let mut degraded = std::collections::BTreeMap::new();
        degraded.insert("native_calls".to_owned(), "2 running".to_owned());
        m.health(&degraded);
        m.render(&[(WorkflowStatus::Running, 2), (WorkflowStatus::Completed, 7)])
    }

    #[test]
    fn the_exposition_parses_strictly_with_one_family_per_name() {
        let text = busy();
        let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&text)
            .unwrap_or_else(|e| panic!("not valid OpenMetrics: {e:?}\n{text}"));
        let mut declared: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
        let n = declared.len();
        declared.sort_unstable();
        declared.dedup();
        assert_eq!(declared.len(), n, "a family name is declared twice:\n{text}");
        assert_eq!(parsed.families.len(), n);
        for family in
            ["plexus_executions", "plexus_executions_in_store", "plexus_abandoned_calls", "plexus_health_degraded"]
        {
            assert!(parsed.families.contains_key(family), "{family} missing:\n{text}");
        }
        assert!(text.contains(r#"plexus_abandoned_calls_total{plugin="plexus.echo.native"} 5"#), "{text}");
        assert!(text.contains(r#"plexus_health_degraded{component="native_calls"} 1"#), "{text}");
        assert!(text.contains(r#"plexus_health_degraded{component="scheduler"} 0"#), "{text}");
        assert!(text.contains(r#"plexus_executions_in_store{status="completed"} 7"#), "{text}");
    }

    #[test]
    fn the_parser_refuses_two_families_under_one_name() {
        // What /metrics said before: a counter and a gauge both called `plexus_executions`.
        let text = "# TYPE plexus_executions counter\nplexus_executions_total{status=\"started\"} 1\n\
                    # TYPE plexus_executions gauge\nplexus_executions{status=\"running\"} 2\n# EOF\n";
        assert!(openmetrics_parser::openmetrics::parse_openmetrics(text).is_err());
    }
}
