//! The worker slots executions run in: at most `workers` at once; the
//! others wait, and a freed slot goes to the waiting execution of the highest
//! [`Priority`], the oldest first among equals (Framework0's
//! `PluginPriority`). Nothing is preempted: priority decides who starts next,
//! not who keeps running.

use plexus_client::Priority;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// A fixed number of slots handed out by priority.
pub struct Slots {
    state: Mutex<State>,
}

struct State {
    free: usize,
    waiting: BinaryHeap<Waiter>,
    /// Arrival order, for first-come first-served among equal priorities.
    arrivals: u64,
}

struct Waiter {
    priority: Priority,
    arrival: u64,
    give: oneshot::Sender<Slot>,
}

impl Ord for Waiter {
    /// Higher priority first, then earlier arrival (a max-heap pops the greatest).
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.cmp(&other.priority).then_with(|| other.arrival.cmp(&self.arrival))
    }
}

impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Waiter {}

/// A held slot; dropping it frees the slot for the next waiter.
pub struct Slot {
    slots: Option<Arc<Slots>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.release();
        }
    }
}

impl Slots {
    /// `n` slots (at least 1).
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(State { free: n.max(1), waiting: BinaryHeap::new(), arrivals: 0 }) })
    }

    /// A slot, once one is free and no waiter of a higher priority (or of
    /// the same priority, arrived earlier) is left. Dropping the future
    /// gives up the place in line.
    pub async fn acquire(self: &Arc<Self>, priority: Priority) -> Slot {
        let receive = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                return Slot { slots: Some(self.clone()) };
            }
            let (give, receive) = oneshot::channel();
            state.arrivals += 1;
            let arrival = state.arrivals;
            state.waiting.push(Waiter { priority, arrival, give });
            receive
        };
        match receive.await {
            Ok(slot) => slot,
            // The sender is only dropped after a send (never without one).
            Err(_) => std::future::pending().await,
        }
    }

    /// (free slots, executions waiting for one — including some that gave
    /// up, until a release passes them).
    pub fn usage(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (state.free, state.waiting.len())
    }

    /// How many executions wait for a slot (including some that gave up,
    /// until a release passes them).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).waiting.len()
    }

    /// Give a freed slot to the first waiter still waiting, or keep it free.
    fn release(self: &Arc<Self>) {
        loop {
            let waiter = {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                match state.waiting.pop() {
                    Some(waiter) => waiter,
                    None => {
                        state.free += 1;
                        return;
                    }
                }
            };
            // Outside the lock: a slot that comes back (its waiter gave up)
            // is defused and offered to the next waiter.
            match waiter.give.send(Slot { slots: Some(self.clone()) }) {
                Ok(()) => return,
                Err(mut unwanted) => {
                    unwanted.slots = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_highest_priority_then_the_oldest() {
        let slots = Slots::new(1);
        let held = slots.acquire(Priority::Low).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [
            ("low", Priority::Low),
            ("normal-1", Priority::Normal),
            ("critical", Priority::Critical),
            ("normal-2", Priority::Normal),
            ("high", Priority::High),
        ] {
            let (mine, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = mine.acquire(priority).await;
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }));
            // Arrive in this order.
            while slots.waiting() < tasks.len() {
                tokio::task::yield_now().await;
            }
        }
        // One that gives up its place is skipped.
        let gave_up = tokio::time::timeout(Duration::from_millis(1), slots.acquire(Priority::Critical)).await;
        assert!(gave_up.is_err());
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["critical", "high", "normal-1", "normal-2", "low"]);
        // Every slot came back: one is free again at once.
        let again = tokio::time::timeout(Duration::from_secs(1), slots.acquire(Priority::Low)).await;
        assert!(again.is_ok());
    }
}
