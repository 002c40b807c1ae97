//! The HTTP API (axum): JSON over `/v1`, Prometheus text at `/metrics`.
//!
//! Every request but `GET /v1/health` needs `Authorization: Bearer <token>`.
//! Errors are `{"code": "<QtForge code>", "message": "...", "details": [...]}`
//! with a matching status (see [`ErrorCode::http_status`]); a malformed body
//! gets 400, a wrong content type 415, an oversized one 413 — never a crash.
//! A handler that panics (a bug) gets 500 with the same JSON error body, is
//! logged, and the daemon keeps serving ([`catch_panics`]).
//! The routes and their shapes are listed in [`super::openapi::ROUTES`]
//! and served as OpenAPI 3.1 at `GET /v1/openapi.json`.

use super::core::{Daemon, Origin};
use super::error::{DaemonError, ErrorCode};
use super::schedule::ScheduleSpec;
use super::schedules::Schedules;
use super::store::ExecutionFilter;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use plexus_workflow::WorkflowStatus;
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What every handler sees.
#[derive(Clone)]
pub struct ApiState {
    /// The daemon.
    pub daemon: Daemon,
    /// The schedule service.
    pub schedules: Schedules,
    /// SHA-256 of the bearer token (compared digest to digest).
    token_digest: Arc<[u8]>,
}

impl ApiState {
    /// State for a router serving `daemon` and `schedules`, guarded by `token`.
    pub fn new(daemon: Daemon, schedules: Schedules, token: &str) -> Self {
        Self { daemon, schedules, token_digest: Sha256::digest(token.as_bytes()).to_vec().into() }
    }
}

/// An error response: a status and a [`DaemonError`] body.
pub struct ApiError(StatusCode, DaemonError);

impl From<DaemonError> for ApiError {
    fn from(e: DaemonError) -> Self {
        Self(StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

type ApiResult<T = Json<Value>> = Result<T, ApiError>;

/// A JSON body whose rejections are JSON errors too.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => {
                let status = match &rejection {
                    JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => StatusCode::BAD_REQUEST,
                    other => other.status(),
                };
                Err(ApiError(status, DaemonError::invalid(format!("request body: {}", rejection.body_text()))))
            }
        }
    }
}

/// The router with every route, the auth layer and the body limit.
pub fn router(state: ApiState, max_body_bytes: usize) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/plugins", get(plugins))
        .route("/v1/plugins/reload", post(reload_plugins))
        .route("/v1/plugins/{id}", get(plugin))
        .route("/v1/workflows", get(workflows).post(register_workflow))
        .route("/v1/workflows/validate", post(validate_workflow))
        .route("/v1/workflows/{id}", get(workflow).delete(delete_workflow))
        .route("/v1/executions", get(executions).post(start_execution))
        .route("/v1/executions/{id}", get(execution))
        .route("/v1/executions/{id}/steps", get(execution_steps))
        .route("/v1/executions/{id}/logs", get(execution_logs))
        .route("/v1/executions/{id}/cancel", post(cancel_execution))
        .route("/v1/executions/{id}/retry", post(retry_execution))
        .route("/v1/schedules", get(schedules).post(create_schedule))
        .route("/v1/schedules/{id}", get(schedule).delete(delete_schedule))
        .route("/v1/schedules/{id}/pause", post(pause_schedule))
        .route("/v1/schedules/{id}/resume", post(resume_schedule))
        .route("/v1/schedules/{id}/run", post(run_schedule))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/v1/health", get(health))
        .merge(protected)
        .fallback(|| async { ApiError::from(DaemonError::not_found("route")) })
        .method_not_allowed_fallback(|| async {
            ApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                DaemonError::invalid("method not allowed on this route (see GET /v1/openapi.json)"),
            )
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(catch_panics))
        .with_state(state)
}

/// Turn a panic in a handler into a 500 with the usual JSON error body, so
/// one request's bug neither drops its connection without an answer nor
/// reaches anything else.
pub async fn catch_panics(request: Request, next: Next) -> Response {
    use futures::FutureExt;
    let route = format!("{} {}", request.method(), request.uri().path());
    match std::panic::AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            tracing::error!(%route, "request handler panicked: {what}");
            let error = DaemonError::new(
                ErrorCode::Internal,
                format!("the daemon failed while handling {route} (a bug: the handler panicked: {what})"),
            );
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, error).into_response()
        }
    }
}

async fn auth(State(state): State<ApiState>, headers: HeaderMap, request: Request, next: Next) -> Response {
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if Sha256::digest(token.trim().as_bytes()).as_slice() == &*state.token_digest => {
            next.run(request).await
        }
        _ => {
            let error = DaemonError::new(
                ErrorCode::Unauthorized,
                "missing or wrong bearer token (Authorization: Bearer <token from the daemon's token file>)",
            );
            let mut response = ApiError(StatusCode::UNAUTHORIZED, error).into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            response
        }
    }
}

