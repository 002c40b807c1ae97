//! `plexus plugin new|pack|install`: a plugin project from a template, its
//! built artifacts as plugin folders (manifest generated from the plugin's
//! own metadata, with the artifact's sha256) and a `.tar.gz` to hand to an
//! operator, and that archive (or a folder) checked and installed.

use crate::Global;
use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use plexus_host::PluginKind;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The language of a new plugin project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// A Rust crate on `plexus-sdk`, built as both kinds.
    Rust,
    /// A Python component on the `plexus-plugin-sdk` Python package
    /// (componentize-py): WASM only.
    Python,
    /// A JavaScript component on the `plexus-plugin-sdk` npm package
    /// (componentize-js): WASM only.
    Js,
}

impl Lang {
    fn name(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }
}

/// What the plugin project in `project` is written in: a `Cargo.toml` is
/// Rust, a `pyproject.toml` with a `[tool.plexus]` table Python, a
/// `package.json` with a `plexus` key JavaScript.
///
/// # Errors
/// None of those, naming what was looked for.
pub fn project_lang(project: &Path) -> anyhow::Result<Lang> {
    if project.join("Cargo.toml").is_file() {
        return Ok(Lang::Rust);
    }
    let pyproject = project.join("pyproject.toml");
    if let Ok(text) = std::fs::read_to_string(&pyproject) {
        let doc: toml::Table = toml::from_str(&text).with_context(|| format!("{} is not TOML", pyproject.display()))?;
        if doc.get("tool").and_then(|t| t.get("plexus")).is_some() {
            return Ok(Lang::Python);
        }
    }
    let package = project.join("package.json");
    if let Ok(text) = std::fs::read_to_string(&package) {
        let doc: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", package.display()))?;
        if doc.get("plexus").is_some() {
            return Ok(Lang::Js);
        }
    }
    bail!(
        "{} is not a plugin project: no Cargo.toml (Rust), pyproject.toml with [tool.plexus] (Python) \
         or package.json with a \"plexus\" key (JavaScript); `plexus plugin new` makes one",
        project.display()
    )
}

#[derive(Args)]
pub struct NewArgs {
    /// The project's name: letters, digits, `-`, `_` (the Cargo, Python or
    /// npm package name; lowercase for JavaScript).
    name: String,
    /// The plugin's language.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// The plugin id (default: `example.<name>`).
    #[arg(long)]
    id: Option<String>,
    /// Where to create the project folder (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// The SDK dependency: a path to the SDK (the crate `plugin-sdk/`, the
    /// Python package `plugin-sdk/python`, the npm package `plugin-sdk/js`), or
    /// a published version (default: this checkout's SDK if plexus was built
    /// from one, else the published 0.1 crate / 0.2.0 packages).
    #[arg(long, value_name = "PATH|VERSION")]
    sdk: Option<String>,
}

/// Which kinds `pack` builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PackKinds {
    /// The native library and the WASM component.
    Both,
    /// The native library only.
    Native,
    /// The WASM component only.
    Wasm,
}

#[derive(Args)]
pub struct PackArgs {
    /// The plugin's project: Rust, Python or JavaScript (default: the current directory).
    #[arg(default_value = ".")]
    project: PathBuf,
    /// Which kinds to build (default: both for Rust; Python and JavaScript
    /// plugins are WASM components only).
    #[arg(long, value_enum)]
    kind: Option<PackKinds>,
    /// Where to write the plugin folders and the archive (default: PROJECT/target/plexus).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Rust: build in the dev profile (faster to build, slower to run) instead of release.
    #[arg(long)]
    debug: bool,
    /// Print JSON: {"folders": [...], "archive": ..., "id", "version"}.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct InstallArgs {
    /// A `.tar.gz` made by `plexus plugin pack`, or a plugin folder.
    source: PathBuf,
    /// Replace plugin folders of the same name that are already installed.
    #[arg(long)]
    force: bool,
}

