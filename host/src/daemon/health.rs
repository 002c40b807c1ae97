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
