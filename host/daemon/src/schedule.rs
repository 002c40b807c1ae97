//! Schedules: what a schedule is ([`ScheduleSpec`], validated into
//! [`Schedule`]), when it fires ([`Trigger`]) and which fire times a tick
//! runs or skips ([`Schedule::plan`]). Pure functions of the time they are
//! given, so cron, DST and catch-up are tested without waiting.
//!
//! * `when = "cron 0 9 * * MON-FRI"` — 5 fields, or 6 with seconds first;
//!   `timezone` is an IANA zone (default UTC). DST follows croner (OCPS /
//!   Vixie cron): a fixed time in the spring-forward gap runs just after the
//!   gap; in the fall-back overlap it runs once; interval patterns run per
//!   real occurrence.
//! * `when = "every 5m"` — fixed interval from the schedule's creation.
//! * `when = "at 2026-12-01T10:00:00Z"` — once (RFC 3339).
//!
//! Policies (names as in Kubernetes CronJob `concurrencyPolicy` and Temporal
//! schedules): `overlap` = `allow` | `skip` (default) | `queue_one` (at most
//! one run waits for the running one); `catch_up` after downtime = `skip` |
//! `run_once` (default: the latest missed fire) | `run_all`, only for fire
//! times within `catch_up_window` (default 1h, as Temporal's
//! `catchup_window`); `jitter` delays each start by a random amount below it.
//! With `run_all`, the fires of one catch-up run one after another (oldest
//! first) whatever `overlap` says, unless `overlap = allow` (then all start at
//! once); see [`super::schedules`].
//!
//! Bounds, checked when a schedule is created so that no time arithmetic can
//! overflow later: an `every` interval is 1 s ..= [`MAX_INTERVAL`] (100
//! years), `catch_up_window` at most [`MAX_INTERVAL`], `jitter` at most
//! [`MAX_JITTER`] (30 days). An `at` time must be in the future when the
//! schedule is created (checked by [`super::schedules::Schedules::create`]).

use super::error::{DaemonError, DaemonResult};
use chrono::{DateTime, Datelike, TimeDelta, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde_json::{Map, Value};
use std::time::Duration;

/// A fire handled within this long of its time counts as on time, not missed.
pub const ON_TIME: Duration = Duration::from_secs(60);
/// At most this many missed fires run in one catch-up (`run_all`).
pub const MAX_CATCH_UP: usize = 100;
/// The longest `every` interval and `catch_up_window`: 100 years (of 365.25 days).
pub const MAX_INTERVAL: Duration = Duration::from_secs(100 * 31_557_600);
/// The longest schedule id (so that `schedule.<id>` is a valid workflow id).
pub const MAX_ID_LEN: usize = 128;
/// The longest `jitter`: 30 days.
pub const MAX_JITTER: Duration = plexus_workflow::duration::MAX;

pub use plexus_client::{CatchUp, Overlap, ScheduleSpec};

/// When a schedule fires.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// A cron expression in a time zone.
    Cron {
        /// The parsed pattern.
        cron: Box<Cron>,
        /// Its zone.
        tz: chrono_tz::Tz,
    },
    /// Every `period` after the schedule's creation (the first fire one period after it).
    Every {
        /// The interval.
        period: Duration,
    },
    /// Once.
    At(DateTime<Utc>),
}

/// What a schedule runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A registered workflow, with inputs.
    Workflow {
        /// Workflow id.
        id: String,
        /// Its inputs.
        inputs: Map<String, Value>,
    },
    /// One plugin operation, run as a one-step workflow `schedule.<id>`.
    Operation {
        /// Plugin id.
        plugin: String,
        /// Operation.
        operation: String,
        /// Parameters.
        params: Value,
    },
}

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// As written.
    pub spec: ScheduleSpec,
    /// When it fires.
    pub trigger: Trigger,
    /// What it runs.
    pub target: Target,
    /// How far back missed fires are caught up.
    pub window: Duration,
    /// Upper bound of the random start delay.
    pub jitter: Duration,
}

/// The fire times one tick handles.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// To start now, oldest first (catch-up runs, then the on-time one).
    pub run: Vec<DateTime<Utc>>,
    /// Not run, with why.
    pub skipped: Vec<(DateTime<Utc>, String)>,
}

