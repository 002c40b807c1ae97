//! Secrets end to end: the key made by `plexus secret keygen`, a value set
//! through the CLI reaching plugins (their `[config]`, a step's parameters,
//! native in a worker process and WASM) and never showing in a log line, an
//! API answer or the database; and `plexus run` with secrets from the
//! environment and a secrets file.

use crate::daemon::plugins_dir;
use crate::daemon_support::{RunningDaemon, copy_plugin};
use crate::support::built_plugins;
use plexus_client::status::WorkflowStatus;
use serde_json::Value;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const VALUE: &str = "int-s3cr3t-7d1e0b";

/// Whether `bytes` hold `needle` anywhere.
fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Make `plugins/<folder>/plugin.toml`'s `[config]` name secret `API_TOKEN`.
fn config_with_secret(manifest: &Path) {
    let text = std::fs::read_to_string(manifest).unwrap();
    let line = "token = \"Bearer ${{ secrets.API_TOKEN }}\"\n";
    // The operator's grant: the config may name this secret.
    assert!(text.contains("[permissions]\n"), "{text}");
    let text = text.replace("[permissions]\n", "[permissions]\nsecrets = [\"API_TOKEN\"]\n");
    let text = if text.contains("[config]\n") {
        text.replace("[config]\n", &format!("[config]\n{line}"))
    } else {
        format!("{text}\n[config]\n{line}")
    };
    std::fs::write(manifest, text).unwrap();
}

/// Every byte of the daemon's database: SQLite's files, or a `pg_dump`.
fn database_bytes(data: &Path) -> Vec<u8> {
    if let Ok(url) = std::fs::read_to_string(data.join("state-db-url")) {
        let bin = plexus_daemon::testing::bin_dir().unwrap();
        let out = Command::new(bin.join("pg_dump")).arg(url.trim()).output().unwrap();
        assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
        return out.stdout;
    }
    std::fs::read_dir(data)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("state.db"))
        .flat_map(|e| std::fs::read(e.path()).unwrap())
        .collect()
}

const WORKFLOW: &str = r#"
id: uses-secret
execution_mode: parallel
steps:
  - { id: wasm_print, plugin_id: plexus.echo.wasm, method_name: print, parameters: { text: "token=${{ secrets.API_TOKEN }}" } }
  - { id: native_print, plugin_id: plexus.echo.native, method_name: print, parameters: { text: "token=${{ secrets.API_TOKEN }}" } }
  - { id: native_echo, plugin_id: plexus.echo.native, method_name: echo, parameters: { auth: "${{ secrets.API_TOKEN }}" } }
  - { id: config, plugin_id: plexus.orchestration.wasm, method_name: lifecycle }
  - { id: fails, plugin_id: plexus.echo.wasm, method_name: fail, parameters: { kind: failed, message: "rejected ${{ secrets.API_TOKEN }}" },
      dependencies: [wasm_print, native_print, native_echo, config] }
"#;