/// The SDK dependency `plexus plugin new` writes for `lang` (Cargo.toml's
/// `plexus-sdk = …`, `{{sdk}}` in the Python and JavaScript templates):
/// `--sdk VERSION`; else a path (`--sdk PATH`, else this checkout's SDK when
/// it still exists); else the published version.
fn sdk_dependency(lang: Lang, sdk: Option<&str>) -> String {
    let (folder, manifest) = match lang {
        Lang::Rust => ("", "Cargo.toml"),
        Lang::Python => ("python", "pyproject.toml"),
        Lang::Js => ("js", "package.json"),
    };
    let version = |v: &str| match lang {
        Lang::Rust => format!("\"{v}\""),
        Lang::Python => format!("plexus-plugin-sdk=={v}"),
        Lang::Js => v.to_owned(),
    };
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugin-sdk").join(folder);
    let path = match sdk {
        Some(v) if v.chars().next().is_some_and(|c| c.is_ascii_digit()) => return version(v),
        Some(path) => absolute(Path::new(path)),
        None if checkout.join(manifest).is_file() => absolute(&checkout),
        None => return version(if lang == Lang::Rust { "0.1" } else { "0.4.0" }),
    };
    match lang {
        Lang::Rust => format!("{{ path = {:?} }}", path.display().to_string()),
        Lang::Python => format!("plexus-plugin-sdk @ file://{}", path.display()),
        Lang::Js => format!("file:{}", path.display()),
    }
}

/// The Python project template (`host/cli/templates/python/`): path, text
/// (`gitignore` is stored without its dot, so it does not apply to this repository).
const PYTHON_TEMPLATE: &[(&str, &str)] = &[
    ("pyproject.toml", include_str!("../templates/python/pyproject.toml")),
    ("requirements.txt", include_str!("../templates/python/requirements.txt")),
    ("app.py", include_str!("../templates/python/app.py")),
    ("test_app.py", include_str!("../templates/python/test_app.py")),
    ("README.md", include_str!("../templates/python/README.md")),
    (".gitignore", include_str!("../templates/python/gitignore")),
];

/// The JavaScript project template (`host/cli/templates/js/`): path, text (as for Python).
const JS_TEMPLATE: &[(&str, &str)] = &[
    ("package.json", include_str!("../templates/js/package.json")),
    ("app.js", include_str!("../templates/js/app.js")),
    ("test/app.test.js", include_str!("../templates/js/test/app.test.js")),
    ("README.md", include_str!("../templates/js/README.md")),
    (".gitignore", include_str!("../templates/js/gitignore")),
];

fn absolute(path: &Path) -> PathBuf {
    path.canonicalize().or_else(|_| std::path::absolute(path)).unwrap_or_else(|_| path.to_owned())
}

const LIB_RS: &str = r#"//! {{name}}: a Plexus plugin. Build it with `plexus plugin pack` (both kinds),
//! try it with `plexus call --artifact <artifact> greet --params '{"name": "Ada"}'`.

use plexus_sdk::prelude::*;

#[derive(Default)]
pub struct Plugin_;

/// Parameters of `greet`.
#[derive(Deserialize, JsonSchema)]
pub struct Greet {
    /// Who to greet.
    pub name: String,
}

impl Plugin for Plugin_ {
    fn info() -> PluginInfo {
        // Name, version, description, authors and licence come from Cargo.toml.
        plugin_info!("{{id}}").capabilities([capability::WORKFLOW_STEP])
    }

    fn operations(ops: &mut Operations<Self>) {
        ops.add("greet", "Greets `name`", Self::greet)
            .example("greets Ada", json!({"name": "Ada"}), json!("Hello, Ada!"))
            .example_error("refuses an empty name", json!({"name": ""}), ErrorKind::InvalidInput);
    }
}

impl Plugin_ {
    fn greet(&self, ctx: &mut Context<'_>, p: Greet) -> Result<String, PluginError> {
        if p.name.is_empty() {
            return Err(PluginError::invalid_input("`name` is empty"));
        }
        ctx.info(format!("greeting {}", p.name));
        Ok(format!("Hello, {}!", p.name))
    }
}

export_plugin!(Plugin_);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_hold() {
        let host = plexus_sdk::testing::TestHost::<Plugin_>::new();
        assert_eq!(host.check_examples(), Ok(2));
    }
}
"#;

