//! Engine and validation tests against an in-process test plugin.

use super::*;
use plexus_host::{Host, HostBuilder};
use plexus_sdk::{Context, ErrorKind, Operations, Plugin, PluginError, PluginInfo};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use source::Document;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// What the test plugin saw, per execution id.
#[derive(Default)]
struct Journal {
    events: Vec<String>,
    running: usize,
    max_running: usize,
}

static JOURNAL: LazyLock<Mutex<HashMap<String, Journal>>> = LazyLock::new(Default::default);

fn journal<R>(exec: &str, f: impl FnOnce(&mut Journal) -> R) -> R {
    f(JOURNAL.lock().unwrap().entry(exec.to_owned()).or_default())
}

#[derive(Default)]
struct TestOps;

#[derive(Deserialize, JsonSchema)]
struct Work {
    tag: String,
    #[serde(default)]
    ms: u64,
}

#[derive(Deserialize, JsonSchema)]
struct Fail {
    #[serde(default)]
    retryable: bool,
}

#[derive(Deserialize, JsonSchema)]
struct Flaky {
    failures: u32,
}

#[derive(Deserialize, JsonSchema)]
struct Item {
    value: Value,
    index: usize,
    #[serde(default)]
    fail_first: bool,
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    ms: u64,
}

#[derive(Deserialize, JsonSchema)]
struct Put {
    name: String,
    text: String,
}

#[derive(Deserialize, JsonSchema)]
struct Get {
    artifact: plexus_sdk::ArtifactRef,
}

#[derive(Deserialize, JsonSchema)]
struct Leak {
    secret: String,
    #[serde(default)]
    fail: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Read only through its schema.
struct Strict {
    name: String,
    count: u32,
    #[serde(default)]
    tags: Vec<String>,
    mode: Mode,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Fast,
    Careful,
}

impl Plugin for TestOps {
    fn info() -> PluginInfo {
        PluginInfo::new("test.ops", "Test operations", "1.0.0").capabilities([plexus_sdk::capability::WORKFLOW_STEP])
    }
    fn operations(ops: &mut Operations<Self>) {
        ops.add("put", "Writes artifact `name` holding `text`", |_, ctx: &mut Context<'_>, p: Put| {
            use std::io::Write;
            let mut out = ctx.create_artifact(&p.name, Some("text/plain"))?;
            out.write_all(p.text.as_bytes()).map_err(|e| PluginError::failed(e.to_string()))?;
            out.finish()
        });
        ops.add("get", "Reads the artifact `artifact` names as text", |_, ctx: &mut Context<'_>, p: Get| {
            use std::io::Read;
            let mut text = String::new();
            ctx.open_artifact(&p.artifact)?
                .read_to_string(&mut text)
                .map_err(|e| PluginError::failed(e.to_string()))?;
            Ok::<_, PluginError>(text)
        });
        ops.add(
            "record",
            "Journals `tag`, sleeps `ms` (cancellable), returns {tag, upstream, config}",
            |_, ctx: &mut Context<'_>, p: Work| {
                let exec = ctx.execution_id().to_owned();
                journal(&exec, |j| {
                    j.events.push(p.tag.clone());
                    j.running += 1;
                    j.max_running = j.max_running.max(j.running);
                });
                let start = Instant::now();
                let mut cancelled = false;
                while start.elapsed() < Duration::from_millis(p.ms) {
                    if ctx.is_cancelled() {
                        cancelled = true;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                journal(&exec, |j| j.running -= 1);
                if cancelled {
                    return Err(PluginError::failed("cancelled"));
                }
                Ok(json!({"tag": p.tag, "upstream": ctx.upstream().keys().collect::<Vec<_>>(), "n": 1}))
            },
        )
        .add("echo", "Returns its parameters", |_, _, p: Value| Ok(p))
        .add("item", "Journals `index` and concurrency; fails on attempt 1 with `fail_first`, always with `fail`", |_, ctx: &mut Context<'_>, p: Item| {
            let exec = ctx.execution_id().to_owned();
            journal(&exec, |j| {
                j.events.push(format!("{}@{}", p.index, ctx.attempt()));
                j.running += 1;
                j.max_running = j.max_running.max(j.running);
            });
            std::thread::sleep(Duration::from_millis(p.ms));
            journal(&exec, |j| j.running -= 1);
            if p.fail || (p.fail_first && ctx.attempt() == 1) {
                return Err(PluginError::failed(format!("item {} failed", p.index)).retryable());
            }
            Ok(json!({"double": p.value.as_i64().unwrap_or(0) * 2, "index": p.index, "upstream": ctx.upstream().len()}))
        })
        .add(
            "leak",
            "Journals `secret`, then tries to leak it everywhere it can",
            |_, ctx: &mut Context<'_>, p: Leak| {
                journal(ctx.execution_id(), |j| j.events.push(format!("got {}", p.secret)));
                ctx.info(format!("the secret is {}", p.secret));
                ctx.progress(0.5, format!("working on {}", p.secret));
                ctx.state_set("leaked", json!({"value": p.secret, p.secret.clone(): 1}));
                if p.fail {
                    return Err(PluginError::failed(format!("refused by {}", p.secret)));
                }
                Ok(json!({"echo": p.secret, "wrapped": format!("<{}>", p.secret), p.secret.clone(): true}))
            },
        )
        .add("strict", "Takes exactly {name, count, tags?, mode}", |_, _, _: Strict| Ok(json!(true)))
        .add("measure", "Reports progress and metrics (one not finite)", |_, ctx: &mut Context<'_>, _: Value| {
            ctx.progress(0.5, "halfway");
            ctx.progress(1.0, "é".repeat(2000));
            ctx.metric("rows", 1461.0);
            ctx.metric("ratio", f64::NAN);
            ctx.metric("rows", 1462.0);
            for n in 0..100 {
                ctx.metric(format!("m{n:03}"), f64::from(n));
            }
            Ok(json!("measured"))
        })
        .add("spin", "Keeps the CPU busy for `ms`", |_, _, p: Work| {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < Duration::from_millis(p.ms) {
                n = std::hint::black_box(n.wrapping_add(1));
            }
            Ok(json!({"tag": p.tag, "n": n}))
        })
        .add("stubborn", "Sleeps `ms`, ignoring cancellation", |_, _, p: Work| {
            std::thread::sleep(Duration::from_millis(p.ms));
            Ok(json!({"tag": p.tag}))
        })
        .add("fail", "Fails", |_, _, p: Fail| {
            let e = PluginError::failed("failed on purpose");
            Err::<Value, _>(if p.retryable { e.retryable() } else { e })
        })
        .add(
            "flaky",
            "Fails (retryably) on the first `failures` attempts",
            |_, ctx: &mut Context<'_>, p: Flaky| {
                if ctx.attempt() <= p.failures {
                    return Err(
                        PluginError::new(ErrorKind::Failed, format!("attempt {} failed", ctx.attempt())).retryable()
                    );
                }
                Ok(json!({"attempt": ctx.attempt()}))
            },
        );
    }
}

fn host() -> Arc<Host> {
    Arc::new(HostBuilder::new().no_cache().in_process::<TestOps>(json!({"env": "test"})).build().unwrap())
}

fn parse(host: &Host, name: &str, text: &str) -> Result<ValidWorkflow, Vec<Problem>> {
    validate(&Document::parse(Path::new(name), text).unwrap(), Some(host))
}

fn valid(host: &Host, yaml: &str) -> ValidWorkflow {
    parse(host, "w.yaml", yaml).unwrap_or_else(|p| panic!("{p:#?}"))
}

/// Run `yaml` to the end; returns the final status and the plugin's journal.
async fn run_with(
    yaml: &str,
    clock: Arc<dyn Clock>,
    inputs: Map<String, Value>,
) -> (ExecutionStatus, Vec<String>, usize) {
    let host = host();
    let orch = Orchestrator::with_clock(host.clone(), clock, tokio::runtime::Handle::current());
    let wf = valid(&host, yaml);
    let id = wf.workflow.id.clone();
    orch.register(wf).unwrap();
    let exec = orch.execute(&id, inputs).unwrap();
    let status = orch.wait(&exec).await.unwrap();
    let (events, max) = journal(&exec, |j| (j.events.clone(), j.max_running));
    (status, events, max)
}

async fn run(yaml: &str) -> (ExecutionStatus, Vec<String>, usize) {
    run_with(yaml, Arc::new(SystemClock), Map::new()).await
}