async fn health(State(s): State<ApiState>) -> Json<Value> {
    s.daemon.health().check_native_calls();
    let host = s.daemon.host();
    Json(json!({
        "status": if !s.daemon.is_accepting() {
            "shutting_down"
        } else if s.daemon.health().is_degraded() {
            "degraded"
        } else {
            "ok"
        },
        "degraded": s.daemon.health().reasons(),
        "version": env!("CARGO_PKG_VERSION"),
        "plugins": host.plugins().count(),
        "plugin_load_errors": host.load_errors().len(),
    }))
}

async fn metrics(State(s): State<ApiState>) -> ApiResult<Response> {
    let counts = s.daemon.store().execution_counts().map_err(DaemonError::from)?;
    let metrics = s.daemon.metrics();
    for (plugin, (_, total)) in plexus_host::runtime::abandoned_calls() {
        metrics.abandoned_calls(&plugin, total);
    }
    s.daemon.health().check_native_calls();
    metrics.health(&s.daemon.health().reasons());
    let body = metrics.render(&counts);
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response())
}

async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}

// ----- plugins -----

async fn plugins(State(s): State<ApiState>) -> Json<Value> {
    let host = s.daemon.host();
    let unavailable = host.unavailable();
    let plugins: Vec<Value> = host
        .plugins()
        .map(|p| {
            let mut v = p.summary();
            let status = unavailable.get(p.id()).map_or("loaded", String::as_str);
            v["status"] = json!(status);
            v
        })
        .collect();
    Json(json!({"plugins": plugins, "errors": host.load_errors(), "unavailable": unavailable}))
}

async fn plugin(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let host = s.daemon.host();
    let plugin = host
        .plugin(&id)
        .ok_or_else(|| DaemonError::new(ErrorCode::PluginNotFound, format!("no plugin `{id}` is loaded")))?;
    let mut details = plugin.details();
    details["status"] = json!(host.unavailable().get(&id).map_or("loaded", String::as_str));
    Ok(Json(details))
}

async fn reload_plugins(State(s): State<ApiState>) -> ApiResult {
    let daemon = s.daemon.clone();
    let changes = tokio::task::spawn_blocking(move || daemon.reload_plugins())
        .await
        .map_err(|e| DaemonError::new(ErrorCode::Internal, format!("reload failed: {e}")))?;
    Ok(Json(json!({"changes": changes})))
}

// ----- workflows -----

/// `POST /v1/workflows` and `/v1/workflows/validate`: the definition as text.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSource {
    /// The workflow definition, YAML or JSON text (ours or QtForge's format).
    pub source: String,
}

async fn register_workflow(State(s): State<ApiState>, Body(body): Body<WorkflowSource>) -> ApiResult<Response> {
    let registered = s.daemon.register_workflow(&body.source)?;
    let status = if registered.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(registered)).into_response())
}

async fn validate_workflow(State(s): State<ApiState>, Body(body): Body<WorkflowSource>) -> ApiResult {
    let valid = s.daemon.validate_workflow(&body.source)?;
    let stages: Vec<Vec<&str>> = valid
        .dag
        .stages()
        .iter()
        .map(|stage| stage.iter().map(|&i| valid.workflow.steps[i].id.as_str()).collect())
        .collect();
    Ok(Json(json!({"valid": true, "id": valid.workflow.id, "steps": valid.workflow.steps.len(), "stages": stages})))
}

async fn workflows(State(s): State<ApiState>) -> ApiResult {
    let rows = s.daemon.workflows()?;
    let list: Vec<Value> = rows
        .iter()
        .map(|r| json!({"id": r.id, "version": r.version, "format": r.format, "created_at_ms": r.created_at_ms}))
        .collect();
    Ok(Json(json!({"workflows": list})))
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<u32>,
}

async fn workflow(State(s): State<ApiState>, Path(id): Path<String>, Query(q): Query<VersionQuery>) -> ApiResult {
    Ok(Json(json!(s.daemon.workflow(&id, q.version)?)))
}

