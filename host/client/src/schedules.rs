//! `/v1/schedules`: schedules, their policies and their fire history.
//!
//! Policies are named as in Kubernetes CronJob's `concurrencyPolicy` and
//! Temporal's schedules; see the daemon's `schedule` module for how they act.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A schedule as the user writes it: the body of `POST /v1/schedules`, a
/// `[[schedules]]` table of the daemon's configuration, `plexus schedule add`.
/// Exactly one of `workflow` or `plugin` + `operation` is the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// `id = "nightly-report"`: letters, digits, `-`, `_`, `.`; at most 128 bytes.
    pub id: String,
    /// `when = "cron 0 2 * * *"`, `"every 5m"`, `"at 2026-12-01T10:00:00Z"`.
    pub when: String,
    /// `timezone = "Europe/Berlin"`: an IANA zone (cron only; default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `workflow = "weather-pipeline"`: run this workflow …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// … with these inputs.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub inputs: Map<String, Value>,
    /// `plugin = "plexus.echo.wasm"`: or call this plugin's …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// … `operation = "echo"` …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// … with these parameters.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
    /// What a fire does while the previous run is still running (default `skip`).
    #[serde(default)]
    pub overlap: Overlap,
    /// What happens to fire times missed while the daemon was down (default `run_once`).
    #[serde(default)]
    pub catch_up: CatchUp,
    /// `catch_up_window = "1h"`: only missed fires this recent are caught up (default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_window: Option<String>,
    /// `jitter = "30s"`: each start is delayed by a random amount below this (at most 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
    /// `enabled = false` creates it paused.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The priority of the executions it starts (default `normal`).
    #[serde(default, skip_serializing_if = "is_normal")]
    pub priority: crate::Priority,
    /// The plugin that created it through the orchestration host services
    /// (contract 0.3's `create-schedule`; the daemon sets it, whatever the
    /// plugin wrote): only that plugin, or an operator, may cancel it. An
    /// operator may set it to hand a schedule to a plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

fn is_normal(p: &crate::Priority) -> bool {
    *p == crate::Priority::Normal
}

fn yes() -> bool {
    true
}

impl ScheduleSpec {
    /// A spec with `id` and `when` and every other field at its default
    /// (no target yet: set `workflow`, or `plugin` and `operation`).
    pub fn new(id: impl Into<String>, when: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            when: when.into(),
            timezone: None,
            workflow: None,
            inputs: Map::new(),
            plugin: None,
            operation: None,
            params: Value::Null,
            overlap: Overlap::default(),
            catch_up: CatchUp::default(),
            catch_up_window: None,
            jitter: None,
            enabled: true,
            description: None,
            priority: crate::Priority::Normal,
            owner: None,
        }
    }
}

/// What happens to a fire while the previous run of the schedule is running
/// (as Kubernetes CronJob's `concurrencyPolicy`: `allow` is `Allow`, `skip`
/// is `Forbid`; `queue_one` is Plexus's own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Start it anyway.
    Allow,
    /// Skip it (recorded in the fire history).
    #[default]
    Skip,
    /// Queue it to start when the running one ends; at most one waits, further ones are skipped.
    QueueOne,
}

impl Overlap {
    /// Every policy.
    pub const ALL: [Self; 3] = [Self::Allow, Self::Skip, Self::QueueOne];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Skip => "skip",
            Self::QueueOne => "queue_one",
        }
    }
}

/// What happens to fire times missed while the daemon was down (Temporal's
/// catch-up window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Skip them all.
    Skip,
    /// Run the latest one within the window.
    #[default]
    RunOnce,
    /// Run every one within the window, oldest first (at most 100).
    RunAll,
}

impl CatchUp {
    /// Every policy.
    pub const ALL: [Self; 3] = [Self::Skip, Self::RunOnce, Self::RunAll];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::RunOnce => "run_once",
            Self::RunAll => "run_all",
        }
    }
}

/// A schedule as listed: its spec, state and next fire time
/// (`POST /v1/schedules`, `…/pause`, `…/resume`, and each of [`ScheduleList`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleView {
    /// As written, except `enabled`: whether it fires now (false when paused).
    #[serde(flatten)]
    pub spec: ScheduleSpec,
    /// Next fire time (RFC 3339), if any and enabled.
    pub next_fire: Option<String>,
    /// The next fire times (RFC 3339), at most 5, `next_fire` first (empty
    /// when paused or when it fires no more).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upcoming: Vec<String>,
    /// Latest fire time handled (RFC 3339).
    pub last_fire: Option<String>,
    /// Executions of it not finished now.
    pub running: usize,
    /// Whether a fire waits for the running one (`overlap = queue_one`).
    pub queued: bool,
}

/// `GET /v1/schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleList {
    /// Every schedule, by id.
    pub schedules: Vec<ScheduleView>,
}

/// `GET /v1/schedules/{id}`: the schedule and its latest fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleDetails {
    /// The schedule.
    #[serde(flatten)]
    pub view: ScheduleView,
    /// The latest 50 fires, newest first.
    pub history: Vec<Fire>,
}

/// What became of one fire time of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FireOutcome {
    /// An execution was started for it.
    Started,
    /// Started by hand (`POST /v1/schedules/{id}/run`); not a fire time.
    Manual,
    /// Not run: missed, or refused by the overlap policy (the message says which).
    Skipped,
    /// Waits to run after the running execution (`overlap = queue_one`, or catch-up).
    Queued,
    /// Its start was postponed by the schedule's jitter.
    Jittered,
    /// A queued fire found at start-up and run again.
    Resumed,
    /// Starting an execution failed (the message says why).
    Failed,
}

impl FireOutcome {
    /// Every outcome.
    pub const ALL: [Self; 7] =
        [Self::Started, Self::Manual, Self::Skipped, Self::Queued, Self::Jittered, Self::Resumed, Self::Failed];

    /// The stored and served name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Manual => "manual",
            Self::Skipped => "skipped",
            Self::Queued => "queued",
            Self::Jittered => "jittered",
            Self::Resumed => "resumed",
            Self::Failed => "failed",
        }
    }

    /// The outcome named `name`, as stored.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == name)
    }
}

/// One entry of a schedule's fire history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Fire {
    /// The fire time, ms since the Unix epoch.
    pub fire_time_ms: u64,
    /// When it was handled, ms since the Unix epoch.
    pub fired_at_ms: u64,
    /// What became of the fire time.
    pub outcome: FireOutcome,
    /// The execution started, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// Why it was skipped or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `POST /v1/schedules/{id}/run` (202): the execution started by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Fired {
    /// Schedule id.
    pub schedule_id: String,
    /// The execution started.
    pub execution_id: String,
}