fn duration(field: &str, text: &Option<String>, default: Duration, max: Duration) -> DaemonResult<Duration> {
    match text {
        None => Ok(default),
        Some(t) => {
            plexus_workflow::duration::parse_text(t, max).map_err(|e| DaemonError::invalid(format!("{field}: {e}")))
        }
    }
}

impl Trigger {
    /// Parse `when` (and `timezone` for cron).
    ///
    /// # Errors
    /// [`super::ErrorCode::InvalidConfiguration`] naming what is wrong.
    pub fn parse(when: &str, timezone: Option<&str>) -> DaemonResult<Self> {
        let when = when.trim();
        let tz: chrono_tz::Tz = match timezone {
            Some(name) => name.parse().map_err(|_| DaemonError::invalid(format!("unknown time zone `{name}`")))?,
            None => chrono_tz::UTC,
        };
        if let Some(rest) = when.strip_prefix("every ") {
            let period = plexus_workflow::duration::parse_text(rest, MAX_INTERVAL)
                .map_err(|e| DaemonError::invalid(format!("when `{when}`: {e}")))?;
            if period < Duration::from_secs(1) {
                return Err(DaemonError::invalid(format!("when `{when}`: the interval must be at least 1s")));
            }
            return Ok(Self::Every { period });
        }
        if let Some(rest) = when.strip_prefix("at ") {
            let at = DateTime::parse_from_rfc3339(rest.trim())
                .map_err(|e| DaemonError::invalid(format!("when `{when}`: not an RFC 3339 time: {e}")))?;
            return Ok(Self::At(at.with_timezone(&Utc)));
        }
        let pattern = when.strip_prefix("cron ").unwrap_or(when).trim();
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(pattern)
            .map_err(|e| DaemonError::invalid(format!("when `{when}`: not a cron expression: {e}")))?;
        Ok(Self::Cron { cron: Box::new(cron), tz })
    }

    /// The first fire time strictly after `t`; `anchor` is where intervals count from.
    pub fn next_after(&self, t: DateTime<Utc>, anchor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Cron { cron, tz } => {
                // croner searches years 1..5000 only, and converting a time
                // at the edge of chrono's range into a zone overflows (a
                // panic inside croner): outside that span a cron never fires.
                if !CRON_YEARS.contains(&t.year()) {
                    return None;
                }
                cron.find_next_occurrence(&t.with_timezone(tz), false).ok().map(|n| n.with_timezone(&Utc))
            }
            Self::Every { period } => {
                // anchor + k·period, k ≥ 1: the first fire is one period after creation.
                // Checked throughout: a time past chrono's range means "never".
                let period = TimeDelta::from_std(*period).ok()?;
                let periods = if t < anchor {
                    1
                } else {
                    (t - anchor).num_milliseconds().checked_div(period.num_milliseconds())?.checked_add(1)?
                };
                anchor.checked_add_signed(period.checked_mul(i32::try_from(periods).ok()?)?)
            }
            Self::At(at) => (*at > t).then_some(*at),
        }
    }
}

/// The UTC years in which a cron schedule can fire: croner's
/// `YEAR_LOWER_LIMIT..YEAR_UPPER_LIMIT` (1..5000), one year narrower on each
/// side so that a zone's offset cannot leave it.
const CRON_YEARS: std::ops::Range<i32> = 2..4999;

