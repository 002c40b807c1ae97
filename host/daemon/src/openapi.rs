//! The API's OpenAPI 3.1 document, generated from [`ROUTES`] and the
//! request types' JSON Schemas (schemars). The same document is committed
//! as `host/daemon/openapi.json`; a test fails when the two differ (regenerate with
//! `plexus daemon openapi > host/daemon/openapi.json`) and another calls every route.

use serde_json::{Map, Value, json};

/// One route of the API.
pub struct Route {
    /// `get`, `post`, `delete`.
    pub method: &'static str,
    /// Path with `{id}` parameters.
    pub path: &'static str,
    /// One line.
    pub summary: &'static str,
    /// The request body's schema name (see [`document`]), if any.
    pub body: Option<&'static str>,
    /// Query parameters.
    pub query: &'static [&'static str],
    /// The success status.
    pub ok: u16,
}

const fn r(method: &'static str, path: &'static str, summary: &'static str, ok: u16) -> Route {
    Route { method, path, summary, body: None, query: &[], ok }
}

/// Every route the router serves.
pub const ROUTES: &[Route] = &[
    r("get", "/v1/health", "Liveness, version and plugin counts (no token needed)", 200),
    r("get", "/metrics", "Prometheus metrics (text exposition format)", 200),
    r("get", "/v1/openapi.json", "This document", 200),
    r("get", "/v1/plugins", "Loaded plugins, load errors and unavailable native plugins", 200),
    r("post", "/v1/plugins/reload", "Rescan the plugin directories now; returns the changes", 200),
    r("get", "/v1/plugins/{id}", "One plugin: metadata, operations with schemas, limits, permissions", 200),
    r("get", "/v1/workflows", "The current version of every workflow", 200),
    Route {
        body: Some("WorkflowSource"),
        ..r("post", "/v1/workflows", "Register a workflow (a new version if the id exists)", 201)
    },
    Route {
        body: Some("WorkflowSource"),
        ..r("post", "/v1/workflows/validate", "Validate a workflow against the loaded plugins", 200)
    },
    Route {
        query: &["version"],
        ..r("get", "/v1/workflows/{id}", "A workflow's source (current version, or ?version=N)", 200)
    },
    r("delete", "/v1/workflows/{id}", "Delete a workflow (executions pinned to it go on)", 204),
    Route {
        query: &["workflow", "status", "schedule", "limit"],
        ..r("get", "/v1/executions", "Executions, newest first, filtered", 200)
    },
    Route {
        body: Some("StartExecution"),
        ..r("post", "/v1/executions", "Start an execution of a workflow's current version", 202)
    },
    Route {
        query: &["wait_ms"],
        ..r(
            "get",
            "/v1/executions/{id}",
            "Status with progress, steps, outputs; ?wait_ms=N waits for the end (504 Timeout)",
            200,
        )
    },
    r("get", "/v1/executions/{id}/steps", "Per-step results and compensations", 200),
    Route {
        query: &["after", "limit"],
        ..r("get", "/v1/executions/{id}/logs", "The execution's log (every transition) after event ?after", 200)
    },
    r("post", "/v1/executions/{id}/cancel", "Cancel: running steps stop, completed ones are compensated", 202),
    r("post", "/v1/executions/{id}/retry", "Run a failed execution again from the steps that did not complete", 202),
    r("get", "/v1/schedules", "Schedules with their next fire times", 200),
    Route { body: Some("ScheduleSpec"), ..r("post", "/v1/schedules", "Create a schedule", 201) },
    r("get", "/v1/schedules/{id}", "One schedule and its fire history", 200),
    r("delete", "/v1/schedules/{id}", "Delete a schedule", 204),
    r("post", "/v1/schedules/{id}/pause", "Pause a schedule", 200),
    r("post", "/v1/schedules/{id}/resume", "Resume a schedule (missed fires are not caught up)", 200),
    r("post", "/v1/schedules/{id}/run", "Fire a schedule now", 202),
];

/// Add `T`'s JSON Schema to `schemas` as `name`, its definitions beside it.
fn add_schema<T: schemars::JsonSchema>(schemas: &mut Map<String, Value>, name: &str) {
    fn rewrite(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get_mut("$ref")
                    && let Some(def) = r.strip_prefix("#/$defs/")
                {
                    *r = format!("#/components/schemas/{def}");
                }
                map.values_mut().for_each(rewrite);
            }
            Value::Array(items) => items.iter_mut().for_each(rewrite),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    rewrite(&mut v);
    if let Value::Object(map) = &mut v {
        map.remove("$schema");
        if let Some(Value::Object(defs)) = map.remove("$defs") {
            schemas.extend(defs);
        }
    }
    schemas.insert(name.into(), v);
}

/// The OpenAPI document.
pub fn document() -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let mut paths = Map::new();
    for route in ROUTES {
        let mut op = Map::new();
        op.insert("summary".into(), json!(route.summary));
        let mut params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        params.extend(route.query.iter().map(|name| {
            let ty = if matches!(*name, "version" | "limit" | "after" | "wait_ms") { "integer" } else { "string" };
            json!({"name": name, "in": "query", "required": false, "schema": {"type": ty}})
        }));
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(body) = route.body {
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}}}),
            );
        }
        let ok_content = match (route.ok, route.path) {
            (204, _) => json!({"description": "Done"}),
            (_, "/metrics") => json!({"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}),
            _ => json!({"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}),
        };
        let mut responses = Map::new();
        responses.insert(route.ok.to_string(), ok_content);
        let err = |d: &str| json!({"description": d, "content": {"application/json": {"schema": error.clone()}}});
        if route.path != "/v1/health" {
            responses.insert("401".into(), err("Missing or wrong bearer token"));
        }
        if route.body.is_some() {
            responses.insert("400".into(), err("Invalid body or definition (InvalidConfiguration)"));
            responses.insert("413".into(), err("Body larger than max_body_bytes"));
        }
        if route.path.contains('{') {
            responses.insert("404".into(), err("NotFound / PluginNotFound"));
        }
        if route.query.contains(&"wait_ms") {
            responses.insert("504".into(), err("Timeout: still running after wait_ms"));
        }
        if route.method == "post" && route.path.contains("/executions") || route.path.ends_with("/schedules") {
            responses.insert("409".into(), err("AlreadyExists / InvalidState"));
        }
        op.insert("responses".into(), Value::Object(responses));
        if route.path == "/v1/health" {
            op.insert("security".into(), json!([]));
        }
        let entry = paths.entry(route.path).or_insert_with(|| json!({}));
        entry[route.method] = Value::Object(op);
    }
    let mut schemas = Map::new();
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": ["InvalidConfiguration", "NotFound", "AlreadyExists", "InvalidState", "PluginNotFound", "DependencyNotSatisfied", "Timeout", "Unauthorized", "Internal"]},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "string"}}
            }
        }),
    );
    add_schema::<super::api::WorkflowSource>(&mut schemas, "WorkflowSource");
    add_schema::<super::api::StartExecution>(&mut schemas, "StartExecution");
    add_schema::<super::schedule::ScheduleSpec>(&mut schemas, "ScheduleSpec");
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Plexus daemon API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Plugins, workflows, executions and schedules of a running `plexus daemon`. \
                Errors carry a code from QtForge's list: InvalidConfiguration, NotFound, AlreadyExists, \
                InvalidState, PluginNotFound, DependencyNotSatisfied, Timeout (plus Unauthorized, Internal)."
        },
        "servers": [{"url": "http://127.0.0.1:7070"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        }
    })
}