fn statuses(s: &ExecutionStatus) -> Vec<(&str, StepStatus)> {
    s.steps.iter().map(|r| (r.id.as_str(), r.status)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_runs_one_at_a_time_in_stable_topological_order() {
    let (status, events, max) = run(r#"
id: seq
steps:
  - { id: c, plugin_id: test.ops, method_name: record, parameters: { tag: c, ms: 5 }, dependencies: [b] }
  - { id: a, plugin_id: test.ops, method_name: record, parameters: { tag: a, ms: 5 } }
  - { id: b, plugin_id: test.ops, method_name: record, parameters: { tag: b, ms: 5 } }
  - { id: d, plugin_id: test.ops, method_name: record, parameters: { tag: d, ms: 5 } }
"#)
    .await;
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:#?}");
    // c waits for b; among ready steps declaration order wins.
    assert_eq!(events, ["a", "b", "c", "d"]);
    assert_eq!(max, 1);
    assert_eq!(status.step("c").unwrap().output.as_ref().unwrap()["upstream"], json!(["b"]));
    assert_eq!(status.progress, 1.0);
    assert_eq!(status.completed_steps, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_never_exceeds_max_parallel() {
    let steps: String = (0..8)
        .map(|i| {
            format!(
                "  - {{ id: s{i}, plugin_id: test.ops, method_name: record, parameters: {{ tag: s{i}, ms: 40 }} }}\n"
            )
        })
        .collect();
    for limit in [1, 3, 5] {
        let (status, events, max) =
            run(&format!("id: par\nexecution_mode: parallel\nmax_parallel: {limit}\nsteps:\n{steps}")).await;
        assert_eq!(status.status, WorkflowStatus::Completed);
        assert_eq!(events.len(), 8);
        assert_eq!(max, limit, "largest number of steps running at once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_skip_and_skips_propagate() {
    let (status, events, _) = run(r#"
id: cond
execution_mode: conditional
inputs:
  go: { type: boolean, default: false }
steps:
  - { id: check, plugin_id: test.ops, method_name: echo, parameters: { ok: true, rows: 3 } }
  - { id: taken, plugin_id: test.ops, method_name: record, parameters: { tag: taken }, dependencies: [check], when: "steps.check.output.rows == 3" }
  - { id: not_taken, plugin_id: test.ops, method_name: record, parameters: { tag: not_taken }, dependencies: [check], when: "inputs.go" }
  - { id: after_no, plugin_id: test.ops, method_name: record, parameters: { tag: after_no }, dependencies: [not_taken] }
  - { id: after_yes, plugin_id: test.ops, method_name: record, parameters: { tag: after_yes }, dependencies: [taken] }
"#)
    .await;
    assert_eq!(status.status, WorkflowStatus::Completed);
    assert_eq!(
        statuses(&status),
        [
            ("check", StepStatus::Completed),
            ("taken", StepStatus::Completed),
            ("not_taken", StepStatus::Skipped),
            ("after_no", StepStatus::Skipped),
            ("after_yes", StepStatus::Completed)
        ]
    );
    assert!(status.step("not_taken").unwrap().reason.as_ref().unwrap().contains("false"));
    assert!(status.step("after_no").unwrap().reason.as_ref().unwrap().contains("`not_taken` skipped"));
    let mut sorted = events.clone();
    sorted.sort();
    assert_eq!(sorted, ["after_yes", "taken"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_passes_outputs_downstream_and_into_the_shared_context() {
    let (status, _, _) = run(r#"
id: pipe
execution_mode: pipeline
inputs:
  name: { type: string, default: world }
steps:
  - { id: first, plugin_id: test.ops, method_name: echo, parameters: { greeting: "hello ${{ inputs.name }}", count: 2 } }
  - id: second
    plugin_id: test.ops
    method_name: echo
    dependencies: [first]
    parameters:
      from_context: "${{ context.greeting }}"
      doubled: "${{ steps.first.output.count * 2 }}"
outputs:
  final: "${{ steps.second.output }}"
"#)
    .await;
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:#?}");
    let second = status.step("second").unwrap().output.clone().unwrap();
    assert_eq!(second, json!({"from_context": "hello world", "doubled": 4}));
    assert_eq!(status.outputs["final"], second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_policy_with_backoff_on_the_injected_clock() {
    let clock = MockClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
    let (status, _, _) = run_with(
        r#"
id: retry
steps:
  - id: flaky
    plugin_id: test.ops
    method_name: flaky
    parameters: { failures: 3 }
    retry: { max_attempts: 5, initial_delay: 100ms, backoff: exponential, multiplier: 3, max_delay: 2s }
  - id: capped
    plugin_id: test.ops
    method_name: flaky
    parameters: { failures: 10 }
    retry: { max_attempts: 3, initial_delay: 5s, backoff: constant }
    critical: false
  - id: fatal
    plugin_id: test.ops
    method_name: fail
    parameters: { retryable: false }
    retry: { max_attempts: 4 }
    critical: false
"#,
        Arc::new(clock.clone()),
        Map::new(),
    )
    .await;
    let flaky = status.step("flaky").unwrap();
    assert_eq!((flaky.status, flaky.attempts), (StepStatus::Completed, 4));
    assert_eq!(flaky.output.as_ref().unwrap()["attempt"], 4);
    let capped = status.step("capped").unwrap();
    assert_eq!((capped.status, capped.attempts), (StepStatus::Failed, 3));
    // Not retryable: one attempt, however many are allowed.
    assert_eq!(status.step("fatal").unwrap().attempts, 1);
    let ms: Vec<u128> = clock.sleeps().iter().map(Duration::as_millis).collect();
    // 100, 300, 900 (×3 each time), then the constant 5 s twice.
    assert_eq!(ms, [100, 300, 900, 5000, 5000]);
}

/// QtForge-shaped documents (steps keyed by id) retry any failure, as
/// QtForge's `max_retries` does, and give a step without `timeout` QtForge's
/// 60,000 ms; `retry_on` says otherwise per step, in either shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qtforge_documents_retry_any_failure_and_default_to_a_60_s_step_timeout() {
    let qtforge = r#"{"id": "qt", "steps": {
        "fatal": {"plugin_id": "test.ops", "method_name": "fail", "parameters": {"retryable": false},
                  "max_retries": 2, "retry_delay": 50, "critical": false},
        "picky": {"plugin_id": "test.ops", "method_name": "fail", "parameters": {"retryable": false},
                  "retry": {"max_attempts": 3, "retry_on": "retryable"}, "critical": false, "timeout": 5000}}}"#;
    let wf = parse(&host(), "qt.json", qtforge).unwrap_or_else(|p| panic!("{p:#?}"));
    let timeouts: Vec<_> = wf.workflow.steps.iter().map(|s| (s.id.as_str(), s.timeout)).collect();
    assert_eq!(timeouts, [("fatal", Some(Duration::from_secs(60))), ("picky", Some(Duration::from_secs(5)))]);
    let clock = MockClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
    let (status, _, _) = run_with(qtforge, Arc::new(clock.clone()), Map::new()).await;
    assert_eq!(status.step("fatal").unwrap().attempts, 3, "QtForge retries a non-retryable failure");
    assert_eq!(status.step("picky").unwrap().attempts, 1, "retry_on: retryable says otherwise");
    assert_eq!(clock.sleeps(), [Duration::from_millis(50); 2]);

    // Plexus's own shape: only retryable failures by default, any on request, no step timeout of its own.
    let plexus = r#"
id: own
steps:
  - { id: fatal, plugin_id: test.ops, method_name: fail, parameters: { retryable: false }, max_retries: 2, retry_delay: 50, critical: false }
  - { id: any, plugin_id: test.ops, method_name: fail, parameters: { retryable: false }, retry: { max_attempts: 2, initial_delay: 50ms, retry_on: any }, critical: false }
"#;
    let wf = parse(&host(), "own.yaml", plexus).unwrap_or_else(|p| panic!("{p:#?}"));
    assert!(wf.workflow.steps.iter().all(|s| s.timeout.is_none()));
    let clock = MockClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
    let (status, _, _) = run_with(plexus, Arc::new(clock), Map::new()).await;
    assert_eq!(status.step("fatal").unwrap().attempts, 1);
    assert_eq!(status.step("any").unwrap().attempts, 2);
    let problems = parse(&host(), "bad.yaml", &plexus.replace("retry_on: any", "retry_on: sometimes")).unwrap_err();
    assert!(
        problems.iter().any(|p| p.to_string().contains("unknown retry_on `sometimes`: expected retryable or any")),
        "{problems:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_past_its_timeout_fails_as_a_timeout_and_is_retried() {
    let started = Instant::now();
    let (status, events, _) = run(r#"
id: slow
steps:
  - id: slow
    plugin_id: test.ops
    method_name: record
    parameters: { tag: slow, ms: 10000 }
    timeout: 100ms
    retry: { max_attempts: 2, initial_delay: 10ms }
"#)
    .await;
    let slow = status.step("slow").unwrap();
    assert_eq!((slow.status, slow.attempts), (StepStatus::Failed, 2));
    assert_eq!(slow.error.as_ref().unwrap().kind, "timeout");
    assert_eq!(events.len(), 2);
    assert_eq!(status.status, WorkflowStatus::Failed);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_max_parallel_starts_no_more_workers_than_steps() {
    let started = Instant::now();
    let (status, _, _) = run(r#"
id: wide
execution_mode: parallel
max_parallel: 1000000000000
steps:
  - { id: a, plugin_id: test.ops, method_name: echo }
  - { id: b, plugin_id: test.ops, method_name: echo }
"#)
    .await;
    assert_eq!(status.status, WorkflowStatus::Completed);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_ignores_its_timeout_is_abandoned_and_counted() {
    let before = plexus_host::runtime::abandoned_calls().get("test.ops").map_or(0, |c| c.1);
    let started = Instant::now();
    let (status, _, _) = run(r#"
id: stubborn
steps:
  - id: stuck
    plugin_id: test.ops
    method_name: stubborn
    parameters: { tag: stuck, ms: 600 }
    timeout: 50ms
"#)
    .await;
    assert_eq!(status.step("stuck").unwrap().error.as_ref().unwrap().kind, "timeout");
    assert!(started.elapsed() < Duration::from_millis(500), "the engine did not wait for the thread");
    assert!(plexus_host::runtime::abandoned_calls()["test.ops"].1 > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_critical_failure_is_recorded_and_the_workflow_goes_on() {
    let (status, _, _) = run(r#"
id: soft
execution_mode: parallel
steps:
  - { id: optional, plugin_id: test.ops, method_name: fail, critical: false }
  - { id: needs_optional, plugin_id: test.ops, method_name: echo, dependencies: [optional] }
  - { id: independent, plugin_id: test.ops, method_name: echo, parameters: { x: 1 } }
"#)
    .await;
    assert_eq!(status.status, WorkflowStatus::Completed);
    assert_eq!(
        statuses(&status),
        [
            ("optional", StepStatus::Failed),
            ("needs_optional", StepStatus::Skipped),
            ("independent", StepStatus::Completed)
        ]
    );
    assert_eq!(status.step("optional").unwrap().error.as_ref().unwrap().message, "failed on purpose");
}

const ROLLBACK: &str = r#"
id: saga
steps:
  - { id: a, plugin_id: test.ops, method_name: record, parameters: { tag: a }, compensate: { plugin_id: test.ops, method_name: record, parameters: { tag: undo-a } } }
  - { id: b, plugin_id: test.ops, method_name: record, parameters: { tag: b }, dependencies: [a] }
  - { id: c, plugin_id: test.ops, method_name: record, parameters: { tag: c }, dependencies: [b] }
  - { id: boom, plugin_id: test.ops, method_name: METHOD, dependencies: [c] }
  - { id: never, plugin_id: test.ops, method_name: record, parameters: { tag: never }, dependencies: [boom] }
rollback_steps:
  b: { plugin_id: test.ops, method_name: record, parameters: { tag: "undo-${{ steps.b.output.tag }}" } }
  c: { plugin_id: test.ops, method_name: COMPENSATE_C, parameters: { tag: undo-c } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_failure_compensates_completed_steps_in_reverse_order() {
    let (status, events, _) = run(&ROLLBACK.replace("METHOD", "fail").replace("COMPENSATE_C", "record")).await;
    assert_eq!(status.status, WorkflowStatus::Failed, "{status:#?}");
    assert_eq!(events, ["a", "b", "c", "undo-c", "undo-b", "undo-a"]);
    assert_eq!(status.step("never").unwrap().status, StepStatus::Cancelled);
    let order: Vec<&str> = status.compensations.iter().map(|c| c.step.as_str()).collect();
    assert_eq!(order, ["c", "b", "a"]);
    assert!(status.error.as_ref().unwrap().contains("boom"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_compensation_ends_in_rollback_failed_and_the_others_still_run() {
    let (status, events, _) = run(&ROLLBACK.replace("METHOD", "fail").replace("COMPENSATE_C", "fail")).await;
    assert_eq!(status.status, WorkflowStatus::RollbackFailed);
    assert_eq!(events, ["a", "b", "c", "undo-b", "undo-a"]);
    assert_eq!(status.compensations[0].status, StepStatus::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_stops_running_steps_cancels_pending_ones_and_compensates() {
    let host = host();
    let orch = Orchestrator::new(host.clone());
    orch.register(valid(&host, r#"
id: cancel-me
steps:
  - { id: quick, plugin_id: test.ops, method_name: record, parameters: { tag: quick }, compensate: { plugin_id: test.ops, method_name: record, parameters: { tag: undo-quick } } }
  - { id: long, plugin_id: test.ops, method_name: record, parameters: { tag: long, ms: 20000 }, dependencies: [quick] }
  - { id: later, plugin_id: test.ops, method_name: record, parameters: { tag: later }, dependencies: [long] }
"#))
    .unwrap();
    let exec = orch.execute("cancel-me", Map::new()).unwrap();
    while orch.status(&exec).unwrap().current_steps != ["long"] {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // QtForge's name for it, alongside.
    assert_eq!(orch.status(&exec).unwrap().current_step.as_deref(), Some("long"));
    let started = Instant::now();
    orch.cancel(&exec).unwrap();
    let status = orch.wait(&exec).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(status.status, WorkflowStatus::Cancelled);
    assert_eq!((status.current_steps.len(), status.current_step.as_deref()), (0, None));
    assert_eq!(
        statuses(&status),
        [("quick", StepStatus::Completed), ("long", StepStatus::Cancelled), ("later", StepStatus::Cancelled)]
    );
    assert_eq!(journal(&exec, |j| j.events.clone()), ["quick", "long", "undo-quick"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflow_timeout_stops_everything() {
    let (status, _, _) = run(r#"
id: overall
timeout: 150ms
steps:
  - { id: long, plugin_id: test.ops, method_name: record, parameters: { tag: long, ms: 20000 } }
"#)
    .await;
    assert_eq!(status.status, WorkflowStatus::Failed);
    assert!(status.error.as_ref().unwrap().contains("timed out"), "{:?}", status.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qtforge_json_workflow_loads_unchanged_and_runs() {
    let host = host();
    let text = include_str!("../../../tests/fixtures/qtforge-workflow.json");
    let wf = parse(&host, "qtforge.json", text).unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(wf.workflow.mode, ExecutionMode::Parallel);
    assert_eq!(wf.workflow.steps[1].retry.max_attempts, 3);
    assert_eq!(wf.workflow.steps[1].retry.initial_delay, Duration::from_millis(250));
    assert_eq!(wf.workflow.timeout, Some(Duration::from_millis(60000)));
    let orch = Orchestrator::new(host);
    orch.register(wf).unwrap();
    let exec = orch.execute("qtforge-demo", Map::new()).unwrap();
    let status = orch.wait(&exec).await.unwrap();
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:#?}");
    assert_eq!(status.step("transform").unwrap().attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_get_defaults_and_are_checked() {
    let host = host();
    let orch = Orchestrator::new(host.clone());
    orch.register(valid(
        &host,
        r#"
id: inputs
inputs:
  path: { type: string, required: true }
  limit: { type: integer, default: 10 }
steps:
  - { id: s, plugin_id: test.ops, method_name: echo, parameters: { p: "${{ inputs.path }}", l: "${{ inputs.limit }}" } }
"#,
    ))
    .unwrap();
    let missing = orch.execute("inputs", Map::new()).unwrap_err().to_string();
    assert!(missing.contains("`path` is required"), "{missing}");
    // Declared inputs are still checked when free-form keys come with them.
    let wrong = orch
        .execute("inputs", json!({"path": "x", "limit": "ten", "extra": 1}).as_object().unwrap().clone())
        .unwrap_err();
    assert!(wrong.to_string().contains("limit") && !wrong.to_string().contains("extra"), "{wrong}");
    let exec = orch.execute("inputs", json!({"path": "data.csv"}).as_object().unwrap().clone()).unwrap();
    let status = orch.wait(&exec).await.unwrap();
    assert_eq!(status.step("s").unwrap().output, Some(json!({"p": "data.csv", "l": 10})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_initial_data_goes_into_the_context_as_qtforge_passes_it() {
    let host = host();
    let orch = Orchestrator::new(host.clone());
    orch.register(valid(
        &host,
        r#"
id: free
inputs:
  path: { type: string, default: a.csv }
steps:
  - { id: s, plugin_id: test.ops, method_name: echo, parameters: { p: "${{ inputs.path }}", src: "${{ context.source_file }}" } }
"#,
    ))
    .unwrap();
    let data = json!({"source_file": "data.csv", "batch": {"size": 3}});
    let exec = orch.execute("free", data.as_object().unwrap().clone()).unwrap();
    let status = orch.wait(&exec).await.unwrap();
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:#?}");
    assert_eq!(status.step("s").unwrap().output, Some(json!({"p": "a.csv", "src": "data.csv"})));
    // Only declared inputs are inputs.
    assert_eq!(status.inputs, *json!({"path": "a.csv"}).as_object().unwrap());
    let too_many: Map<String, Value> =
        (0..=orchestrator::MAX_CONTEXT_KEYS).map(|i| (format!("k{i}"), json!(i))).collect();
    let refused = orch.execute("free", too_many).unwrap_err().to_string();
    assert!(refused.contains("at most 1000"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_answers_qtforges_calls() {
    let host = host();
    let orch = Orchestrator::new(host.clone());
    assert!(!orch.has("api"));
    orch.register(valid(
        &host,
        r#"
id: api
steps:
  - { id: slow, plugin_id: test.ops, method_name: record, parameters: { tag: slow, ms: 150 } }
  - { id: flaky, plugin_id: test.ops, method_name: flaky, parameters: { failures: 1 }, dependencies: [slow],
      retry: { max_attempts: 2, initial_delay: 1ms } }
"#,
    ))
    .unwrap();
    assert!(orch.has("api"));
    let exec = orch.execute("api", Map::new()).unwrap();
    assert_eq!(orch.active_executions(), std::slice::from_ref(&exec));
    orch.wait(&exec).await.unwrap();
    assert!(orch.active_executions().is_empty());
    let results = orch.step_results(&exec).unwrap();
    assert_eq!(results.len(), 2);
    let flaky = &results[1];
    assert_eq!((flaky.step_id.as_str(), flaky.status, flaky.retry_count), ("flaky", StepStatus::Completed, 1));
    assert_eq!(flaky.result_data, json!({"attempt": 2}));
    assert_eq!(flaky.error_message, None);
    assert_eq!(flaky.execution_time, Some(flaky.end_time.unwrap() - flaky.start_time.unwrap()));
    assert!(results[0].execution_time.unwrap() >= 150, "{results:?}");
    assert_eq!(orch.clear(), 1);
    assert!(!orch.has("api") && orch.list().is_empty());
    // Its execution is still there after the workflow went.
    assert_eq!(orch.status(&exec).unwrap().status, WorkflowStatus::Completed);
}

#[test]
fn to_json_writes_a_document_that_reads_back_as_the_same_workflow() {
    let host = host();
    let qtforge = parse(&host, "qtforge.json", include_str!("../../../tests/fixtures/qtforge-workflow.json"))
        .unwrap_or_else(|p| panic!("{p:#?}"));
    let ours = valid(
        &host,
        r#"
id: ours
name: Ours
execution_mode: conditional
timeout: 5m
max_parallel: 3
resources: { cpu_limit: 1.5, memory_limit_gb: 2, disk_space_gb: 10 }
inputs:
  path: { type: string, default: a.csv, description: where }
  n: { type: integer, required: true }
steps:
  - { id: a, plugin_id: test.ops, operation: echo, parameters: { p: "${{ inputs.path }}" }, metadata: { owner: me } }
  - id: b
    plugin_id: test.ops
    operation: echo
    dependencies: [a]
    when: "steps.a.status == 'completed'"
    timeout: 2s
    critical: false
    retry: { max_attempts: 4, initial_delay: 10ms, backoff: exponential, multiplier: 3, max_delay: 1s, jitter: 0.5, retry_on: any }
    compensate: { plugin_id: test.ops, operation: echo, parameters: { undo: b } }
    resources: { cpu: 0.5, memory_mb: 256 }
outputs:
  b: "${{ steps.b.output }}"
metadata: { team: data }
"#,
    );
    for wf in [qtforge.workflow, ours.workflow] {
        let text = serde_json::to_string_pretty(&wf.to_json()).unwrap();
        let again = parse(&host, "again.json", &text).unwrap_or_else(|p| panic!("{p:#?}\n{text}"));
        assert_eq!(serde_json::to_value(&again.workflow).unwrap(), serde_json::to_value(&wf).unwrap(), "{text}");
    }
}

#[test]
fn validation_reports_every_problem_with_step_and_line() {
    let host = host();
    let text = r#"id: broken
execution_mode: sideways
colour: blue
steps:
  - id: a
    plugin_id: test.ops
    method_name: echo
    timeout: soon
  - id: a
    plugin_id: test.ops
    method_name: echo
  - id: b
    plugin_id: nope.plugin
    method_name: echo
    dependencies: [ghost]
  - id: c
    plugin_id: test.ops
    method_name: teleport
  - id: d
    plugin_id: test.ops
    method_name: flaky
    parameters: { failures: many }
  - id: e
    plugin_id: test.ops
    method_name: echo
    when: "steps.a.output =="
    parameters: { x: "${{ steps.later.output }}" }
    retry: { backoff: sometimes, max_attempts: 0 }
  - id: x
    plugin_id: test.ops
    method_name: echo
    dependencies: [z]
    surprise: true
  - id: y
    plugin_id: test.ops
    method_name: echo
    dependencies: [x]
  - id: z
    plugin_id: test.ops
    method_name: echo
    dependencies: [y]
"#;
    let problems = parse(&host, "broken.yaml", text).unwrap_err();
    let text_of = |needle: &str| {
        problems
            .iter()
            .find(|p| p.to_string().contains(needle))
            .unwrap_or_else(|| panic!("no problem mentions {needle:?}: {problems:#?}"))
            .to_string()
    };
    assert_eq!(
        text_of("sideways"),
        "line 2: execution_mode: unknown execution_mode \"sideways\": expected sequential, parallel, conditional or pipeline"
    );
    assert!(text_of("colour").starts_with("line 3: colour: unknown field `colour`"));
    assert!(text_of("soon").starts_with("line 8: step `a`: steps[0].timeout: invalid duration"));
    assert!(text_of("duplicate").starts_with("line 9: step `a`"));
    assert!(text_of("ghost").starts_with("line 15: step `b`"));
    assert!(text_of("nope.plugin").contains("unknown plugin `nope.plugin`"));
    assert!(text_of("teleport").contains("has no operation `teleport`"));
    assert!(text_of("many").contains("do not fit `flaky`"), "{}", text_of("many"));
    assert!(text_of("steps.a.output ==").contains("step `e`"));
    assert!(text_of("sometimes").contains("unknown backoff"));
    assert!(text_of("max_attempts").contains("at least 1"));
    assert!(text_of("steps.later").starts_with("line 27: step `e`: steps[5].parameters:"));
    assert!(text_of("surprise").starts_with("line 33: step `x`"));
    let cycle = text_of("cycle");
    assert!(
        cycle.contains("x → y → z → x") || cycle.contains("y → z → x → y") || cycle.contains("z → x → y → z"),
        "{cycle}"
    );
    assert!(problems.len() >= 14, "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_metrics_and_last_progress_are_in_its_record() {
    let yaml = "id: m\nsteps:\n  - { id: a, plugin_id: test.ops, method_name: measure }\n";
    let (status, _, _) = run_with(yaml, Arc::new(SystemClock), Map::new()).await;
    let a = &status.steps[0];
    assert_eq!(a.status, StepStatus::Completed);
    assert_eq!(a.metrics.get("rows"), Some(&1462.0), "the last value of a name reported twice");
    assert!(!a.metrics.contains_key("ratio"), "NaN is dropped");
    assert_eq!(a.metrics.len(), crate::status::MAX_STEP_METRICS, "capped");
    let progress = a.progress.as_ref().expect("the last progress report is kept");
    assert_eq!(progress.fraction, 1.0);
    assert_eq!(progress.message.len(), 1024, "capped at 1 KiB, on a character boundary");
    // The record round-trips through JSON (as the daemon stores it).
    let back: StepRecord = serde_json::from_value(serde_json::to_value(a).unwrap()).unwrap();
    assert_eq!(back.metrics, a.metrics);
}

#[test]
fn a_step_asking_for_a_kind_the_plugin_is_not_loaded_as_is_refused() {
    let host = host();
    let text = "id: k\nsteps:\n  - { id: a, plugin_id: test.ops, kind: wasm, method_name: echo }\n  - { id: b, plugin_id: test.ops, kind: nuclear, method_name: echo }\n";
    let problems: Vec<String> = parse(&host, "k.yaml", text).unwrap_err().iter().map(ToString::to_string).collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("line 3: step `a`") && p.contains("not loaded as wasm (loaded as: in-process)")),
        "{problems:#?}"
    );
    assert!(problems.iter().any(|p| p.contains("step `b`") && p.contains("nuclear")), "{problems:#?}");
}

#[test]
fn parameters_with_expressions_are_checked_as_far_as_they_are_known() {
    let host = host();
    let step = |id: &str, params: &str| {
        format!("  - {{ id: {id}, plugin_id: test.ops, method_name: strict, parameters: {params} }}\n")
    };
    let wf = |steps: &[String]| {
        format!(
            "id: w\ninputs:\n  who: {{ type: string, default: x }}\n  n: {{ type: integer, default: 1 }}\nsteps:\n{}",
            steps.concat()
        )
    };
    // Expressions where values go, in whole or in part.
    let fine = wf(&[
        step("typed", r#"{ name: "${{ inputs.who }}", count: "${{ inputs.n }}", mode: fast }"#),
        step(
            "text",
            r#"{ name: "hi ${{ inputs.who }}", count: 1, mode: "${{ inputs.who }}", tags: [a, "${{ inputs.who }}"] }"#,
        ),
    ]);
    if let Err(problems) = parse(&host, "fine.yaml", &fine) {
        panic!("{problems:#?}");
    }
    // Beside an expression, what is literal is still checked.
    let broken = wf(&[
        step("typo", r#"{ nmae: "${{ inputs.who }}", count: 2, mode: fast }"#),
        step("literal", r#"{ name: "${{ inputs.who }}", count: two, mode: slow }"#),
        step("nested", r#"{ name: x, count: 1, mode: fast, tags: ["${{ inputs.who }}", 3] }"#),
    ]);
    let problems: Vec<String> =
        parse(&host, "broken.yaml", &broken).unwrap_err().iter().map(ToString::to_string).collect();
    let about = |step: &str, needle: &str| {
        assert!(
            problems.iter().any(|p| p.contains(&format!("step `{step}`")) && p.contains(needle)),
            "no problem of step `{step}` mentions {needle:?}: {problems:#?}"
        );
    };
    about("typo", "\"name\" is a required property");
    about("typo", "nmae");
    about("literal", "at /count");
    about("literal", "at /mode");
    about("nested", "at /tags/1");
    assert_eq!(problems.len(), 5, "{problems:#?}");
}

#[test]
fn ids_empty_workflows_and_overlong_durations_are_refused() {
    let host = host();
    let step = "steps:\n  - id: a\n    plugin_id: test.ops\n    method_name: echo\n";
    let problems =
        |text: &str| parse(&host, "w.yaml", text).unwrap_err().iter().map(ToString::to_string).collect::<Vec<_>>();
    let bad_id = problems(&format!("id: \"my flow/../x\"\n{step}"));
    assert!(bad_id.iter().any(|p| p.contains("workflow id `my flow/../x`")), "{bad_id:?}");
    let too_long = problems(&format!("id: {}\n{step}", "w".repeat(201)));
    assert!(too_long.iter().any(|p| p.contains("at most 200")), "{too_long:?}");
    for empty in ["id: e\nsteps: []\n", "id: e\nsteps: {}\n"] {
        let p = problems(empty);
        assert!(p.iter().any(|p| p.contains("at least one step")), "{empty}: {p:?}");
    }
    let timeout = problems(&format!(
        "id: t\ntimeout: 300000000000y\n{step}    timeout: 31days\n    retry: {{ max_delay: 40days }}\n"
    ));
    for field in ["timeout: duration", "steps[0].timeout: duration", "steps[0].retry.max_delay: duration"] {
        assert!(timeout.iter().any(|p| p.contains(field) && p.contains("too long")), "{field}: {timeout:?}");
    }
    parse(&host, "w.yaml", &format!("id: ok.id_1-2\ntimeout: 30days\n{step}")).unwrap();
    // `~` joins a sub-workflow's execution id to its parent's: never in a step id.
    let tilde = problems(&format!("id: t\n{}", step.replace("id: a", "id: a~b")));
    assert!(tilde.iter().any(|p| p.contains("a step id has no `~`")), "{tilde:?}");
}

#[test]
fn plan_stages_and_graphs() {
    let host = host();
    let wf = valid(
        &host,
        r#"
id: diamond
execution_mode: parallel
steps:
  - { id: load, plugin_id: test.ops, method_name: echo }
  - { id: left, plugin_id: test.ops, method_name: echo, dependencies: [load] }
  - { id: right, plugin_id: test.ops, method_name: echo, dependencies: [load] }
  - { id: join, plugin_id: test.ops, method_name: echo, dependencies: [left, right] }
"#,
    );
    let stages: Vec<Vec<&str>> =
        wf.dag.stages().iter().map(|s| s.iter().map(|&i| wf.workflow.steps[i].id.as_str()).collect()).collect();
    assert_eq!(stages, [vec!["load"], vec!["left", "right"], vec!["join"]]);
    let m = dag::mermaid(&wf.workflow);
    assert!(m.starts_with("flowchart TD") && m.contains("s0 --> s1") && m.contains("s2 --> s3"), "{m}");
    let d = dag::dot(&wf.workflow);
    assert!(d.contains("\"left\" -> \"join\";"), "{d}");
}

#[test]
fn the_committed_json_schema_accepts_the_examples_and_rejects_what_validation_rejects() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("schemas/workflow.schema.json")).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for file in [
        "examples/pipeline.yaml",
        "examples/parallel.yaml",
        "examples/robust.yaml",
        "tests/fixtures/qtforge-workflow.json",
    ] {
        let path = root.join(file);
        let doc = Document::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
        let errors: Vec<String> = validator.iter_errors(&doc.value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{file}: {errors:?}");
    }
    for bad in [
        json!({"id": "x"}),
        json!({"id": "x", "steps": [{"id": "a", "plugin_id": "p", "method_name": "m", "colour": 1}]}),
        json!({"id": "x", "execution_mode": 7, "steps": [{"id": "a", "plugin_id": "p", "operation": "m"}]}),
    ] {
        assert!(!validator.is_valid(&bad), "{bad}");
        let doc = Document::parse(Path::new("bad.json"), &bad.to_string()).unwrap();
        assert!(validate(&doc, None).is_err(), "{bad}");
    }
}

/// A journal that fails while `failing` is set, and counts the snapshots it took.
#[derive(Default)]
struct FlakyJournal {
    failing: std::sync::atomic::AtomicBool,
    snapshots: std::sync::atomic::AtomicUsize,
}

impl FlakyJournal {
    fn result(&self) -> JournalResult {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            Err(JournalError("disk full".into()))
        } else {
            Ok(())
        }
    }
}

impl super::Journal for FlakyJournal {
    fn execution(&self, _: &ExecutionStatus) -> JournalFuture {
        journal::written(self.result())
    }
    fn step(&self, _: &str, _: usize, _: &StepRecord, _: Option<&Map<String, Value>>) -> JournalFuture {
        journal::written(self.result())
    }
    fn compensation(&self, _: &str, _: usize, _: &status::CompensationRecord) -> JournalFuture {
        journal::written(self.result())
    }
    fn snapshot(&self, _: &ExecutionStatus, _: &Map<String, Value>) -> JournalFuture {
        let result = self.result();
        if result.is_ok() {
            self.snapshots.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        journal::written(result)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_journal_holds_the_execution_until_it_records_again() {
    let host = host();
    let steps: String = (0..6)
        .map(|i| {
            format!(
                "  - {{ id: s{i}, plugin_id: test.ops, method_name: record, parameters: {{ tag: s{i}, ms: 400 }} }}\n"
            )
        })
        .collect();
    let wf = valid(&host, &format!("id: held\nexecution_mode: parallel\nmax_parallel: 3\nsteps:\n{steps}"));
    let prepared = Arc::new(engine::Prepared::new(wf));
    let flaky = Arc::new(FlakyJournal::default());
    let exec = engine::Execution::start("held-1".into(), &prepared, Map::new(), flaky.clone(), None);
    let engine = Engine::new(host, Arc::new(SystemClock));
    let run = tokio::spawn({
        let exec = exec.clone();
        async move { engine.run(prepared, exec).await }
    });
    let started = || journal("held-1", |j| j.events.len());
    while started() < 3 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    flaky.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(exec.is_held());
    assert_eq!(started(), 3, "no step starts while the journal fails");
    assert!(exec.record_again().await.is_err(), "still failing");
    assert!(!exec.is_done(), "a held execution does not end");
    flaky.failing.store(false, std::sync::atomic::Ordering::SeqCst);
    exec.record_again().await.unwrap();
    run.await.unwrap();
    let status = exec.snapshot();
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:#?}");
    assert!(status.steps.iter().all(|s| s.attempts == 1), "{status:#?}");
    let mut events = journal("held-1", |j| j.events.clone());
    events.sort();
    assert_eq!(events, ["s0", "s1", "s2", "s3", "s4", "s5"], "each step ran once");
    assert_eq!(flaky.snapshots.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn a_yaml_workflow_of_30000_steps_reads_validates_and_prepares() {
    // Past the YAML library's default node budget (250,000 nodes, about 20,000 steps).
    let mut yaml = String::from("id: big\nsteps:\n  - { id: s0, plugin_id: test.ops, method_name: echo }\n");
    for i in 1..30_000 {
        yaml.push_str(&format!(
            "  - {{ id: s{i}, plugin_id: test.ops, method_name: echo, dependencies: [s{}] }}\n",
            i - 1
        ));
    }
    let host = host();
    let workflow = valid(&host, &yaml);
    assert_eq!(workflow.workflow.steps.len(), 30_000);
    let prepared = Prepared::new(workflow);
    assert_eq!(prepared.workflow.steps[29_999].id, "s29999");
}

/// A journal whose blocking step writes panic after `calm` of them: a bug
/// below the engine, as the runners meet it.
struct PanickyJournal {
    calm: std::sync::atomic::AtomicUsize,
}

impl super::Journal for PanickyJournal {
    fn execution(&self, _: &ExecutionStatus) -> JournalFuture {
        journal::written(Ok(()))
    }
    fn step(&self, _: &str, _: usize, _: &StepRecord, _: Option<&Map<String, Value>>) -> JournalFuture {
        journal::written(Ok(()))
    }
    fn step_blocking(&self, _: &str, _: usize, _: &StepRecord, _: Option<&Map<String, Value>>) -> JournalResult {
        if self.calm.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            panic!("the journal broke");
        }
        Ok(())
    }
    fn compensation(&self, _: &str, _: usize, _: &status::CompensationRecord) -> JournalFuture {
        journal::written(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_panics_fails_the_execution_instead_of_hanging_it() {
    let host = host();
    let wf = valid(
        &host,
        "id: panicky\nsteps:\n  - { id: a, plugin_id: test.ops, method_name: echo }\n  - { id: b, plugin_id: test.ops, method_name: echo, dependencies: [a] }\n  - { id: c, plugin_id: test.ops, method_name: echo, dependencies: [b] }\n",
    );
    let prepared = Arc::new(engine::Prepared::new(wf));
    // a starts and ends, b starts: the next write (b's end) panics.
    let journal = Arc::new(PanickyJournal { calm: 3.into() });
    let exec = engine::Execution::start("panicky-1".into(), &prepared, Map::new(), journal, None);
    let engine = Engine::new(host, Arc::new(SystemClock));
    let run = tokio::spawn({
        let exec = exec.clone();
        async move { engine.run(prepared, exec).await }
    });
    tokio::time::timeout(Duration::from_secs(10), run).await.expect("the execution ended").unwrap();
    let status = exec.snapshot();
    assert_eq!(status.status, WorkflowStatus::Failed, "{status:#?}");
    assert!(status.error.as_deref().unwrap_or("").contains("a step runner panicked: the journal broke"), "{status:#?}");
    assert_eq!(status.steps[0].status, StepStatus::Completed);
    assert_eq!(status.steps[2].status, StepStatus::Cancelled, "the steps after it never start");
}

/// The process's thread count (Linux).
fn threads() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_waiting_to_retry_holds_no_thread() {
    let Some(before) = threads() else { return };
    let host = host();
    let engine = Engine::new(host.clone(), Arc::new(SystemClock));
    let wf = valid(
        &host,
        "id: waits\nsteps:\n  - { id: a, plugin_id: test.ops, method_name: fail, parameters: { retryable: true }, retry: { max_attempts: 2, initial_delay: 1h } }\n",
    );
    let prepared = Arc::new(engine::Prepared::new(wf));
    let mut waiting = Vec::new();
    for n in 0..50 {
        let exec = engine::Execution::new(format!("waits-{n}"), &prepared, Map::new());
        tokio::spawn({
            let (engine, prepared, exec) = (engine.clone(), prepared.clone(), exec.clone());
            async move { engine.run(prepared, exec).await }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while exec.snapshot().steps[0].status != StepStatus::Retrying {
            assert!(Instant::now() < deadline, "the step never went to retrying: {:#?}", exec.snapshot());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        waiting.push(exec);
    }
    let after = threads().unwrap();
    // The old worker threads parked one thread per waiting execution (50 here).
    assert!(after < before + 10, "{before} threads before, {after} with 50 executions waiting to retry");
    for exec in &waiting {
        exec.cancel();
    }
    for exec in &waiting {
        let status = tokio::time::timeout(Duration::from_secs(10), exec.wait()).await.expect("cancelled in time");
        assert_eq!(status.status, WorkflowStatus::Cancelled);
        assert_eq!(status.steps[0].status, StepStatus::Cancelled, "{:?}", status.steps[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_leaves_a_step_waiting_to_retry_for_the_resume() {
    let host = host();
    let drain = tokio_util::sync::CancellationToken::new();
    let engine = Engine::new(host.clone(), Arc::new(SystemClock)).with_drain(drain.clone());
    let wf = valid(
        &host,
        "id: drained\nsteps:\n  - { id: a, plugin_id: test.ops, method_name: fail, parameters: { retryable: true }, retry: { max_attempts: 3, initial_delay: 1h } }\n",
    );
    let prepared = Arc::new(engine::Prepared::new(wf));
    let mut runs = Vec::new();
    for n in 0..20 {
        let exec = engine::Execution::new(format!("drained-{n}"), &prepared, Map::new());
        let run = tokio::spawn({
            let (engine, prepared, exec) = (engine.clone(), prepared.clone(), exec.clone());
            async move { engine.run(prepared, exec).await }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while exec.snapshot().steps[0].status != StepStatus::Retrying {
            assert!(Instant::now() < deadline, "the step never went to retrying");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        runs.push((exec, run));
    }
    drain.cancel();
    for (exec, run) in runs {
        tokio::time::timeout(Duration::from_secs(10), run).await.expect("the phase stopped").unwrap();
        let status = exec.snapshot();
        assert_eq!(status.steps[0].status, StepStatus::Retrying, "left for the resume: {status:#?}");
        assert_eq!(status.steps[0].attempts, 1, "the drain did not start another attempt");
        assert!(!status.status.is_terminal(), "{status:#?}");
    }
}

#[test]
fn the_committed_json_schema_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/workflow.schema.json");
    let generated = serde_json::to_string_pretty(&workflow_schema()).unwrap() + "\n";
    if std::env::var_os("PLEXUS_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schemas/workflow.schema.json is not the schema the reader's structs generate; regenerate it with\n  \
         PLEXUS_BLESS=1 cargo test -p plexus-workflow the_committed_json_schema_is_the_generated_one\n\
         and review the difference"
    );
}

#[test]
fn the_generated_schema_and_the_reader_accept_and_refuse_the_same_shapes() {
    let validator = jsonschema::validator_for(&workflow_schema()).unwrap();
    let step = json!({"id": "a", "plugin_id": "p", "method_name": "m"});
    let with = |extra: Value| {
        let mut doc = json!({"id": "w", "steps": [step.clone()]});
        for (k, v) in extra.as_object().unwrap() {
            doc[k] = v.clone();
        }
        doc
    };
    let with_step = |extra: Value| {
        let mut s = step.clone();
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        json!({"id": "w", "steps": [s]})
    };
    let accepted = [
        with(json!({"execution_mode": "PARALLEL", "timeout": "1h 30m", "max_parallel": 2, "name": null})),
        with(json!({"execution_mode": 3, "timeout": 2_592_000_000_u64, "version": 1, "tags": ["x"]})),
        with(json!({"inputs": {"a": "bool", "b": {"type": "integer", "default": 1, "required": false}, "c": {}}})),
        with(json!({"rollback_steps": {"a": {"plugin_id": "p", "operation": "undo", "id": 7, "parameters": [1]}}})),
        with(json!({"outputs": {"x": "${{ steps.a.output }}"}, "metadata": {"k": 1}})),
        json!({"id": "w", "steps": {"a": {"plugin_id": "p", "operation": "m", "max_retries": 2, "retry_delay": 250}}}),
        with_step(json!({"dependencies": null, "parameters": null, "when": "true", "critical": false})),
        with_step(json!({"retry": {"max_attempts": 3, "backoff": "exponential", "multiplier": 1.5, "jitter": 1}})),
        with_step(json!({"compensate": {"plugin_id": "p", "method_name": "undo"}, "timeout": "250ms"})),
    ];
    let refused = [
        json!({"steps": [step.clone()]}),
        json!({"id": "w", "steps": []}),
        json!({"id": "w", "steps": {}}),
        json!({"id": "w", "steps": [{"plugin_id": "p", "method_name": "m"}]}),
        json!({"id": "a b", "steps": [step.clone()]}),
        with(json!({"execution_mode": "sideways"})),
        with(json!({"execution_mode": 4})),
        with(json!({"timeout": -1})),
        with(json!({"timeout": "soon"})),
        with(json!({"timeout": 2_592_000_001_u64})),
        with(json!({"max_parallel": 0})),
        with(json!({"inputs": {"a": "text"}})),
        with(json!({"inputs": {"a": {"type": "string", "colour": 1}}})),
        with(json!({"outputs": [1]})),
        with(json!({"rollback_steps": {"a": {"plugin_id": "p"}}})),
        with(json!({"colour": 1})),
        with_step(json!({"plugin_id": " "})),
        with_step(json!({"plugin_id": null})),
        with_step(json!({"parameters": [1]})),
        with_step(json!({"dependencies": [1]})),
        with_step(json!({"critical": "yes"})),
        with_step(json!({"retry": {"max_attempts": 0}})),
        with_step(json!({"retry": {"jitter": 2}})),
        with_step(json!({"retry": {"multiplier": 0.5}})),
        with_step(json!({"retry": {"backoff": "linear"}})),
        with_step(json!({"compensate": {"method_name": "m"}})),
        with_step(json!({"colour": 1})),
    ];
    for doc in accepted {
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{doc}: {errors:?}");
        let read = validate(&Document::parse(Path::new("w.json"), &doc.to_string()).unwrap(), None);
        assert!(read.is_ok(), "{doc}: {:?}", read.err());
    }
    for doc in refused {
        assert!(!validator.is_valid(&doc), "the schema accepts {doc}");
        let read = validate(&Document::parse(Path::new("w.json"), &doc.to_string()).unwrap(), None);
        assert!(read.is_err(), "the reader accepts {doc}");
    }
}

const TX_WORKFLOW: &str = r#"
id: tx
inputs:
  name: { type: string }
steps:
  - { id: a, plugin_id: test.ops, method_name: record, parameters: { tag: "${{ inputs.name }}-a", ms: 5 },
      compensate: { plugin_id: test.ops, method_name: echo, parameters: { undo: "${{ inputs.name }}-a" } } }
  - { id: b, plugin_id: test.ops, method_name: record, parameters: { tag: "${{ inputs.name }}-b", ms: 5 }, dependencies: [a],
      compensate: { plugin_id: test.ops, method_name: echo, parameters: { undo: "${{ inputs.name }}-b" } } }
"#;

fn named(name: &str) -> Map<String, Value> {
    json!({ "name": name }).as_object().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_rolls_back_every_completed_step_of_its_executions_newest_first() {
    let host = host();
    let orch = Orchestrator::new(host.clone());
    orch.register(valid(&host, TX_WORKFLOW)).unwrap();
    orch.begin_transaction("t1").unwrap();
    assert!(matches!(orch.begin_transaction("t1"), Err(OrchestratorError::AlreadyExists(_))));
    let first = orch.execute_in("tx", named("first"), Some("t1")).unwrap();
    // Still running: neither commit nor rollback.
    let running = orch.commit_transaction("t1").unwrap_err();
    assert!(matches!(running, OrchestratorError::InvalidState(ref m) if m.contains(&first)), "{running}");
    orch.wait(&first).await.unwrap();
    let second = orch.execute_in("tx", named("second"), Some("t1")).unwrap();
    orch.wait(&second).await.unwrap();
    // Outside the transaction: untouched by its rollback.
    let outside = orch.execute("tx", named("outside")).unwrap();
    orch.wait(&outside).await.unwrap();

    let tx = orch.rollback_transaction("t1").await.unwrap();
    assert_eq!(tx.state, plexus_client::TransactionState::RolledBack);
    assert_eq!(tx.executions, [first.clone(), second.clone()]);
    let undone: Vec<(String, Value)> =
        tx.compensations.iter().map(|c| (c.execution_id.clone(), c.record.output.clone().unwrap())).collect();
    assert_eq!(
        undone,
        [
            (second.clone(), json!({"undo": "second-b"})),
            (second.clone(), json!({"undo": "second-a"})),
            (first.clone(), json!({"undo": "first-b"})),
            (first.clone(), json!({"undo": "first-a"})),
        ]
    );
    for id in [&first, &second] {
        let status = orch.status(id).unwrap();
        assert_eq!(status.status, WorkflowStatus::RolledBack, "{status:#?}");
        assert_eq!(status.compensations.len(), 2);
    }
    assert_eq!(orch.status(&outside).unwrap().status, WorkflowStatus::Completed);
    // Over: it takes no new execution and can be neither committed nor rolled back again.
    assert!(matches!(orch.execute_in("tx", named("late"), Some("t1")), Err(OrchestratorError::InvalidState(_))));
    assert!(matches!(orch.commit_transaction("t1"), Err(OrchestratorError::InvalidState(_))));
    assert!(matches!(orch.rollback_transaction("t1").await, Err(OrchestratorError::InvalidState(_))));
    assert!(matches!(orch.execute_in("tx", named("x"), Some("nope")), Err(OrchestratorError::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_transaction_keeps_its_work_and_a_failure_leaves_it_open() {
    let host = host();
    let orch = Orchestrator::new(host.clone());
    orch.register(valid(&host, TX_WORKFLOW)).unwrap();
    // The workflow's `transaction` key: join `t2` when started without one.
    let failing = TX_WORKFLOW.replace("id: tx\n", "id: txf\ntransaction: t2\n").replace(
        "      compensate: { plugin_id: test.ops, method_name: echo, parameters: { undo: \"${{ inputs.name }}-b\" } } }",
        "      compensate: { plugin_id: test.ops, method_name: echo, parameters: { undo: \"${{ inputs.name }}-b\" } } }\n  - { id: c, plugin_id: test.ops, method_name: fail, dependencies: [b] }",
    );
    orch.register(valid(&host, &failing)).unwrap();
    assert!(matches!(orch.execute("txf", named("early")), Err(OrchestratorError::NotFound(_))));
    orch.begin_transaction("t2").unwrap();
    let good = orch.execute_in("tx", named("good"), Some("t2")).unwrap();
    orch.wait(&good).await.unwrap();
    let bad = orch.execute("txf", named("bad")).unwrap();
    let bad_status = orch.wait(&bad).await.unwrap();
    // The failed execution rolled itself back; the transaction stays open for the caller.
    assert_eq!(bad_status.status, WorkflowStatus::Failed);
    assert_eq!(bad_status.compensations.len(), 2);
    let tx = orch.transaction("t2").unwrap();
    assert_eq!((tx.state, tx.executions.len()), (plexus_client::TransactionState::Open, 2));
    let tx = orch.commit_transaction("t2").unwrap();
    assert_eq!(tx.state, plexus_client::TransactionState::Committed);
    assert!(tx.ended_at_ms.is_some() && tx.compensations.is_empty());
    assert_eq!(orch.status(&good).unwrap().status, WorkflowStatus::Completed);
    assert!(orch.status(&good).unwrap().compensations.is_empty());
    assert!(matches!(orch.rollback_transaction("t2").await, Err(OrchestratorError::InvalidState(_))));
    // `transaction: true`: a start without one is refused.
    let required = TX_WORKFLOW.replace("id: tx\n", "id: txr\ntransaction: true\n");
    orch.register(valid(&host, &required)).unwrap();
    let refused = orch.execute("txr", named("r")).unwrap_err().to_string();
    assert!(refused.contains("only in a transaction"), "{refused}");
    assert!(matches!(orch.begin_transaction("bad id!"), Err(OrchestratorError::InvalidConfiguration(_))));
}

/// A plugin that declares no capability.
#[derive(Default)]
struct Bare;

impl Plugin for Bare {
    fn info() -> PluginInfo {
        PluginInfo::new("test.bare", "No capabilities", "1.0.0")
    }
    fn operations(ops: &mut Operations<Self>) {
        ops.add("noop", "Does nothing", |_, _, _: Value| Ok(Value::Null));
    }
}

#[test]
fn a_step_may_only_call_a_plugin_declaring_workflow_step() {
    let host = HostBuilder::new().no_cache().in_process::<TestOps>(Value::Null).in_process::<Bare>(Value::Null).build();
    let host = host.unwrap();
    let problems = parse(
        &host,
        "w.yaml",
        "id: caps\nsteps:\n  - { id: a, plugin_id: test.bare, method_name: noop }\n  - { id: b, plugin_id: test.ops, method_name: echo,\n      compensate: { plugin_id: test.bare, method_name: noop } }\n",
    )
    .unwrap_err();
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 2, "{text:#?}");
    assert!(text[0].contains("step `a`") && text[0].contains("line 3"), "{text:#?}");
    assert!(
        text[0].contains("plugin `test.bare` does not declare the `workflow-step` capability")
            && text[0].contains("(it declares: none)"),
        "{text:#?}"
    );
    assert!(text[1].contains("step `b`") && text[1].contains("compensate.plugin_id"), "{text:#?}");
    // The schedule rule: the same plugin under `scheduled-task`.
    let doc =
        Document::parse(Path::new("s.yaml"), "id: s\nsteps:\n  - { id: a, plugin_id: test.ops, method_name: echo }\n")
            .unwrap();
    let refused = validate_for(&doc, Some(&host), plexus_sdk::capability::SCHEDULED_TASK).unwrap_err();
    assert!(refused[0].message.contains("`scheduled-task`"), "{refused:?}");
}

// Other systems' formats (`dialect`).

/// A host whose operator maps Codomyrmex modules and factories onto `test.ops`.
fn aliased_host() -> Arc<Host> {
    Arc::new(
        HostBuilder::new()
            .no_cache()
            .in_process::<TestOps>(json!({}))
            .alias("analysis", "test.ops")
            .alias("research", "test.ops")
            .alias("media", "test.ops")
            .build()
            .unwrap(),
    )
}

async fn run_on(host: Arc<Host>, wf: ValidWorkflow) -> ExecutionStatus {
    let orch = Orchestrator::new(host);
    let id = wf.workflow.id.clone();
    orch.register(wf).unwrap();
    let exec = orch.execute(&id, Map::new()).unwrap();
    orch.wait(&exec).await.unwrap()
}

const CODOMYRMEX: &str = r#"
workflow:
  manager:
    enable_performance_monitoring: true
    max_parallel_tasks: 4
  sample_workflow:
    name: "analysis_and_reporting"
    steps:
      - name: "data_collection"
        module: "analysis"
        action: "echo"
        parameters:
          data: {"Python": 85, "JavaScript": 75}
        dependencies: []
dag:
  name: sample_analysis_workflow
  tasks:
    - { name: task1, module: analysis, action: record, parameters: { tag: t1 } }
    - { name: task2, module: analysis, action: record, parameters: { tag: t2 }, dependencies: [task1] }
    - { name: task3, module: test.ops, action: record, parameters: { tag: t3 }, dependencies: [task1] }
    - { name: task4, module: analysis, action: record, parameters: { tag: t4 }, dependencies: [task2, task3] }
  execution:
    max_parallel: 2
resources:
  cpu_limit: 4
  memory_limit_gb: 8
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codomyrmex_config_runs_its_dag_through_module_aliases_with_its_documented_defaults() {
    let host = aliased_host();
    let wf = parse(&host, "config.yaml", CODOMYRMEX).unwrap_or_else(|p| panic!("{p:#?}"));
    let w = &wf.workflow;
    assert_eq!(wf.dag.stages().len(), 3);
    let stages: Vec<Vec<&str>> =
        wf.dag.stages().iter().map(|s| s.iter().map(|&i| w.steps[i].id.as_str()).collect()).collect();
    assert_eq!(stages, [vec!["task1"], vec!["task2", "task3"], vec!["task4"]]);
    assert_eq!((w.id.as_str(), w.mode, w.max_parallel), ("sample_analysis_workflow", ExecutionMode::Parallel, Some(2)));
    // dag.execution's defaults: timeout_seconds 300, retry_failed with 2 retries of any failure.
    assert_eq!(w.timeout, Some(Duration::from_secs(300)));
    assert_eq!((w.steps[0].retry.max_attempts, w.steps[0].retry.retry_on), (3, RetryOn::Any));
    assert!(w.steps.iter().all(|s| s.action.plugin_id == "test.ops"), "aliases resolved");
    let budget = w.resources.unwrap();
    assert_eq!((budget.cpu_millis, budget.memory_mb), (Some(4000), Some(8192)));
    let status = run_on(host, wf).await;
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:#?}");
    let t4 = status.step("task4").unwrap().output.clone().unwrap();
    assert_eq!(t4["upstream"], json!(["task2", "task3"]));

    // Without a dag, the sample workflow is the workflow, at the manager's parallelism.
    let sample = CODOMYRMEX.split("dag:").next().unwrap();
    let wf = parse(&aliased_host(), "config.yaml", sample).unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!((wf.workflow.id.as_str(), wf.workflow.max_parallel), ("analysis_and_reporting", Some(4)));
    assert_eq!((wf.workflow.timeout, wf.workflow.steps[0].retry.max_attempts), (None, 1));
    assert_eq!(wf.workflow.steps[0].action.parameters, json!({"data": {"Python": 85, "JavaScript": 75}}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codomyrmex_retries_try_any_failure_again_unless_turned_off() {
    let config = |execution: &str| {
        format!(
            "dag:\n  tasks:\n    - {{ name: boom, module: analysis, action: fail, parameters: {{ retryable: false }} }}\n  execution: {execution}\n"
        )
    };
    let host = aliased_host();
    let status = run_on(host.clone(), parse(&host, "c.yaml", &config("{ retry_attempts: 1 }")).unwrap()).await;
    assert_eq!(status.status, WorkflowStatus::Failed);
    assert_eq!(status.step("boom").unwrap().attempts, 2, "{status:#?}");
    let status = run_on(host.clone(), parse(&host, "c.yaml", &config("{ retry_failed: false }")).unwrap()).await;
    assert_eq!(status.step("boom").unwrap().attempts, 1);
}

#[test]
fn codomyrmex_problems_name_the_config_s_own_paths_and_lines() {
    let text = "dag:\n  tasks:\n    - name: a\n      module: nowhere\n      action: echo\n    - name: b\n      action: echo\n      colour: red\n  execution:\n    timeout_seconds: soon\nextra: 1\n";
    let problems: Vec<String> =
        parse(&aliased_host(), "c.yaml", text).unwrap_err().iter().map(ToString::to_string).collect();
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has("line 11: extra: unknown field `extra` (known: workflow, dag, resources)"), "{problems:#?}");
    assert!(has("line 6: step `b`: dag.tasks[1]: missing `module`"), "{problems:#?}");
    assert!(has("line 8: step `b`: dag.tasks[1].colour: unknown field `colour`"), "{problems:#?}");
    assert!(has("line 10: dag.execution.timeout_seconds: expected seconds"), "{problems:#?}");
    assert!(has("line 4: step `a`: dag.tasks[0].module: unknown plugin `nowhere`"), "{problems:#?}");
    assert!(problems.iter().all(|p| !p.contains("plugin_id")), "{problems:#?}");
    // A config without tasks gets one problem in its own words.
    let problems: Vec<String> = parse(&aliased_host(), "c.yaml", "dag:\n  execution: { max_parallel: 2 }\n")
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("missing `dag.tasks` (or `workflow.sample_workflow.steps`)"), "{problems:#?}");
}

const FACTORIES: &str = r#"
steps:
  - factory: research
    action: echo
    params: { symbol: BTC, trend: up }
  - factory: media
    action: echo
    params: { type: image, prompt: "${{ context.symbol }} trend", seen: "${{ steps.echo.output.trend }}" }
factories: [research, media]
parallel: false
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factories_workflow_runs_its_steps_in_order_with_context_passing() {
    let host = aliased_host();
    let wf = parse(&host, "content_pipeline.yaml", FACTORIES).unwrap_or_else(|p| panic!("{p:#?}"));
    let w = &wf.workflow;
    assert_eq!((w.id.as_str(), w.mode), ("content_pipeline", ExecutionMode::Pipeline), "the file's name is its id");
    assert_eq!(w.steps.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["echo", "echo-2"]);
    assert_eq!(w.steps[1].dependencies, ["echo"]);
    let status = run_on(host.clone(), wf).await;
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:#?}");
    let out = status.step("echo-2").unwrap().output.clone().unwrap();
    assert_eq!(out, json!({"type": "image", "prompt": "BTC trend", "seen": "up"}));

    // parallel: true runs them at once; a top-level `params` reaches every step, winning.
    let parallel = FACTORIES.replace("parallel: false", "parallel: true\nname: wide\nparams: { symbol: ETH }");
    let wf = parse(&host, "x.yaml", &parallel.replace("${{ steps.echo.output.trend }}", "fixed"))
        .unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!((wf.workflow.id.as_str(), wf.workflow.mode), ("wide", ExecutionMode::Parallel));
    assert!(wf.workflow.steps.iter().all(|s| s.dependencies.is_empty()));
    assert_eq!(wf.workflow.steps[0].action.parameters, json!({"symbol": "ETH", "trend": "up"}));
}

#[test]
fn factories_problems_name_the_step_and_its_own_keys() {
    let text = "steps:\n  - factory: research\n    action: echo\n  - factory: video\n    action: echo\n  - action: echo\nfactories: [research]\n";
    let problems: Vec<String> =
        parse(&aliased_host(), "<inline>.yaml", text).unwrap_err().iter().map(ToString::to_string).collect();
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has("missing `name`: the workflow's id"), "{problems:#?}");
    assert!(
        has("line 4: step `echo-2`: steps[1].factory: factory `video` is not in `factories` (research)"),
        "{problems:#?}"
    );
    assert!(has("line 4: step `echo-2`: steps[1].factory: unknown plugin `video`"), "{problems:#?}");
    assert!(has("line 6: step `echo-3`: steps[2]: missing `factory`"), "{problems:#?}");
}

#[test]
fn the_dialect_is_detected_and_plexus_documents_are_untouched() {
    let doc = |text: &str| Document::parse(Path::new("w.yaml"), text).unwrap();
    assert_eq!(doc(CODOMYRMEX).dialect, dialect::Dialect::Codomyrmex);
    assert_eq!(doc(FACTORIES).dialect, dialect::Dialect::Factories);
    let plexus = "id: w\nsteps:\n  - { id: a, plugin_id: p, operation: o }\n";
    assert_eq!(doc(plexus).dialect, dialect::Dialect::Plexus);
    assert_eq!(
        doc(plexus).value,
        serde_json::from_str::<Value>(r#"{"id":"w","steps":[{"id":"a","plugin_id":"p","operation":"o"}]}"#).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_are_created_from_templates_with_params_and_overrides() {
    let host = aliased_host();
    let orch = Orchestrator::new(host.clone());
    // The project orchestrator's template, in its own format.
    let market = "name: market_research_pipeline\nsteps:\n  - {factory: research, action: echo}\n  - {factory: research, action: echo, params: {depth: 2}}\nfactories: [research]\nparallel: false\n";
    orch.register_template(parse(&host, "t.yaml", market).unwrap());
    assert_eq!(orch.templates(), ["market_research_pipeline"]);
    assert!(!orch.has("market_research_pipeline"), "a template is not a workflow");
    let request =
        template::FromTemplate { params: Map::from_iter([("symbol".into(), json!("ETH"))]), ..Default::default() };
    let first = orch.create_from_template("market_research_pipeline", &request).unwrap();
    let second = orch.create_from_template("market_research_pipeline", &request).unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("market_research_pipeline-1", "market_research_pipeline-2"));
    let exec = orch.execute(&first, Map::new()).unwrap();
    let status = orch.wait(&exec).await.unwrap();
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:#?}");
    assert_eq!(status.step("echo").unwrap().output, Some(json!({"symbol": "ETH"})));
    assert_eq!(status.step("echo-2").unwrap().output, Some(json!({"depth": 2, "symbol": "ETH"})));

    // A Plexus template: params set its inputs' defaults; overrides patch the definition.
    let report = "id: report\ninputs:\n  limit: { type: integer, default: 10 }\nsteps:\n  - { id: a, plugin_id: test.ops, operation: echo, parameters: { limit: \"${{ inputs.limit }}\" } }\n";
    orch.register_template(parse(&host, "r.yaml", report).unwrap());
    let request = template::FromTemplate {
        id: Some("report-weekly".into()),
        params: Map::from_iter([("limit".into(), json!(3))]),
        overrides: json!({"description": "weekly", "max_parallel": 2}),
    };
    assert_eq!(orch.create_from_template("report", &request).unwrap(), "report-weekly");
    let created = orch.get("report-weekly").unwrap();
    assert_eq!((created.description.as_str(), created.max_parallel), ("weekly", Some(2)));
    assert_eq!(created.inputs["limit"].default, Some(json!(3)));
    let status = orch.wait(&orch.execute("report-weekly", Map::new()).unwrap()).await.unwrap();
    assert_eq!(status.step("a").unwrap().output, Some(json!({"limit": 3})));

    // Refusals name what is wrong.
    let err = |r: &template::FromTemplate| orch.create_from_template("report", r).unwrap_err().to_string();
    let typed =
        template::FromTemplate { params: Map::from_iter([("limit".into(), json!("many"))]), ..Default::default() };
    assert!(err(&typed).contains("inputs.limit.default"), "{}", err(&typed));
    let patch = template::FromTemplate { overrides: json!([1]), ..Default::default() };
    assert!(err(&patch).contains("overrides: expected a mapping"), "{}", err(&patch));
    let taken = template::FromTemplate { id: Some("report-weekly".into()), ..Default::default() };
    assert!(matches!(orch.create_from_template("report", &taken), Err(OrchestratorError::AlreadyExists(_))));
    assert!(matches!(orch.create_from_template("nope", &taken), Err(OrchestratorError::NotFound(_))));
    orch.unregister_template("report").unwrap();
    assert!(orch.has("report-weekly"), "created workflows stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_budget_holds_steps_back_in_order() {
    // Four steps of one core each, a budget of two cores: never more than two at once.
    let (status, _, max) = run(r#"
id: budget
execution_mode: parallel
max_parallel: 4
resources: { cpu_limit: 2 }
steps:
  - { id: a, plugin_id: test.ops, method_name: record, parameters: { tag: a, ms: 60 }, resources: { cpu: 1 } }
  - { id: b, plugin_id: test.ops, method_name: record, parameters: { tag: b, ms: 60 }, resources: { cpu: 1 } }
  - { id: c, plugin_id: test.ops, method_name: record, parameters: { tag: c, ms: 60 }, resources: { cpu: 1 } }
  - { id: d, plugin_id: test.ops, method_name: record, parameters: { tag: d, ms: 60 }, resources: { cpu: 1 } }
"#)
    .await;
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:#?}");
    assert_eq!(max, 2, "two cores, one each");

    // In order: `big` (the whole budget) waits for `x`, and `small`, after it, waits for `big`
    // although it would fit beside `x`; memory counts the same way (1 GiB: one 600 MiB step at a time).
    let (status, events, max) = run(r#"
id: ordered
execution_mode: parallel
max_parallel: 4
resources: { cpu_limit: 2, memory_limit_gb: 1 }
steps:
  - { id: x, plugin_id: test.ops, method_name: record, parameters: { tag: x, ms: 80 }, resources: { cpu: 1 } }
  - { id: big, plugin_id: test.ops, method_name: record, parameters: { tag: big, ms: 40 }, resources: { cpu: 2 } }
  - { id: small, plugin_id: test.ops, method_name: record, parameters: { tag: small, ms: 1 }, resources: { cpu: 0.5 } }
  - { id: m1, plugin_id: test.ops, method_name: record, parameters: { tag: m1, ms: 20 }, dependencies: [small], resources: { memory_mb: 600 } }
  - { id: m2, plugin_id: test.ops, method_name: record, parameters: { tag: m2, ms: 20 }, dependencies: [small], resources: { memory_mb: 600 } }
"#)
    .await;
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:#?}");
    assert_eq!(events, ["x", "big", "small", "m1", "m2"]);
    assert_eq!(max, 1);
    let at = |id: &str| {
        let s = status.step(id).unwrap();
        (s.started_at_ms.unwrap(), s.ended_at_ms.unwrap())
    };
    assert!(at("big").0 >= at("x").1 && at("small").0 >= at("big").1, "{status:#?}");
}

#[test]
fn a_step_needing_more_than_the_whole_budget_is_a_validation_problem() {
    let text = "id: w\nresources: { cpu_limit: 1, memory_limit_mb: 100 }\nsteps:\n  - { id: a, plugin_id: test.ops, operation: echo, resources: { cpu: 2 } }\n  - { id: b, plugin_id: test.ops, operation: echo, resources: { memory_mb: 101, gpu: 1 } }\n";
    let problems: Vec<String> = parse(&host(), "w.yaml", text).unwrap_err().iter().map(ToString::to_string).collect();
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(
        has(
            "line 4: step `a`: steps[0].resources: needs 2 cores and 0 MiB, more than the workflow's whole budget (1 cores, 100 MiB)"
        ),
        "{problems:#?}"
    );
    assert!(has("line 5: step `b`: steps[1].resources.gpu: unknown field `gpu`"), "{problems:#?}");
    let text = "id: w\nresources: { cpu_limit: -1, memory_limit_gb: 1, memory_limit_mb: 5 }\nsteps:\n  - { id: a, plugin_id: test.ops, operation: echo }\n";
    let problems: Vec<String> = parse(&host(), "w.yaml", text).unwrap_err().iter().map(ToString::to_string).collect();
    assert!(problems.iter().any(|p| p.contains("resources.cpu_limit: -1 cores: expected 0 to 4096")), "{problems:#?}");
    assert!(problems.iter().any(|p| p.contains("not both")), "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_records_the_cpu_time_its_calls_used() {
    let (status, _, _) = run(r#"
id: usage
steps:
  - { id: busy, plugin_id: test.ops, method_name: spin, parameters: { tag: busy, ms: 60 } }
  - { id: idle, plugin_id: test.ops, method_name: record, parameters: { tag: idle, ms: 60 } }
  - { id: twice, plugin_id: test.ops, method_name: flaky, parameters: { failures: 1 }, retry: { max_attempts: 2, initial_delay: 1ms } }
"#)
    .await;
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:#?}");
    let cpu = |id: &str| status.step(id).unwrap().usage.unwrap().cpu_ms.unwrap();
    // Spinning for 60 ms takes most of 60 ms of CPU; sleeping takes little.
    assert!(cpu("busy") >= 30.0, "{}", cpu("busy"));
    assert!(cpu("idle") < cpu("busy"), "{} vs {}", cpu("idle"), cpu("busy"));
    // In-process code: no memory measured.
    assert_eq!(status.step("busy").unwrap().usage.unwrap().peak_memory_bytes, None);
    assert!(cpu("twice") >= 0.0);
}

/// A journal that keeps everything it was asked to record, as JSON text.
#[derive(Default)]
struct TextJournal(Mutex<Vec<String>>);

impl super::Journal for TextJournal {
    fn execution(&self, status: &ExecutionStatus) -> JournalFuture {
        self.0.lock().unwrap().push(serde_json::to_string(status).unwrap());
        journal::written(Ok(()))
    }
    fn step(&self, _: &str, _: usize, record: &StepRecord, state: Option<&Map<String, Value>>) -> JournalFuture {
        self.0.lock().unwrap().push(format!("{} {:?}", serde_json::to_string(record).unwrap(), state));
        journal::written(Ok(()))
    }
    fn compensation(&self, _: &str, _: usize, record: &status::CompensationRecord) -> JournalFuture {
        self.0.lock().unwrap().push(serde_json::to_string(record).unwrap());
        journal::written(Ok(()))
    }
    fn snapshot(&self, status: &ExecutionStatus, state: &Map<String, Value>) -> JournalFuture {
        self.0.lock().unwrap().push(format!("{} {state:?}", serde_json::to_string(status).unwrap()));
        journal::written(Ok(()))
    }
}

struct OneSecret(&'static str, &'static str);

impl plexus_host::secrets::SecretSource for OneSecret {
    fn secret(&self, name: &str) -> Option<plexus_host::secrets::SecretValue> {
        (name == self.0).then(|| plexus_host::secrets::SecretValue::new(self.1))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_reaches_the_plugin_and_nothing_recorded_holds_it() {
    const VALUE: &str = "s3cr3t-wf-4f9a";
    let host = host();
    let wf = valid(
        &host,
        r#"
id: sec
execution_mode: pipeline
steps:
  - { id: use, plugin_id: test.ops, method_name: leak, parameters: { secret: "${{ secrets.TOKEN }}" },
      compensate: { plugin_id: test.ops, method_name: leak, parameters: { secret: "undo ${{ secrets.TOKEN }}" } } }
  - { id: next, plugin_id: test.ops, method_name: echo, parameters: { saw: "${{ steps.use.output.echo }}" }, dependencies: [use] }
  - { id: boom, plugin_id: test.ops, method_name: leak, parameters: { secret: "${{ secrets.TOKEN }}", fail: true }, dependencies: [next] }
"#,
    );
    let prepared = Arc::new(engine::Prepared::new(wf));
    let recorded = Arc::new(TextJournal::default());
    let exec = engine::Execution::start("sec-1".into(), &prepared, Map::new(), recorded.clone(), None);
    let engine = Engine::new(host, Arc::new(SystemClock)).with_secrets(Arc::new(OneSecret("TOKEN", VALUE)));
    engine.run(prepared, exec.clone()).await;
    let status = exec.snapshot();
    // The plugin got the value, the step and its compensation.
    let events = journal("sec-1", |j| j.events.clone());
    assert_eq!(events, [format!("got {VALUE}"), format!("got {VALUE}"), format!("got undo {VALUE}")], "{status:#?}");
    // What is recorded and reported has `***` in its place: outputs, keys, errors, the state.
    assert_eq!(status.status, WorkflowStatus::Failed);
    let used = status.step("use").unwrap().output.clone().unwrap();
    assert_eq!(used, json!({"echo": "***", "wrapped": "<***>", "***": true}));
    assert_eq!(status.step("next").unwrap().output, Some(json!({"saw": "***"})), "downstream sees the record");
    assert_eq!(status.step("boom").unwrap().error.as_ref().unwrap().message, "refused by ***");
    assert_eq!(status.compensations[0].status, StepStatus::Completed);
    let everything = recorded.0.lock().unwrap().join("\n");
    assert!(everything.contains("refused by ***") && everything.contains(r#""value": String("***")"#), "{everything}");
    assert!(!everything.contains(VALUE), "{everything}");
    assert!(!serde_json::to_string(&status).unwrap().contains(VALUE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_that_is_not_set_fails_its_step_and_secrets_stay_out_of_conditions_and_outputs() {
    let (status, events, _) = run(r#"
id: nosec
steps:
  - { id: a, plugin_id: test.ops, method_name: leak, parameters: { secret: "${{ secrets.MISSING }}" } }
"#)
    .await;
    let error = status.step("a").unwrap().error.clone().unwrap();
    assert_eq!((error.kind.as_str(), error.message.as_str()), ("secret-not-found", "secret `MISSING` is not set"));
    assert!(events.is_empty(), "the plugin was not called");
    let host = host();
    for (yaml, expected) in [
        (
            "id: w\nsteps:\n  - { id: a, plugin_id: test.ops, method_name: echo, when: \"secrets.X == 'y'\" }\n",
            "secrets may be named only in the `parameters`",
        ),
        (
            "id: w\nsteps:\n  - { id: a, plugin_id: test.ops, method_name: echo }\noutputs: { x: \"${{ secrets.X }}\" }\n",
            "secrets may be named only in the `parameters`",
        ),
        (
            "id: w\nsteps:\n  - { id: a, plugin_id: test.ops, method_name: echo, parameters: { all: \"${{ secrets }}\" } }\n",
            "reads `secrets` as a whole",
        ),
        (
            "id: w\nsteps:\n  - { id: a, workflow: other, parameters: { pw: \"${{ secrets.PW }}\" } }\n",
            "secrets may be named only in the `parameters` of a step that calls a plugin",
        ),
    ] {
        let problems = parse(&host, "w.yaml", yaml).unwrap_err();
        assert!(problems.iter().any(|p| p.to_string().contains(expected)), "{yaml}: {problems:#?}");
    }
}

/// A journal keeping the item records it gets, by (step, item).
#[derive(Default)]
struct ItemJournal(Mutex<std::collections::BTreeMap<(usize, usize), Vec<status::ItemRecord>>>);

impl super::Journal for ItemJournal {
    fn execution(&self, _: &ExecutionStatus) -> JournalFuture {
        journal::written(Ok(()))
    }
    fn step(&self, _: &str, _: usize, _: &StepRecord, _: Option<&Map<String, Value>>) -> JournalFuture {
        journal::written(Ok(()))
    }
    fn compensation(&self, _: &str, _: usize, _: &status::CompensationRecord) -> JournalFuture {
        journal::written(Ok(()))
    }
    fn item(&self, _: &str, step: usize, record: &status::ItemRecord) -> JournalFuture {
        self.0.lock().unwrap().entry((step, record.index)).or_default().push(record.clone());
        journal::written(Ok(()))
    }
}

const MAP: &str = r#"
id: fan
execution_mode: parallel
inputs:
  items: {}
steps:
  - { id: list, plugin_id: test.ops, method_name: echo, parameters: { items: "${{ inputs['items'] }}" } }
  - id: each
    plugin_id: test.ops
    method_name: item
    dependencies: [list]
    for_each: "${{ steps.list.output['items'] }}"
    max_parallel: 8
    retry: { max_attempts: 2, initial_delay: 1ms }
    parameters: { value: "${{ item }}", index: "${{ index }}", fail_first: "${{ index == 17 }}", ms: 1 }
  - { id: after, plugin_id: test.ops, method_name: echo, parameters: { n: "${{ steps.each.output | length }}", last: "${{ steps.each.output[-1].double }}" }, dependencies: [each] }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_runs_a_thousand_items_eight_at_a_time_retrying_one_and_keeps_their_order() {
    let host = host();
    let wf = valid(&host, MAP);
    let prepared = Arc::new(engine::Prepared::new(wf));
    let items = Arc::new(ItemJournal::default());
    let inputs = Map::from_iter([("items".to_owned(), json!((0..1000).collect::<Vec<_>>()))]);
    let exec = engine::Execution::start("map-1".into(), &prepared, inputs, items.clone(), None);
    Engine::new(host, Arc::new(SystemClock)).run(prepared, exec.clone()).await;
    let status = exec.snapshot();
    assert_eq!(status.status, WorkflowStatus::Completed, "{:#?}", status.steps);
    let each = status.step("each").unwrap();
    let output = each.output.as_ref().unwrap().as_array().unwrap();
    assert_eq!(output.len(), 1000);
    assert!(output.iter().enumerate().all(|(k, o)| o["index"] == k && o["double"] == 2 * k), "in order");
    assert!(output.iter().all(|o| o["upstream"] == 0), "an item's upstream is empty");
    assert_eq!(each.progress.as_ref().unwrap().message, "1000 of 1000 items");
    assert_eq!(status.step("after").unwrap().output, Some(json!({"n": 1000, "last": 1998})));
    let (events, max) = journal("map-1", |j| (j.events.clone(), j.max_running));
    assert_eq!(max, 8, "at most max_parallel items at once");
    assert_eq!(events.len(), 1001, "each item once, item 17 twice");
    assert!(events.contains(&"17@1".to_owned()) && events.contains(&"17@2".to_owned()));
    // Each item recorded: running, completed (item 17: running, retrying, running, completed).
    let records = items.0.lock().unwrap();
    assert_eq!(records.len(), 1000);
    let statuses = |k: usize| records[&(1, k)].iter().map(|r| r.status).collect::<Vec<_>>();
    assert_eq!(statuses(3), [StepStatus::Running, StepStatus::Completed]);
    use StepStatus::*;
    assert_eq!(statuses(17), [Running, Retrying, Running, Completed]);
    assert_eq!(records[&(1, 17)].last().unwrap().attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_item_fails_its_map_fast_or_after_every_item_ran() {
    let yaml = |fail_fast: bool| {
        format!(
            "id: ff\nsteps:\n  - id: each\n    plugin_id: test.ops\n    method_name: item\n    for_each: \"${{{{ [1, 2, 3, 4, 5, 6] }}}}\"\n    \
             fail_fast: {fail_fast}\n    max_parallel: 1\n    parameters: {{ value: \"${{{{ item }}}}\", index: \"${{{{ index }}}}\", fail: \"${{{{ index == 2 }}}}\" }}\n"
        )
    };
    let (status, events, _) = run(&yaml(true)).await;
    assert_eq!(status.status, WorkflowStatus::Failed);
    let error = status.step("each").unwrap().error.clone().unwrap();
    assert!(error.message.starts_with("1 of 6 items failed; item 2: item 2 failed"), "{error:?}");
    assert!(error.message.contains("not started"), "{error:?}");
    assert_eq!(events, ["0@1", "1@1", "2@1"], "nothing after the failure");
    let (status, events, _) = run(&yaml(false)).await;
    assert_eq!(status.step("each").unwrap().status, StepStatus::Failed);
    assert_eq!(events.len(), 6, "collect-all runs every item: {events:?}");
    // An empty list completes at once; a list that is not one fails the step.
    let empty = yaml(true).replace("[1, 2, 3, 4, 5, 6]", "[]");
    let (status, events, _) = run(&empty).await;
    assert_eq!(
        (status.status, status.step("each").unwrap().output.clone()),
        (WorkflowStatus::Completed, Some(json!([])))
    );
    assert!(events.is_empty());
    let (status, _, _) = run(&yaml(true).replace("[1, 2, 3, 4, 5, 6]", "'text'")).await;
    let error = status.step("each").unwrap().error.clone().unwrap();
    assert!(error.message.contains("gave a string, not a list") || error.message.contains("not a list"), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_map_runs_only_the_items_that_had_not_completed() {
    let host = host();
    let wf = valid(&host, &MAP.replace("fail_first: \"${{ index == 17 }}\", ", ""));
    let prepared = Arc::new(engine::Prepared::new(wf));
    let inputs = Map::from_iter([("items".to_owned(), json!((0..50).collect::<Vec<_>>()))]);
    // Recorded before a restart: items 0..30 completed, 30 was running (one attempt), the list step completed.
    let first = engine::Execution::start("map-r".into(), &prepared, inputs.clone(), Arc::new(NoJournal), None);
    let mut status = first.snapshot();
    status.status = WorkflowStatus::Running;
    status.steps[0].status = StepStatus::Completed;
    status.steps[0].output = Some(json!({"items": (0..50).collect::<Vec<_>>()}));
    status.steps[1].status = StepStatus::Running;
    status.steps[1].attempts = 1;
    let exec = engine::Execution::restore(status, Map::new(), Arc::new(NoJournal), None);
    let mut records: Vec<status::ItemRecord> = (0..30)
        .map(|k| status::ItemRecord {
            status: StepStatus::Completed,
            output: Some(json!({"double": 2 * k, "index": k, "upstream": 0, "restored": true})),
            attempts: 1,
            ..status::ItemRecord::pending(k)
        })
        .collect();
    records.push(status::ItemRecord { status: StepStatus::Running, attempts: 1, ..status::ItemRecord::pending(30) });
    exec.restore_items(1, records);
    Engine::new(host, Arc::new(SystemClock)).run(prepared, exec.clone()).await;
    let status = exec.snapshot();
    assert_eq!(status.status, WorkflowStatus::Completed, "{:#?}", status.steps);
    let output = status.step("each").unwrap().output.clone().unwrap();
    assert_eq!(output.as_array().unwrap().len(), 50);
    assert_eq!(output[29]["restored"], true, "a completed item keeps its output");
    assert!(output[30].get("restored").is_none());
    let mut events = journal("map-r", |j| j.events.clone());
    events.sort();
    let expected: Vec<String> = {
        let mut e: Vec<String> = (31..50).map(|k| format!("{k}@1")).collect();
        e.push("30@2".into());
        e.sort();
        e
    };
    assert_eq!(events, expected, "only the items that had not completed ran; the interrupted one's attempt counted");
}

#[test]
fn map_steps_are_checked_when_read() {
    let host = host();
    for (yaml, expected) in [
        (
            "id: w\nsteps:\n  - { id: a, plugin_id: test.ops, method_name: echo, parameters: { x: \"${{ item }}\" } }\n",
            "only a map step's (`for_each`) parameters have",
        ),
        (
            "id: w\nsteps:\n  - { id: a, plugin_id: test.ops, method_name: echo, for_each: \"items: ${{ [1] }}\" }\n",
            "one `${{ … }}` expression giving a list",
        ),
        (
            "id: w\nsteps:\n  - { id: a, plugin_id: test.ops, method_name: echo, fail_fast: false }\n",
            "only a map step (with `for_each`) takes it",
        ),
        (
            "id: w\nsteps:\n  - { id: a, plugin_id: test.ops, method_name: echo, for_each: \"${{ steps.b.output }}\" }\n  - { id: b, plugin_id: test.ops, method_name: echo }\n",
            "reads step `b`",
        ),
    ] {
        let problems = parse(&host, "w.yaml", yaml).unwrap_err();
        assert!(problems.iter().any(|p| p.to_string().contains(expected)), "{yaml}: {problems:#?}");
    }
}

const APPROVAL: &str = r#"
id: gated
steps:
  - { id: build, plugin_id: test.ops, method_name: echo, parameters: { built: true } }
  - { id: approve, wait_for: { signal: approve, timeout: 2s, approval: true }, dependencies: [build] }
  - { id: deploy, plugin_id: test.ops, method_name: echo, parameters: { by: "${{ steps.approve.output.by }}", note: "${{ steps.approve.output.payload.note }}" }, dependencies: [approve] }
"#;

fn signal(name: &str, by: Option<&str>, payload: Value) -> plexus_client::SignalRecord {
    plexus_client::SignalRecord { name: name.into(), payload, by: by.map(str::to_owned), reject: false, at_ms: 42 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_step_takes_a_signal_delivered_before_or_while_it_waits() {
    let host = host();
    let prepared = Arc::new(engine::Prepared::new(valid(&host, APPROVAL)));
    let engine = Engine::new(host, Arc::new(SystemClock));
    // Delivered before the step waits: taken at once.
    let exec = engine::Execution::new("sig-before".into(), &prepared, Map::new());
    assert!(exec.deliver_signal(signal("approve", Some("alice"), json!({"note": "ship it"}))));
    engine.run(prepared.clone(), exec.clone()).await;
    let status = exec.snapshot();
    assert_eq!(status.status, WorkflowStatus::Completed, "{:#?}", status.steps);
    assert_eq!(
        status.step("approve").unwrap().output,
        Some(json!({"approved": true, "by": "alice", "at_ms": 42, "payload": {"note": "ship it"}}))
    );
    assert_eq!(status.step("deploy").unwrap().output, Some(json!({"by": "alice", "note": "ship it"})));
    // Delivered while it waits (the run waits in memory: this engine does not park).
    let exec = engine::Execution::new("sig-during".into(), &prepared, Map::new());
    let run = tokio::spawn({
        let (engine, prepared, exec) = (engine.clone(), prepared.clone(), exec.clone());
        async move { engine.run(prepared, exec).await }
    });
    while exec.snapshot().step("approve").unwrap().status != StepStatus::Waiting {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(exec.snapshot().status, WorkflowStatus::Running);
    exec.deliver_signal(signal("approve", Some("bob"), json!({"note": "ok"})));
    run.await.unwrap();
    assert_eq!(exec.snapshot().step("deploy").unwrap().output, Some(json!({"by": "bob", "note": "ok"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_times_out_is_rejected_or_needs_who_approved() {
    let host = host();
    let fast = APPROVAL.replace("timeout: 2s", "timeout: 50ms");
    let prepared = Arc::new(engine::Prepared::new(valid(&host, &fast)));
    let engine = Engine::new(host, Arc::new(SystemClock));
    let exec = engine::Execution::new("sig-timeout".into(), &prepared, Map::new());
    let started = Instant::now();
    engine.run(prepared.clone(), exec.clone()).await;
    let status = exec.snapshot();
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(status.status, WorkflowStatus::Failed);
    let error = status.step("approve").unwrap().error.clone().unwrap();
    assert_eq!((error.kind.as_str(), error.message.as_str()), ("timeout", "no signal `approve` within 50ms"));
    assert_eq!(status.step("deploy").unwrap().status, StepStatus::Cancelled);
    for (sig, expected) in [
        (
            plexus_client::SignalRecord { reject: true, ..signal("approve", Some("carol"), Value::Null) },
            "signal `approve` rejected by carol",
        ),
        (signal("approve", None, Value::Null), "without `by`"),
    ] {
        let exec = engine::Execution::new("sig-refused".into(), &prepared, Map::new());
        exec.deliver_signal(sig);
        engine.run(prepared.clone(), exec.clone()).await;
        let error = exec.snapshot().step("approve").unwrap().error.clone().unwrap();
        assert!(error.message.contains(expected), "{error:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parking_engine_ends_the_run_while_it_waits_and_a_restored_run_takes_the_signal() {
    let host = host();
    let prepared = Arc::new(engine::Prepared::new(valid(&host, APPROVAL)));
    let engine = Engine::new(host, Arc::new(SystemClock)).with_parking(true);
    let exec = engine::Execution::new("sig-park".into(), &prepared, Map::new());
    engine.run(prepared.clone(), exec.clone()).await;
    let status = exec.snapshot();
    assert_eq!(status.status, WorkflowStatus::Running, "parked, not ended");
    let approve = status.step("approve").unwrap().clone();
    assert_eq!(approve.status, StepStatus::Waiting);
    let deadline = exec.parked().expect("parked").expect("until the timeout");
    assert_eq!(deadline, approve.started_at_ms.unwrap() + 2000);
    // A signal for a parked execution: the caller must run it again.
    assert!(!exec.deliver_signal(signal("approve", Some("dave"), json!({"note": "later"}))));
    let again = engine::Execution::restore(status, Map::new(), Arc::new(NoJournal), None);
    again.restore_signals(vec![signal("approve", Some("dave"), json!({"note": "later"}))]);
    engine.run(prepared, again.clone()).await;
    let status = again.snapshot();
    assert_eq!(status.status, WorkflowStatus::Completed, "{:#?}", status.steps);
    assert_eq!(status.step("approve").unwrap().started_at_ms, approve.started_at_ms, "its wait counts from the first");
    assert_eq!(status.step("deploy").unwrap().output, Some(json!({"by": "dave", "note": "later"})));
}

#[test]
fn wait_steps_are_checked_when_read() {
    let host = host();
    for (yaml, expected) in [
        ("id: w\nsteps:\n  - { id: a, wait_for: { signal: go }, plugin_id: test.ops }\n", "calls no plugin"),
        ("id: w\nsteps:\n  - { id: a, wait_for: { timeout: 1s } }\n", "missing `signal`"),
        ("id: w\nsteps:\n  - { id: a, wait_for: { signal: 'no way' } }\n", "letters, digits"),
    ] {
        let problems = parse(&host, "w.yaml", yaml).unwrap_err();
        assert!(problems.iter().any(|p| p.to_string().contains(expected)), "{yaml}: {problems:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_sequential_workflow_a_wait_keeps_its_turn() {
    let host = host();
    let yaml = "id: seq-wait\nexecution_mode: sequential\nsteps:\n  - { id: gate, wait_for: { signal: go } }\n  \
                - { id: other, plugin_id: test.ops, method_name: record, parameters: { tag: other } }\n";
    let prepared = Arc::new(engine::Prepared::new(valid(&host, yaml)));
    let engine = Engine::new(host, Arc::new(SystemClock));
    let exec = engine::Execution::new("seq-wait".into(), &prepared, Map::new());
    let run = tokio::spawn({
        let (engine, prepared, exec) = (engine.clone(), prepared.clone(), exec.clone());
        async move { engine.run(prepared, exec).await }
    });
    while exec.snapshot().step("gate").unwrap().status != StepStatus::Waiting {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(journal("seq-wait", |j| j.events.is_empty()), "nothing else ran while it waited");
    exec.deliver_signal(signal("go", None, json!(1)));
    run.await.unwrap();
    assert_eq!(exec.snapshot().status, WorkflowStatus::Completed);
    assert_eq!(journal("seq-wait", |j| j.events.clone()), ["other"]);
}

/// An artifact store in a temporary folder, its index in memory.
fn artifacts() -> (tempfile::TempDir, plexus_host::artifacts::Artifacts) {
    let dir = tempfile::tempdir().unwrap();
    let store = plexus_host::artifacts::BlobStore::open(&dir.path().join("artifacts")).unwrap();
    let index = Arc::new(plexus_host::artifacts::MemoryIndex::default());
    (dir, plexus_host::artifacts::Artifacts { store: Arc::new(store), index })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_travels_by_reference_and_only_within_its_execution() {
    let host = host();
    let (_dir, artifacts) = artifacts();
    let orch = Orchestrator::new(host.clone()).with_artifacts(artifacts.clone());
    let wf = valid(
        &host,
        r#"
id: by-ref
steps:
  - { id: put, plugin_id: test.ops, operation: put, parameters: { name: rows, text: "a,b\n1,2\n" } }
  - id: get
    plugin_id: test.ops
    operation: get
    dependencies: [put]
    parameters: { artifact: "${{ steps.put.artifacts.rows }}" }
"#,
    );
    orch.register(wf).unwrap();
    let first = orch.execute("by-ref", Map::new()).unwrap();
    let status = orch.wait(&first).await.unwrap();
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:#?}");
    let put = &status.steps[0];
    let reference = &put.artifacts["rows"];
    assert!(reference.digest_hex().is_some(), "{reference:?}");
    assert_eq!(
        (reference.name.as_str(), reference.bytes, reference.media_type.as_deref()),
        ("rows", 8, Some("text/plain"))
    );
    // The call's output is the same reference; the bytes are in the store, once.
    assert_eq!(put.output.as_ref().unwrap()["artifact"], json!(reference.artifact));
    assert_eq!(std::fs::read(artifacts.store.path_of(reference).unwrap()).unwrap(), b"a,b\n1,2\n");
    assert_eq!(status.steps[1].output, Some(json!("a,b\n1,2\n")));

    // Another execution cannot read it, even knowing the reference.
    let wf = valid(
        &host,
        r#"
id: forged
inputs: { reference: { type: object } }
steps:
  - { id: get, plugin_id: test.ops, operation: get, parameters: { artifact: "${{ inputs.reference }}" } }
"#,
    );
    orch.register(wf).unwrap();
    let inputs = json!({"reference": reference}).as_object().unwrap().clone();
    let other = orch.execute("forged", inputs).unwrap();
    let status = orch.wait(&other).await.unwrap();
    assert_eq!(status.status, WorkflowStatus::Failed);
    let error = status.steps[0].error.as_ref().unwrap();
    assert!(error.message.contains("is not one of this execution's"), "{error:?}");

    // Without an artifact store the call says so.
    let bare = Orchestrator::new(host.clone());
    let wf = valid(
        &host,
        "id: bare\nsteps:\n  - { id: put, plugin_id: test.ops, operation: put, parameters: { name: x, text: y } }\n",
    );
    bare.register(wf).unwrap();
    let exec = bare.execute("bare", Map::new()).unwrap();
    let status = bare.wait(&exec).await.unwrap();
    assert!(status.steps[0].error.as_ref().unwrap().message.contains("no artifact store"), "{status:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_workflows_run_in_memory_registered_or_inline() {
    let host = host();
    let orch = Orchestrator::new(host.clone());
    let child = "id: child\ninputs:\n  n: {type: integer}\nsteps:\n  \
                 - {id: twice, plugin_id: test.ops, operation: echo, parameters: {n: \"${{ inputs.n * 2 }}\"}}\n\
                 outputs:\n  n: \"${{ steps.twice.output.n }}\"\n";
    orch.register(valid(&host, child)).unwrap();
    let parent = r#"
id: parent
steps:
  - { id: registered, workflow: child, parameters: { n: 2 } }
  - id: inline
    dependencies: [registered]
    parameters: { n: "${{ steps.registered.output.outputs.n }}" }
    workflow:
      inputs: { n: { type: integer } }
      steps:
        - { id: plus, plugin_id: test.ops, operation: echo, parameters: { n: "${{ inputs.n + 1 }}" } }
      outputs: { n: "${{ steps.plus.output.n }}" }
outputs:
  n: "${{ steps.inline.output.outputs.n }}"
"#;
    let wf = valid(&host, parent);
    // The inline definition is validated and takes the id `_inline.<parent>.<step>`.
    let call = wf.workflow.steps[1].call.as_ref().unwrap();
    assert_eq!(call.workflow, "_inline.parent.inline");
    assert!(call.inline.as_ref().unwrap().valid().is_some());
    // The definition as a document holds it, and reads back as the same workflow.
    let doc = wf.workflow.to_json();
    assert_eq!(doc["steps"][1]["workflow"]["steps"][0]["id"], "plus");
    assert!(doc["steps"][1].get("plugin_id").is_none(), "{doc}");
    assert!(doc["steps"][1]["workflow"].get("id").is_none(), "derived again when read: {doc}");
    let again = valid(&host, &serde_json::to_string(&doc).unwrap());
    assert_eq!(again.workflow.to_json(), doc);
    orch.register(wf).unwrap();
    let exec = orch.execute("parent", Map::new()).unwrap();
    let status = orch.wait(&exec).await.unwrap();
    assert_eq!(status.status, WorkflowStatus::Completed, "{status:#?}");
    assert_eq!(status.outputs["n"], json!(5), "2 × 2 + 1");
    let child_id = format!("{exec}~registered");
    assert_eq!(status.steps[0].output.as_ref().unwrap()["execution_id"], json!(child_id));
    assert_eq!(orch.status(&child_id).unwrap().status, WorkflowStatus::Completed);
    assert_eq!(orch.status(&format!("{exec}~inline")).unwrap().workflow_id, "_inline.parent.inline");

    // A child of a workflow that is not registered fails its step, saying how to register it.
    let wf = valid(&host, "id: lost\nsteps:\n  - {id: sub, workflow: nowhere}\n");
    orch.register(wf).unwrap();
    let exec = orch.execute("lost", Map::new()).unwrap();
    let status = orch.wait(&exec).await.unwrap();
    assert_eq!(status.status, WorkflowStatus::Failed);
    assert!(status.steps[0].error.as_ref().unwrap().message.contains("--with FILE"), "{status:#?}");
}

#[test]
fn an_inline_workflows_problems_are_reported_at_their_place() {
    let host = host();
    let text = "id: p\nsteps:\n  - id: sub\n    workflow:\n      steps:\n        - {id: a, plugin_id: test.ops, operation: nope}\n";
    let problems = parse(&host, "w.yaml", text).unwrap_err();
    let found = problems.iter().find(|p| p.message.contains("inline workflow, step `a`")).expect("the inner problem");
    assert_eq!((found.step.as_deref(), found.line), (Some("sub"), Some(6)), "{problems:#?}");
    assert!(found.path.starts_with("steps[0].workflow.steps[0]"), "{found:?}");
    // Nesting is bounded.
    let mut deep = String::from("id: p\nsteps:\n  - id: s\n    workflow:\n");
    let mut indent = String::from("      ");
    for _ in 0..9 {
        deep.push_str(&format!("{indent}steps:\n{indent}  - id: s\n{indent}    workflow:\n"));
        indent.push_str("      ");
    }
    deep.push_str(&format!("{indent}steps: [{{id: e, plugin_id: test.ops, operation: echo}}]\n"));
    let problems = parse(&host, "w.yaml", &deep).unwrap_err();
    assert!(problems.iter().any(|p| p.message.contains("nest at most 8 deep")), "{problems:#?}");
    // Its id is derived: one written would name (and could replace) another workflow.
    let named = "id: p\nsteps:\n  - id: sub\n    workflow:\n      id: billing\n      steps: [{id: a, plugin_id: test.ops, operation: echo}]\n";
    let problems = parse(&host, "w.yaml", named).unwrap_err();
    assert!(problems.iter().any(|p| p.message.contains("leave `id` out")), "{problems:#?}");
    let dotted =
        "id: p\nsteps:\n  - id: a.b\n    workflow:\n      steps: [{id: a, plugin_id: test.ops, operation: echo}]\n";
    let problems = parse(&host, "w.yaml", dotted).unwrap_err();
    assert!(problems.iter().any(|p| p.message.contains("inline workflow has an id of letters")), "{problems:#?}");
}