impl Schedule {
    /// Validate `spec`.
    ///
    /// # Errors
    /// [`super::ErrorCode::InvalidConfiguration`] naming the field.
    pub fn new(spec: ScheduleSpec) -> DaemonResult<Self> {
        if !plexus_workflow::definition::is_valid_id(&spec.id, MAX_ID_LEN) {
            let rule = plexus_workflow::definition::ID_RULE;
            return Err(DaemonError::invalid(format!("schedule id `{}`: {rule}, at most {MAX_ID_LEN}", spec.id)));
        }
        let trigger = Trigger::parse(&spec.when, spec.timezone.as_deref())?;
        if spec.timezone.is_some() && !matches!(trigger, Trigger::Cron { .. }) {
            return Err(DaemonError::invalid("timezone applies to cron schedules only"));
        }
        let target = match (&spec.workflow, &spec.plugin, &spec.operation) {
            (Some(id), None, None) => {
                if !spec.params.is_null() {
                    return Err(DaemonError::invalid("params go with plugin/operation; a workflow takes inputs"));
                }
                Target::Workflow { id: id.clone(), inputs: spec.inputs.clone() }
            }
            (None, Some(plugin), Some(operation)) => {
                if !spec.inputs.is_empty() {
                    return Err(DaemonError::invalid("inputs go with a workflow; an operation takes params"));
                }
                Target::Operation { plugin: plugin.clone(), operation: operation.clone(), params: spec.params.clone() }
            }
            _ => {
                return Err(DaemonError::invalid(
                    "a schedule targets either `workflow` (with `inputs`) or `plugin` and `operation` (with `params`)",
                ));
            }
        };
        let window = duration("catch_up_window", &spec.catch_up_window, Duration::from_secs(3600), MAX_INTERVAL)?;
        let jitter = duration("jitter", &spec.jitter, Duration::ZERO, MAX_JITTER)?;
        Ok(Self { spec, trigger, target, window, jitter })
    }

    /// The id of the workflow a fire starts (`schedule.<id>` for an operation target).
    pub fn workflow_id(&self) -> String {
        match &self.target {
            Target::Workflow { id, .. } => id.clone(),
            Target::Operation { .. } => format!("schedule.{}", self.spec.id),
        }
    }

    /// For an operation target, the one-step workflow (JSON text) that runs it.
    pub fn operation_workflow(&self) -> Option<String> {
        let Target::Operation { plugin, operation, params } = &self.target else { return None };
        let params = if params.is_null() { Value::Object(Map::new()) } else { params.clone() };
        Some(
            serde_json::json!({
                "id": self.workflow_id(),
                "name": format!("Schedule {}", self.spec.id),
                "description": "Generated by Plexus for a schedule that calls one operation.",
                "steps": [{"id": "call", "plugin_id": plugin, "method_name": operation, "parameters": params}],
            })
            .to_string(),
        )
    }

    /// The next fire time after `now`, given the schedule's creation time.
    pub fn next_fire(&self, now: DateTime<Utc>, created: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.trigger.next_after(now, created)
    }

