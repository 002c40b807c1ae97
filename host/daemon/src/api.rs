//! The HTTP API (axum): JSON over `/v1`, Prometheus text at `/metrics`.
//!
//! Every request but `GET /v1/health`, a hook's delivery (signed), the web
//! UI's login and logout (`/v1/session`) and its static files (`/ui/`,
//! [`super::ui`]) needs `Authorization: Bearer <token>`, or a web UI
//! session's cookie ([`super::sessions`]; with its write key on requests
//! that change something).
//! Errors are `{"code": "<QtForge code>", "message": "...", "details": [...]}`
//! with a matching status (see [`ErrorCode::http_status`]); a malformed body
//! gets 400, a wrong content type 415, an oversized one 413 — never a crash.
//! A handler that panics (a bug) gets 500 with the same JSON error body, is
//! logged, and the daemon keeps serving ([`catch_panics`]).
//! Each handler's `#[utoipa::path]` declares its route, parameters, body and
//! answers, whose types live in `plexus-client`; [`routes()`] collects them,
//! and [`super::openapi::document`] is generated from it (served at
//! `GET /v1/openapi.json`).

use super::core::{Daemon, Origin};
use super::error::{DaemonError, ErrorCode};
use super::schedules::Schedules;
use super::sessions::{self, Sessions};
use super::store::ExecutionFilter;
use super::views;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use plexus_client::{
    BeginTransaction, CallPlugin, CallResult, Cleared, Transaction, WorkflowHistory, WorkflowRollback,
};
use plexus_client::{
    Cancelling, Execution, ExecutionArtifacts, ExecutionItems, ExecutionList, ExecutionLogs, ExecutionQuery,
    ExecutionSteps, Fired, Health, HealthStatus, PluginDetails, PluginList, Registered, Reloaded, ScheduleDetails,
    ScheduleList, ScheduleSpec, ScheduleView, StartExecution, Started, Validation, WorkflowList, WorkflowSource,
    WorkflowSummary, WorkflowVersion,
};
use plexus_client::{FromTemplate, TemplateDetail, TemplateList, TemplateSummary};
use plexus_client::{HookCreated, HookDetails, HookList, HookSpec};
use plexus_client::{Login, NodeList, Overview, Session, WorkerUsage};
use plexus_client::{SecretInfo, SecretList};
use plexus_client::{SignalRequest, Signalled};
use plexus_client::{TransactionList, TransactionQuery};
use plexus_workflow::WorkflowStatus;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler sees.
#[derive(Clone)]
pub struct ApiState {
    /// The daemon.
    pub daemon: Daemon,
    /// The schedule service.
    pub schedules: Schedules,
    /// SHA-256 of the bearer token (compared digest to digest).
    token_digest: Arc<[u8]>,
    /// The web UI's sessions (cookies given in exchange for the token).
    sessions: Arc<Sessions>,
    /// Event streams open ([`MAX_EVENT_STREAMS`] at most).
    event_streams: Arc<tokio::sync::Semaphore>,
    /// Held through a wrong login's pause: wrong guesses come one at a time.
    wrong_logins: Arc<tokio::sync::Mutex<()>>,
}

impl ApiState {
    /// State for a router serving `daemon` and `schedules`, guarded by `token`.
    pub fn new(daemon: Daemon, schedules: Schedules, token: &str) -> Self {
        Self {
            daemon,
            schedules,
            token_digest: Sha256::digest(token.as_bytes()).to_vec().into(),
            sessions: Arc::default(),
            event_streams: Arc::new(tokio::sync::Semaphore::new(MAX_EVENT_STREAMS)),
            wrong_logins: Arc::default(),
        }
    }

    /// Whether `token` is the daemon's token.
    fn is_token(&self, token: &str) -> bool {
        Sha256::digest(token.trim().as_bytes()).as_slice() == &*self.token_digest
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

type ApiResult<T> = Result<T, ApiError>;

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

/// A query string whose rejections are JSON errors too (400 naming the parameter).
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError(
                StatusCode::BAD_REQUEST,
                DaemonError::invalid(format!("query: {}", rejection.body_text())),
            )),
        }
    }
}

/// Every route with its OpenAPI operation: `#[utoipa::path]` on each handler
/// is the one place a route's path, parameters, body and answers are written.
/// Returns `(public, protected)`: health needs no token; [`router`] puts
/// the others behind the bearer-token check.
pub fn routes() -> (OpenApiRouter<ApiState>, OpenApiRouter<ApiState>) {
    // A hook's deliveries carry its signature instead of the token.
    let public =
        OpenApiRouter::new().routes(routes!(health)).routes(routes!(deliver_hook)).routes(routes!(login, logout));
    let protected = OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(nodes))
        .routes(routes!(overview))
        .routes(routes!(events))
        .routes(routes!(openapi))
        .routes(routes!(plugins))
        .routes(routes!(reload_plugins))
        .routes(routes!(plugin))
        .routes(routes!(call_plugin))
        .routes(routes!(workflows, register_workflow, clear_workflows))
        .routes(routes!(workflow_history))
        .routes(routes!(rollback_workflow))
        .routes(routes!(validate_workflow))
        .routes(routes!(workflow, delete_workflow))
        .routes(routes!(templates, register_template))
        .routes(routes!(template, delete_template))
        .routes(routes!(hooks, create_hook))
        .routes(routes!(hook, delete_hook))
        .routes(routes!(secrets))
        .routes(routes!(set_secret, delete_secret))
        .routes(routes!(create_from_template))
        .routes(routes!(executions, start_execution))
        .routes(routes!(execution))
        .routes(routes!(execution_steps))
        .routes(routes!(execution_items))
        .routes(routes!(execution_artifacts))
        .routes(routes!(execution_artifact))
        .routes(routes!(execution_logs))
        .routes(routes!(cancel_execution))
        .routes(routes!(signal_execution))
        .routes(routes!(retry_execution))
        .routes(routes!(transactions, begin_transaction))
        .routes(routes!(transaction))
        .routes(routes!(commit_transaction))
        .routes(routes!(rollback_transaction))
        .routes(routes!(schedules, create_schedule))
        .routes(routes!(schedule, delete_schedule))
        .routes(routes!(pause_schedule))
        .routes(routes!(resume_schedule))
        .routes(routes!(run_schedule));
    (public, protected)
}