#[test]
fn a_secret_reaches_plugins_and_no_log_answer_or_database_row_holds_it() {
    let plugins = plugins_dir(&["echo-native", "echo-wasm"]);
    for kind in ["native", "wasm"] {
        config_with_secret(&copy_plugin(&format!("orchestration-{kind}"), plugins.path()).join("plugin.toml"));
    }
    let data = tempfile::tempdir().unwrap();
    // The key: made by the CLI, private.
    let key = data.path().join("secrets.key");
    let made =
        Command::new(env!("CARGO_BIN_EXE_plexus")).args(["secret", "keygen", "--out"]).arg(&key).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(std::fs::read_to_string(&key).unwrap().trim().len(), 64);
    let d = RunningDaemon::start(data.path(), plugins.path(), &["--secrets-key-file", key.to_str().unwrap()]);

    // Plugins whose config needs a secret that is not set do not load, and say which.
    let listed = d.client().plugins().unwrap();
    let errors: Vec<String> = listed.errors.iter().map(|e| e.message.clone()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().all(|e| e.contains("`config.token` needs secret `API_TOKEN`, which is not set")),
        "{errors:?}"
    );

    // Set through the CLI from stdin (one trailing newline dropped); they load.
    let mut set = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["secret", "set", "API_TOKEN"])
        .env("PLEXUS_URL", &d.addr)
        .env("PLEXUS_TOKEN", &d.token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    set.stdin.take().unwrap().write_all(format!("{VALUE}\n").as_bytes()).unwrap();
    let set = set.wait_with_output().unwrap();
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    assert_eq!(String::from_utf8_lossy(&set.stdout).trim(), "secret API_TOKEN set");
    let listed = d.client().plugins().unwrap();
    assert!(listed.errors.is_empty(), "{:?}", listed.errors);
    assert_eq!(listed.plugins.len(), 4);
    let names = d.cli(&["secret", "list", "--json"]);
    let names: Value = serde_json::from_slice(&names.stdout).unwrap();
    assert_eq!(names["secrets"][0]["name"], "API_TOKEN");
    assert_eq!(names["secrets"][0]["usable"], true);
    // The value is never read back: no route answers it.
    let (status, _) = d.call("GET", "/v1/secrets/API_TOKEN", None);
    assert_eq!(status, 405);

    // A direct call of a plugin whose config holds it: redacted in the answer.
    let (status, called) = d.call(
        "POST",
        "/v1/plugins/plexus.orchestration.native/call",
        Some(serde_json::json!({"operation": "lifecycle"})),
    );
    assert_eq!(status, 200, "{called}");
    assert_eq!(called["output"]["config"]["token"], "Bearer ***");

    // Steps: native (in a worker process) and WASM get the value; records show `***`.
    d.register(WORKFLOW);
    let id = d.start_execution("uses-secret");
    let done = d.wait_for(&id, Duration::from_secs(60));
    assert_eq!(done.status.status, WorkflowStatus::Failed, "{done:?}");
    let step = |id: &str| done.status.steps.iter().find(|s| s.id == id).unwrap().clone();
    assert_eq!(step("native_echo").output, Some(serde_json::json!({"auth": "***"})));
    assert_eq!(step("config").output.unwrap()["config"]["token"], "Bearer ***");
    assert_eq!(step("fails").error.unwrap().message, "rejected ***");
    let wasm_printed = step("wasm_print").output.unwrap().as_u64().unwrap();
    assert_eq!(wasm_printed, 2 * ("token=".len() + VALUE.len() + 1) as u64, "the plugin printed the value");

    // No answer of the API holds it.
    let mut answers = String::new();
    for path in [
        format!("/v1/executions/{id}"),
        format!("/v1/executions/{id}/steps"),
        format!("/v1/executions/{id}/logs"),
        "/v1/executions".into(),
        "/v1/plugins".into(),
        "/v1/plugins/plexus.orchestration.wasm".into(),
        "/v1/secrets".into(),
        "/v1/health".into(),
        "/metrics".into(),
    ] {
        let (status, body) = d.call("GET", &path, None);
        assert_eq!(status, 200, "{path}: {body}");
        answers.push_str(&body.to_string());
    }
    assert!(!answers.contains(VALUE), "an answer holds the secret: {answers}");
    assert!(answers.contains("${{ secrets.API_TOKEN }}"), "the plugin's config is shown as written");
    let details = d.client().plugin("plexus.orchestration.wasm").unwrap();
    assert_eq!(details.permissions.secrets, ["API_TOKEN"], "the operator's grant is shown");

    // The daemon's log has the plugins' lines, redacted.
    let stopped = d.terminate();
    assert!(stopped.success());
    let log = std::fs::read_to_string(data.path().join("daemon.log")).unwrap();
    assert!(log.contains("token=***"), "{log}");
    assert!(!log.contains(VALUE), "the log holds the secret: {log}");
    // Nor does any row of the database, in any form.
    let bytes = database_bytes(data.path());
    assert!(bytes.len() > 1000);
    assert!(!holds(&bytes, VALUE), "the database holds the secret");
}

#[test]
fn plexus_run_takes_secrets_from_the_environment_and_a_secrets_file() {
    let dir = tempfile::tempdir().unwrap();
    let workflow = dir.path().join("w.yaml");
    std::fs::write(
        &workflow,
        "id: local\nsteps:\n  - { id: a, plugin_id: plexus.echo.wasm, method_name: echo, parameters: { x: \"${{ secrets.LOCAL_ONE }}\", y: \"${{ secrets.LOCAL_TWO }}\" } }\n",
    )
    .unwrap();
    let secrets = dir.path().join("secrets.toml");
    std::fs::write(&secrets, "LOCAL_ONE = \"from-the-file-1\"\n").unwrap();
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_plexus"))
            .arg("run")
            .arg(&workflow)
            .args(["--plugins-dir"])
            .arg(built_plugins())
            .args(["--no-cache", "--json"])
            .args(extra)
            .envs(env.iter().copied())
            .env_remove("PLEXUS_SECRETS_FILE")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Both given: the step runs; what is printed is redacted.
    let (code, stdout, stderr) = run(
        &["--secrets-file", secrets.to_str().unwrap()],
        &[("PLEXUS_SECRET_LOCAL_TWO", "from-the-env-2"), ("PLEXUS_SECRET_LOCAL_ONE", "the-file-wins")],
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains(r#""x":"***""#) || stdout.contains(r#""x": "***""#), "{stdout}");
    for value in ["from-the-file-1", "from-the-env-2", "the-file-wins"] {
        assert!(!stdout.contains(value) && !stderr.contains(value), "{value}: {stdout}\n{stderr}");
    }
    // One missing: the step fails, naming it.
    let (code, stdout, stderr) = run(&[], &[("PLEXUS_SECRET_LOCAL_TWO", "from-the-env-2")]);
    assert_ne!(code, Some(0));
    assert!((stdout.clone() + &stderr).contains("secret `LOCAL_ONE` is not set"), "{stdout}\n{stderr}");
    // A bad secrets file: named, nothing runs.
    std::fs::write(&secrets, "1bad = \"x\"\n").unwrap();
    let (code, _, stderr) = run(&["--secrets-file", secrets.to_str().unwrap()], &[]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("secrets.toml") && stderr.contains("`1bad`"), "{stderr}");
}
