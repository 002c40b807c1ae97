//! Embeds the web UI (`ui/dist`, built by `scripts/build-ui.sh`) into the
//! daemon: generates `$OUT_DIR/ui_assets.rs` with every file's bytes and
//! content type. When `ui/dist` holds no `index.html` (the UI was not built),
//! the daemon serves a page that says how to build it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let dist = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR")).join("ui/dist");
    // `ui/dist` always exists (its .gitignore is committed): cargo scans it for changes.
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let built = files.iter().any(|(name, _)| name == "index.html");
    let mut out = String::from("/// Every file of the built UI: (path under `/ui/`, content type, bytes).\n");
    out.push_str("pub(crate) static ASSETS: &[(&str, &str, &[u8])] = &[\n");
    for (name, path) in files.iter().filter(|(name, _)| !name.starts_with('.')) {
        let Some(kind) = content_type(name) else { continue };
        writeln!(out, "    ({name:?}, {kind:?}, include_bytes!({:?})),", path.display().to_string()).unwrap();
    }
    out.push_str("];\n");
    writeln!(
        out,
        "/// Whether the UI was built (`ui/dist/index.html` existed).\npub(crate) const BUILT: bool = {built};"
    )
    .unwrap();
    let target = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("ui_assets.rs");
    std::fs::write(target, out).expect("write ui_assets.rs");
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(name) = path.strip_prefix(root) {
            files.push((name.to_string_lossy().replace('\\', "/"), path));
        }
    }
}

/// The content type of a built file; `None`: not served.
fn content_type(name: &str) -> Option<&'static str> {
    Some(match name.rsplit_once('.')?.1 {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}
