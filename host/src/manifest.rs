//! `plugin.toml`: the manifest every plugin folder carries.
//!
//! Read in two stages: [`RawManifest`] is the file as written (serde,
//! unknown fields rejected), [`Manifest`] the validated, resolved form.
//!
//! ```toml
//! id = "plexus.echo"              # unique plugin id; must match the plugin's metadata
//! version = "0.1.0"               # semver; must match the plugin's metadata
//! kind = "wasm"                   # "native" (cdylib) or "wasm" (component)
//! artifact = "plexus_echo.wasm"   # relative to the plugin folder
//! contract = "^0.1"               # contract versions the plugin accepts (optional)
//! sha256 = "9f86d0…"              # optional: checked before loading
//!
//! [config]                        # optional: handed to every call as `config`
//! greeting = "hi"
//!
//! [limits]                        # optional
//! timeout_ms = 30000              # per call; WASM is interrupted, native is asked to stop
//! memory_mib = 64                 # WASM only: linear memory limit
//! output_bytes = 65536            # WASM only: captured stdout/stderr per call
//!
//! [permissions]                   # WASM only; nothing is granted by default
//! dirs = [{ host = "data", guest = "/data", access = "read-only" }]  # host: relative to the folder or absolute
//! env = ["LANG"]                  # environment variables passed through by name
//! network = false                 # TCP, UDP and name lookups
//! ```

use crate::error::LoadErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The manifest's file name inside a plugin folder.
pub const MANIFEST_FILE: &str = "plugin.toml";

/// Default per-call timeout: 30 s.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Default WASM memory limit: 64 MiB.
pub const DEFAULT_MEMORY_MIB: u64 = 64;
/// Largest WASM memory limit a manifest may ask for: 4 GiB (the wasm32 address space).
pub const MAX_MEMORY_MIB: u64 = 4096;
/// Default bound on captured stdout/stderr per call: 64 KiB.
pub const DEFAULT_OUTPUT_BYTES: usize = 64 * 1024;

/// How a plugin is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// A cdylib built with `plexus-sdk`, loaded in-process through `abi_stable`.
    Native,
    /// A WebAssembly component targeting `plexus:plugin/plexus-plugin`.
    Wasm,
    /// A plugin compiled into the host itself (embedding, tests); never read from a manifest.
    #[serde(skip_deserializing)]
    InProcess,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::Native => "native",
            PluginKind::Wasm => "wasm",
            PluginKind::InProcess => "in-process",
        })
    }
}

/// `plugin.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    /// `id = "plexus.echo"`
    pub id: String,
    /// `version = "0.1.0"`
    pub version: String,
    /// `kind = "native" | "wasm"`
    pub kind: PluginKind,
    /// `artifact = "libplexus_echo.so"` (relative to the plugin folder)
    pub artifact: PathBuf,
    /// `contract = "^0.1"`
    #[serde(default)]
    pub contract: Option<String>,
    /// `sha256 = "<64 hex digits>"`
    #[serde(default)]
    pub sha256: Option<String>,
    /// `[config]`
    #[serde(default)]
    pub config: Option<toml::Table>,
    /// `[limits]`
    #[serde(default)]
    pub limits: RawLimits,
    /// `[permissions]`
    #[serde(default)]
    pub permissions: Option<RawPermissions>,
}

/// `[limits]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// `timeout_ms = 30000`
    pub timeout_ms: Option<u64>,
    /// `memory_mib = 64`
    pub memory_mib: Option<u64>,
    /// `output_bytes = 65536`
    pub output_bytes: Option<usize>,
}

/// `[permissions]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPermissions {
    /// `dirs = [{ host = "data", guest = "/data", access = "read-only" }]`
    #[serde(default)]
    pub dirs: Vec<RawDir>,
    /// `env = ["LANG"]`
    #[serde(default)]
    pub env: Vec<String>,
    /// `network = true`
    #[serde(default)]
    pub network: bool,
}

/// One granted directory as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDir {
    /// Host path, relative to the plugin folder or absolute.
    pub host: PathBuf,
    /// Path the component sees.
    pub guest: String,
    /// `"read-only"` (default) or `"read-write"`.
    #[serde(default)]
    pub access: DirAccess,
}