/// The router with every route, the auth layer and the body limit.
pub fn router(state: ApiState, max_body_bytes: usize) -> Router {
    let (public, protected) = routes();
    let (public, _) = public.split_for_parts();
    let (protected, _) = protected.split_for_parts();
    let protected = protected.route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .merge(public)
        .merge(protected)
        .merge(super::ui::router())
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

/// The session a cookie-authenticated request runs in (its id), for the
/// handlers that keep going after the request (the event stream).
#[derive(Clone)]
struct SessionId(Arc<str>);

/// The bearer token, or a web UI session's cookie (with the session's write
/// key in [`sessions::UI_HEADER`] on a request that changes something).
async fn auth(State(state): State<ApiState>, headers: HeaderMap, mut request: Request, next: Next) -> Response {
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let safe = matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    let session = sessions::from_headers(&headers).and_then(|id| {
        let key = headers.get(sessions::UI_HEADER).and_then(|v| v.to_str().ok());
        state.sessions.check(id, key).map(|access| (id, access))
    });
    match (given, session) {
        (Some(token), _) if state.is_token(token) => next.run(request).await,
        (None, Some((id, access))) => {
            if safe || access == sessions::Access::Write {
                request.extensions_mut().insert(SessionId(id.into()));
                next.run(request).await
            } else {
                let error = DaemonError::new(
                    ErrorCode::Unauthorized,
                    format!(
                        "a request that changes something needs the session's write key (the login's answer) in the `{}` header",
                        sessions::UI_HEADER
                    ),
                );
                ApiError(StatusCode::FORBIDDEN, error).into_response()
            }
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

/// The daemons sharing this daemon's state database (a daemon on SQLite
/// lists itself): heartbeats, leases, plugins and the executions each runs.
#[utoipa::path(get, path = "/v1/nodes", tag = "daemon",
    responses((status = 200, description = "The nodes of the cluster, by id", body = NodeList)))]
async fn nodes(State(s): State<ApiState>) -> ApiResult<Json<NodeList>> {
    Ok(Json(s.daemon.nodes().await?))
}

/// Liveness, version and plugin counts (no token needed).
#[utoipa::path(get, path = "/v1/health", tag = "daemon", security(()),
    responses((status = 200, description = "Liveness, version and plugin counts (no token needed)", body = Health)))]
async fn health(State(s): State<ApiState>) -> Json<Health> {
    s.daemon.health().check_native_calls();
    let host = s.daemon.host();
    let status = if !s.daemon.is_accepting() {
        HealthStatus::ShuttingDown
    } else if s.daemon.health().is_degraded() {
        HealthStatus::Degraded
    } else {
        HealthStatus::Ok
    };
    Json(Health {
        status,
        degraded: s.daemon.health().reasons(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        plugins: host.plugins().count(),
        plugin_load_errors: host.load_errors().len(),
        node: s.daemon.node_id().to_owned(),
    })
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "daemon",
    responses((status = 200, description = "Prometheus metrics (OpenMetrics text)", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
async fn metrics(State(s): State<ApiState>) -> ApiResult<Response> {
    let counts = s.daemon.store().execution_counts().await.map_err(DaemonError::from)?;
    let metrics = s.daemon.metrics();
    for (plugin, (_, total)) in plexus_host::runtime::abandoned_calls() {
        metrics.abandoned_calls(&plugin, total);
    }
    s.daemon.health().check_native_calls();
    metrics.health(&s.daemon.health().reasons());
    let body = metrics.render(&counts);
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response())
}

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/v1/openapi.json", tag = "daemon",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)))]
async fn openapi() -> Json<Value> {
    Json(super::openapi::document().clone())
}

// ----- the web UI's session, overview and event stream -----

/// Log in: exchange the daemon's token for a session cookie
/// (`plexus_session_<port>`, `HttpOnly`, `SameSite=Strict`) and the
/// session's write key, which requests that change something carry in the
/// `X-Plexus-UI` header. The session ends after 30 minutes unused, 12 hours
/// after login, at logout or when the daemon restarts. What the web UI's
/// login form sends; a wrong token gets 401 after a pause (wrong ones are
/// answered one at a time).
#[utoipa::path(post, path = "/v1/session", tag = "daemon", security(()), request_body = Login,
    responses((status = 200, description = "Logged in: the answer sets the session cookie; its body has the write key",
        body = Session,
        headers(("set-cookie" = String, description = "plexus_session_<port>=<id>; Path=/; HttpOnly; SameSite=Strict")))))]
async fn login(State(s): State<ApiState>, headers: HeaderMap, Body(login): Body<Login>) -> ApiResult<Response> {
    if !s.is_token(&login.token) {
        // One wrong guess at a time, each after a pause.
        let _one = s.wrong_logins.lock().await;
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        tracing::warn!("a web UI login with a wrong token");
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            DaemonError::new(ErrorCode::Unauthorized, "wrong token (the content of the daemon's token file)"),
        ));
    }
    let (id, write_key) = s
        .sessions
        .create()
        .map_err(|e| DaemonError::new(ErrorCode::Internal, format!("no randomness for a session: {e}")))?;
    let cookie = sessions::set_cookie(&headers, &id);
    Ok(([(header::SET_COOKIE, cookie)], Json(Session { write_key })).into_response())
}

/// Log out: end the session of the request's cookie, and remove the cookie.
#[utoipa::path(delete, path = "/v1/session", tag = "daemon", security(()),
    responses((status = 204, description = "Logged out (also when there was no session)")))]
async fn logout(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(id) = sessions::from_headers(&headers) {
        s.sessions.end(id);
    }
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, sessions::clear_cookie(&headers))]).into_response()
}

/// The daemon at a glance: health, nodes, worker slots, queue depth, journal errors.
#[utoipa::path(get, path = "/v1/overview", tag = "daemon",
    responses((status = 200, description = "Health, nodes, worker slots, queue depth and journal errors", body = Overview)))]