/// The type name for package `name`: `my-plugin` → `MyPlugin`.
fn type_name(name: &str) -> String {
    let camel: String = name
        .split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    let camel = if camel.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) { camel } else { format!("P{camel}") };
    // Never a name the prelude takes (`Plugin`, `Context`, …).
    if camel.ends_with("Plugin") && camel != "Plugin" { camel } else { format!("{camel}Plugin") }
}

/// `plexus plugin new`.
pub fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    let name = &args.name;
    if name.is_empty()
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        bail!("`{name}` is not a package name: letters, digits, `-` and `_`, not starting with a digit");
    }
    let id = args.id.clone().unwrap_or_else(|| format!("example.{}", name.replace('_', "-")));
    if id.trim().is_empty() || id.chars().any(char::is_whitespace) || id.contains('"') {
        bail!("--id `{id}`: a plugin id has no spaces or quotes, e.g. com.example.greeter");
    }
    if args.lang == Lang::Js && name.chars().any(|c| c.is_ascii_uppercase()) {
        bail!("`{name}` is not an npm package name: use lowercase letters");
    }
    let project = args.dir.join(name);
    if project.exists() {
        bail!("{} exists already: choose another name or --dir", project.display());
    }
    if args.lang != Lang::Rust {
        let template = if args.lang == Lang::Python { PYTHON_TEMPLATE } else { JS_TEMPLATE };
        let sdk = sdk_dependency(args.lang, args.sdk.as_deref());
        for (file, text) in template {
            let path = project.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let text = text.replace("{{name}}", name).replace("{{id}}", &id).replace("{{sdk}}", &sdk);
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        }
        let next = if args.lang == Lang::Python {
            "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/pytest && plexus plugin pack"
        } else {
            "npm install && npm test && plexus plugin pack"
        };
        outln!("created {} (plugin `{id}`, {}); next: cd {0} && {next}", project.display(), args.lang.name());
        return Ok(ExitCode::SUCCESS);
    }
    let sdk = sdk_dependency(Lang::Rust, args.sdk.as_deref());
    let cargo_toml = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\
         description = \"A Plexus plugin\"\nlicense = \"Apache-2.0\"\n\n\
         [lib]\n# cdylib: the plugin (native library or WASM component); rlib: its tests.\n\
         crate-type = [\"cdylib\", \"rlib\"]\n\n[dependencies]\nplexus-sdk = {sdk}\n\
         schemars = \"1\"\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n\
         # A project of its own, even inside another workspace.\n[workspace]\n"
    );
    let lib = LIB_RS.replace("{{name}}", name).replace("{{id}}", &id).replace("Plugin_", &type_name(name));
    let readme = format!(
        "# {name}\n\nA Plexus plugin (id `{id}`).\n\n```sh\ncargo test                      # the operations' examples\n\
         plexus plugin pack              # target/plexus/: a folder per kind and a .tar.gz\n\
         plexus plugin install target/plexus/{id}-0.1.0.tar.gz\nplexus call {id} greet --params '{{\"name\": \"Ada\"}}'\n```\n"
    );
    std::fs::create_dir_all(project.join("src")).with_context(|| format!("cannot create {}", project.display()))?;
    for (file, text) in [
        ("Cargo.toml", cargo_toml.as_str()),
        ("src/lib.rs", lib.as_str()),
        ("README.md", readme.as_str()),
        (".gitignore", "/target\n"),
    ] {
        let path = project.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    outln!("created {} (plugin `{id}`, Rust); next: cd {0} && cargo test && plexus plugin pack", project.display());
    Ok(ExitCode::SUCCESS)
}