/// Access granted to a directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirAccess {
    /// Read files and list directories.
    #[default]
    ReadOnly,
    /// Also create, write and delete.
    ReadWrite,
}

/// Resource limits of a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// Per-call timeout.
    #[serde(serialize_with = "crate::workflow::duration::serialize_ms")]
    pub timeout: Duration,
    /// WASM linear-memory limit, in bytes.
    pub memory_bytes: u64,
    /// Bound on captured stdout + stderr per call, in bytes.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            memory_bytes: DEFAULT_MEMORY_MIB << 20,
            output_bytes: DEFAULT_OUTPUT_BYTES,
        }
    }
}

/// A directory granted to a WASM plugin.
#[derive(Debug, Clone, Serialize)]
pub struct DirGrant {
    /// Absolute host path.
    pub host: PathBuf,
    /// Path inside the component.
    pub guest: String,
    /// Read-only or read-write.
    pub access: DirAccess,
}

/// What a WASM plugin may touch outside its sandbox.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Permissions {
    /// Granted directories.
    pub dirs: Vec<DirGrant>,
    /// Environment variables passed through by name.
    pub env: Vec<String>,
    /// Whether TCP, UDP and name lookups are allowed.
    pub network: bool,
}

/// A validated `plugin.toml`.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// The plugin folder.
    pub dir: PathBuf,
    /// Plugin id.
    pub id: String,
    /// Plugin version.
    pub version: semver::Version,
    /// Native or WASM.
    pub kind: PluginKind,
    /// Absolute path of the artifact.
    pub artifact: PathBuf,
    /// Contract versions the plugin accepts, if stated.
    pub contract: Option<semver::VersionReq>,
    /// Expected sha256 of the artifact, lowercase hex.
    pub sha256: Option<String>,
    /// Configuration handed to every call.
    pub config: Value,
    /// Resource limits.
    pub limits: Limits,
    /// Sandbox grants (WASM only).
    pub permissions: Permissions,
}

impl Manifest {
    /// Read and validate `dir/plugin.toml`.
    ///
    /// # Errors
    /// [`LoadErrorKind::ReadManifest`] when the file cannot be read,
    /// [`LoadErrorKind::InvalidManifest`] for bad TOML, unknown fields or values.
    pub fn load(dir: &Path) -> Result<Self, LoadErrorKind> {
        Self::load_with(dir, &Limits::default())
    }

