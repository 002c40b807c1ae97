//! Property tests (`proptest`): whatever a user writes — a duration, a
//! schedule, a `plugin.toml`, a workflow in YAML or JSON (QtForge's shape
//! included) — the readers give `Ok` or an error, never a panic. Inputs are
//! built from the readers' own vocabulary (field names, units, cron tokens)
//! mixed with arbitrary values, so they reach past the first syntax check.

use plexus_daemon::schedule::{Schedule, ScheduleSpec};
use plexus_host::manifest::Manifest;
use plexus_workflow::duration;
use plexus_workflow::source::Document;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};
use std::path::Path;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

/// Any text, up to 40 characters.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..40).prop_map(String::from_iter)
}

/// Text made of `tokens`, up to `n` of them.
fn tokens(tokens: &'static [&'static str], n: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(select(tokens), 0..n).prop_map(|v| v.concat())
}

const NUMBERS: &[&str] =
    &["0", "1", "7", "59", "300000", "300000000000", "18446744073709551615", "99999999999999999999999", "-1", "1.5"];
const UNITS: &[&str] = &["ns", "ms", "s", "m", "h", "d", "w", "M", "y", "years", "days", "min", "sec", "µs", " ", ""];

/// Duration-like text: numbers and units, often valid, often huge.
fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec((select(NUMBERS), select(UNITS)), 1..4).prop_map(|parts| parts
            .into_iter()
            .map(|(n, u)| format!("{n}{u}"))
            .collect::<Vec<_>>()
            .join(" ")),
        text(),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        select(&[0u64, 1, 86_400_000, 2_592_000_000, 2_592_000_001, u64::MAX][..]).prop_map(Value::from),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn durations_never_panic(text in duration_text(), n in number()) {
        let _ = duration::parse(&Value::String(text.clone()));
        let _ = duration::parse(&n);
        if let Ok(d) = duration::parse_text(&text, duration::MAX) {
            prop_assert!(d <= duration::MAX);
        }
    }
}