async fn overview(State(s): State<ApiState>) -> ApiResult<Json<Overview>> {
    let counts = s.daemon.store().execution_counts().await.map_err(DaemonError::from)?;
    let queued = counts.iter().filter(|(status, _)| *status == WorkflowStatus::Pending).map(|(_, n)| n).sum();
    let executions = counts.into_iter().map(|(status, n)| (status.as_str().to_owned(), n)).collect();
    let (busy, waiting) = s.daemon.slot_usage();
    let Json(health) = health(State(s.clone())).await;
    Ok(Json(Overview {
        health,
        executions,
        queued,
        workers: WorkerUsage { limit: s.daemon.workers() as u64, busy: busy as u64, waiting: waiting as u64 },
        journal_errors: s.daemon.metrics().journal_errors(),
        nodes: s.daemon.nodes().await?,
    }))
}

/// Event streams open at once, at most (more: 422 `DependencyNotSatisfied`).
pub const MAX_EVENT_STREAMS: usize = 256;

/// The query of `GET /v1/events`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// The execution whose events to stream.
    execution: String,
    /// Only events after this `seq` (default 0: from the start; a
    /// `Last-Event-ID` header further on wins).
    after: Option<i64>,
}

/// Events read from the log at a time, at most.
const EVENT_BATCH: u32 = 500;

/// How often a stream reads the log when nothing told it of a write: in a
/// cluster, other nodes record transitions this one is not told of.
const EVENT_POLL_CLUSTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The same on a daemon alone: only a safety net.
const EVENT_POLL_ALONE: std::time::Duration = std::time::Duration::from_secs(15);

/// A live stream of an execution's events (server-sent events).
///
/// Each transition of its log (what `GET /v1/executions/{id}/logs` lists)
/// comes as `event: transition`, `id: <seq>`, `data: <the event's JSON>`;
/// once the execution has ended (and its last transition was recorded) and
/// every event was sent, one `event: end` with `data: {"execution_id": …,
/// "status": …}`, and the stream closes (a retried execution: open a new
/// one with `after`). A reconnecting client (`Last-Event-ID`) gets what it
/// missed. A comment line every 15 s keeps idle connections open. The stream
/// closes without `end` when the daemon shuts down, and when the web UI
/// session it was opened with ends (logout, expiry). At most 256 streams at
/// once (422 `DependencyNotSatisfied`).
///
/// `curl -N -H "Authorization: Bearer $TOKEN" "$ADDR/v1/events?execution=$ID"`
#[utoipa::path(get, path = "/v1/events", tag = "executions", params(EventsQuery),
    responses((status = 200, description = "text/event-stream: `transition` events (id = seq, data = an \
        Event as JSON), then `end` (data = {execution_id, status}) once the execution ended",
        content_type = "text/event-stream", body = String)))]
async fn events(
    State(s): State<ApiState>,
    headers: HeaderMap,
    session: Option<axum::Extension<SessionId>>,
    Q(q): Q<EventsQuery>,
) -> ApiResult<Response> {
    use axum::response::sse::{Event as Sse, KeepAlive};
    let id = q.execution;
    s.daemon.status(&id).await?;
    let last: Option<i64> =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let mut after = q.after.unwrap_or(0).max(last.unwrap_or(0));
    let permit = s.event_streams.clone().try_acquire_owned().map_err(|_| {
        DaemonError::new(
            ErrorCode::DependencyNotSatisfied,
            format!("{MAX_EVENT_STREAMS} event streams are open: retry when one has closed"),
        )
    })?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Sse>(16);
    let (daemon, sessions) = (s.daemon.clone(), s.sessions.clone());
    let session = session.map(|axum::Extension(SessionId(id))| id);
    tokio::spawn(async move {
        let _permit = permit;
        let mut written = daemon.journal_writes();
        let poll = if daemon.in_cluster() { EVENT_POLL_CLUSTER } else { EVENT_POLL_ALONE };
        loop {
            if session.as_deref().is_some_and(|sid| !sessions.is_alive(sid)) {
                return;
            }
            let (status, batch) = match daemon.logs(&id, after, EVENT_BATCH).await {
                Ok(read) => read,
                Err(e) => {
                    tracing::debug!(execution = %id, "event stream ends: {e}");
                    return;
                }
            };
            let full = batch.len() == EVENT_BATCH as usize;
            for event in batch {
                after = event.seq;
                let Ok(sse) = Sse::default().event("transition").id(event.seq.to_string()).json_data(&event) else {
                    continue;
                };
                if tx.send(sse).await.is_err() {
                    return;
                }
            }
            if full {
                continue;
            }
            // Ended, and recorded so (a held execution's last write failed: its transition comes later).
            let held = daemon.live(&id).is_some_and(|e| e.is_held());
            if status.is_terminal() && !held {
                // The last transition is written with the status: one more read sends it if it came between.
                if let Ok((_, rest)) = daemon.logs(&id, after, EVENT_BATCH).await
                    && !rest.is_empty()
                {
                    continue;
                }
                let end = serde_json::json!({"execution_id": id, "status": status});
                if let Ok(sse) = Sse::default().event("end").json_data(end) {
                    let _ = tx.send(sse).await;
                }
                return;
            }
            // Until a write of this execution is told, or the poll is due.
            let told = async {
                loop {
                    match written.recv().await {
                        Ok(of) if *of == *id => return,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending().await,
                    }
                }
            };
            tokio::select! {
                // Transitions come in bursts: one read after a short pause takes several.
                () = told => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                () = tokio::time::sleep(poll) => {}
                () = tx.closed() => return,
                () = daemon.stopping() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok::<_, std::convert::Infallible>(event), rx))
    });
    Ok(axum::response::sse::Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

// ----- plugins -----

/// Loaded plugins, load errors and unavailable native plugins.
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins",
    responses((status = 200, description = "Loaded plugins, load errors and unavailable native plugins", body = PluginList)))]
async fn plugins(State(s): State<ApiState>) -> Json<PluginList> {
    Json(views::plugin_list(&s.daemon.host()))
}

