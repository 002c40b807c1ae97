//! Shared fixtures: the built example plugins and throw-away plugin directories.

use plexus_host::{Host, HostBuilder};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The repository root.
pub fn repo_root() -> PathBuf {
    // This test binary belongs to the `plexus` package, in `host/cli/`.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root exists")
}

/// The example plugins, built once per test run into `target/test-plugins`
/// (or taken from `$PLEXUS_TEST_PLUGINS` when set).
pub fn built_plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("PLEXUS_TEST_PLUGINS") {
            return PathBuf::from(dir);
        }
        let out = repo_root().join("target").join("test-plugins");
        let status = std::process::Command::new("bash")
            .arg(repo_root().join("scripts/build-plugins.sh"))
            .arg(&out)
            .status()
            .expect("run scripts/build-plugins.sh");
        assert!(status.success(), "scripts/build-plugins.sh failed");
        out
    })
}

/// The hostile test plugin (`tests/plugins/hostile`) built as a WASM component
/// once per test run into `target/test-plugins-hostile`.
pub fn hostile_artifact() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| hostile_build().join("hostile-wasm").join("plexus_hostile.wasm"))
}

/// The hostile test plugin built as a native library (see [`hostile_artifact`]).
pub fn hostile_native_artifact() -> PathBuf {
    hostile_build().join("hostile-native").join("libplexus_hostile.so")
}

/// The legacy test plugin (`tests/plugins/legacy`): a native library of ABI
/// 0.1.0, contract 0.2, as an older plexus-sdk built it.
pub fn legacy_native_artifact() -> PathBuf {
    hostile_build().join("legacy-native").join("libplexus_legacy.so")
}

/// `target/test-plugins-hostile` (every plugin of `tests/plugins/`), built once per test run.
fn hostile_build() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = repo_root().join("target").join("test-plugins-hostile");
        let status = std::process::Command::new("bash")
            .arg(repo_root().join("scripts/build-plugins.sh"))
            .arg(&out)
            .arg("tests/plugins")
            .status()
            .expect("run scripts/build-plugins.sh");
        assert!(status.success(), "scripts/build-plugins.sh failed for tests/plugins");
        out
    })
}

/// The built artifact of the echo plugin of `kind` ("native" or "wasm").
pub fn echo_artifact(kind: &str) -> PathBuf {
    let file = if kind == "native" { "libplexus_echo.so" } else { "plexus_echo.wasm" };
    built_plugins().join(format!("echo-{kind}")).join(file)
}

/// A temporary plugins directory and component cache.
pub struct Fixture {
    pub plugins: tempfile::TempDir,
    pub cache: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        Self { plugins: tempfile::tempdir().unwrap(), cache: tempfile::tempdir().unwrap() }
    }

    /// A plugin folder `name` with `manifest` as its plugin.toml; returns its path.
    pub fn folder(&self, name: &str, manifest: &str) -> PathBuf {
        let dir = self.plugins.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("plugin.toml"), manifest).unwrap();
        dir
    }

    /// A folder for the built echo plugin of `kind`, with `extra` appended to its manifest.
    pub fn echo(&self, name: &str, kind: &str, extra: &str) -> PathBuf {
        self.folder(name, &echo_manifest(kind, extra))
    }

    /// A folder for the hostile plugin, with `extra` appended to its manifest.
    pub fn hostile(&self, name: &str, extra: &str) -> PathBuf {
        let manifest = format!(
            "id = \"plexus.hostile\"\nversion = \"0.1.0\"\nkind = \"wasm\"\nartifact = \"{}\"\n{extra}\n",
            hostile_artifact().display()
        );
        self.folder(name, &manifest)
    }

    /// A folder for the hostile plugin built natively, run in worker
    /// processes, with `extra` appended to its manifest.
    pub fn hostile_native(&self, name: &str, extra: &str) -> PathBuf {
        let manifest = format!(
            "id = \"plexus.hostile\"\nversion = \"0.1.0\"\nkind = \"native\"\nartifact = \"{}\"\n\
             isolation = \"process\"\n{extra}\n",
            hostile_native_artifact().display()
        );
        self.folder(name, &manifest)
    }

    /// Load the plugins directory.
    pub fn host(&self) -> Host {
        HostBuilder::new().plugin_dir(self.plugins.path()).cache_dir(self.cache.path()).build().expect("host builds")
    }
}

/// A manifest for the built echo plugin of `kind`, pointing at its artifact.
pub fn echo_manifest(kind: &str, extra: &str) -> String {
    format!(
        "id = \"plexus.echo.{kind}\"\nversion = \"0.1.0\"\nkind = \"{kind}\"\nartifact = \"{}\"\n{extra}\n",
        echo_artifact(kind).display()
    )
}

/// This checkout's Python or JavaScript plugin SDK (`"python"`, `"js"`), set
/// up once per test run by `scripts/setup-sdks.sh`; returns, for Python, the
/// virtualenv's interpreter (for JavaScript, `node`).
pub fn sdk(lang: &str) -> PathBuf {
    static PYTHON: OnceLock<()> = OnceLock::new();
    static JS: OnceLock<()> = OnceLock::new();
    let once = if lang == "python" { &PYTHON } else { &JS };
    once.get_or_init(|| {
        let status = std::process::Command::new("bash")
            .arg(repo_root().join("scripts/setup-sdks.sh"))
            .arg(lang)
            .status()
            .expect("run scripts/setup-sdks.sh");
        assert!(status.success(), "scripts/setup-sdks.sh {lang} failed");
    });
    if lang == "python" { repo_root().join("target/python-sdk/bin/python") } else { PathBuf::from("node") }
}

/// The compiled-component cache shared by the tests that run whole workflows
/// over [`built_plugins`] (`target/test-component-cache`): every `plexus run`
/// loads every plugin, and the Python and JavaScript components take seconds
/// each to compile, so they are compiled once per test run. The cache is safe
/// for concurrent use (entries are written to a temporary file and renamed).
pub fn component_cache() -> PathBuf {
    repo_root().join("target").join("test-component-cache")
}

/// `plexus ARGS` run in `dir` over the built example plugins, with the
/// tests' shared component cache (the Python and JavaScript components take
/// seconds each to compile: once per test run, not once per test), no
/// `RUST_LOG`, and `env`.
pub fn plexus_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(args)
        .arg("--plugins-dir")
        .arg(built_plugins())
        .env("PLEXUS_CACHE_DIR", component_cache())
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("run plexus")
}
