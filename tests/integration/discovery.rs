//! Discovery never fails fast: every bad input gives its own error, and the
//! good plugins in the same folder still load.

use crate::support::{Fixture, echo_artifact, echo_manifest};
use plexus_host::{CallOptions, LoadErrorKind};
use serde_json::json;

fn kind_of(host: &plexus_host::Host, folder: &str) -> LoadErrorKind {
    let errors: Vec<_> =
        host.load_errors().iter().filter(|e| e.path.to_string_lossy().contains(&format!("/{folder}"))).collect();
    assert_eq!(errors.len(), 1, "expected one error for {folder}, got {errors:?} (all: {:?})", host.load_errors());
    errors[0].kind.clone()
}

#[test]
fn every_bad_plugin_is_reported_and_the_good_ones_load() {
    let fx = Fixture::new();
    fx.echo("a-good-native", "native", "");
    fx.echo("a-good-wasm", "wasm", "");

    fx.folder("bad-toml", "id = \"x\"\nversion = ");
    fx.folder("bad-unknown-field", &echo_manifest("wasm", "colour = \"blue\"").replace("plexus.echo.wasm", "u.f"));
    std::fs::create_dir_all(fx.plugins.path().join("bad-no-manifest")).unwrap();
    fx.folder(
        "bad-missing-artifact",
        "id = \"m.a\"\nversion = \"0.1.0\"\nkind = \"wasm\"\nartifact = \"nothing.wasm\"\n",
    );
    fx.folder(
        "bad-hash",
        &echo_manifest("wasm", &format!("sha256 = \"{}\"", "0".repeat(64))).replace("plexus.echo.wasm", "h.m"),
    );
    // Same id as a-good-wasm, found later.
    fx.echo("z-duplicate", "wasm", "");
    fx.folder("bad-contract", &echo_manifest("native", "contract = \"^0.5\"").replace("plexus.echo.native", "c.c"));

    // A text file posing as a native library.
    let dir =
        fx.folder("bad-not-a-library", "id = \"n.l\"\nversion = \"0.1.0\"\nkind = \"native\"\nartifact = \"lib.so\"\n");
    std::fs::write(dir.join("lib.so"), "just text").unwrap();
    // A shared library that is not a Plexus plugin.
    let dir = fx.folder(
        "bad-not-a-plugin",
        "id = \"n.p\"\nversion = \"0.1.0\"\nkind = \"native\"\nartifact = \"libother.so\"\n",
    );
    let libc =
        ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib/aarch64-linux-gnu/libm.so.6"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("a system libm to use as a non-plugin library");
    std::fs::copy(libc, dir.join("libother.so")).unwrap();
    // The echo library with its ELF header saying aarch64 (or x86_64 on an aarch64 host).
    let dir = fx
        .folder("bad-wrong-arch", "id = \"w.a\"\nversion = \"0.1.0\"\nkind = \"native\"\nartifact = \"libecho.so\"\n");
    let mut elf = std::fs::read(echo_artifact("native")).unwrap();
    let other: u16 = if cfg!(target_arch = "aarch64") { 62 } else { 183 };
    elf[18..20].copy_from_slice(&other.to_le_bytes());
    std::fs::write(dir.join("libecho.so"), elf).unwrap();
    // A component cut in half.
    let dir =
        fx.folder("bad-truncated", "id = \"t.c\"\nversion = \"0.1.0\"\nkind = \"wasm\"\nartifact = \"half.wasm\"\n");
    let wasm = std::fs::read(echo_artifact("wasm")).unwrap();
    std::fs::write(dir.join("half.wasm"), &wasm[..wasm.len() / 2]).unwrap();
    // A core module, not a component.
    let dir =
        fx.folder("bad-core-module", "id = \"c.m\"\nversion = \"0.1.0\"\nkind = \"wasm\"\nartifact = \"core.wasm\"\n");
    std::fs::write(dir.join("core.wasm"), wat::parse_str("(module (func (export \"f\")))").unwrap()).unwrap();
    // A component that exports nothing of the plexus world.
    let dir = fx.folder(
        "bad-empty-component",
        "id = \"e.c\"\nversion = \"0.1.0\"\nkind = \"wasm\"\nartifact = \"empty.wasm\"\n",
    );
    std::fs::write(dir.join("empty.wasm"), wat::parse_str("(component)").unwrap()).unwrap();
    // A component that imports what the host does not provide.
    let dir = fx.folder(
        "bad-unknown-import",
        "id = \"u.i\"\nversion = \"0.1.0\"\nkind = \"wasm\"\nartifact = \"import.wasm\"\n",
    );
    std::fs::write(
        dir.join("import.wasm"),
        wat::parse_str("(component (import \"acme:secret/door\" (instance (export \"open\" (func)))))").unwrap(),
    )
    .unwrap();

    let host = fx.host();

    let loaded: Vec<&str> = host.plugins().map(|p| p.id()).collect();
    assert_eq!(loaded, ["plexus.echo.native", "plexus.echo.wasm"]);
    for id in loaded {
        assert_eq!(host.call(id, "echo", json!([1]), CallOptions::default()).unwrap().output, json!([1]));
    }

    assert!(matches!(kind_of(&host, "bad-toml"), LoadErrorKind::InvalidManifest(m) if m.contains("line")));
    assert!(matches!(kind_of(&host, "bad-unknown-field"), LoadErrorKind::InvalidManifest(m) if m.contains("colour")));
    assert!(matches!(kind_of(&host, "bad-no-manifest"), LoadErrorKind::ReadManifest(_)));
    assert!(
        matches!(kind_of(&host, "bad-missing-artifact"), LoadErrorKind::MissingArtifact(p) if p.ends_with("nothing.wasm"))
    );
    assert!(
        matches!(kind_of(&host, "bad-hash"), LoadErrorKind::HashMismatch { expected, .. } if expected == "0".repeat(64))
    );
    assert!(
        matches!(kind_of(&host, "z-duplicate"), LoadErrorKind::DuplicateId { id, first } if id == "plexus.echo.wasm" && first.ends_with("a-good-wasm"))
    );
    assert!(matches!(kind_of(&host, "bad-contract"), LoadErrorKind::IncompatibleContract(m) if m.contains("^0.5")));
    assert!(matches!(kind_of(&host, "bad-not-a-library"), LoadErrorKind::NotAPlugin(m) if m.contains("ELF")));
    assert!(matches!(kind_of(&host, "bad-not-a-plugin"), LoadErrorKind::NotAPlugin(m) if m.contains("root module")));
    assert!(matches!(kind_of(&host, "bad-wrong-arch"), LoadErrorKind::WrongArchitecture { .. }));
    assert!(matches!(kind_of(&host, "bad-truncated"), LoadErrorKind::InvalidComponent(_)));
    assert!(
        matches!(kind_of(&host, "bad-core-module"), LoadErrorKind::InvalidComponent(m) if m.contains("core module"))
    );
    assert!(matches!(kind_of(&host, "bad-empty-component"), LoadErrorKind::Instantiate(_)));
    assert!(
        matches!(kind_of(&host, "bad-unknown-import"), LoadErrorKind::Instantiate(m) if m.contains("acme:secret/door"))
    );
    assert_eq!(host.load_errors().len(), 14);

    // Every message names where the problem is, on one line.
    for error in host.load_errors() {
        let text = error.to_string();
        assert!(text.starts_with(fx.plugins.path().to_str().unwrap()), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}

#[test]
fn metadata_id_must_match_the_manifest() {
    let fx = Fixture::new();
    fx.folder("renamed", &echo_manifest("wasm", "").replace("id = \"plexus.echo.wasm\"", "id = \"someone.else\""));
    let host = fx.host();
    assert!(matches!(kind_of(&host, "renamed"), LoadErrorKind::MetadataMismatch { field, plugin, manifest }
        if field == "id" && plugin == "plexus.echo.wasm" && manifest == "someone.else"));

    let fx = Fixture::new();
    fx.folder("bumped", &echo_manifest("native", "").replace("version = \"0.1.0\"", "version = \"9.9.9\""));
    let host = fx.host();
    assert!(matches!(kind_of(&host, "bumped"), LoadErrorKind::MetadataMismatch { field, plugin, manifest }
        if field == "version" && plugin == "0.1.0" && manifest == "9.9.9"));
}

#[test]
fn a_missing_plugins_directory_is_an_error_not_a_crash() {
    let host = plexus_host::HostBuilder::new().plugin_dir("/definitely/not/here").no_cache().build().unwrap();
    assert_eq!(host.plugins().count(), 0);
    assert_eq!(host.load_errors().len(), 1);
    assert!(host.load_errors()[0].to_string().contains("/definitely/not/here"));
}

#[test]
fn a_granted_directory_must_exist_and_stay_clear_of_the_cache() {
    let fx = Fixture::new();
    fx.echo("echo-wasm", "wasm", "[permissions]\ndirs = [{ host = \"missing\", guest = \"/data\" }]\n");
    let host = fx.host();
    assert!(matches!(kind_of(&host, "echo-wasm"), LoadErrorKind::InvalidManifest(m) if m.contains("missing")));

    let fx = Fixture::new();
    let cache = fx.cache.path().display().to_string();
    fx.echo(
        "echo-wasm",
        "wasm",
        &format!("[permissions]\ndirs = [{{ host = \"{cache}\", guest = \"/c\", access = \"read-write\" }}]\n"),
    );
    let host = fx.host();
    assert!(matches!(kind_of(&host, "echo-wasm"), LoadErrorKind::InvalidManifest(m) if m.contains("component cache")));
}

#[test]
fn rescan_reloads_changes_only_and_resolves_a_duplicate_that_went_away() {
    let fx = Fixture::new();
    fx.echo("a", "wasm", "");
    fx.echo("b", "wasm", "");
    let host = fx.host();
    assert!(matches!(kind_of(&host, "b"), LoadErrorKind::DuplicateId { .. }));
    // Nothing changed: nothing reported, same error.
    let (same, changes) = host.rescan();
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(same.load_errors().len(), 1);
    // The first copy goes: the duplicate is loaded in its place.
    std::fs::remove_dir_all(fx.plugins.path().join("a")).unwrap();
    let (after, changes) = same.rescan();
    assert_eq!(changes, [plexus_host::Change::Reloaded { plugin: "plexus.echo.wasm".into() }]);
    assert!(after.load_errors().is_empty(), "{:?}", after.load_errors());
    let out = after.call("plexus.echo.wasm", "echo", json!({"x": 1}), CallOptions::default()).unwrap();
    assert_eq!(out.output, json!({"x": 1}));
    // A new folder scanned earlier with the same id: as after a fresh start,
    // the first in scan order serves and the other is the duplicate.
    fx.echo("0-first", "wasm", "");
    let (last, changes) = after.rescan();
    assert!(
        matches!(&changes[..], [plexus_host::Change::Reloaded { .. }, plexus_host::Change::Failed { error }] if error.contains("duplicate") || error.contains("already")),
        "{changes:?}"
    );
    assert_eq!(last.plugin("plexus.echo.wasm").unwrap().manifest.dir, fx.plugins.path().join("0-first"));
    assert!(matches!(kind_of(&last, "b"), LoadErrorKind::DuplicateId { .. }));
}