/// The cdylib `cargo build` made in `project` (extra args: target, profile).
fn build(project: &Path, extra: &[&str]) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(project)
        .args(["build", "--message-format=json-render-diagnostics"])
        .args(extra)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", PathBuf::from(&cargo).display()))?;
    if !out.status.success() {
        bail!("cargo build {} failed in {}", extra.join(" "), project.display());
    }
    let mut found = None;
    for line in out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
        let is_cdylib = msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if msg["reason"] == "compiler-artifact" && is_cdylib {
            let files = msg["filenames"].as_array().cloned().unwrap_or_default();
            found = files
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| [".so", ".dylib", ".dll", ".wasm"].iter().any(|ext| f.ends_with(ext)))
                .map(PathBuf::from);
        }
    }
    found.with_context(|| {
        format!("cargo build {} made no cdylib in {}: is crate-type cdylib?", extra.join(" "), project.display())
    })
}

/// The Python interpreter that builds `project`: its `.venv`, else
/// `$PLEXUS_PYTHON`, else `python3`.
fn python_for(project: &Path) -> std::ffi::OsString {
    let venv = project.join(".venv/bin/python");
    if venv.is_file() {
        return venv.into_os_string();
    }
    std::env::var_os("PLEXUS_PYTHON").unwrap_or_else(|| "python3".into())
}

/// Build the Python or JavaScript component of `project` into `dir` with its
/// SDK's build command (`python -m plexus_sdk build`, `npx plexus-plugin-sdk
/// build`), which runs the pinned componentize-py or componentize-js; the
/// tool's output goes to stderr.
fn build_component(lang: Lang, project: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let stem: String = project
        .file_name()
        .map(|n| n.to_string_lossy().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect())
        .unwrap_or_else(|| "plugin".into());
    let artifact = dir.join(format!("{stem}.wasm"));
    let (mut command, what, hint) = if lang == Lang::Python {
        let python = python_for(project);
        let mut command = Command::new(&python);
        command.args(["-m", "plexus_sdk", "build"]).arg(project);
        let hint = format!(
            "is the SDK installed for {}? In the project: python3 -m venv .venv && .venv/bin/pip install -r requirements.txt \
             (or set PLEXUS_PYTHON to a Python that has plexus-plugin-sdk)",
            PathBuf::from(&python).display()
        );
        (command, "python -m plexus_sdk build", hint)
    } else {
        if !project.join("node_modules").is_dir() {
            bail!("{} has no node_modules: run `npm install` there first", project.display());
        }
        let mut command = Command::new("npx");
        command.args(["--no-install", "plexus-plugin-sdk", "build", "."]);
        (command, "npx plexus-plugin-sdk build", "is plexus-plugin-sdk in the project's dependencies?".to_owned())
    };
    let status = command
        .arg("--out")
        .arg(&artifact)
        .current_dir(project)
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("cannot run {what} ({hint})"))?;
    if !status.success() || !artifact.is_file() {
        bail!("{what} failed in {} ({status}); {hint}", project.display());
    }
    Ok(artifact)
}

fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(plexus_host::wasm::cache::hex(&Sha256::digest(&bytes)))
}

#[derive(Serialize)]
struct Packed {
    id: String,
    version: String,
    folders: Vec<String>,
    archive: String,
}

