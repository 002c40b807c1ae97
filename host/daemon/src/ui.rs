//! The web UI at `/ui/`: static files built from `host/daemon/ui` by
//! `scripts/build-ui.sh` and embedded into the binary at build time (no
//! CDN, no file read at run time: the page works offline). The files hold
//! no data; the page logs in (`POST /v1/session`) and reads the API like
//! any client.
//!
//! Every answer carries a strict content security policy (scripts, styles
//! and connections to this daemon only, no framing), `nosniff`, and
//! `no-referrer`.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// The policy every UI answer carries.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What `/ui/` answers when the daemon was built without the UI.
const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Plexus</title>\
    <h1>The web UI was not built into this daemon</h1>\
    <p>Run <code>bash scripts/build-ui.sh</code> (Node.js 20+ and npm), then build <code>plexus</code> again.</p></html>";

/// The UI's routes: `/` and `/ui` redirect to `/ui/`; `/ui/<file>` serves a built file.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(|| async { asset("index.html") }))
        .route("/ui/{*path}", get(|Path(path): Path<String>| async move { asset(&path) }))
}

/// The embedded file at `path` (under `/ui/`), with its headers; 404 when there is none.
fn asset(path: &str) -> Response {
    let found = ASSETS.iter().find(|(name, _, _)| *name == path);
    let mut response = match found {
        Some((_, kind, bytes)) => ([(header::CONTENT_TYPE, *kind)], *bytes).into_response(),
        None if path == "index.html" && !BUILT => {
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], NOT_BUILT).into_response()
        }
        None => {
            (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "not found").into_response()
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Small files: the browser asks again each time and always runs the daemon's own build.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_served_with_its_policy_and_unknown_files_are_not() {
        let index = asset("index.html");
        assert_eq!(index.status(), StatusCode::OK);
        assert_eq!(index.headers()[header::CONTENT_SECURITY_POLICY], POLICY);
        assert!(index.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        assert_eq!(asset("../Cargo.toml").status(), StatusCode::NOT_FOUND);
        assert_eq!(asset("nothing.js").status(), StatusCode::NOT_FOUND);
    }
}
