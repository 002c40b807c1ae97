//! Webhook triggers through the CLI against a real daemon: `plexus hook add`
//! prints the secret once, `plexus hook send` delivers signed requests; a
//! good delivery starts the workflow with the body as its inputs, a replay
//! and a wrong secret are refused, `show` lists what was delivered.

use crate::daemon::plugins_dir;
use crate::daemon_support::RunningDaemon;
use plexus_client::status::WorkflowStatus;
use serde_json::{Value, json};
use std::time::Duration;

const WORKFLOW: &str = "id: on-event
inputs:
  repo: { type: string }
steps:
  - { id: echo, plugin_id: plexus.echo.wasm, method_name: echo, parameters: { repo: \"${{ inputs.repo }}\" } }
";

#[test]
fn a_hook_made_by_the_cli_starts_its_workflow_for_signed_deliveries_only() {
    let plugins = plugins_dir(&["echo-wasm"]);
    let data = tempfile::tempdir().unwrap();
    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    d.register(WORKFLOW);
    let out = d.cli(&["hook", "add", "on-event", "--id", "gh", "--description", "pushes", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(created["hook"]["path"], "/v1/hooks/gh");
    let list = d.cli(&["hook", "list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains("gh") && listed.contains("on-event") && !listed.contains(&secret), "{listed}");

    let send = |secret: &str, delivery: &str| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_plexus"));
        command
            .args(["hook", "send", "gh", "--json", "--delivery", delivery, "--body", r#"{"repo": "plexus"}"#])
            .env("PLEXUS_URL", &d.addr)
            .env("PLEXUS_HOOK_SECRET", secret)
            .env_remove("PLEXUS_TOKEN")
            // No token file either: a delivery needs none.
            .env("PLEXUS_TOKEN_FILE", data.path().join("no-token-here"));
        command.output().unwrap()
    };
    // Signed with the secret, no API token: started, the body as the inputs.
    let out = send(&secret, "push-1");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let started: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = started["execution_id"].as_str().unwrap();
    let done = d.wait_for(id, Duration::from_secs(20));
    assert_eq!(done.status.status, WorkflowStatus::Completed);
    assert_eq!(done.status.steps[0].output, Some(json!({"repo": "plexus"})));
    // The same delivery again: a replay. Another secret: refused. Neither starts anything.
    let replay = send(&secret, "push-1");
    assert!(!replay.status.success());
    assert!(String::from_utf8_lossy(&replay.stderr).contains("replay"), "{}", String::from_utf8_lossy(&replay.stderr));
    let forged = send(&"0".repeat(64), "push-2");
    assert!(!forged.status.success());
    let said = String::from_utf8_lossy(&forged.stderr);
    assert!(said.contains("signature does not verify"), "{said}");
    assert_eq!(d.client().executions(&Default::default()).unwrap().executions.len(), 1);
    // `show`: the one accepted delivery and its execution.
    let show = d.cli(&["hook", "show", "gh", "--json"]);
    let shown: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(shown["deliveries"][0]["delivery"], "push-1");
    assert_eq!(shown["deliveries"][0]["execution_id"], id);
    assert!(d.cli(&["hook", "rm", "gh"]).status.success());
    assert!(!send(&secret, "push-3").status.success(), "a deleted hook takes no delivery");
}
