//! Several `plexus daemon` processes on one PostgreSQL database (a
//! throw-away server, `plexus_daemon::testing`): executions shared across
//! nodes and taken over from a node killed with `kill -9`, cancels asked on
//! another node, plugins only some nodes have, and a schedule that fires
//! once per fire time across the cluster while its leader is killed and
//! restarted.

use crate::daemon_support::{RunningDaemon, copy_plugin};
use plexus_client::status::WorkflowStatus;
use plexus_client::{ExecutionQuery, NodeState, ScheduleSpec};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A cluster's shared parts: one database, one token, one plugin folder.
struct Cluster {
    root: tempfile::TempDir,
    url: String,
    plugins: PathBuf,
    started: usize,
}

impl Cluster {
    fn new() -> Self {
        let pg = plexus_daemon::testing::server().unwrap_or_else(|e| panic!("{e}"));
        let url = pg.database().unwrap_or_else(|e| panic!("{e}"));
        let root = tempfile::tempdir().unwrap();
        let plugins = root.path().join("plugins");
        copy_plugin("echo-native", &plugins);
        Self { root, url, plugins, started: 0 }
    }

    /// Start one more node (lease 2 s, `workers` workers) over `plugins`.
    fn node_with(&mut self, plugins: &Path, workers: &str) -> RunningDaemon {
        self.started += 1;
        let data = self.root.path().join(format!("node{}", self.started));
        std::fs::create_dir_all(&data).unwrap();
        let token = self.root.path().join("token");
        let token = token.to_str().unwrap();
        let extra = ["--state-db", &self.url, "--token-file", token, "--node-lease", "2s", "--workers", workers];
        RunningDaemon::start(&data, plugins, &extra)
    }

    fn node(&mut self) -> RunningDaemon {
        let plugins = self.plugins.clone();
        self.node_with(&plugins, "8")
    }

    fn effects(&self) -> PathBuf {
        self.root.path().join("effects.txt")
    }
}

/// A chain of three `append` steps; each attempt appends `<execution> <step>`
/// to `effects` first, then sleeps `ms`. Retried up to 3 attempts.
fn chain(effects: &Path, ms: u64) -> String {
    let step = |id: &str, after: &str| {
        let deps = if after.is_empty() { String::new() } else { format!(", dependencies: [{after}]") };
        format!(
            "  - {{id: {id}, plugin_id: plexus.echo.native, method_name: append, \
             parameters: {{path: \"{}\", text: \"${{{{ workflow.execution_id }}}} {id}\", ms: {ms}}}, \
             retry: {{max_attempts: 3, initial_delay: 10ms}}{deps}}}\n",
            effects.display()
        )
    };
    format!("id: chain\nsteps:\n{}{}{}", step("a", ""), step("b", "a"), step("c", "b"))
}

fn count(node: &RunningDaemon, status: WorkflowStatus) -> usize {
    let query = ExecutionQuery { status: Some(status), limit: Some(10_000), ..Default::default() };
    node.client().executions(&query).unwrap().executions.len()
}