/// One plugin: metadata, operations with schemas, limits, permissions.
#[utoipa::path(get, path = "/v1/plugins/{id}", tag = "plugins", params(("id" = String, Path, description = "Plugin id")),
    responses((status = 200, description = "One plugin: metadata, operations with schemas, limits, permissions", body = PluginDetails)))]
async fn plugin(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<PluginDetails>> {
    let host = s.daemon.host();
    let plugin = host
        .plugin(&id)
        .ok_or_else(|| DaemonError::new(ErrorCode::PluginNotFound, format!("no plugin `{id}` is loaded")))?;
    Ok(Json(views::plugin_details(&host, plugin)))
}

/// The most direct plugin calls (`POST /v1/plugins/{id}/call`) running at
/// once: each holds a thread of the blocking pool, which executions and the
/// store need too. Past it, calls are refused (`DependencyNotSatisfied`).
pub const MAX_DIRECT_CALLS: usize = 64;

static DIRECT_CALLS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_DIRECT_CALLS);

/// Call one operation of a loaded plugin directly (as `plexus call` does);
/// at most 64 at once (more: 422 `DependencyNotSatisfied`).
#[utoipa::path(post, path = "/v1/plugins/{id}/call", tag = "plugins", request_body = CallPlugin,
    params(("id" = String, Path, description = "Plugin id")),
    responses((status = 200, description = "What the operation returned", body = CallResult)))]
async fn call_plugin(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Body(body): Body<CallPlugin>,
) -> ApiResult<Json<CallResult>> {
    if !s.daemon.is_accepting() {
        return Err(DaemonError::invalid_state("the daemon is shutting down").into());
    }
    let permit = DIRECT_CALLS.try_acquire().map_err(|_| {
        DaemonError::new(
            ErrorCode::DependencyNotSatisfied,
            format!("{MAX_DIRECT_CALLS} direct plugin calls are running: retry when one has ended"),
        )
    })?;
    let host = s.daemon.host();
    // The call goes on if the client hangs up: its limits bound it.
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        views::call_plugin(&host, &id, body)
    })
    .await
    .map_err(|e| DaemonError::new(ErrorCode::Internal, format!("the call's thread failed: {e}")))??;
    Ok(Json(result))
}

/// Rescan the plugin directories now; returns the changes.
#[utoipa::path(post, path = "/v1/plugins/reload", tag = "plugins",
    responses((status = 200, description = "Rescan the plugin directories now; returns the changes", body = Reloaded)))]
async fn reload_plugins(State(s): State<ApiState>) -> ApiResult<Json<Reloaded>> {
    let daemon = s.daemon.clone();
    let changes = tokio::task::spawn_blocking(move || daemon.reload_plugins())
        .await
        .map_err(|e| DaemonError::new(ErrorCode::Internal, format!("reload failed: {e}")))?;
    Ok(Json(Reloaded { changes: changes.into_iter().map(views::plugin_change).collect() }))
}

// ----- workflows -----

/// Register a workflow (a new version if the id exists).
#[utoipa::path(post, path = "/v1/workflows", tag = "workflows", request_body = WorkflowSource,
    responses(
        (status = 201, description = "Registered as a new version", body = Registered),
        (status = 200, description = "The same text was already the current version", body = Registered)))]
async fn register_workflow(State(s): State<ApiState>, Body(body): Body<WorkflowSource>) -> ApiResult<Response> {
    let registered = s.daemon.register_workflow(&body.source).await?;
    let status = if registered.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(registered)).into_response())
}

/// Validate a workflow against the loaded plugins; answers its stages.
#[utoipa::path(post, path = "/v1/workflows/validate", tag = "workflows", request_body = WorkflowSource,
    responses((status = 200, description = "Valid against the loaded plugins: its stages \
        (an invalid one gets 400 InvalidConfiguration with every problem in details)", body = Validation)))]
async fn validate_workflow(State(s): State<ApiState>, Body(body): Body<WorkflowSource>) -> ApiResult<Json<Validation>> {
    let valid = s.daemon.validate_workflow(&body.source)?;
    let stages = valid
        .dag
        .stages()
        .iter()
        .map(|stage| stage.iter().map(|&i| valid.workflow.steps[i].id.clone()).collect())
        .collect();
    Ok(Json(Validation { valid: true, id: valid.workflow.id.clone(), steps: valid.workflow.steps.len(), stages }))
}

/// The current version of every workflow.
#[utoipa::path(get, path = "/v1/workflows", tag = "workflows",
    responses((status = 200, description = "The current version of every workflow", body = WorkflowList)))]
async fn workflows(State(s): State<ApiState>) -> ApiResult<Json<WorkflowList>> {
    let workflows = s.daemon.workflows().await?.into_iter().map(WorkflowSummary::from).collect();
    Ok(Json(WorkflowList { workflows }))
}

/// The query of `GET /v1/workflows/{id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct VersionQuery {
    /// A version (default: the current one).
    version: Option<u32>,
}

/// A workflow's source and definition (current version, or ?version=N).
#[utoipa::path(get, path = "/v1/workflows/{id}", tag = "workflows",
    params(("id" = String, Path, description = "Workflow id"), VersionQuery),
    responses((status = 200, description = "A workflow's source and its definition as read \
        (QtForge's to_json) — current version, or ?version=N", body = WorkflowVersion)))]
async fn workflow(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Q(q): Q<VersionQuery>,
) -> ApiResult<Json<WorkflowVersion>> {
    let mut version = s.daemon.workflow(&id, q.version).await?;
    version.definition = Some(super::core::parse_workflow(&version.source)?.workflow.to_json());
    Ok(Json(version))
}

/// Every version of a workflow, newest first, and which one is current.
#[utoipa::path(get, path = "/v1/workflows/{id}/versions", tag = "workflows",
    params(("id" = String, Path, description = "Workflow id")),
    responses((status = 200, description = "Every version, newest first, and the current one", body = WorkflowHistory)))]
