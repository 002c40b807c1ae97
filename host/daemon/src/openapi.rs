//! The API's OpenAPI 3.1 document, generated from the router
//! ([`super::api::routes`]: each handler's `#[utoipa::path]`) and the
//! `plexus-client` types it names (`utoipa::ToSchema`). Every operation but
//! health needs the bearer token, and every one can answer an error body
//! ([`plexus_client::DaemonError`]) with a 4xx or 5xx status. The same
//! document is committed as `host/daemon/openapi.json`; a test fails when
//! the two differ (regenerate with `plexus daemon openapi > host/daemon/openapi.json`)
//! and another calls every route of [`routes`].

use plexus_client::{DaemonError, ErrorCode};
use serde_json::Value;
use std::sync::OnceLock;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ResponseBuilder};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Plexus daemon API",
        description = "Plugins, workflows, executions and schedules of a running `plexus daemon`. \
            Errors carry a code from QtForge's list: InvalidConfiguration, NotFound, AlreadyExists, \
            InvalidState, PluginNotFound, DependencyNotSatisfied, Timeout (plus Unauthorized, Internal)."
    ),
    servers((url = "http://127.0.0.1:7070")),
    security(("bearer" = [])),
    components(schemas(DaemonError, ErrorCode)),
    tags(
        (name = "daemon", description = "Health, metrics, this document"),
        (name = "plugins", description = "Loaded plugins and hot reload"),
        (name = "workflows", description = "Registered workflows and their versions"),
        (name = "templates", description = "Workflow templates and the workflows created from them"),
        (name = "hooks", description = "Webhook triggers: signed deliveries (no API token) start a workflow"),
        (name = "secrets", description = "Secrets: set and deleted, never read back; `${{ secrets.NAME }}` in step parameters and plugin config"),
        (name = "executions", description = "Starting, watching, cancelling and retrying executions"),
        (name = "transactions", description = "Executions committed or rolled back together (QtForge's transactions)"),
        (name = "schedules", description = "Cron, interval and one-shot schedules with their fire history"),
    )
)]
struct ApiDoc;

/// The OpenAPI document (built once).
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let (public, protected) = super::api::routes();
        let mut doc = ApiDoc::openapi().merge_from(public.into_openapi()).merge_from(protected.into_openapi());
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        if let Some(components) = doc.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name("DaemonError"))).build(),
                )
                .build()
        };
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.delete].into_iter().flatten() {
                op.responses.responses.insert(
                    "4XX".into(),
                    error(
                        "Refused: 400 InvalidConfiguration (bad body, query or definition; details list each problem), \
                        401 Unauthorized, 404 NotFound/PluginNotFound, 409 AlreadyExists/InvalidState, \
                        413 body too large, 415 not JSON, 422 DependencyNotSatisfied",
                    )
                    .into(),
                );
                op.responses
                    .responses
                    .insert("5XX".into(), error("500 Internal (e.g. the state database), 504 Timeout").into());
            }
        }
        serde_json::to_value(&doc).unwrap_or_default()
    })
}

/// Every route of the document as `(method, path)`, e.g. `("GET", "/v1/health")`.
pub fn routes() -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(paths) = document()["paths"].as_object() {
        for (path, item) in paths {
            for method in ["get", "post", "put", "patch", "delete"] {
                if item.get(method).is_some() {
                    out.push((method.to_uppercase(), path.clone()));
                }
            }
        }
    }
    out
}