#[test]
fn three_nodes_run_a_thousand_executions_and_take_over_those_of_a_killed_node() {
    let mut cluster = Cluster::new();
    let mut nodes: Vec<Option<RunningDaemon>> = (0..3).map(|_| Some(cluster.node())).collect();
    let first = nodes[0].as_ref().unwrap();
    let listed = first.client().nodes().unwrap();
    assert_eq!(listed.nodes.iter().filter(|n| n.state == NodeState::Alive).count(), 3, "{listed:?}");
    // `plexus nodes` shows them too, on any node.
    let out = nodes[2].as_ref().unwrap().cli(&["nodes"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && listed.nodes.iter().all(|n| table.contains(&n.id)), "{table}");
    assert_eq!(table.matches("alive").count(), 3, "{table}");
    first.register(&chain(&cluster.effects(), 15));
    // 1,000 executions submitted round-robin to the three nodes.
    let clients: Vec<_> = nodes.iter().map(|n| n.as_ref().unwrap().client()).collect();
    let (mut ids, mut owned, mut killed_ms) = (Vec::new(), Vec::new(), 0u64);
    for i in 0..1000 {
        // Across the three, then (after the kill) across the two left.
        let to = if i <= 500 { i % 3 } else { 1 + i % 2 };
        ids.push(clients[to].start("chain", serde_json::Map::new()).unwrap().execution_id);
        // kill -9 one node in the middle, while it runs executions.
        if i == 500 {
            let victim = nodes[0].as_ref().unwrap();
            // What it runs at the moment it is killed (the last look before the kill).
            victim.eventually("the victim to run executions", Duration::from_secs(30), |n| {
                let now = n.client().nodes().unwrap();
                owned = now.nodes.into_iter().find(|v| v.id == listed.this).map(|v| v.executions).unwrap_or_default();
                !owned.is_empty()
            });
            nodes[0].take().unwrap().crash();
            killed_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        }
    }
    let survivor = nodes[1].as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    while count(survivor, WorkflowStatus::Completed) < 1000 {
        let failed = count(survivor, WorkflowStatus::Failed);
        assert_eq!(failed, 0, "an execution failed");
        assert!(Instant::now() < deadline, "{} of 1000 completed", count(survivor, WorkflowStatus::Completed));
        std::thread::sleep(Duration::from_millis(250));
    }
    // Every attempt appended one line before its work: a completed step that
    // ran once has one line; no step has more lines than recorded attempts
    // (none ran on two nodes at once, none ran unrecorded).
    let text = std::fs::read_to_string(cluster.effects()).unwrap();
    let mut lines: HashMap<(String, String), u32> = HashMap::new();
    for line in text.lines() {
        let (exec, step) = line.split_once(' ').unwrap_or_else(|| panic!("line {line:?}"));
        *lines.entry((exec.to_owned(), step.to_owned())).or_default() += 1;
    }
    let (mut retried, client) = (0, survivor.client());
    for id in &ids {
        let execution = client.execution(id, None).unwrap();
        assert_eq!(execution.status.status, WorkflowStatus::Completed, "{id}");
        for step in &execution.status.steps {
            let ran = lines.get(&(id.clone(), step.id.clone())).copied().unwrap_or(0);
            assert!(ran <= step.attempts, "{id}/{}: {ran} runs for {} recorded attempts", step.id, step.attempts);
            if step.attempts == 1 {
                assert_eq!(ran, 1, "{id}/{}: a completed step runs exactly once", step.id);
            } else {
                retried += 1;
            }
        }
    }
    // Only the steps the killed node was running were run again (at most its 8 workers; none
    // when it was killed between two steps of each), and what it ran was taken over.
    assert!(retried <= 8, "{retried} steps were interrupted and retried");
    for id in &owned {
        let taken = client.execution(id, None).unwrap();
        // Listed a moment before the kill: the victim may have finished it in between.
        let ended_before_kill = taken.status.ended_at_ms.is_some_and(|t| t <= killed_ms);
        if !ended_before_kill {
            assert_ne!(taken.node.as_deref(), Some(listed.this.as_str()), "{id} was not taken over: {taken:?}");
        }
    }
    let nodes_now = survivor.client().nodes().unwrap();
    let victim = nodes_now.nodes.iter().find(|n| n.id == listed.this).unwrap();
    assert_eq!((victim.state, victim.running), (NodeState::Lost, 0), "{victim:?}");
}

#[test]
fn a_cancel_asked_on_one_node_stops_the_execution_on_another_within_a_second() {
    let mut cluster = Cluster::new();
    let (a, b) = (cluster.node(), cluster.node());
    a.register(&chain(&cluster.effects(), 5_000));
    // Started and claimed on `a` (it has free workers).
    let id = a.start_execution("chain");
    a.eventually("the first step to run", Duration::from_secs(20), |n| {
        n.execution(&id).status.steps[0].status == plexus_client::status::StepStatus::Running
    });
    assert_eq!(b.execution(&id).node.as_deref(), Some(a.client().health().unwrap().node.as_str()));
    let asked = Instant::now();
    b.client().cancel(&id).unwrap();
    let ended = b.client().execution(&id, Some(5_000)).unwrap();
    assert_eq!(ended.status.status, WorkflowStatus::Cancelled);
    assert!(asked.elapsed() < Duration::from_secs(1), "took {:?}", asked.elapsed());
    // A second cancel is refused, on either node.
    let again = a.client().cancel(&id).unwrap_err();
    assert_eq!(again.code(), Some(plexus_client::ErrorCode::InvalidState), "{again}");
    // Retried on `b`: it runs again (on whichever node claims it) to the end.
    a.register(&chain(&cluster.effects(), 5));
    let retried = b.client().retry(&id).unwrap();
    assert_eq!(retried.status.execution_id, id);
    let done = a.client().execution(&id, Some(20_000)).unwrap();
    assert_eq!(done.status.status, WorkflowStatus::Completed, "{done:?}");
    // A workflow deleted on one node is gone for the other at once.
    a.client().delete_workflow("chain").unwrap();
    let gone = b.client().start("chain", serde_json::Map::new()).unwrap_err();
    assert_eq!(gone.code(), Some(plexus_client::ErrorCode::NotFound), "{gone}");
}

#[test]
fn a_signal_delivered_on_one_node_resumes_the_execution_parked_on_another() {
    let mut cluster = Cluster::new();
    let (a, b) = (cluster.node(), cluster.node());
    a.register(
        "id: gate\nsteps:\n  - { id: first, plugin_id: plexus.echo.native, method_name: echo, parameters: { n: 1 } }\n  \
         - { id: approve, wait_for: { signal: approve, approval: true }, dependencies: [first] }\n",
    );
    let id = a.start_execution("gate");
    // Parked on `a`, which keeps it: waiting costs it no worker.
    a.eventually("the wait to begin", Duration::from_secs(20), |n| {
        n.execution(&id).status.steps[1].status == plexus_client::status::StepStatus::Waiting
    });
    let owner = a.client().health().unwrap().node;
    std::thread::sleep(Duration::from_secs(3)); // past a lease: still its node's
    assert_eq!(b.execution(&id).node.as_deref(), Some(owner.as_str()));
    let asked = Instant::now();
    let request = plexus_client::SignalRequest {
        payload: serde_json::json!({"ok": true}),
        by: Some("ops".into()),
        reject: false,
    };
    b.client().signal(&id, "approve", &request).unwrap();
    let done = b.client().execution(&id, Some(10_000)).unwrap();
    assert_eq!(done.status.status, WorkflowStatus::Completed, "{done:?}");
    assert!(asked.elapsed() < Duration::from_secs(5), "took {:?}", asked.elapsed());
    assert_eq!(done.status.steps[1].output.as_ref().unwrap()["by"], "ops");
    assert_eq!(done.node.as_deref(), Some(owner.as_str()), "resumed by the node it was parked on");
}

#[test]
fn an_execution_no_node_can_run_waits_for_its_plugin_and_runs_when_a_node_has_it() {
    let mut cluster = Cluster::new();
    let empty = cluster.root.path().join("no-plugins");
    std::fs::create_dir_all(&empty).unwrap();
    let lacking = cluster.node_with(&empty, "4");
    let with = cluster.node();
    with.register(&chain(&cluster.effects(), 1));
    // Only `with` can run it: killed, no live node has the plugin.
    with.crash();
    let id = lacking.start_execution("chain");
    std::thread::sleep(Duration::from_secs(3));
    let waiting = lacking.execution(&id);
    assert_eq!(waiting.status.status, WorkflowStatus::Pending, "{waiting:?}");
    assert_eq!(waiting.waiting_for_plugins, ["plexus.echo.native"], "{waiting:?}");
    assert_eq!(waiting.node, None);
    // A node with the plugin joins and runs it.
    let joined = cluster.node();
    let done = joined.client().execution(&id, Some(20_000)).unwrap();
    assert_eq!(done.status.status, WorkflowStatus::Completed, "{done:?}");
    assert!(done.waiting_for_plugins.is_empty());
}

#[test]
fn a_schedule_fires_once_per_second_across_three_nodes_while_its_leader_is_killed_and_restarted() {
    let mut cluster = Cluster::new();
    let mut nodes: Vec<RunningDaemon> = (0..3).map(|_| cluster.node()).collect();
    let spec = ScheduleSpec {
        id: "tick".into(),
        when: "every 1s".into(),
        plugin: Some("plexus.echo.native".into()),
        operation: Some("noop".into()),
        overlap: plexus_client::Overlap::Allow,
        catch_up: plexus_client::CatchUp::RunAll,
        ..serde_json::from_value(serde_json::json!({"id": "tick", "when": "every 1s"})).unwrap()
    };
    nodes[1].client().create_schedule(&spec).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    // Kill the leader (the node whose log says it leads), then start it again.
    let leader = nodes
        .iter()
        .position(|n| n.log().contains("scheduler leadership") && n.log().contains("leads=true"))
        .expect("a node leads the schedules");
    nodes.remove(leader).crash();
    std::thread::sleep(Duration::from_secs(5));
    nodes.push(cluster.node());
    std::thread::sleep(Duration::from_secs(4));
    let details = nodes[0].client().schedule("tick").unwrap();
    let mut times: Vec<u64> = details.history.iter().map(|f| f.fire_time_ms).collect();
    times.sort_unstable();
    let distinct = times.len();
    times.dedup();
    assert_eq!(times.len(), distinct, "a fire time fired twice: {:?}", details.history);
    // Every second from the first fire to the last fired once (the ones
    // missed during the fail-over late, per catch_up = run_all).
    assert!(times.len() >= 10, "{times:?}");
    for pair in times.windows(2) {
        assert_eq!(pair[1] - pair[0], 1000, "a gap in {times:?}");
    }
}

#[test]
fn a_schedule_paused_on_any_node_stops_and_after_the_whole_cluster_was_down_catches_up_per_its_policy() {
    let mut cluster = Cluster::new();
    let nodes: Vec<RunningDaemon> = (0..2).map(|_| cluster.node()).collect();
    let spec: ScheduleSpec = serde_json::from_value(serde_json::json!({
        "id": "beat", "when": "every 1s", "plugin": "plexus.echo.native", "operation": "noop",
        "overlap": "allow", "catch_up": "run_once"
    }))
    .unwrap();
    nodes[0].client().create_schedule(&spec).unwrap();
    let fires = |node: &RunningDaemon| node.client().schedule("beat").unwrap().history;
    nodes[1].eventually("two fires", Duration::from_secs(20), |n| fires(n).len() >= 2);
    // Paused on each node in turn: within a second, whichever node leads stops firing it.
    for node in &nodes {
        node.client().pause_schedule("beat").unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        let paused = fires(node).len();
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(fires(node).len(), paused, "it fired while paused");
        node.client().resume_schedule("beat").unwrap();
        node.eventually("a fire after resuming", Duration::from_secs(10), |n| fires(n).len() > paused);
    }
    // The whole cluster goes down for 5 s; one node comes back.
    let before = fires(&nodes[0]).len();
    for node in nodes {
        node.crash();
    }
    std::thread::sleep(Duration::from_secs(5));
    let back = cluster.node();
    back.eventually("the catch-up", Duration::from_secs(20), |n| fires(n).len() >= before + 3);
    let history = fires(&back);
    let mut times: Vec<u64> = history.iter().map(|f| f.fire_time_ms).collect();
    let all = times.len();
    times.sort_unstable();
    times.dedup();
    assert_eq!(times.len(), all, "a fire time fired twice: {history:?}");
    // run_once: of the fire times missed while no node ran, the latest runs and the others are skipped.
    let skipped = history.iter().filter(|f| f.outcome == plexus_client::FireOutcome::Skipped).count();
    assert!(skipped >= 2, "{history:?}");
}
