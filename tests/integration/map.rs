//! Map steps (`for_each`) in a real daemon: 1,000 items eight at a time
//! through a native plugin in worker processes, the daemon killed (`kill -9`)
//! in the middle and restarted: the map goes on from its recorded items — an
//! item that had completed is not run again — and every item's record is
//! served by `GET /v1/executions/{id}/steps/{step}/items`.

use crate::daemon::{lines, marks_fixture};
use crate::daemon_support::RunningDaemon;
use plexus_client::status::{StepStatus, WorkflowStatus};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const N: usize = 1000;

fn workflow(marks: &std::path::Path) -> String {
    format!(
        "id: fan
execution_mode: parallel
inputs:
  items: {{}}
steps:
  - {{ id: list, plugin_id: plexus.echo.native, method_name: echo, parameters: {{ items: \"${{{{ inputs['items'] }}}}\" }} }}
  - id: each
    plugin_id: plexus.echo.native
    method_name: append
    dependencies: [list]
    for_each: \"${{{{ steps.list.output['items'] }}}}\"
    max_parallel: 8
    retry: {{ max_attempts: 2, initial_delay: 1ms }}
    parameters: {{ path: {marks:?}, text: \"item-${{{{ item }}}}\", ms: 5 }}
  - {{ id: count, plugin_id: plexus.echo.native, method_name: echo, parameters: {{ n: \"${{{{ steps.each.output | length }}}}\" }}, dependencies: [each] }}
"
    )
}

#[test]
fn a_map_of_a_thousand_items_resumes_after_kill_9_without_running_completed_items_again() {
    let (plugins, data, marks) = marks_fixture();
    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    d.register(&workflow(&marks));
    let mut inputs = serde_json::Map::new();
    inputs.insert("items".into(), json!((0..N).collect::<Vec<_>>()));
    let id = d.client().start("fan", inputs).unwrap().execution_id;
    d.eventually("a third of the items to start", Duration::from_secs(60), |_| lines(&marks).len() >= N / 3);
    d.crash();
    let started_before = lines(&marks).len();
    assert!(started_before < N, "the map was still running when killed");

    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    let done = d.wait_for(&id, Duration::from_secs(120));
    assert_eq!(done.status.status, WorkflowStatus::Completed, "{:?}\n{}", done.status.steps, d.log());
    assert_eq!(done.status.step("count").unwrap().output, Some(json!({"n": N})));

    // Every item's record, paged through the API.
    let mut records = Vec::new();
    let mut after = None;
    loop {
        let page = d.client().items(&id, "each", after, Some(400)).unwrap();
        let Some(last) = page.items.last() else { break };
        after = Some(last.index);
        records.extend(page.items);
    }
    assert_eq!(records.len(), N);
    assert!(records.iter().all(|r| r.status == StepStatus::Completed), "every item completed");
    // An item ran at most once per recorded attempt: those that had completed
    // before the kill ran once; at most the eight in flight ran again (their
    // interrupted attempt counts: the retry policy allows two).
    let mut ran: BTreeMap<usize, u32> = BTreeMap::new();
    for line in lines(&marks) {
        let k: usize = line.strip_prefix("item-").unwrap().parse().unwrap();
        *ran.entry(k).or_default() += 1;
    }
    assert_eq!(ran.len(), N, "every item ran");
    for r in &records {
        // (An attempt recorded just before the kill may not have reached the plugin.)
        let (k, times) = (r.index, ran[&r.index]);
        assert!(times <= r.attempts, "item {k}: ran {times} times, recorded {} attempts", r.attempts);
        if r.attempts == 1 {
            assert_eq!(times, 1, "item {k} completed in one attempt and ran once");
        }
    }
    let again = records.iter().filter(|r| r.attempts > 1).count();
    assert!(again <= 8, "{again} items ran again; at most the 8 in flight may");
    // The step's output keeps the items' order.
    let output = done.status.step("each").unwrap().output.clone().unwrap();
    assert_eq!(output.as_array().unwrap().len(), N);
    // The CLI shows them too.
    let out = d.cli(&["exec", "items", &id, "each", "--limit", "3"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && shown.contains("ITEM") && shown.contains("completed"), "{shown}");
}