async fn workflow_history(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<WorkflowHistory>> {
    Ok(Json(s.daemon.workflow_history(&id).await?))
}

/// Make an earlier version current again (registered as a new version).
#[utoipa::path(post, path = "/v1/workflows/{id}/rollback", tag = "workflows",
    params(("id" = String, Path, description = "Workflow id")), request_body = WorkflowRollback,
    responses(
        (status = 201, description = "The earlier version's definition is the new current version", body = Registered),
        (status = 200, description = "It already was the current version", body = Registered)))]
async fn rollback_workflow(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Body(body): Body<WorkflowRollback>,
) -> ApiResult<Response> {
    let registered = s.daemon.rollback_workflow(&id, body.version).await?;
    let status = if registered.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(registered)).into_response())
}

/// Delete every workflow (QtForge's clear_workflows); executions go on.
#[utoipa::path(delete, path = "/v1/workflows", tag = "workflows",
    responses((status = 200, description = "How many workflows were deleted", body = Cleared)))]
async fn clear_workflows(State(s): State<ApiState>) -> ApiResult<Json<Cleared>> {
    Ok(Json(Cleared { deleted: s.daemon.clear_workflows().await? }))
}

/// Delete a workflow (executions pinned to it go on).
#[utoipa::path(delete, path = "/v1/workflows/{id}", tag = "workflows", params(("id" = String, Path, description = "Workflow id")),
    responses((status = 204, description = "Deleted (executions pinned to it go on)")))]
async fn delete_workflow(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.daemon.delete_workflow(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- hooks -----

/// Create a webhook trigger for a workflow. The answer holds the hook's
/// signing secret, this once. 409 when the daemon has no secrets key.
#[utoipa::path(post, path = "/v1/hooks", tag = "hooks", request_body = HookSpec,
    responses((status = 201, description = "Created; `secret` is shown this once", body = HookCreated)))]
async fn create_hook(State(s): State<ApiState>, Body(spec): Body<HookSpec>) -> ApiResult<Response> {
    Ok((StatusCode::CREATED, Json(s.daemon.create_hook(spec).await?)).into_response())
}

/// Every hook (never a secret).
#[utoipa::path(get, path = "/v1/hooks", tag = "hooks",
    responses((status = 200, description = "Every hook, by id", body = HookList)))]
async fn hooks(State(s): State<ApiState>) -> ApiResult<Json<HookList>> {
    Ok(Json(HookList { hooks: s.daemon.hooks().await? }))
}

/// A hook and its deliveries of the last day.
#[utoipa::path(get, path = "/v1/hooks/{id}", tag = "hooks", params(("id" = String, Path, description = "Hook id")),
    responses((status = 200, description = "The hook and its recent deliveries, newest first", body = HookDetails)))]
async fn hook(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<HookDetails>> {
    Ok(Json(s.daemon.hook(&id).await?))
}

/// Delete a hook: deliveries to it are refused from now on.
#[utoipa::path(delete, path = "/v1/hooks/{id}", tag = "hooks", params(("id" = String, Path, description = "Hook id")),
    responses((status = 204, description = "Deleted")))]
async fn delete_hook(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.daemon.delete_hook(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deliver to a hook: no API token — the request is signed with the hook's
/// secret (`X-Plexus-Signature: sha256=<hex HMAC-SHA256 of
/// "{X-Plexus-Timestamp}.{X-Plexus-Delivery}." + body>`), its timestamp
/// within 5 min of the daemon's clock, its delivery id never used before.
/// The body (JSON) becomes the workflow's inputs. 401 for a missing or bad
/// signature or a stale timestamp, 409 for a replayed delivery id.
#[utoipa::path(post, path = "/v1/hooks/{id}", tag = "hooks", security(()),
    params(
        ("id" = String, Path, description = "Hook id"),
        ("X-Plexus-Timestamp" = u64, Header, description = "Unix time, seconds"),
        ("X-Plexus-Delivery" = String, Header, description = "The delivery's id: 1 to 128 of A-Z a-z 0-9 _ -"),
        ("X-Plexus-Signature" = String, Header, description = "sha256=<hex HMAC-SHA256>"),
    ),
    request_body(content = Object, description = "The inputs (a JSON object), or any JSON with the hook's inputs_key"),
    responses((status = 202, description = "Accepted: the execution started", body = Started)))]
async fn deliver_hook(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = crate::hooks::DeliveryHeaders {
        timestamp: get(plexus_client::hooks::TIMESTAMP_HEADER),
        delivery: get(plexus_client::hooks::DELIVERY_HEADER),
        signature: get(plexus_client::hooks::SIGNATURE_HEADER),
    };
    let started = s.daemon.deliver(&id, &signed, &body).await?;
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}

// ----- secrets -----

/// Every secret's name and time; values are never answered.
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets",
    responses((status = 200, description = "Every secret, by name (no values)", body = SecretList)))]
async fn secrets(State(s): State<ApiState>) -> ApiResult<Json<SecretList>> {
    Ok(Json(SecretList { secrets: s.daemon.secrets()?.list().await? }))
}

/// Set a secret (replacing it): encrypted at rest, usable as
/// `${{ secrets.NAME }}`, never read back; plugins that did not load for
/// want of a secret are loaded again. 409 when the daemon has no secrets key.
#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "Secret name: letters, digits, `_`, not starting with a digit, ≤ 64")),
    request_body = plexus_client::SecretSet,
    responses((status = 200, description = "Set (no value in the answer)", body = SecretInfo)))]
async fn set_secret(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Body(body): Body<Value>,
) -> ApiResult<Json<SecretInfo>> {
    // Read by hand: serde's messages quote what they refuse, and this body is a secret.
    let value = match body.as_object() {
        Some(map) if map.len() == 1 => map.get("value").and_then(Value::as_str),
        _ => None,
    };
    let Some(value) = value else {
        return Err(DaemonError::invalid("request body: {\"value\": \"<the secret, text>\"} and nothing else").into());
    };
    let info = s.daemon.secrets()?.set(&name, value).await?;
    s.daemon.load_plugins_waiting_for_secrets().await;
    Ok(Json(info))
}

/// Delete a secret (steps that name it fail with `secret-not-found` from now on).
#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "Secret name")),
    responses((status = 204, description = "Deleted")))]
