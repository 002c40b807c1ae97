//! [`Schedules`]: the service that keeps schedules in the store and fires
//! them on the daemon's clock.
//!
//! Each [`Schedules::tick`] looks at every enabled schedule once, asks
//! [`Schedule::plan`] which fire times are due since the last one handled,
//! applies the overlap policy, starts executions (after their jitter) and
//! records every fire — started, queued or skipped — in the fire history
//! before moving the schedule's "last handled" mark. The loop in
//! [`Schedules::run`] ticks at the next fire time (at least once a second);
//! tests call `tick` themselves with a mock clock. In a cluster only the
//! node holding the `scheduler` leadership ticks (see [`Daemon::leads`]).
//!
//! Catch-up with `run_all` and `overlap`: when one tick has several fires of
//! a `run_all` schedule to run (missed fires, oldest first, then the on-time
//! one), they are queued and run one after another — each starts when the
//! previous one ends — whatever `overlap` says, so `overlap = skip` (the
//! default) does not defeat the catch-up. With `overlap = allow` they all
//! start at once. Queued catch-up fires start without jitter. Fires that come
//! due while a catch-up queue is still draining follow `overlap` as usual.

use super::core::{Daemon, Origin};
use super::error::{DaemonError, DaemonResult, ErrorCode};
use super::schedule::{CatchUp, Overlap, Schedule, ScheduleSpec, Target, Trigger};
use super::store::{Fire, FireOutcome, ScheduleRow};
use chrono::{DateTime, Utc};
use plexus_workflow::status::epoch_ms;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

pub use plexus_client::ScheduleView;

/// The fire times a schedule's view lists ([`ScheduleView::upcoming`]).
const UPCOMING: usize = 5;

/// The schedule service; cheap to clone.
#[derive(Clone)]
pub struct Schedules(Arc<Inner>);

struct Inner {
    daemon: Daemon,
    /// Fire times waiting for a running execution, oldest first: at most one
    /// for `overlap = queue_one`, a whole catch-up for `catch_up = run_all`.
    queued: Mutex<HashMap<String, VecDeque<DateTime<Utc>>>>,
    /// Held while a queued fire is started.
    starting: tokio::sync::Mutex<()>,
    wake: Notify,
}

fn ms_to_time(ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms as i64).unwrap_or_default()
}

/// A [`Schedules`] that does not keep it alive (the orchestrator the host
/// holds must not keep the daemon, which holds the host).
#[derive(Clone)]
pub(crate) struct WeakSchedules(std::sync::Weak<Inner>);

impl WeakSchedules {
    pub(crate) fn upgrade(&self) -> Option<Schedules> {
        self.0.upgrade().map(Schedules)
    }
}

impl Schedules {
    pub(crate) fn downgrade(&self) -> WeakSchedules {
        WeakSchedules(Arc::downgrade(&self.0))
    }

    /// The daemon whose schedules these are.
    pub fn daemon(&self) -> &Daemon {
        &self.0.daemon
    }

    /// The service of `daemon`.
    pub fn new(daemon: Daemon) -> Self {
        Self(Arc::new(Inner {
            daemon,
            queued: Mutex::default(),
            starting: tokio::sync::Mutex::const_new(()),
            wake: Notify::new(),
        }))
    }

    fn now(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from(self.0.daemon.clock().now())
    }

    async fn row(&self, id: &str) -> DaemonResult<ScheduleRow> {
        let rows = self.0.daemon.store().schedules().await?;
        rows.into_iter().find(|r| r.id == id).ok_or_else(|| DaemonError::not_found(format!("schedule `{id}`")))
    }

    fn parse(row: &ScheduleRow) -> DaemonResult<Schedule> {
        let spec: ScheduleSpec = serde_json::from_value(row.spec.clone())
            .map_err(|e| DaemonError::invalid(format!("schedule `{}`: {e}", row.id)))?;
        Schedule::new(spec)
    }

