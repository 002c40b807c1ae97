//! The published SDK as an outside author gets it: `cargo package` of
//! `plexus-sdk`, unpacked into a temporary directory, and a plugin crate
//! outside the repository that depends on it by path, built both ways and
//! loaded by the host.

use crate::support::{Fixture, repo_root};
use plexus_host::{CallOptions, PluginKind};
use plexus_sdk::ErrorKind;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `cargo` with the same toolchain as this test run.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Package the SDK (as `cargo publish` would) and unpack it; returns the crate's folder.
fn packaged_sdk(into: &Path) -> PathBuf {
    let target = repo_root().join("target").join("sdk-package");
    run(
        cargo()
            .current_dir(repo_root())
            .args(["package", "-p", "plexus-sdk", "--no-verify", "--allow-dirty", "--offline", "--target-dir"])
            .arg(&target),
        "cargo package -p plexus-sdk",
    );
    let version = env!("CARGO_PKG_VERSION");
    let file = target.join("package").join(format!("plexus-sdk-{version}.crate"));
    run(Command::new("tar").arg("xzf").arg(&file).arg("-C").arg(into), "unpack the .crate");
    into.join(format!("plexus-sdk-{version}"))
}

const PLUGIN: &str = r#"
use plexus_sdk::prelude::*;

#[derive(Default)]
pub struct Outside;

#[derive(Deserialize, JsonSchema)]
pub struct Sum {
    /// Numbers as text, e.g. `["1", "2"]`.
    numbers: Vec<String>,
}

impl Plugin for Outside {
    fn info() -> PluginInfo {
        plugin_info!("example.outside").capabilities([capability::WORKFLOW_STEP])
    }
    fn operations(ops: &mut Operations<Self>) {
        ops.add("sum", "Adds numbers given as text", Self::sum)
            .example("adds", json!({"numbers": ["1", "2"]}), json!(3))
            .example_error("refuses words", json!({"numbers": ["one"]}), ErrorKind::InvalidInput);
        ops.add("arch", "The architecture it runs on", |_, _, _: Value| Ok::<_, PluginError>(std::env::consts::ARCH));
    }
}

impl Outside {
    fn sum(&self, _: &mut Context<'_>, p: Sum) -> Result<i64, PluginError> {
        let mut total = 0i64;
        for n in &p.numbers {
            total += n.parse::<i64>()?;
        }
        Ok(total)
    }
}

export_plugin!(Outside);

#[test]
fn examples_hold() {
    assert_eq!(plexus_sdk::testing::TestHost::<Outside>::new().check_examples().unwrap(), 2);
}
"#;

/// Build the outside plugin of `kind`; returns the artifact.
fn build(project: &Path, target: &Path, kind: &str) -> PathBuf {
    let mut cmd = cargo();
    cmd.current_dir(project).args(["build", "--offline", "--target-dir"]).arg(target);
    if kind == "wasm" {
        cmd.args(["--target", "wasm32-wasip2"]);
        run(&mut cmd, "cargo build --target wasm32-wasip2 (outside plugin)");
        target.join("wasm32-wasip2/debug/outside_plugin.wasm")
    } else {
        run(&mut cmd, "cargo build (outside plugin)");
        target.join("debug/liboutside_plugin.so")
    }
}