async fn delete_secret(State(s): State<ApiState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    s.daemon.secrets()?.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- templates -----

/// Register a workflow definition as a template (replacing one with its id).
#[utoipa::path(post, path = "/v1/templates", tag = "templates", request_body = WorkflowSource,
    responses((status = 201, description = "Registered (validated against the loaded plugins)", body = TemplateSummary)))]
async fn register_template(State(s): State<ApiState>, Body(body): Body<WorkflowSource>) -> ApiResult<Response> {
    let template = s.daemon.register_template(&body.source).await?;
    Ok((StatusCode::CREATED, Json(template)).into_response())
}

/// Every template, with its parameters.
#[utoipa::path(get, path = "/v1/templates", tag = "templates",
    responses((status = 200, description = "Every template, by id", body = TemplateList)))]
async fn templates(State(s): State<ApiState>) -> ApiResult<Json<TemplateList>> {
    Ok(Json(TemplateList { templates: s.daemon.templates().await? }))
}

/// A template with its text.
#[utoipa::path(get, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    responses((status = 200, description = "The template and its definition's text", body = TemplateDetail)))]
async fn template(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<TemplateDetail>> {
    Ok(Json(s.daemon.template(&id).await?))
}

/// Delete a template (workflows created from it stay).
#[utoipa::path(delete, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    responses((status = 204, description = "Deleted (workflows created from it stay)")))]
async fn delete_template(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.daemon.delete_template(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create and register a workflow from a template (the project
/// orchestrator's create_from_template): params set the template's inputs'
/// defaults (other names reach every step's parameters); overrides is a JSON
/// merge patch over its definition.
#[utoipa::path(post, path = "/v1/templates/{id}/workflows", tag = "templates",
    params(("id" = String, Path, description = "Template id")), request_body = FromTemplate,
    responses((status = 201, description = "The workflow created and registered", body = Registered)))]
async fn create_from_template(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Body(body): Body<FromTemplate>,
) -> ApiResult<Response> {
    let registered = s.daemon.create_from_template(&id, &body).await?;
    Ok((StatusCode::CREATED, Json(registered)).into_response())
}

// ----- transactions -----

/// Begin a transaction (QtForge's begin_transaction): executions started with
/// `transaction: <id>` join it.
#[utoipa::path(post, path = "/v1/transactions", tag = "transactions", request_body = BeginTransaction,
    responses((status = 201, description = "Begun (open)", body = Transaction)))]
async fn begin_transaction(State(s): State<ApiState>, Body(body): Body<BeginTransaction>) -> ApiResult<Response> {
    let tx = s.daemon.begin_transaction(&body.id).await?;
    Ok((StatusCode::CREATED, Json(tx)).into_response())
}

/// The most transactions one `GET /v1/transactions` returns.
const MAX_TRANSACTIONS: u32 = 10_000;

/// Transactions, newest first, filtered.
#[utoipa::path(get, path = "/v1/transactions", tag = "transactions", params(TransactionQuery),
    responses((status = 200, description = "Transactions, newest first (default 100)", body = TransactionList)))]
async fn transactions(State(s): State<ApiState>, Q(q): Q<TransactionQuery>) -> ApiResult<Json<TransactionList>> {
    let limit = q.limit.unwrap_or(100).min(MAX_TRANSACTIONS);
    Ok(Json(TransactionList { transactions: s.daemon.transactions(q.state, limit).await? }))
}

/// A transaction: state, executions, the compensations its rollback ran.
#[utoipa::path(get, path = "/v1/transactions/{id}", tag = "transactions",
    params(("id" = String, Path, description = "Transaction id")),
    responses((status = 200, description = "State, executions and the compensations its rollback ran", body = Transaction)))]
async fn transaction(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<Transaction>> {
    Ok(Json(s.daemon.transaction(&id).await?))
}

/// Commit a transaction: its executions' effects are permanent.
#[utoipa::path(post, path = "/v1/transactions/{id}/commit", tag = "transactions",
    params(("id" = String, Path, description = "Transaction id")),
    responses((status = 200, description = "Committed (409 InvalidState if not open or an execution still runs)", body = Transaction)))]
async fn commit_transaction(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<Transaction>> {
    Ok(Json(s.daemon.commit_transaction(&id).await?))
}

/// Roll back a transaction: every completed step of its completed executions
/// is compensated, newest first; answers with each compensation.
#[utoipa::path(post, path = "/v1/transactions/{id}/rollback", tag = "transactions",
    params(("id" = String, Path, description = "Transaction id")),
    responses((status = 200, description = "Rolled back (or rollback_failed), with each compensation \
        (409 InvalidState if not open or an execution still runs)", body = Transaction)))]
async fn rollback_transaction(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<Transaction>> {
    Ok(Json(s.daemon.rollback_transaction(&id).await?))
}

// ----- executions -----

/// Start an execution of a workflow's current version (or of `version`).
/// Inputs the workflow does not declare go into the execution's context.
#[utoipa::path(post, path = "/v1/executions", tag = "executions", request_body = StartExecution,
    responses((status = 202, description = "Started an execution of the workflow's current version \
        (or of `version`)", body = Started)))]
async fn start_execution(State(s): State<ApiState>, Body(body): Body<StartExecution>) -> ApiResult<Response> {
    let origin = Origin {
        version: body.version,
        transaction: body.transaction,
        priority: body.priority.unwrap_or_default(),
        ..Origin::default()
    };
    let exec = s.daemon.start(&body.workflow, body.inputs, origin).await?;
    let (status, meta) = s.daemon.status(exec.id()).await?;
    let started = Started {
        execution_id: exec.id().to_owned(),
        workflow_id: status.workflow_id,
        workflow_version: meta.workflow_version,
        status: status.status,
    };
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}

/// The most executions one `GET /v1/executions` returns.
const MAX_LIST: u32 = 10_000;

/// Executions, newest first, filtered.
#[utoipa::path(get, path = "/v1/executions", tag = "executions", params(ExecutionQuery),
    responses((status = 200, description = "Executions, newest first, filtered", body = ExecutionList)))]