    /// Create a schedule. A workflow target must be registered; an
    /// operation target's plugin and operation must be loaded (it is
    /// registered as the one-step workflow `schedule.<id>`).
    ///
    /// # Errors
    /// Invalid spec, [`ErrorCode::AlreadyExists`], [`ErrorCode::PluginNotFound`],
    /// [`ErrorCode::DependencyNotSatisfied`] for an unknown workflow.
    pub async fn create(&self, spec: ScheduleSpec) -> DaemonResult<ScheduleView> {
        let schedule = Schedule::new(spec)?;
        let daemon = &self.0.daemon;
        if let Trigger::At(at) = schedule.trigger
            && at <= self.now()
        {
            return Err(DaemonError::invalid(format!(
                "schedule `{}`: when `{}` is not in the future (now {}); an `at` schedule fires once, at a later time",
                schedule.spec.id,
                schedule.spec.when,
                self.now().to_rfc3339()
            )));
        }
        match &schedule.target {
            Target::Workflow { id, inputs } => {
                let row = daemon.store().workflow(id, None).await?.ok_or_else(|| {
                    DaemonError::new(
                        ErrorCode::DependencyNotSatisfied,
                        format!("schedule `{}` runs workflow `{id}`, which is not registered", schedule.spec.id),
                    )
                })?;
                let valid = super::core::parse_workflow(&row.source)?;
                plexus_workflow::orchestrator::resolve_inputs(&valid.workflow, inputs.clone())
                    .map_err(|e| DaemonError::invalid(format!("schedule `{}`: {e}", schedule.spec.id)))?;
            }
            Target::Operation { plugin, operation, .. } => {
                let host = daemon.host();
                let loaded = host.plugin(plugin).ok_or_else(|| {
                    DaemonError::new(ErrorCode::PluginNotFound, format!("no plugin `{plugin}` is loaded"))
                })?;
                if loaded.runtime.metadata().operation(operation).is_none() {
                    return Err(DaemonError::new(
                        ErrorCode::PluginNotFound,
                        format!("plugin `{plugin}` has no operation `{operation}`"),
                    ));
                }
                let capabilities = &loaded.runtime.metadata().capabilities;
                if !capabilities.iter().any(|c| c == plexus_sdk::capability::SCHEDULED_TASK) {
                    return Err(DaemonError::invalid(format!(
                        "schedule `{}`: plugin `{plugin}` does not declare the `scheduled-task` capability, so it \
                         cannot be scheduled (it declares: {}); schedule a workflow that calls it as a step instead",
                        schedule.spec.id,
                        if capabilities.is_empty() { "none".to_owned() } else { capabilities.join(", ") }
                    )));
                }
            }
        }
        let id = schedule.spec.id.clone();
        if daemon.store().schedules().await?.iter().any(|r| r.id == id) {
            return Err(DaemonError::new(ErrorCode::AlreadyExists, format!("schedule `{id}` already exists")));
        }
        if let Some(source) = schedule.operation_workflow() {
            daemon.register_scheduled_operation(&source).await?;
        }
        let spec = serde_json::to_value(&schedule.spec).map_err(|e| DaemonError::invalid(e.to_string()))?;
        let created = epoch_ms(daemon.clock().now());
        if !daemon.store().insert_schedule(&id, &spec, schedule.spec.enabled, created).await? {
            return Err(DaemonError::new(ErrorCode::AlreadyExists, format!("schedule `{id}` already exists")));
        }
        tracing::info!(schedule = %id, when = %schedule.spec.when, "schedule created");
        self.0.wake.notify_one();
        self.get(&id).await
    }