async fn delete_workflow(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.daemon.delete_workflow(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- executions -----

/// `POST /v1/executions`: which workflow, with which inputs.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartExecution {
    /// Workflow id (its current version is used and pinned).
    pub workflow: String,
    /// Inputs by name; defaults fill the rest.
    #[serde(default)]
    pub inputs: Map<String, Value>,
}

async fn start_execution(State(s): State<ApiState>, Body(body): Body<StartExecution>) -> ApiResult<Response> {
    let exec = s.daemon.start(&body.workflow, body.inputs, Origin::default())?;
    let (status, meta) = s.daemon.status(exec.id())?;
    let body = json!({
        "execution_id": exec.id(),
        "workflow_id": status.workflow_id,
        "workflow_version": meta.workflow_version,
        "status": status.status,
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[derive(Deserialize)]
struct ExecutionQuery {
    workflow: Option<String>,
    status: Option<String>,
    schedule: Option<String>,
    limit: Option<u32>,
}

async fn executions(State(s): State<ApiState>, Query(q): Query<ExecutionQuery>) -> ApiResult {
    let status = match q.status.as_deref() {
        Some(name) => Some(WorkflowStatus::parse(name).ok_or_else(|| {
            let known: Vec<&str> = WorkflowStatus::ALL.iter().map(|s| s.as_str()).collect();
            DaemonError::invalid(format!("status: unknown status `{name}` (one of {})", known.join(", ")))
        })?),
        None => None,
    };
    let filter = ExecutionFilter { workflow_id: q.workflow, status, schedule_id: q.schedule, limit: q.limit };
    Ok(Json(json!({"executions": s.daemon.executions(&filter)?})))
}

fn status_json(s: &ApiState, id: &str) -> Result<Value, ApiError> {
    let (status, meta) = s.daemon.status(id)?;
    let mut value = serde_json::to_value(&status).unwrap_or_default();
    if let (Value::Object(map), Value::Object(extra)) = (&mut value, serde_json::to_value(&meta).unwrap_or_default()) {
        map.extend(extra);
        // Held: a state write failed; no step starts until it is recorded again.
        if s.daemon.live(id).is_some_and(|e| e.is_held()) {
            map.insert("held".into(), Value::Bool(true));
        }
    }
    Ok(value)
}

#[derive(Deserialize)]
struct WaitQuery {
    wait_ms: Option<u64>,
}

/// The status; with `?wait_ms=N`, first wait up to N ms (at most 60 s) for the
/// execution to end, answering `Timeout` (504) if it has not. When the daemon
/// begins to shut down, a waiting request is answered at once with the status.
async fn execution(State(s): State<ApiState>, Path(id): Path<String>, Query(q): Query<WaitQuery>) -> ApiResult {
    if let (Some(ms), Some(exec)) = (q.wait_ms, s.daemon.live(&id)) {
        let wait = std::time::Duration::from_millis(ms.min(60_000));
        // Shutdown answers at once with the status as it is.
        let ended_or_stopping = async {
            tokio::select! {
                _ = exec.wait() => {}
                _ = s.daemon.stopping() => {}
            }
        };
        if tokio::time::timeout(wait, ended_or_stopping).await.is_err() {
            let status = exec.snapshot().status;
            return Err(DaemonError::new(
                ErrorCode::Timeout,
                format!("execution `{id}` is still {} after {} ms", status.as_str(), wait.as_millis()),
            )
            .into());
        }
    }
    Ok(Json(status_json(&s, &id)?))
}

async fn execution_steps(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let (status, _) = s.daemon.status(&id)?;
    Ok(Json(json!({"execution_id": id, "steps": status.steps, "compensations": status.compensations})))
}

#[derive(Deserialize)]
struct LogQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

async fn execution_logs(State(s): State<ApiState>, Path(id): Path<String>, Query(q): Query<LogQuery>) -> ApiResult {
    let (status, events) = s.daemon.logs(&id, q.after.unwrap_or(0), q.limit.unwrap_or(1000).min(10_000))?;
    Ok(Json(json!({"execution_id": id, "status": status, "events": events})))
}

async fn cancel_execution(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Response> {
    s.daemon.cancel(&id)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"execution_id": id, "cancelling": true}))).into_response())
}

async fn retry_execution(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Response> {
    s.daemon.retry(&id)?;
    Ok((StatusCode::ACCEPTED, Json(status_json(&s, &id)?)).into_response())
}

// ----- schedules -----

async fn create_schedule(State(s): State<ApiState>, Body(spec): Body<ScheduleSpec>) -> ApiResult<Response> {
    let view = s.schedules.create(spec)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn schedules(State(s): State<ApiState>) -> ApiResult {
    Ok(Json(json!({"schedules": s.schedules.list()?})))
}

async fn schedule(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let mut view = serde_json::to_value(s.schedules.get(&id)?).unwrap_or_default();
    view["history"] = json!(s.schedules.history(&id, 50)?);
    Ok(Json(view))
}

async fn pause_schedule(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    Ok(Json(json!(s.schedules.pause(&id)?)))
}

async fn resume_schedule(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    Ok(Json(json!(s.schedules.resume(&id)?)))
}

async fn delete_schedule(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.schedules.delete(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn run_schedule(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Response> {
    let execution_id = s.schedules.run_now(&id)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"schedule_id": id, "execution_id": execution_id}))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn fetch(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn a_panicking_handler_gets_a_json_500_and_the_server_keeps_serving() {
        let app = Router::new()
            .route("/boom", get(|| async { panic!("kaboom") as &'static str }))
            .route("/ok", get(|| async { "fine" }))
            .layer(middleware::from_fn(catch_panics));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        for _ in 0..2 {
            let response = fetch(addr, "/boom").await;
            assert!(response.starts_with("HTTP/1.1 500"), "{response}");
            let body: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
            assert_eq!(body["code"], "Internal");
            assert!(body["message"].as_str().unwrap().contains("kaboom"), "{body}");
            assert!(fetch(addr, "/ok").await.ends_with("fine"));
        }
    }
}