#[test]
fn a_plugin_outside_the_repository_builds_against_the_packaged_sdk_and_runs_as_both_kinds() {
    let work = tempfile::tempdir().unwrap();
    let sdk = packaged_sdk(work.path());
    // The packaged crate carries the WIT it was built from, the same as the repository's.
    let carried = std::fs::read_to_string(sdk.join("wit/plexus-plugin.wit")).expect("the .crate carries wit/");
    assert_eq!(carried, std::fs::read_to_string(repo_root().join("wit/plexus-plugin.wit")).unwrap());

    let project = work.path().join("outside-plugin");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(
        project.join("Cargo.toml"),
        format!(
            "[package]\nname = \"outside-plugin\"\nversion = \"1.2.3\"\nedition = \"2024\"\n\
             description = \"Sums numbers\"\nauthors = [\"Ada <ada@example.org>\", \"Bob\"]\nlicense = \"MIT\"\n\n\
             [lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n[dependencies]\n\
             plexus-sdk = {{ path = {:?} }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\nschemars = \"1\"\n\n\
             [workspace]\n",
            sdk.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(project.join("src/lib.rs"), PLUGIN).unwrap();
    // The repository's lock file: the same versions as the SDK was tested with, offline.
    std::fs::copy(repo_root().join("Cargo.lock"), project.join("Cargo.lock")).unwrap();
    // A target directory kept between runs: only the first builds the dependencies.
    let target = repo_root().join("target").join("sdk-outside");
    run(
        cargo().current_dir(&project).args(["test", "--offline", "--lib", "--target-dir"]).arg(&target),
        "cargo test (outside plugin's examples)",
    );

    let fx = Fixture::new();
    for kind in ["native", "wasm"] {
        let artifact = build(&project, &target, kind);
        fx.folder(
            &format!("outside-{kind}"),
            &format!(
                "id = \"example.outside\"\nversion = \"1.2.3\"\nkind = \"{kind}\"\nartifact = {:?}\n",
                artifact.display().to_string()
            ),
        );
        let host = fx.host();
        assert!(host.load_errors().is_empty(), "{kind}: {:?}", host.load_errors());
        let plugin = host.plugin("example.outside").expect("loaded");
        let meta = plugin.runtime.metadata();
        assert_eq!((meta.name.as_str(), meta.version.as_str()), ("outside-plugin", "1.2.3"));
        assert_eq!(meta.description, "Sums numbers");
        assert_eq!(meta.authors, ["Ada <ada@example.org>", "Bob"]);
        assert_eq!(meta.license.as_deref(), Some("MIT"));
        let out = host.call("example.outside", "sum", json!({"numbers": ["40", "2"]}), CallOptions::default()).unwrap();
        assert_eq!(out.output, json!(42), "{kind}");
        let err = host.call("example.outside", "sum", json!({"numbers": ["x"]}), CallOptions::default()).unwrap_err();
        match err {
            plexus_host::CallError::Plugin { error, .. } => {
                assert_eq!(error.kind, ErrorKind::InvalidInput, "{kind}: {error}");
                assert!(error.message.contains("invalid digit"), "{kind}: {error}");
            }
            other => panic!("{kind}: {other}"),
        }
        std::fs::rename(fx.plugins.path().join(format!("outside-{kind}")), work.path().join(format!("outside-{kind}")))
            .unwrap();
    }

    // Both kinds at once: one plugin, two artifacts; the sandboxed kind unless one is asked for.
    for kind in ["native", "wasm"] {
        std::fs::rename(work.path().join(format!("outside-{kind}")), fx.plugins.path().join(format!("outside-{kind}")))
            .unwrap();
    }
    let host = fx.host();
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
    assert_eq!(host.kinds("example.outside"), [PluginKind::Wasm, PluginKind::Native]);
    let arch = |kind: Option<PluginKind>| {
        let options = CallOptions { kind, ..CallOptions::default() };
        host.call("example.outside", "arch", json!(null), options).unwrap().output
    };
    assert_eq!(arch(None), json!("wasm32"));
    assert_eq!(arch(Some(PluginKind::Wasm)), json!("wasm32"));
    assert_eq!(arch(Some(PluginKind::Native)), json!(std::env::consts::ARCH));
    // In a workflow, a step may ask for a kind.
    let wf = work.path().join("kinds.yaml");
    std::fs::write(
        &wf,
        "id: kinds\nexecution_mode: parallel\nsteps:\n\
         - { id: default, plugin_id: example.outside, method_name: arch }\n\
         - { id: native, plugin_id: example.outside, kind: native, method_name: arch }\n\
         - { id: wasm, plugin_id: example.outside, kind: wasm, method_name: arch }\n\
         outputs:\n  default: \"${{ steps.default.output }}\"\n  native: \"${{ steps.native.output }}\"\n  wasm: \"${{ steps.wasm.output }}\"\n",
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["run", wf.to_str().unwrap(), "--json", "--outputs-only", "--plugins-dir"])
        .arg(fx.plugins.path())
        .env("PLEXUS_CACHE_DIR", fx.cache.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let outputs: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(outputs, json!({"default": "wasm32", "native": std::env::consts::ARCH, "wasm": "wasm32"}));
    // `plexus call --kind`.
    let call = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["call", "example.outside", "arch", "--kind", "native", "--plugins-dir"])
        .arg(fx.plugins.path())
        .env("PLEXUS_CACHE_DIR", fx.cache.path())
        .output()
        .unwrap();
    assert!(call.status.success(), "{}", String::from_utf8_lossy(&call.stderr));
    assert_eq!(String::from_utf8_lossy(&call.stdout).trim(), format!("\"{}\"", std::env::consts::ARCH));
}

/// `plexus ARGS` in `dir` with `fx`'s plugins directory and component cache
/// and `env` added: the exit code, and stdout followed by stderr.
fn plexus_in(fx: &Fixture, dir: &Path, env: &[(&str, &std::ffi::OsStr)], args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(args)
        .current_dir(dir)
        .env("PLEXUS_CACHE_DIR", fx.cache.path())
        .env("PLEXUS_PLUGINS_DIR", fx.plugins.path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[test]
fn plugin_new_then_pack_then_install_then_call() {
    let work = tempfile::tempdir().unwrap();
    let fx = Fixture::new();
    // Builds share the outside-plugin test's target directory, offline, at the repository's versions.
    let target = repo_root().join("target").join("sdk-outside");
    let env = [("CARGO_TARGET_DIR", target.as_os_str()), ("CARGO_NET_OFFLINE", "true".as_ref())];
    let plexus = |args: &[&str], dir: &Path| plexus_in(&fx, dir, &env, args);
    let (code, text) = plexus(&["plugin", "new", "hello-world", "--id", "acme.hello"], work.path());
    assert_eq!(code, Some(0), "{text}");
    let project = work.path().join("hello-world");
    std::fs::copy(repo_root().join("Cargo.lock"), project.join("Cargo.lock")).unwrap();
    // The template's own test (its examples) passes.
    run(
        cargo()
            .current_dir(&project)
            .args(["test", "--offline", "--target-dir"])
            .arg(repo_root().join("target/sdk-outside")),
        "cargo test (new plugin)",
    );
    let (code, text) = plexus(&["plugin", "pack", "--debug", "--json"], &project);
    assert_eq!(code, Some(0), "{text}");
    let json_start = text.find('{').unwrap();
    let packed: serde_json::Value =
        serde_json::Deserializer::from_str(&text[json_start..]).into_iter().next().unwrap().unwrap();
    assert_eq!((packed["id"].as_str(), packed["version"].as_str()), (Some("acme.hello"), Some("0.1.0")));
    let archive = packed["archive"].as_str().unwrap().to_owned();
    // The generated manifest pins the artifact's sha256.
    let manifest =
        std::fs::read_to_string(Path::new(packed["folders"][1].as_str().unwrap()).join("plugin.toml")).unwrap();
    assert!(manifest.contains("kind = \"wasm\"") && manifest.contains("sha256 = \""), "{manifest}");

    let (code, text) = plexus(&["plugin", "install", &archive], work.path());
    assert_eq!(code, Some(0), "{text}");
    assert!(fx.plugins.path().join("acme.hello-native/plugin.toml").is_file());
    assert!(fx.plugins.path().join("acme.hello-wasm/plugin.toml").is_file());
    let (code, text) = plexus(&["plugin", "install", &archive], work.path());
    assert_eq!(code, Some(1), "installed twice without --force: {text}");
    for kind in ["native", "wasm"] {
        let (code, text) =
            plexus(&["call", "acme.hello", "greet", "--kind", kind, "--params", r#"{"name": "Ada"}"#], work.path());
        assert_eq!(code, Some(0), "{kind}: {text}");
        assert!(text.contains("\"Hello, Ada!\""), "{kind}: {text}");
    }
    // A damaged plugin is not installed.
    let broken = work.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("plugin.toml"),
        "id = \"x\"\nversion = \"1.0.0\"\nkind = \"wasm\"\nartifact = \"x.wasm\"\n",
    )
    .unwrap();
    let (code, text) = plexus(&["plugin", "install", broken.to_str().unwrap()], work.path());
    assert_eq!(code, Some(13), "{text}");
    assert!(text.contains("nothing was installed") && !fx.plugins.path().join("broken").exists(), "{text}");
}

/// `plexus plugin new --lang LANG` → the template's own tests → `pack` →
/// `install` → `call`, for a Python or JavaScript plugin on this checkout's SDK.
fn new_pack_install_call(lang: &str) {
    let python = crate::support::sdk(lang);
    let work = tempfile::tempdir().unwrap();
    let fx = Fixture::new();
    let plexus = |args: &[&str], dir: &Path| plexus_in(&fx, dir, &[("PLEXUS_PYTHON", python.as_os_str())], args);
    let name = format!("hello-{lang}");
    let id = format!("acme.hello-{lang}");
    let (code, text) = plexus(&["plugin", "new", &name, "--lang", lang, "--id", &id], work.path());
    assert_eq!(code, Some(0), "{text}");
    let project = work.path().join(&name);
    // The template's own tests pass (its operation's examples among them).
    if lang == "python" {
        run(Command::new(&python).current_dir(&project).args(["-m", "pytest", "-q"]), "pytest (new plugin)");
    } else {
        run(
            Command::new("npm").current_dir(&project).args(["install", "--no-audit", "--no-fund", "--offline"]),
            "npm install (new plugin)",
        );
        run(Command::new("npm").current_dir(&project).args(["test"]), "npm test (new plugin)");
    }
    let (code, text) = plexus(&["plugin", "pack", "--kind", "native"], &project);
    assert_eq!(code, Some(1), "a {lang} plugin is a component only: {text}");
    assert!(text.contains("is a WASM component only"), "{text}");
    let (code, text) = plexus(&["plugin", "pack", "--json"], &project);
    assert_eq!(code, Some(0), "{text}");
    // stdout (the JSON) comes first in `text`, the build's progress on stderr after it.
    let packed: serde_json::Value = serde_json::Deserializer::from_str(&text).into_iter().next().unwrap().unwrap();
    assert_eq!((packed["id"].as_str(), packed["version"].as_str()), (Some(id.as_str()), Some("0.1.0")));
    assert_eq!(packed["folders"].as_array().unwrap().len(), 1);
    let manifest =
        std::fs::read_to_string(Path::new(packed["folders"][0].as_str().unwrap()).join("plugin.toml")).unwrap();
    assert!(manifest.contains("kind = \"wasm\"") && manifest.contains("sha256 = \""), "{manifest}");
    let (code, text) = plexus(&["plugin", "install", packed["archive"].as_str().unwrap()], work.path());
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = plexus(&["call", &id, "greet", "--params", r#"{"name": "Ada"}"#], work.path());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Hello, Ada!"), "{text}");
    // A misspelled parameter is the plugin's invalid-input error, not a trap.
    let (code, text) = plexus(&["call", &id, "greet", "--params", r#"{"nmae": "Ada"}"#, "--json"], work.path());
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("invalid-input") || text.contains("invalid_input"), "{text}");
}

#[test]
fn a_python_plugin_from_plugin_new_packs_installs_and_runs() {
    new_pack_install_call("python");
}

#[test]
fn a_javascript_plugin_from_plugin_new_packs_installs_and_runs() {
    new_pack_install_call("js");
}

/// `plexus plugin dev --call greet` in a new project of `lang`: built, loaded
/// and called, then again after an edit of its source.
fn dev_loop(lang: &str, edit: (&str, &str, &str)) {
    use std::io::BufRead;
    let work = tempfile::tempdir().unwrap();
    let target = repo_root().join("target").join("sdk-outside");
    let python = (lang != "rust").then(|| crate::support::sdk(lang));
    let status = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["plugin", "new", "dev-loop", "--id", "acme.dev", "--lang", lang])
        .current_dir(work.path())
        .status()
        .unwrap();
    assert!(status.success());
    let project = work.path().join("dev-loop");
    match lang {
        "rust" => drop(std::fs::copy(repo_root().join("Cargo.lock"), project.join("Cargo.lock")).unwrap()),
        "js" => run(
            Command::new("npm").current_dir(&project).args(["install", "--no-audit", "--no-fund", "--offline"]),
            "npm install (dev loop)",
        ),
        _ => {}
    }
    let fx = Fixture::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["plugin", "dev", "--call", "greet", "--params", r#"{"name": "Ada"}"#])
        .current_dir(&project)
        .env("PLEXUS_CACHE_DIR", fx.cache.path())
        .env("PLEXUS_PYTHON", python.unwrap_or_default())
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_NET_OFFLINE", "true")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let wait_for = |needle: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("`plexus plugin dev` ({lang}) never printed {needle:?}; it printed {seen:#?}");
    };
    wait_for("[dev] loaded acme.dev 0.1.0 (wasm): greet");
    wait_for("Hello, Ada!");
    // An edit: rebuilt, reloaded and called again.
    let (file, from, to) = edit;
    let path = project.join(file);
    let source = std::fs::read_to_string(&path).unwrap();
    assert!(source.contains(from), "{file} has no {from:?}");
    std::fs::write(&path, source.replace(from, to)).unwrap();
    wait_for("Howdy, Ada!");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn plugin_dev_rebuilds_reloads_and_calls_on_every_change() {
    dev_loop("rust", ("src/lib.rs", "Hello, {}!", "Howdy, {}!"));
}

#[test]
fn plugin_dev_rebuilds_a_python_plugin_on_every_change() {
    dev_loop("python", ("app.py", "Hello, {name}!", "Howdy, {name}!"));
}

#[test]
fn plugin_dev_rebuilds_a_javascript_plugin_on_every_change() {
    dev_loop("js", ("app.js", "Hello, ${name}!", "Howdy, ${name}!"));
}