    fn view(&self, row: &ScheduleRow, now: DateTime<Utc>, running: usize) -> DaemonResult<ScheduleView> {
        let schedule = Self::parse(row)?;
        let created = ms_to_time(row.created_at_ms);
        let from = row.last_fire_ms.map(ms_to_time).map_or(now, |last| last.max(now));
        let next = if row.enabled { schedule.next_fire(from, created) } else { None };
        let upcoming = std::iter::successors(next, |&t| schedule.next_fire(t, created))
            .take(UPCOMING)
            .map(|t| t.to_rfc3339())
            .collect();
        let mut spec = schedule.spec;
        spec.enabled = row.enabled;
        Ok(ScheduleView {
            next_fire: next.map(|t| t.to_rfc3339()),
            upcoming,
            last_fire: row.last_fire_ms.map(|t| ms_to_time(t).to_rfc3339()),
            running,
            queued: self
                .0
                .queued
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&row.id)
                .is_some_and(|q| !q.is_empty()),
            spec,
        })
    }

    /// Every schedule with its next fire time. A stored schedule that no
    /// longer validates (e.g. saved by an older version without today's
    /// bounds) is left out and logged; it never fires, and can be deleted.
    pub async fn list(&self) -> DaemonResult<Vec<ScheduleView>> {
        let now = self.now();
        let rows = self.0.daemon.store().schedules().await?;
        let running = self.0.daemon.running_by_schedule(None).await;
        Ok(rows
            .iter()
            .filter_map(|row| {
                self.view(row, now, running.get(&row.id).copied().unwrap_or(0))
                    .inspect_err(|e| tracing::error!(schedule = %row.id, "unreadable schedule: {e}"))
                    .ok()
            })
            .collect())
    }

    /// Schedule `id`.
    pub async fn get(&self, id: &str) -> DaemonResult<ScheduleView> {
        let running = self.0.daemon.running_for_schedule(id).await;
        self.view(&self.row(id).await?, self.now(), running)
    }

    /// The newest `limit` fires of schedule `id`.
    pub async fn history(&self, id: &str, limit: u32) -> DaemonResult<Vec<Fire>> {
        self.row(id).await?;
        Ok(self.0.daemon.store().fires(id, limit).await?)
    }

    /// Pause schedule `id`: it does not fire until resumed.
    pub async fn pause(&self, id: &str) -> DaemonResult<ScheduleView> {
        self.row(id).await?;
        self.0.daemon.store().set_schedule_enabled(id, false).await?;
        self.get(id).await
    }

    /// Resume schedule `id`. Fire times that passed while it was paused are
    /// not caught up: pausing means "don't run".
    pub async fn resume(&self, id: &str) -> DaemonResult<ScheduleView> {
        let row = self.row(id).await?;
        if !row.enabled {
            let now = epoch_ms(self.0.daemon.clock().now());
            let fire = Fire {
                fire_time_ms: now,
                fired_at_ms: now,
                outcome: FireOutcome::Resumed,
                execution_id: None,
                message: Some("fire times while paused are not caught up".into()),
            };
            self.0.daemon.store().record_fire(id, &fire, true).await?;
            self.0.daemon.store().set_schedule_enabled(id, true).await?;
        }
        self.0.wake.notify_one();
        self.get(id).await
    }

    /// Delete schedule `id` (running executions go on; history stays), and
    /// the one-step workflow generated for an operation target.
    pub async fn delete(&self, id: &str) -> DaemonResult<()> {
        let generated = (self.row(id).await.ok().and_then(|row| Self::parse(&row).ok()))
            .filter(|schedule| schedule.operation_workflow().is_some())
            .map(|schedule| schedule.workflow_id());
        if !self.0.daemon.store().delete_schedule(id).await? {
            return Err(DaemonError::not_found(format!("schedule `{id}`")));
        }
        if let Some(workflow) = generated {
            let _ = self.0.daemon.delete_workflow(&workflow).await;
        }
        self.0.queued.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
        Ok(())
    }

    /// Fire schedule `id` now, whatever its time and overlap policy (a
    /// manual run). Returns the execution id.
    pub async fn run_now(&self, id: &str) -> DaemonResult<String> {
        let schedule = Self::parse(&self.row(id).await?)?;
        let now = self.now();
        let exec = self.start(&schedule, now, FireOutcome::Manual).await?;
        Ok(exec)
    }

    /// Start one execution of `schedule` for `fire` and record it.
    async fn start(&self, schedule: &Schedule, fire: DateTime<Utc>, outcome: FireOutcome) -> DaemonResult<String> {
        let daemon = &self.0.daemon;
        let id = &schedule.spec.id;
        let inputs = match &schedule.target {
            Target::Workflow { inputs, .. } => inputs.clone(),
            Target::Operation { .. } => Default::default(),
        };
        let fire_ms = fire.timestamp_millis() as u64;
        let origin = Origin {
            schedule_id: Some(id.clone()),
            fire_time_ms: Some(fire_ms),
            priority: schedule.spec.priority,
            ..Origin::default()
        };
        // In a cluster, a fire (not a manual run) is started only by the
        // leader, checked again right before the start: a leader paused past
        // its lease (another node leads now) does not fire it a second time.
        if outcome != FireOutcome::Manual && !daemon.leads("scheduler").await {
            return Err(DaemonError::invalid_state(format!(
                "schedule `{id}`: this node no longer fires the schedules (another node leads)"
            )));
        }
        let now_ms = epoch_ms(daemon.clock().now());
        let result = match self.capable(schedule).await {
            Ok(()) => daemon.start(&schedule.workflow_id(), inputs, origin).await,
            Err(refused) => Err(refused),
        };
        let record = Fire {
            fire_time_ms: fire_ms,
            fired_at_ms: now_ms,
            outcome: if result.is_ok() { outcome } else { FireOutcome::Failed },
            execution_id: result.as_ref().ok().map(|e| e.id().to_owned()),
            message: result.as_ref().err().map(ToString::to_string),
        };
        daemon.store().record_fire(id, &record, outcome != FireOutcome::Manual).await?;
        let exec = result?;
        // The scheduler lag is observed when the execution gets its worker (`Daemon::launch`).
        tracing::info!(schedule = %id, execution = %exec.id(), fire_time = %fire.to_rfc3339(), "schedule fired");
        // When it ends, a queued fire may start. (In a cluster it may run on
        // another node: then the next tick, within a second, starts it.)
        if daemon.live(exec.id()).is_none() {
            return Ok(exec.id().to_owned());
        }
        let this = self.clone();
        let schedule_id = id.clone();
        let watched = exec.clone();
        tokio::spawn(async move {
            watched.wait().await;
            this.0.wake.notify_one();
            if let Err(e) = this.start_queued_boxed(schedule_id.clone()).await {
                tracing::warn!(schedule = %schedule_id, "queued fire not started: {e}");
            }
        });
        Ok(exec.id().to_owned())
    }

    /// Whether the plugins `schedule` calls still declare the capability it
    /// needs, as loaded now (a hot reload may have changed them since the
    /// schedule was created): `scheduled-task` for an operation, `workflow-step`
    /// for each step of a workflow. A plugin that is not loaded is left to
    /// the run (it fails as `PluginNotFound`).
    ///
    /// # Errors
    /// [`ErrorCode::DependencyNotSatisfied`] naming the plugin and what it declares.
    async fn capable(&self, schedule: &Schedule) -> DaemonResult<()> {
        let daemon = &self.0.daemon;
        let (needed, plugins) = match &schedule.target {
            Target::Operation { plugin, .. } => (plexus_sdk::capability::SCHEDULED_TASK, vec![plugin.clone()]),
            Target::Workflow { id, .. } => {
                // A missing workflow is the start's error to report.
                let Ok(prepared) = daemon.current_prepared(id).await else { return Ok(()) };
                let plugins = prepared.workflow.steps.iter().map(|s| s.action.plugin_id.clone()).collect();
                (plexus_sdk::capability::WORKFLOW_STEP, plugins)
            }
        };
        let host = daemon.host();
        for name in plugins {
            let plexus_host::Resolved::Plugin(id) = host.resolve(&name) else { continue };
            let Some(plugin) = host.plugin(id) else { continue };
            let declared = &plugin.runtime.metadata().capabilities;
            if !declared.iter().any(|c| c == needed) {
                let list = if declared.is_empty() { "none".to_owned() } else { declared.join(", ") };
                return Err(DaemonError::new(
                    ErrorCode::DependencyNotSatisfied,
                    format!("plugin `{id}` no longer declares `{needed}` (it declares: {list}): not fired"),
                ));
            }
        }
        Ok(())
    }

    /// [`Self::start_queued`] as a boxed future: it starts an execution whose
    /// end starts the next queued fire, a cycle of futures only a box ends.
    fn start_queued_boxed(
        &self,
        id: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = DaemonResult<Option<String>>> + Send>> {
        let this = self.clone();
        Box::pin(async move { this.start_queued(&id).await })
    }

    /// Start the oldest queued fire of schedule `id` if none of its runs is
    /// running. Returns the execution id.
    async fn start_queued(&self, id: &str) -> DaemonResult<Option<String>> {
        // One at a time, so the tick and an ending run cannot both start one.
        let _one = self.0.starting.lock().await;
        if self.0.daemon.running_for_schedule(id).await > 0 || !self.0.daemon.is_accepting() {
            return Ok(None);
        }
        let fire = {
            let mut queued = self.0.queued.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(queue) = queued.get_mut(id) else { return Ok(None) };
            let fire = queue.pop_front();
            if queue.is_empty() {
                queued.remove(id);
            }
            fire
        };
        let Some(fire) = fire else { return Ok(None) };
        let schedule = Self::parse(&self.row(id).await?)?;
        Ok(Some(self.start(&schedule, fire, FireOutcome::Started).await?))
    }

    fn queue_len(&self, id: &str) -> usize {
        self.0.queued.lock().unwrap_or_else(PoisonError::into_inner).get(id).map_or(0, VecDeque::len)
    }

    fn enqueue(&self, id: &str, fire: DateTime<Utc>) {
        self.0.queued.lock().unwrap_or_else(PoisonError::into_inner).entry(id.to_owned()).or_default().push_back(fire);
    }

    async fn skip(&self, id: &str, fire: DateTime<Utc>, outcome: FireOutcome, why: &str) -> DaemonResult<()> {
        let now = epoch_ms(self.0.daemon.clock().now());
        let record = Fire {
            fire_time_ms: fire.timestamp_millis() as u64,
            fired_at_ms: now,
            outcome,
            execution_id: None,
            message: Some(why.into()),
        };
        tracing::info!(schedule = %id, fire_time = %fire.to_rfc3339(), "fire {}: {why}", outcome.as_str());
        Ok(self.0.daemon.store().record_fire(id, &record, true).await?)
    }

    /// Handle every due fire of every enabled schedule at the clock's time.
    /// Returns the ids of the executions started.
    pub async fn tick(&self) -> DaemonResult<Vec<String>> {
        let now = self.now();
        let mut started = Vec::new();
        if !self.0.daemon.is_accepting() {
            return Ok(started);
        }
        for row in self.0.daemon.store().schedules().await? {
            if !row.enabled {
                continue;
            }
            let schedule = match Self::parse(&row) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(schedule = %row.id, "unreadable schedule: {e}");
                    continue;
                }
            };
            // A queued fire whose start failed, or whose predecessor ended unseen, starts now.
            if self.queue_len(&row.id) > 0 {
                match self.start_queued(&row.id).await {
                    Ok(started_id) => started.extend(started_id),
                    Err(e) => tracing::warn!(schedule = %row.id, "queued fire failed: {e}"),
                }
            }
            let plan = schedule.plan(row.last_fire_ms.map(ms_to_time), ms_to_time(row.created_at_ms), now);
            for (fire, why) in &plan.skipped {
                self.skip(&row.id, *fire, FireOutcome::Skipped, why).await?;
            }
            // A run_all catch-up runs its fires one after another, whatever `overlap` says.
            let catching_up = schedule.spec.catch_up == CatchUp::RunAll
                && plan.run.len() > 1
                && schedule.spec.overlap != Overlap::Allow;
            if catching_up {
                for &fire in &plan.run {
                    self.enqueue(&row.id, fire);
                }
                match self.start_queued(&row.id).await {
                    Ok(started_id) => started.extend(started_id),
                    Err(e) => tracing::warn!(schedule = %row.id, "fire failed: {e}"),
                }
                let waiting: Vec<DateTime<Utc>> = (self.0.queued.lock().unwrap_or_else(PoisonError::into_inner))
                    .get(&row.id)
                    .map(|q| q.iter().copied().collect())
                    .unwrap_or_default();
                for fire in plan.run.into_iter().filter(|f| waiting.contains(f)) {
                    self.skip(
                        &row.id,
                        fire,
                        FireOutcome::Queued,
                        "catch-up (catch_up = run_all): runs after the previous one",
                    )
                    .await?;
                }
                continue;
            }
            for fire in plan.run {
                let running = self.0.daemon.running_for_schedule(&row.id).await;
                if running > 0 {
                    match schedule.spec.overlap {
                        Overlap::Allow => {}
                        Overlap::Skip => {
                            self.skip(
                                &row.id,
                                fire,
                                FireOutcome::Skipped,
                                "the previous run is still running (overlap = skip)",
                            )
                            .await?;
                            continue;
                        }
                        Overlap::QueueOne => {
                            if self.queue_len(&row.id) > 0 {
                                self.skip(
                                    &row.id,
                                    fire,
                                    FireOutcome::Skipped,
                                    "a run is already queued (overlap = queue_one)",
                                )
                                .await?;
                            } else {
                                self.enqueue(&row.id, fire);
                                self.skip(
                                    &row.id,
                                    fire,
                                    FireOutcome::Queued,
                                    "waits for the running one (overlap = queue_one)",
                                )
                                .await?;
                            }
                            continue;
                        }
                    }
                }
                if schedule.jitter.is_zero() {
                    match self.start(&schedule, fire, FireOutcome::Started).await {
                        Ok(id) => started.push(id),
                        Err(e) => tracing::warn!(schedule = %row.id, "fire failed: {e}"),
                    }
                } else {
                    // The fire is handled now (so it is not planned again); it starts after its jitter.
                    let delay = schedule.jitter.mul_f64(fastrand::f64());
                    let this = self.clone();
                    let schedule = schedule.clone();
                    let clock = self.0.daemon.clock().clone();
                    let fire_ms = fire.timestamp_millis() as u64;
                    let record = Fire {
                        fire_time_ms: fire_ms,
                        fired_at_ms: epoch_ms(clock.now()),
                        outcome: FireOutcome::Jittered,
                        execution_id: None,
                        message: Some(format!("starts after {} ms of jitter", delay.as_millis())),
                    };
                    self.0.daemon.store().record_fire(&row.id, &record, true).await?;
                    tokio::spawn(async move {
                        clock.sleep(delay).await;
                        if let Err(e) = this.start(&schedule, fire, FireOutcome::Started).await {
                            tracing::warn!(schedule = %schedule.spec.id, "fire failed: {e}");
                        }
                    });
                }
            }
        }
        Ok(started)
    }

    /// When the next tick is due: the earliest next fire time, at most 1 s away.
    async fn next_wake(&self) -> Duration {
        let now = self.now();
        let earliest = self
            .list()
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.next_fire.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok()))
            .map(|t| t.with_timezone(&Utc))
            .min();
        earliest.and_then(|t| (t - now).to_std().ok()).unwrap_or_default().min(Duration::from_secs(1))
    }

    /// Tick until `stop` completes.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut leading = false;
        loop {
            // In a cluster one node fires the schedules: the one holding the
            // `scheduler` leadership (renewed at every tick; another node
            // takes it over once its lease ran out, and catches up per each
            // schedule's policy from the fires recorded).
            let leads = self.0.daemon.leads("scheduler").await;
            if leads != leading {
                tracing::info!(node = %self.0.daemon.node_id(), leads, "scheduler leadership");
                leading = leads;
            }
            let wait = if leads {
                if let Err(e) = self.tick().await {
                    tracing::error!("schedule tick failed: {e}");
                }
                self.next_wake().await.max(Duration::from_millis(10))
            } else {
                Duration::from_millis(500)
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(wait) => {}
                _ = self.0.wake.notified() => {}
            }
        }
    }
}