/// `plexus plugin pack`.
pub fn pack(global: &Global, args: PackArgs) -> anyhow::Result<ExitCode> {
    let project = absolute(&args.project);
    let lang = project_lang(&project)?;
    let out = args.out.clone().unwrap_or_else(|| project.join("target").join("plexus"));
    let kinds: &[PluginKind] = match (lang, args.kind) {
        (Lang::Rust, None | Some(PackKinds::Both)) => &[PluginKind::Native, PluginKind::Wasm],
        (_, None | Some(PackKinds::Wasm)) => &[PluginKind::Wasm],
        (Lang::Rust, Some(PackKinds::Native)) => &[PluginKind::Native],
        (_, Some(kind)) => bail!(
            "--kind {}: a {} plugin is a WASM component only",
            if kind == PackKinds::Both { "both" } else { "native" },
            lang.name()
        ),
    };
    let scratch = tempfile::tempdir()?;
    let mut identity: Option<(String, String)> = None;
    let mut folders = Vec::new();
    for &kind in kinds {
        errln!("building the {kind} plugin ({})…", lang.name());
        let artifact = artifact_of(lang, &project, kind, !args.debug, scratch.path())?;
        // The plugin names itself: load the artifact alone and read its metadata.
        let host = crate::plugins::load_one(global, &artifact)?;
        let Some(plugin) = host.plugins().next() else {
            let errors: Vec<String> = host.load_errors().iter().map(ToString::to_string).collect();
            bail!("the built {kind} plugin does not load: {}", errors.join("; "));
        };
        let meta = plugin.runtime.metadata().clone();
        if let Some((id, version)) = &identity
            && (id != &meta.id || version != &meta.version)
        {
            bail!("the native and WASM builds disagree: {id} {version} vs {} {}", meta.id, meta.version);
        }
        identity = Some((meta.id.clone(), meta.version.clone()));
        let folder = out.join(format!("{}-{kind}", meta.id));
        if folder.exists() {
            std::fs::remove_dir_all(&folder).with_context(|| format!("cannot replace {}", folder.display()))?;
        }
        std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
        let file_name = artifact.file_name().context("the artifact has a file name")?.to_string_lossy().into_owned();
        std::fs::copy(&artifact, folder.join(&file_name))
            .with_context(|| format!("cannot copy {} into {}", artifact.display(), folder.display()))?;
        let contract = semver::Version::parse(&meta.contract_version)
            .map(|v| format!("^{}.{}", v.major, v.minor))
            .unwrap_or_else(|_| meta.contract_version.clone());
        let manifest = format!(
            "# Written by `plexus plugin pack` from the plugin's own metadata.\n\
             id = \"{}\"\nversion = \"{}\"\nkind = \"{kind}\"\nartifact = \"{file_name}\"\ncontract = \"{contract}\"\n\
             sha256 = \"{}\"\n\n# [config], [limits] and (wasm) [permissions]: see the Plexus README, `plugin.toml`.\n",
            meta.id,
            meta.version,
            sha256_of(&folder.join(&file_name))?
        );
        std::fs::write(folder.join(plexus_host::manifest::MANIFEST_FILE), manifest)?;
        folders.push(folder);
    }
    let (id, version) = identity.context("nothing was built")?;
    let archive = out.join(format!("{id}-{version}.tar.gz"));
    let file = std::fs::File::create(&archive).with_context(|| format!("cannot write {}", archive.display()))?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    for folder in &folders {
        let name = folder.file_name().context("a folder name")?;
        tar.append_dir_all(name, folder).with_context(|| format!("cannot archive {}", folder.display()))?;
    }
    tar.into_inner()?.finish()?;
    let packed = Packed {
        id,
        version,
        folders: folders.iter().map(|f| f.display().to_string()).collect(),
        archive: archive.display().to_string(),
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&packed)?);
    } else {
        for folder in &packed.folders {
            outln!("plugin folder  {folder}");
        }
        outln!("archive        {}", packed.archive);
        outln!("install it with: plexus plugin install {}", packed.archive);
    }
    Ok(ExitCode::SUCCESS)
}

/// Build `project`'s artifact of `kind`: cargo for Rust (`release` or the
/// dev profile), the SDK's build command for Python and JavaScript (into `scratch`).
fn artifact_of(lang: Lang, project: &Path, kind: PluginKind, release: bool, scratch: &Path) -> anyhow::Result<PathBuf> {
    if lang != Lang::Rust {
        return build_component(lang, project, scratch);
    }
    let mut extra = Vec::new();
    if release {
        extra.push("--release");
    }
    if kind == PluginKind::Wasm {
        extra.extend(["--target", "wasm32-wasip2"]);
    }
    build(project, &extra)
}

#[derive(Args)]
pub struct DevArgs {
    /// The plugin's project: Rust, Python or JavaScript (default: the current directory).
    #[arg(default_value = ".")]
    project: PathBuf,
    /// Which kind to build and load (WASM is reloaded in place; each native
    /// build is loaded from a copy and stays mapped until `dev` exits).
    /// Python and JavaScript plugins are WASM only.
    #[arg(long, value_parser = crate::call::parse_kind, default_value = "wasm")]
    kind: PluginKind,
    /// After each build, call this operation and print its output.
    #[arg(long, value_name = "OPERATION")]
    call: Option<String>,
    /// The parameters of --call (JSON).
    #[arg(long, default_value = "null")]
    params: String,
    /// Rust: build in release mode (default: the dev profile, faster to build).
    #[arg(long)]
    release: bool,
}

