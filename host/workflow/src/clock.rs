//! Time, injectable: the engine asks a [`Clock`] for the time and for delays,
//! so retry backoff (and later cron and catch-up) is tested without waiting.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// How far ahead a deadline lands when `t + d` cannot be represented: far
/// enough to mean "never", small enough to fit every clock.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `t + d` without panicking: a sum past the clock's range becomes a time far
/// in the future (about 100 years on), or `t` itself if even that overflows.
pub fn after(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d).or_else(|| t.checked_add(FAR)).unwrap_or(t)
}

/// `Instant::now() + d` without panicking (see [`after`]).
pub(crate) fn instant_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).or_else(|| now.checked_add(FAR)).unwrap_or(now)
}

/// A future returned by [`Clock::sleep`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A source of time and delays.
pub trait Clock: Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// The real clock (tokio timers).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock for tests: sleeping returns at once and moves virtual time forward,
/// and every requested delay is recorded.
#[derive(Debug, Clone)]
pub struct MockClock {
    inner: Arc<Mutex<MockState>>,
}

#[derive(Debug)]
struct MockState {
    now: SystemTime,
    sleeps: Vec<Duration>,
}

impl MockClock {
    /// A mock clock starting at `start`.
    pub fn new(start: SystemTime) -> Self {
        Self { inner: Arc::new(Mutex::new(MockState { now: start, sleeps: Vec::new() })) }
    }
    /// Every delay requested so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).sleeps.clone()
    }
    /// Move time forward without a sleep.
    pub fn advance(&self, by: Duration) {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        state.now = after(state.now, by);
    }
}

impl Clock for MockClock {
    fn now(&self) -> SystemTime {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).now
    }
    fn sleep(&self, duration: Duration) -> Sleep {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        state.now = after(state.now, duration);
        state.sleeps.push(duration);
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_arithmetic_saturates() {
        let now = SystemTime::now();
        assert_eq!(after(now, Duration::from_secs(1)), now + Duration::from_secs(1));
        assert!(after(now, Duration::MAX) > now + Duration::from_secs(50 * 365 * 24 * 3600));
        assert!(instant_after(Duration::MAX) > Instant::now());
        let clock = MockClock::new(now);
        clock.advance(Duration::MAX);
        drop(clock.sleep(Duration::MAX));
    }
}