    /// [`Self::load`] with `defaults` for the limits the manifest leaves out
    /// (the daemon's `[defaults]`).
    pub fn load_with(dir: &Path, defaults: &Limits) -> Result<Self, LoadErrorKind> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| LoadErrorKind::ReadManifest(e.to_string()))?;
        Self::parse_with(dir, &text, defaults)
    }

    /// Validate manifest `text` of the plugin folder `dir`.
    pub fn parse(dir: &Path, text: &str) -> Result<Self, LoadErrorKind> {
        Self::parse_with(dir, text, &Limits::default())
    }

    /// [`Self::parse`] with default limits.
    pub fn parse_with(dir: &Path, text: &str, defaults: &Limits) -> Result<Self, LoadErrorKind> {
        let invalid = |m: String| LoadErrorKind::InvalidManifest(m);
        let raw: RawManifest = toml::from_str(text).map_err(|e| invalid(one_line(&e.to_string())))?;
        if raw.id.trim().is_empty() || raw.id.chars().any(char::is_whitespace) {
            return Err(invalid(format!("id `{}` must be non-empty and contain no spaces", raw.id)));
        }
        let version = semver::Version::parse(&raw.version)
            .map_err(|e| invalid(format!("version `{}` is not semver: {e}", raw.version)))?;
        let contract = raw
            .contract
            .as_deref()
            .map(|c| {
                semver::VersionReq::parse(c)
                    .map_err(|e| invalid(format!("contract `{c}` is not a semver requirement: {e}")))
            })
            .transpose()?;
        let sha256 = match raw.sha256 {
            Some(h) if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) => Some(h.to_ascii_lowercase()),
            Some(h) => return Err(invalid(format!("sha256 `{h}` is not 64 hex digits"))),
            None => None,
        };
        let config = match raw.config {
            Some(table) => serde_json::to_value(table).map_err(|e| invalid(format!("[config]: {e}")))?,
            None => Value::Null,
        };
        let memory_mib = raw.limits.memory_mib.unwrap_or(defaults.memory_bytes >> 20);
        if memory_mib == 0 || memory_mib > MAX_MEMORY_MIB {
            return Err(invalid(format!("limits.memory_mib must be 1..={MAX_MEMORY_MIB}, not {memory_mib}")));
        }
        if raw.limits.timeout_ms == Some(0) {
            return Err(invalid("limits.timeout_ms must be positive".into()));
        }
        let limits = Limits {
            timeout: raw.limits.timeout_ms.map_or(defaults.timeout, Duration::from_millis),
            memory_bytes: memory_mib << 20,
            output_bytes: raw.limits.output_bytes.unwrap_or(defaults.output_bytes),
        };
        if raw.kind == PluginKind::Native && (raw.permissions.is_some() || raw.limits.memory_mib.is_some()) {
            return Err(invalid(
                "[permissions] and limits.memory_mib apply to wasm plugins only: native plugins are trusted, in-process code".into(),
            ));
        }
        let permissions = match raw.permissions {
            None => Permissions::default(),
            Some(p) => Permissions {
                dirs: p
                    .dirs
                    .into_iter()
                    .map(|d| {
                        if !d.guest.starts_with('/') {
                            return Err(invalid(format!(
                                "permissions.dirs: guest path `{}` must be absolute",
                                d.guest
                            )));
                        }
                        Ok(DirGrant { host: dir.join(d.host), guest: d.guest, access: d.access })
                    })
                    .collect::<Result<_, _>>()?,
                env: p.env,
                network: p.network,
            },
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            id: raw.id,
            version,
            kind: raw.kind,
            artifact: dir.join(raw.artifact),
            contract,
            sha256,
            config,
            limits,
            permissions,
        })
    }
}

/// Collapse a multi-line message (toml's errors quote the source) into one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, LoadErrorKind> {
        Manifest::parse(Path::new("/plugins/p"), text)
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = parse("id = \"a.b\"\nversion = \"1.2.3\"\nkind = \"wasm\"\nartifact = \"a.wasm\"\n").unwrap();
        assert_eq!(m.artifact, Path::new("/plugins/p/a.wasm"));
        assert_eq!(m.limits.memory_bytes, 64 << 20);
        assert_eq!(m.limits.timeout, Duration::from_secs(30));
        assert!(m.permissions.dirs.is_empty() && !m.permissions.network);
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let err =
            parse("id = \"a\"\nversion = \"1.0.0\"\nkind = \"wasm\"\nartifact = \"a\"\ncolour = 1\n").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn bad_values_are_rejected() {
        let base = "id = \"a\"\nkind = \"wasm\"\nartifact = \"a\"\n";
        assert!(parse(&format!("{base}version = \"one\"\n")).unwrap_err().to_string().contains("semver"));
        let e = parse(&format!("{base}version = \"1.0.0\"\nsha256 = \"xyz\"\n")).unwrap_err();
        assert!(e.to_string().contains("64 hex"), "{e}");
        let e = parse(&format!("{base}version = \"1.0.0\"\n[limits]\nmemory_mib = 0\n")).unwrap_err();
        assert!(e.to_string().contains("memory_mib"), "{e}");
        let native =
            "id = \"a\"\nversion = \"1.0.0\"\nkind = \"native\"\nartifact = \"a.so\"\n[permissions]\nnetwork = true\n";
        assert!(parse(native).unwrap_err().to_string().contains("wasm plugins only"));
    }

    #[test]
    fn permissions_resolve_relative_to_the_folder() {
        let m = parse(
            "id = \"a\"\nversion = \"1.0.0\"\nkind = \"wasm\"\nartifact = \"a\"\n[permissions]\ndirs = [{ host = \"data\", guest = \"/data\" }]\nenv = [\"LANG\"]\n",
        )
        .unwrap();
        assert_eq!(m.permissions.dirs[0].host, Path::new("/plugins/p/data"));
        assert_eq!(m.permissions.dirs[0].access, DirAccess::ReadOnly);
        assert_eq!(m.permissions.env, ["LANG"]);
    }
}