async fn executions(State(s): State<ApiState>, Q(q): Q<ExecutionQuery>) -> ApiResult<Json<ExecutionList>> {
    let filter = ExecutionFilter {
        workflow_id: q.workflow,
        status: q.status,
        schedule_id: q.schedule,
        limit: q.limit.map(|l| l.min(MAX_LIST)),
        active: q.active.unwrap_or(false),
        before: q.before,
    };
    Ok(Json(ExecutionList { executions: s.daemon.executions(&filter).await? }))
}

async fn execution_view(s: &ApiState, id: &str) -> Result<Execution, ApiError> {
    let (status, meta) = s.daemon.status(id).await?;
    // Held: a state write failed; no step starts until it is recorded again.
    let held = s.daemon.live(id).is_some_and(|e| e.is_held());
    let (mut node, mut waiting_for_plugins) = (None, Vec::new());
    if let Some(placement) = s.daemon.placement(id).await? {
        node = placement.owner;
        if status.status == plexus_workflow::WorkflowStatus::Pending && node.is_none() {
            waiting_for_plugins = placement.missing;
        }
    }
    let (parent, parent_step) = match plexus_workflow::engine::parent_of(id) {
        Some((parent, step)) => (Some(parent.to_owned()), Some(step.to_owned())),
        None => (None, None),
    };
    Ok(Execution { status, meta, held, node, waiting_for_plugins, parent, parent_step })
}

/// The query of `GET /v1/executions/{id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    /// Wait up to this many ms (at most 60,000) for the execution to end.
    wait_ms: Option<u64>,
}

/// An execution's status with progress, steps and outputs.
///
/// With `?wait_ms=N`, first wait up to N ms (at most 60 s) for the execution
/// to end, answering `Timeout` (504) if it has not. When the daemon
/// begins to shut down, a waiting request is answered at once with the status.
#[utoipa::path(get, path = "/v1/executions/{id}", tag = "executions",
    params(("id" = String, Path, description = "Execution id"), WaitQuery),
    responses((status = 200, description = "Status with progress, steps, outputs; \
        ?wait_ms=N waits for the end (504 Timeout)", body = Execution)))]
async fn execution(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Q(q): Q<WaitQuery>,
) -> ApiResult<Json<Execution>> {
    if let Some(ms) = q.wait_ms
        && s.daemon.live(&id).is_none()
    {
        // In a cluster it may run on another node: wait on its record.
        let wait = std::time::Duration::from_millis(ms.min(60_000));
        if !s.daemon.wait_stored(&id, wait).await? && s.daemon.is_accepting() {
            let (status, _) = s.daemon.status(&id).await?;
            return Err(DaemonError::new(
                ErrorCode::Timeout,
                format!("execution `{id}` is still {} after {} ms", status.status.as_str(), wait.as_millis()),
            )
            .into());
        }
    }
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
    Ok(Json(execution_view(&s, &id).await?))
}

/// Per-step results and compensations.
#[utoipa::path(get, path = "/v1/executions/{id}/steps", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, description = "Per-step results and compensations", body = ExecutionSteps)))]
async fn execution_steps(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<ExecutionSteps>> {
    let (status, _) = s.daemon.status(&id).await?;
    let results = status.steps.iter().map(Into::into).collect();
    Ok(Json(ExecutionSteps { execution_id: id, steps: status.steps, compensations: status.compensations, results }))
}

/// The query of `GET /v1/executions/{id}/steps/{step}/items`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ItemQuery {
    /// Only items after this index (default: from the first).
    after: Option<usize>,
    /// At most this many items (default 1,000, at most 10,000).
    limit: Option<u32>,
}

/// A map step's items (`for_each`), each with its status, attempts, output and error.
#[utoipa::path(get, path = "/v1/executions/{id}/steps/{step}/items", tag = "executions",
    params(("id" = String, Path, description = "Execution id"), ("step" = String, Path, description = "Step id"), ItemQuery),
    responses((status = 200, description = "The step's items recorded so far, by index", body = ExecutionItems)))]
async fn execution_items(
    State(s): State<ApiState>,
    Path((id, step)): Path<(String, String)>,
    Q(q): Q<ItemQuery>,
) -> ApiResult<Json<ExecutionItems>> {
    let (status, _) = s.daemon.status(&id).await?;
    let index = status
        .steps
        .iter()
        .position(|r| r.id == step)
        .ok_or_else(|| DaemonError::not_found(format!("step `{step}` of execution {id}")))?;
    let limit = q.limit.unwrap_or(1000).min(MAX_LIST);
    let items = s.daemon.store().items(&id, Some(index), q.after, limit).await.map_err(DaemonError::from)?;
    let items = items.into_iter().map(|(_, r)| r).collect();
    Ok(Json(ExecutionItems { execution_id: id, step_id: step, items }))
}

/// The artifacts an execution's steps wrote (contract 0.4), oldest first:
/// references, names, sizes and the steps that wrote them.
#[utoipa::path(get, path = "/v1/executions/{id}/artifacts", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, description = "The execution's artifacts", body = ExecutionArtifacts)))]
async fn execution_artifacts(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<ExecutionArtifacts>> {
    s.daemon.status(&id).await?;
    let artifacts = s.daemon.store().artifacts(&id).await.map_err(DaemonError::from)?;
    Ok(Json(ExecutionArtifacts { execution_id: id, artifacts }))
}

/// The bytes of artifact `digest` (`sha256:<64 hex>`) of an execution,
/// streamed (`application/octet-stream`). 404 when the execution does not
/// hold it or its bytes are gone.
#[utoipa::path(get, path = "/v1/executions/{id}/artifacts/{digest}", tag = "executions",
    params(("id" = String, Path, description = "Execution id"), ("digest" = String, Path, description = "The artifact's digest, sha256:<64 hex>")),
    responses((status = 200, description = "The artifact's bytes", content_type = "application/octet-stream", body = [u8])))]
