//! Supervision of the daemon's background tasks (the schedule ticker, the
//! plugin watcher): a task that ends before the daemon stops — a panic or an
//! unexpected return — is logged, counted in
//! `plexus_background_restarts_total{task}`, marked in health under the
//! task's component name, and started again after a backoff (100 ms, doubling
//! up to [`MAX_BACKOFF`]). Health recovers once a restarted task has run for
//! [`HEALTHY_AFTER`] without failing.

use super::health::Health;
use super::metrics::Metrics;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// The longest wait before a restart.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A task that has run this long since its last restart counts as healthy again.
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Backoff between restarts: doubles after each failure, back to the first
/// step after a run of [`HEALTHY_AFTER`].
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(FIRST_BACKOFF)
    }
}

impl Backoff {
    /// The wait before the next restart, after a run that lasted `ran`.
    pub(crate) fn next(&mut self, ran: Duration) -> Duration {
        if ran >= HEALTHY_AFTER {
            self.0 = FIRST_BACKOFF;
        }
        let wait = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        wait
    }
}

/// Run `task` (a fresh future from `start` each time) under supervision
/// until `stop` turns true; then the running one is dropped. `name` is the
/// health component and the metric's `task` label (`"scheduler"`, …).
pub(crate) async fn supervise<F, Fut>(
    name: &'static str,
    health: Health,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = Backoff::default();
    let mut restarts = 0u64;
    loop {
        let started = std::time::Instant::now();
        let mut task = tokio::spawn(start());
        let ended = loop {
            tokio::select! {
                ended = &mut task => break ended,
                _ = stop.wait_for(|s| *s) => {
                    task.abort();
                    return;
                }
                // Healthy again after a quiet while.
                _ = tokio::time::sleep(HEALTHY_AFTER), if restarts > 0 && started.elapsed() < HEALTHY_AFTER => {
                    health.recover(name);
                }
            }
        };
        if *stop.borrow() {
            return;
        }
        let why = match ended {
            Ok(()) => "ended unexpectedly".to_owned(),
            Err(e) if e.is_panic() => format!("panicked: {}", panic_message(&*e.into_panic())),
            Err(e) => format!("failed: {e}"),
        };
        restarts += 1;
        let wait = backoff.next(started.elapsed());
        tracing::error!(task = name, restarts, "background task {why}; restarting in {} ms", wait.as_millis());
        metrics.background_restart(name);
        health.degrade(name, format!("the {name} task {why}; restarted {restarts} time(s)"));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_resets_after_a_healthy_run() {
        let mut b = Backoff::default();
        let short = Duration::from_millis(1);
        let waits: Vec<u128> = (0..12).map(|_| b.next(short).as_millis()).collect();
        assert_eq!(&waits[..4], [100, 200, 400, 800]);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF.as_millis());
        assert_eq!(b.next(HEALTHY_AFTER).as_millis(), 100);
    }

    #[tokio::test]
    async fn a_panicking_task_is_restarted_counted_and_reported() {
        let health = Health::default();
        let metrics = Metrics::default();
        let (stop_tx, stop_rx) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let supervisor = tokio::spawn(supervise("scheduler", health.clone(), metrics.clone(), stop_rx, move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    panic!("tick {n} failed");
                }
                std::future::pending::<()>().await;
            }
        }));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 3 {
            assert!(std::time::Instant::now() < deadline, "not restarted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let reason = health.reasons().get("scheduler").cloned().unwrap_or_default();
        assert!(reason.contains("panicked: tick 1 failed") && reason.contains("2 time(s)"), "{reason}");
        assert!(metrics.render(&[]).contains(r#"plexus_background_restarts_total{task="scheduler"} 2"#));
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), supervisor).await.unwrap().unwrap();
    }
}