/// `plexus plugin dev`: build, load, (call,) then again on every change of
/// the project's sources, as `spin watch` does; Ctrl-C ends it.
pub fn dev(global: &Global, args: DevArgs) -> anyhow::Result<ExitCode> {
    use notify::{RecursiveMode, Watcher};
    let project = absolute(&args.project);
    let lang = project_lang(&project)?;
    if lang != Lang::Rust && args.kind != PluginKind::Wasm {
        bail!("--kind {}: a {} plugin is a WASM component only", args.kind, lang.name());
    }
    let params: serde_json::Value = serde_json::from_str(&args.params).context("--params is not valid JSON")?;
    let (tx, changes) = std::sync::mpsc::channel();
    let root = project.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
            && event.paths.iter().any(|p| !generated(&root, p))
        {
            let _ = tx.send(());
        }
    })?;
    // Rust: the sources; Python and JavaScript: the whole project but for
    // what tools generate there (`generated`).
    let watched: &[&str] = if lang == Lang::Rust { &["src", "Cargo.toml", "wit", "build.rs"] } else { &["."] };
    for path in watched {
        let path = project.join(path);
        if path.exists() {
            watcher
                .watch(&path, RecursiveMode::Recursive)
                .with_context(|| format!("cannot watch {}", path.display()))?;
        }
    }
    let scratch = tempfile::tempdir()?;
    // Native libraries are never unloaded, and loading the same path again
    // returns the first library: each native build is loaded from its own copy.
    let copies = tempfile::tempdir()?;
    let mut round = 0u32;
    loop {
        round += 1;
        errln!("[dev] building ({})…", args.kind);
        match artifact_of(lang, &project, args.kind, args.release, scratch.path()) {
            Err(e) => errln!("[dev] {e:#}; waiting for a change"),
            Ok(mut artifact) => {
                if args.kind == PluginKind::Native {
                    let copy = copies
                        .path()
                        .join(format!("{round}-{}", artifact.file_name().unwrap_or_default().to_string_lossy()));
                    std::fs::copy(&artifact, &copy)?;
                    artifact = copy;
                }
                let host = crate::plugins::load_one(global, &artifact)?;
                for error in host.load_errors() {
                    errln!("[dev] does not load: {error}");
                }
                if let Some(plugin) = host.plugins().next() {
                    let meta = plugin.runtime.metadata();
                    let ops: Vec<&str> = meta.operations.iter().map(|o| o.name.as_str()).collect();
                    outln!("[dev] loaded {} {} ({}): {}", meta.id, meta.version, plugin.manifest.kind, ops.join(", "));
                    if let Some(operation) = &args.call {
                        let id = meta.id.clone();
                        match host.call(&id, operation, params.clone(), plexus_host::CallOptions::default()) {
                            Ok(out) => outln!("{}", serde_json::to_string_pretty(&out.output)?),
                            Err(e) => outln!("[dev] {operation}: {e}"),
                        }
                    }
                }
            }
        }
        errln!("[dev] watching {} (Ctrl-C to stop)", project.display());
        changes.recv().context("the file watcher stopped")?;
        // Let an editor's burst of writes settle, then build once for all of it.
        std::thread::sleep(std::time::Duration::from_millis(300));
        while changes.try_recv().is_ok() {}
    }
}

/// Whether `path` (below `project`) is something tools write, not a source:
/// `target/`, `node_modules/`, `.venv/`, `__pycache__/`, `.git/` and the like.
fn generated(project: &Path, path: &Path) -> bool {
    const GENERATED: [&str; 8] =
        ["target", "node_modules", ".venv", "venv", "__pycache__", ".git", ".pytest_cache", "build"];
    path.strip_prefix(project).unwrap_or(path).components().any(|c| {
        let name = c.as_os_str().to_string_lossy();
        GENERATED.contains(&name.as_ref()) || name.ends_with(".egg-info")
    })
}