const CRON: &[&str] = &[
    "*",
    "*/",
    "/",
    "-",
    ",",
    " ",
    "0",
    "1",
    "5",
    "7",
    "12",
    "23",
    "30",
    "59",
    "60",
    "61",
    "99999999999",
    "L",
    "W",
    "#",
    "?",
    "MON",
    "FRI",
    "JAN",
    "DEC",
    "SUN-SAT",
    "@daily",
    "@yearly",
];
const ZONES: &[&str] =
    &["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "Mars/X"];

/// A `when` of each kind, and noise.
fn when() -> impl Strategy<Value = String> {
    prop_oneof![
        tokens(CRON, 14).prop_map(|c| format!("cron {c}")),
        tokens(CRON, 14),
        duration_text().prop_map(|d| format!("every {d}")),
        (-300_000i64..300_000, 1u32..13, 1u32..32, 0u32..24, any::<bool>()).prop_map(|(y, mo, d, h, z)| {
            let zone = if z { "Z" } else { "+14:00" };
            format!("at {y:04}-{mo:02}-{d:02}T{h:02}:00:00{zone}")
        }),
        text(),
    ]
}

/// A time within chrono's whole range.
fn instant() -> impl Strategy<Value = chrono::DateTime<chrono::Utc>> {
    let (min, max) = (chrono::DateTime::<chrono::Utc>::MIN_UTC, chrono::DateTime::<chrono::Utc>::MAX_UTC);
    prop_oneof![
        (min.timestamp()..=max.timestamp()).prop_map(|s| chrono::DateTime::from_timestamp(s, 0).unwrap()),
        (0i64..4_102_444_800).prop_map(|s| chrono::DateTime::from_timestamp(s, 0).unwrap()),
        Just(min),
        Just(max),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn schedules_never_panic(
        when in when(),
        zone in prop::option::of(select(ZONES)),
        window in prop::option::of(duration_text()),
        jitter in prop::option::of(duration_text()),
        catch_up in select(&["skip", "run_once", "run_all"][..]),
        times in (instant(), instant(), instant()),
    ) {
        let spec = json!({"id": "p", "when": when, "timezone": zone, "workflow": "w",
                          "catch_up": catch_up, "catch_up_window": window, "jitter": jitter});
        let spec: ScheduleSpec = serde_json::from_value(spec).unwrap();
        if let Ok(schedule) = Schedule::new(spec) {
            let (created, last, now) = times;
            let _ = schedule.next_fire(now, created);
            let _ = schedule.plan(Some(last), created, now);
            let _ = schedule.plan(None, created, now);
        }
    }
}

const MANIFEST_KEYS: &[&str] = &[
    "id",
    "version",
    "kind",
    "artifact",
    "contract",
    "sha256",
    "limits.timeout_ms",
    "limits.memory_mib",
    "limits.output_bytes",
    "permissions.network",
    "permissions.env",
    "config.x",
    "surprise",
];

/// A TOML value as text.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        select(&["0", "18446744073709551615", "9223372036854775807", "-1", "1e999", "nan", "inf"][..])
            .prop_map(str::to_owned),
        select(&["native", "wasm", "in-process", "0.1.0", "^0.1", "1.2.3-rc.1+b", "", "a b", "../x", "/etc"][..])
            .prop_map(|s| format!("{s:?}")),
        text().prop_map(|s| format!("{s:?}")),
        Just("true".to_owned()),
        Just("[\"LANG\", 3]".to_owned()),
        Just("{ host = \"data\", guest = \"/data\", access = \"read-write\" }".to_owned()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn manifests_never_panic(
        entries in prop::collection::vec((select(MANIFEST_KEYS), toml_value()), 0..12),
        dirs in prop::collection::vec((text(), text(), select(&["read-only", "read-write", "x"][..])), 0..3),
        noise in text(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut toml = String::new();
        for (key, value) in &entries {
            toml.push_str(&format!("{key} = {value}\n"));
        }
        for (host, guest, access) in &dirs {
            toml.push_str(&format!("[[permissions.dirs]]\nhost = {host:?}\nguest = {guest:?}\naccess = {access:?}\n"));
        }
        let _ = Manifest::parse(dir.path(), &toml);
        let _ = Manifest::parse(dir.path(), &noise);
        let whole = format!(
            "id = \"p.x\"\nversion = \"1.0.0\"\nkind = \"wasm\"\nartifact = \"p.wasm\"\n{}",
            entries.iter().filter(|(k, _)| k.contains('.')).map(|(k, v)| format!("{k} = {v}\n")).collect::<String>()
        );
        let _ = Manifest::parse(dir.path(), &whole);
    }
}

const WORKFLOW_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "execution_mode",
    "timeout",
    "max_parallel",
    "inputs",
    "steps",
    "rollback_steps",
    "outputs",
    "metadata",
    "plugin_id",
    "method_name",
    "operation",
    "parameters",
    "dependencies",
    "when",
    "retry",
    "max_retries",
    "retry_delay",
    "max_attempts",
    "initial_delay",
    "backoff",
    "multiplier",
    "max_delay",
    "jitter",
    "critical",
    "compensate",
    "type",
    "default",
    "required",
    "version",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        duration_text().prop_map(Value::from),
        select(
            &["a", "b", "${{ steps.a.output }}", "steps.a.output ==", "{{", "exponential", "string", "parallel"][..]
        )
        .prop_map(Value::from),
        text().prop_map(Value::from),
    ]
}

/// JSON values whose objects use the workflow's field names.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((select(WORKFLOW_KEYS).prop_map(str::to_owned), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A workflow-shaped document: an id and steps (a list, or QtForge's mapping by id).
fn workflow() -> impl Strategy<Value = Value> {
    (value(), prop::collection::vec(value(), 0..4), any::<bool>(), value()).prop_map(|(top, steps, keyed, timeout)| {
        let mut doc = match top {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        doc.insert("id".into(), json!("w"));
        doc.insert("timeout".into(), timeout);
        let steps: Vec<Value> = steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let mut m = match s {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                m.entry("id").or_insert_with(|| json!(format!("s{i}")));
                m.entry("plugin_id").or_insert_with(|| json!("p.x"));
                m.entry("method_name").or_insert_with(|| json!("op"));
                Value::Object(m)
            })
            .collect();
        let steps = if keyed {
            Value::Object(steps.into_iter().enumerate().map(|(i, s)| (format!("s{i}"), s)).collect())
        } else {
            Value::Array(steps)
        };
        doc.insert("steps".into(), steps);
        Value::Object(doc)
    })
}

fn check_workflow(name: &str, text: &str) {
    if let Ok(doc) = Document::parse(Path::new(name), text) {
        let _ = plexus_workflow::validate(&doc, None);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn workflows_never_panic(doc in workflow(), loose in value(), noise in text()) {
        for value in [&doc, &loose] {
            let json = serde_json::to_string(value).unwrap();
            check_workflow("w.json", &json);
            // JSON is YAML 1.2: the same document through the YAML reader.
            check_workflow("w.yaml", &json);
        }
        check_workflow("w.yaml", &noise);
        check_workflow("w.json", &noise);
        check_workflow("w.yaml", &format!("id: w\nsteps:\n  - {noise}\n"));
    }
}
