//! [`Health`]: the daemon's degraded conditions, as `GET /v1/health` and the
//! `plexus_health_degraded` metric report them.
//!
//! Each part of the daemon that can fail without stopping it (the state
//! database, the schedule ticker, the plugin watcher, native plugins that
//! abandoned calls, …) marks itself degraded under a fixed component name with
//! a one-line reason, and clears the mark when it recovers. The daemon is
//! `ok` while no component is degraded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The degraded components and why; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<BTreeMap<&'static str, String>>>);

impl Health {
    /// Mark `component` (e.g. `"state_db"`, `"scheduler"`) degraded because of `reason`
    /// (one line naming the cause). Logged once per change of reason.
    pub fn degrade(&self, component: &'static str, reason: impl Into<String>) {
        let reason = reason.into();
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(component) != Some(&reason) {
            tracing::warn!(component, %reason, "daemon degraded");
            map.insert(component, reason);
        }
    }

    /// `component` works again.
    pub fn recover(&self, component: &'static str) {
        if self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(component).is_some() {
            tracing::info!(component, "recovered");
        }
    }

    /// Look at the host's abandoned native calls
    /// ([`plexus_host::runtime::abandoned_calls`]): `native_calls` is degraded while
    /// any is still running (each holds a thread), naming the plugins and
    /// those past their budget.
    pub fn check_native_calls(&self) {
        let alive: Vec<String> = plexus_host::runtime::abandoned_calls()
            .into_iter()
            .filter(|(_, (alive, _))| *alive > 0)
            .map(|(plugin, (alive, _))| {
                let over = if alive >= plexus_host::runtime::ABANDONED_CALL_BUDGET { ", unavailable" } else { "" };
                format!("{plugin}: {alive} running{over}")
            })
            .collect();
        if alive.is_empty() {
            self.recover("native_calls");
        } else {
            self.degrade(
                "native_calls",
                format!(
                    "timed-out native calls still running (budget {} per plugin): {}",
                    plexus_host::runtime::ABANDONED_CALL_BUDGET,
                    alive.join("; ")
                ),
            );
        }
    }

    /// Whether any component is degraded.
    pub fn is_degraded(&self) -> bool {
        !self.0.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// The degraded components and their reasons, by component name.
    pub fn reasons(&self) -> BTreeMap<String, String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degrade_and_recover() {
        let health = Health::default();
        assert!(!health.is_degraded());
        health.degrade("state_db", "disk full");
        health.degrade("scheduler", "ticker restarted");
        assert!(health.is_degraded());
        assert_eq!(health.reasons().get("state_db").map(String::as_str), Some("disk full"));
        health.recover("state_db");
        health.recover("scheduler");
        assert!(!health.is_degraded() && health.reasons().is_empty());
    }
}

#[cfg(test)]
mod native_calls {
    use super::*;
    use plexus_host::{CallError, CallOptions, HostBuilder};
    use plexus_sdk::{Operations, Plugin, PluginInfo};
    use std::time::{Duration, Instant};

    /// A plugin whose `nap` ignores cancellation (its own id: abandoned calls are counted per id).
    #[derive(Default)]
    struct Sleepy;

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct Nap {
        ms: u64,
    }

    impl Plugin for Sleepy {
        fn info() -> PluginInfo {
            PluginInfo::new("health.sleepy", "Ignores cancellation", "1.0.0")
        }
        fn operations(ops: &mut Operations<Self>) {
            ops.add("nap", "Sleeps `ms`, ignoring cancellation", |_, _, p: Nap| {
                std::thread::sleep(Duration::from_millis(p.ms));
                Ok(p.ms)
            });
        }
    }

    #[test]
    fn abandoned_native_calls_degrade_health_until_they_return() {
        let host = HostBuilder::new().no_cache().in_process::<Sleepy>(serde_json::Value::Null).build().unwrap();
        let options = CallOptions { timeout: Some(Duration::from_millis(20)), ..CallOptions::default() };
        for _ in 0..plexus_host::runtime::ABANDONED_CALL_BUDGET {
            let nap = host.call("health.sleepy", "nap", serde_json::json!({"ms": 1500}), options.clone());
            assert!(matches!(nap, Err(CallError::Timeout { .. })));
        }
        let health = Health::default();
        health.check_native_calls();
        let reason = health.reasons().get("native_calls").cloned().unwrap_or_default();
        assert!(reason.contains("health.sleepy: 8 running, unavailable"), "{reason}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let alive = || plexus_host::runtime::abandoned_calls().get("health.sleepy").map_or(0, |calls| calls.0);
        while alive() > 0 {
            assert!(Instant::now() < deadline, "the abandoned calls never returned");
            std::thread::sleep(Duration::from_millis(20));
        }
        health.check_native_calls();
        let reason = health.reasons().get("native_calls").cloned().unwrap_or_default();
        assert!(!reason.contains("health.sleepy"), "{reason}");
    }
}