/// The most bytes `install` unpacks from one archive: 1 GiB.
const MAX_UNPACKED_BYTES: u64 = 1 << 30;

/// Unpack `archive` into `into`, refusing links, absolute paths and `..`
/// (a hostile archive writes nowhere else) and more than [`MAX_UNPACKED_BYTES`].
fn unpack(archive: &Path, into: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut total = 0u64;
    for entry in tar.entries().with_context(|| format!("{} is not a .tar.gz", archive.display()))? {
        let mut entry = entry.with_context(|| format!("{} is damaged", archive.display()))?;
        let path = entry.path()?.into_owned();
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir())
            || path.is_absolute()
            || path.components().any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            bail!(
                "{}: refusing entry `{}` (only plain files and folders below the archive's root)",
                archive.display(),
                path.display()
            );
        }
        total = total.saturating_add(entry.header().size().unwrap_or(0));
        if total > MAX_UNPACKED_BYTES {
            bail!("{}: more than {} MiB unpacked", archive.display(), MAX_UNPACKED_BYTES >> 20);
        }
        entry.unpack_in(into).with_context(|| format!("cannot unpack `{}`", path.display()))?;
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// `plexus plugin install`: every plugin folder of the archive (or the one
/// folder) is checked first — it must load — and then copied into the first
/// plugins directory; nothing is installed if any fails.
pub fn install(global: &Global, args: InstallArgs) -> anyhow::Result<ExitCode> {
    let staging = tempfile::tempdir()?;
    let folders: Vec<PathBuf> = if args.source.is_dir() {
        vec![args.source.clone()]
    } else {
        unpack(&args.source, staging.path())?;
        let mut found: Vec<PathBuf> = std::fs::read_dir(staging.path())?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        found.sort();
        found
    };
    if folders.is_empty() {
        bail!("{} holds no plugin folder", args.source.display());
    }
    let mut problems = Vec::new();
    for folder in &folders {
        let host = crate::plugins::load_one(global, folder)?;
        problems.extend(host.load_errors().iter().map(|e| e.to_string()));
        if host.plugins().next().is_none() && host.load_errors().is_empty() {
            problems.push(format!("{}: no plugin loaded", folder.display()));
        }
    }
    if !problems.is_empty() {
        for problem in &problems {
            errln!("error: {problem}");
        }
        errln!("nothing was installed");
        return Ok(ExitCode::from(crate::exit::LOAD_FAILED));
    }
    let dir = crate::plugin_dirs(global).into_iter().next().context("no plugins directory")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for folder in &folders {
        let name = folder.file_name().context("a folder name")?;
        let target = dir.join(name);
        if target.exists() {
            if !args.force {
                bail!("{} is installed already (--force replaces it)", target.display());
            }
            std::fs::remove_dir_all(&target).with_context(|| format!("cannot replace {}", target.display()))?;
        }
        copy_dir(folder, &target).with_context(|| format!("cannot install into {}", target.display()))?;
        outln!("installed {}", target.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_become_type_names() {
        assert_eq!(type_name("my-plugin"), "MyPlugin");
        assert_eq!(type_name("csv_tools"), "CsvToolsPlugin");
        assert_eq!(type_name("plugin"), "PluginPlugin");
        assert_eq!(type_name("context"), "ContextPlugin");
    }

    #[test]
    fn an_archive_cannot_write_outside_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("evil.tar.gz");
        let file = std::fs::File::create(&archive).unwrap();
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
        let mut header = tar::Header::new_gnu();
        let data = b"pwned";
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        // `set_path` refuses `..`; write the name into the header as an attacker would.
        header.as_old_mut().name[..13].copy_from_slice(b"../escaped.sh");
        header.set_cksum();
        tar.append(&header, &data[..]).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
        let into = dir.path().join("into");
        std::fs::create_dir_all(&into).unwrap();
        let err = unpack(&archive, &into).unwrap_err().to_string();
        assert!(err.contains("refusing entry `../escaped.sh`"), "{err}");
        assert!(!dir.path().join("escaped.sh").exists());
    }
}