async fn execution_artifact(
    State(s): State<ApiState>,
    Path((id, digest)): Path<(String, String)>,
) -> ApiResult<axum::response::Response> {
    let not_found = || DaemonError::not_found(format!("artifact {digest} of execution {id}"));
    let reference =
        plexus_sdk::ArtifactRef { artifact: digest.clone(), name: String::new(), bytes: 0, media_type: None };
    if reference.digest_hex().is_none() {
        return Err(
            DaemonError::new(ErrorCode::InvalidConfiguration, format!("`{digest}`: expected sha256:<64 hex>")).into()
        );
    }
    let held = s.daemon.store().holds_artifact(std::slice::from_ref(&id), &digest).await.map_err(DaemonError::from)?;
    let artifacts = s.daemon.artifacts().ok_or_else(not_found)?;
    let path = artifacts.store.path_of(&reference).filter(|_| held).ok_or_else(not_found)?;
    let file = std::fs::File::open(&path).map_err(|_| not_found())?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    // Read on a blocking thread, 256 KiB at a time: memory stays bounded whatever the size.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = file;
        loop {
            let mut chunk = vec![0u8; 256 << 10];
            match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.blocking_send(Ok(chunk)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let response = axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/octet-stream")
        .header(axum::http::header::CONTENT_LENGTH, size)
        .body(axum::body::Body::from_stream(stream))
        .map_err(|e| DaemonError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(response)
}

/// The query of `GET /v1/executions/{id}/logs`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    /// Only events after this `seq` (default 0: from the start).
    after: Option<i64>,
    /// At most this many events (default 1,000, at most 10,000).
    limit: Option<u32>,
}

/// The execution's log (every transition) after event ?after.
#[utoipa::path(get, path = "/v1/executions/{id}/logs", tag = "executions",
    params(("id" = String, Path, description = "Execution id"), LogQuery),
    responses((status = 200, description = "The execution's log (every transition) after event ?after", body = ExecutionLogs)))]
async fn execution_logs(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Q(q): Q<LogQuery>,
) -> ApiResult<Json<ExecutionLogs>> {
    let (status, events) = s.daemon.logs(&id, q.after.unwrap_or(0), q.limit.unwrap_or(1000).min(MAX_LIST)).await?;
    Ok(Json(ExecutionLogs { execution_id: id, status, events }))
}

/// Deliver a signal to an execution's wait steps named so (now, or when
/// they wait): its payload becomes their output. A parked execution runs
/// again to take it. 409 when one of that name came before, or it ended.
#[utoipa::path(post, path = "/v1/executions/{id}/signals/{name}", tag = "executions",
    params(("id" = String, Path, description = "Execution id"), ("name" = String, Path, description = "Signal name")),
    request_body = SignalRequest,
    responses((status = 202, description = "Recorded; its wait steps take it", body = Signalled)))]
async fn signal_execution(
    State(s): State<ApiState>,
    Path((id, name)): Path<(String, String)>,
    Body(request): Body<SignalRequest>,
) -> ApiResult<Response> {
    let signalled = s.daemon.signal(&id, &name, request).await?;
    Ok((StatusCode::ACCEPTED, Json(signalled)).into_response())
}

/// Cancel: running steps stop, completed ones are compensated.
#[utoipa::path(post, path = "/v1/executions/{id}/cancel", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 202, description = "Cancel: running steps stop, completed ones are compensated", body = Cancelling)))]
async fn cancel_execution(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Response> {
    s.daemon.cancel(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(Cancelling { execution_id: id, cancelling: true })).into_response())
}

/// Run a failed execution again from the steps that did not complete.
#[utoipa::path(post, path = "/v1/executions/{id}/retry", tag = "executions",
    params(("id" = String, Path, description = "Execution id")),
    responses((status = 202, description = "Run a failed execution again from the steps that did not complete", body = Execution)))]
async fn retry_execution(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Response> {
    s.daemon.retry(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(execution_view(&s, &id).await?)).into_response())
}

// ----- schedules -----

/// Create a schedule.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", request_body = ScheduleSpec,
    responses((status = 201, description = "Created", body = ScheduleView)))]
async fn create_schedule(State(s): State<ApiState>, Body(spec): Body<ScheduleSpec>) -> ApiResult<Response> {
    let view = s.schedules.create(spec).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Schedules with their next fire times.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules",
    responses((status = 200, description = "Schedules with their next fire times", body = ScheduleList)))]
async fn schedules(State(s): State<ApiState>) -> ApiResult<Json<ScheduleList>> {
    Ok(Json(ScheduleList { schedules: s.schedules.list().await? }))
}

/// One schedule and its latest 50 fires.
#[utoipa::path(get, path = "/v1/schedules/{id}", tag = "schedules", params(("id" = String, Path, description = "Schedule id")),
    responses((status = 200, description = "One schedule and its latest 50 fires", body = ScheduleDetails)))]
async fn schedule(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<ScheduleDetails>> {
    Ok(Json(ScheduleDetails { view: s.schedules.get(&id).await?, history: s.schedules.history(&id, 50).await? }))
}

/// Pause a schedule.
#[utoipa::path(post, path = "/v1/schedules/{id}/pause", tag = "schedules", params(("id" = String, Path, description = "Schedule id")),
    responses((status = 200, description = "Paused", body = ScheduleView)))]
async fn pause_schedule(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<ScheduleView>> {
    Ok(Json(s.schedules.pause(&id).await?))
}

/// Resume a schedule (missed fires are not caught up).
#[utoipa::path(post, path = "/v1/schedules/{id}/resume", tag = "schedules", params(("id" = String, Path, description = "Schedule id")),
    responses((status = 200, description = "Resumed (missed fires are not caught up)", body = ScheduleView)))]
async fn resume_schedule(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<ScheduleView>> {
    Ok(Json(s.schedules.resume(&id).await?))
}

/// Delete a schedule.
#[utoipa::path(delete, path = "/v1/schedules/{id}", tag = "schedules", params(("id" = String, Path, description = "Schedule id")),
    responses((status = 204, description = "Deleted")))]
async fn delete_schedule(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.schedules.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Fire a schedule now.
#[utoipa::path(post, path = "/v1/schedules/{id}/run", tag = "schedules", params(("id" = String, Path, description = "Schedule id")),
    responses((status = 202, description = "Fired now", body = Fired)))]
async fn run_schedule(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Response> {
    let execution_id = s.schedules.run_now(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(Fired { schedule_id: id, execution_id })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
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