    /// Which fire times in `(last, now]` to run and which to skip. `last` is
    /// the latest fire time already handled (`None`: none since `created`,
    /// which itself is not a fire time).
    /// The latest due fire runs if it is at most [`ON_TIME`] old; older ones
    /// were missed and follow `catch_up` within `catch_up_window`.
    pub fn plan(&self, last: Option<DateTime<Utc>>, created: DateTime<Utc>, now: DateTime<Utc>) -> Plan {
        let mut plan = Plan::default();
        let start = last.unwrap_or(created);
        let Some(first) = self.trigger.next_after(start, created) else { return plan };
        if first > now {
            return plan;
        }
        let window = TimeDelta::from_std(self.window).unwrap_or(TimeDelta::MAX);
        let from = now.checked_sub_signed(window).map_or(start, |w| w.max(start));
        // Fires older than the window: one entry says they were missed.
        if first <= from {
            plan.skipped.push((
                first,
                format!(
                    "missed while the daemon was down (before the {} catch-up window)",
                    humantime::format_duration(self.window)
                ),
            ));
        }
        let mut due = Vec::new();
        let mut t = from;
        while let Some(next) = self.trigger.next_after(t, created) {
            if next > now || due.len() > 10 * MAX_CATCH_UP {
                break;
            }
            due.push(next);
            t = next;
        }
        let on_time = due.last().copied().filter(|&last| (now - last).to_std().unwrap_or_default() <= ON_TIME);
        if on_time.is_some() {
            due.pop();
        }
        let missed = due;
        match self.spec.catch_up {
            CatchUp::Skip => {
                plan.skipped.extend(missed.into_iter().map(|t| (t, "missed; catch_up = skip".to_owned())));
            }
            CatchUp::RunOnce => {
                let mut missed = missed;
                if let Some(latest) = missed.pop() {
                    if on_time.is_some() {
                        // The on-time fire covers it.
                        plan.skipped.push((latest, "missed; caught up by the on-time fire".into()));
                    } else {
                        plan.run.push(latest);
                    }
                }
                plan.skipped.extend(missed.into_iter().map(|t| (t, "missed; catch_up = run_once".to_owned())));
            }
            CatchUp::RunAll => {
                let skip = missed.len().saturating_sub(MAX_CATCH_UP);
                for (i, t) in missed.into_iter().enumerate() {
                    if i < skip {
                        plan.skipped.push((t, format!("missed; more than {MAX_CATCH_UP} to catch up")));
                    } else {
                        plan.run.push(t);
                    }
                }
            }
        }
        plan.run.extend(on_time);
        plan.skipped.sort_by_key(|(t, _)| *t);
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn spec(when: &str, tz: Option<&str>) -> ScheduleSpec {
        serde_json::from_value(serde_json::json!({"id": "t", "when": when, "timezone": tz, "workflow": "w"})).unwrap()
    }

    fn fires(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        let created = utc("2020-01-01T00:00:00Z");
        let mut t = utc(from);
        (0..n)
            .map(|_| {
                t = s.next_fire(t, created).unwrap();
                t.to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn cron_in_two_time_zones_across_dst() {
        // Europe/Berlin springs forward on 2026-03-29 (02:00 → 03:00 local).
        let berlin = Schedule::new(spec("cron 30 2 * * *", Some("Europe/Berlin"))).unwrap();
        assert_eq!(
            fires(&berlin, "2026-03-27T12:00:00Z", 3),
            // 02:30 CET = 01:30Z; on the 29th 02:30 does not exist: runs just after the gap (03:00 CEST = 01:00Z); then 02:30 CEST = 00:30Z.
            ["2026-03-28T01:30:00+00:00", "2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
        );
        // America/New_York falls back on 2026-11-01 (02:00 → 01:00 local): 01:30 happens twice, runs once.
        let ny = Schedule::new(spec("cron 30 1 * * *", Some("America/New_York"))).unwrap();
        assert_eq!(
            fires(&ny, "2026-10-31T00:00:00Z", 3),
            ["2026-10-31T05:30:00+00:00", "2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"]
        );
        // The same wall-clock pattern in UTC ignores both changes.
        let utc_daily = Schedule::new(spec("cron 30 1 * * *", None)).unwrap();
        assert_eq!(
            fires(&utc_daily, "2026-10-31T23:00:00Z", 2),
            ["2026-11-01T01:30:00+00:00", "2026-11-02T01:30:00+00:00"]
        );
    }

    #[test]
    fn cron_with_seconds_every_and_at() {
        let s = Schedule::new(spec("cron */20 * * * * *", None)).unwrap();
        assert_eq!(fires(&s, "2026-01-01T00:00:05Z", 2), ["2026-01-01T00:00:20+00:00", "2026-01-01T00:00:40+00:00"]);
        let every = Schedule::new(spec("every 90m", None)).unwrap();
        assert_eq!(
            fires(&every, "2020-01-01T01:00:00Z", 2),
            ["2020-01-01T01:30:00+00:00", "2020-01-01T03:00:00+00:00"]
        );
        let at = Schedule::new(spec("at 2026-12-01T10:00:00Z", None)).unwrap();
        assert_eq!(fires(&at, "2026-11-01T00:00:00Z", 1), ["2026-12-01T10:00:00+00:00"]);
        assert!(at.next_fire(utc("2026-12-01T10:00:00Z"), utc("2020-01-01T00:00:00Z")).is_none());
    }

    #[test]
    fn cron_at_the_edges_of_time_never_panics() {
        // Found by `schedules_never_panic`: DateTime::MAX in a zone east of UTC
        // overflowed inside croner.
        for zone in ["Pacific/Chatham", "America/New_York", "UTC"] {
            let s = Schedule::new(spec("cron * * * * *", Some(zone))).unwrap();
            let created = utc("2020-01-01T00:00:00Z");
            assert!(s.next_fire(DateTime::<Utc>::MAX_UTC, created).is_none(), "{zone}");
            assert!(s.next_fire(DateTime::<Utc>::MIN_UTC, created).is_none(), "{zone}");
            assert!(s.next_fire(utc("4998-12-31T23:59:00Z"), created).is_some(), "{zone}");
            let _ = s.plan(Some(DateTime::<Utc>::MIN_UTC), created, DateTime::<Utc>::MAX_UTC);
        }
    }

    #[test]
    fn bad_specs_name_the_problem() {
        for (when, tz, needle) in [
            ("cron 61 * * * *", None, "not a cron expression"),
            ("every soon", None, "every soon"),
            ("every 10ms", None, "at least 1s"),
            ("at tomorrow", None, "RFC 3339"),
            ("cron * * * * *", Some("Mars/Olympus"), "unknown time zone"),
            ("every 5m", Some("UTC"), "cron schedules only"),
            ("every 300000years", None, "too long"),
            ("every 101y", None, "too long"),
        ] {
            let err = Schedule::new(spec(when, tz)).unwrap_err().to_string();
            assert!(err.contains(needle), "{when}: {err}");
        }
        let mut both = spec("every 5m", None);
        both.plugin = Some("p".into());
        assert!(Schedule::new(both).unwrap_err().to_string().contains("either"));
        let mut window = spec("every 5m", None);
        window.catch_up_window = Some("300000000000y".into());
        assert!(Schedule::new(window).unwrap_err().to_string().contains("catch_up_window"));
        let mut jitter = spec("every 5m", None);
        jitter.jitter = Some("31days".into());
        assert!(Schedule::new(jitter).unwrap_err().to_string().contains("jitter"));
    }

    fn hourly(catch_up: CatchUp, window: &str) -> Schedule {
        let mut s = spec("cron 0 * * * *", None);
        s.catch_up = catch_up;
        s.catch_up_window = Some(window.into());
        Schedule::new(s).unwrap()
    }

    #[test]
    fn the_longest_interval_plans_without_overflow() {
        let s = Schedule::new(spec("every 100y", None)).unwrap();
        let created = utc("2026-01-01T00:00:00Z");
        assert!(s.next_fire(created, created).is_some());
        // Near the end of chrono's range the next fire is "never", not a panic.
        let late = DateTime::<Utc>::MAX_UTC - TimeDelta::days(365);
        assert_eq!(s.next_fire(late, late), None);
        assert_eq!(s.plan(None, late, DateTime::<Utc>::MAX_UTC), Plan::default());
        assert!(s.plan(None, DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC).run.len() <= 1);
    }

    #[test]
    fn catch_up_after_downtime() {
        let created = utc("2026-01-01T00:00:00Z");
        let last = Some(utc("2026-01-01T01:00:00Z"));
        // Down from 01:00 to 05:10: fires at 02, 03, 04, 05 were missed (05:00 is 10 min late).
        let now = utc("2026-01-01T05:10:00Z");
        let all = hourly(CatchUp::RunAll, "3h").plan(last, created, now);
        let times = |v: &[DateTime<Utc>]| v.iter().map(|t| t.format("%H").to_string()).collect::<Vec<_>>();
        assert_eq!(times(&all.run), ["03", "04", "05"]);
        assert_eq!(all.skipped.len(), 1, "02:00 is outside the window: {:?}", all.skipped);
        let once = hourly(CatchUp::RunOnce, "3h").plan(last, created, now);
        assert_eq!(times(&once.run), ["05"]);
        assert_eq!(once.skipped.len(), 3);
        let skip = hourly(CatchUp::Skip, "3h").plan(last, created, now);
        assert!(skip.run.is_empty());
        assert_eq!(skip.skipped.len(), 4);
        // On time: only the current fire, nothing missed.
        let on_time =
            hourly(CatchUp::Skip, "3h").plan(Some(utc("2026-01-01T04:00:00Z")), created, utc("2026-01-01T05:00:02Z"));
        assert_eq!((times(&on_time.run), on_time.skipped.len()), (vec!["05".to_owned()], 0));
        // Nothing due.
        assert_eq!(hourly(CatchUp::RunAll, "1h").plan(Some(now), created, now), Plan::default());
    }
}
