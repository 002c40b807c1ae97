//! [`Client`]: one typed method per route of the daemon's API, over TCP or a
//! Unix socket (hyper, HTTP/1.1).

use crate::status::WorkflowStatus;
use crate::{
    AddressError, CallPlugin, CallResult, Cancelling, DaemonError, ErrorCode, Execution, ExecutionList, ExecutionLogs,
    ExecutionQuery, ExecutionSteps, Fired, Health, Listen, PluginDetails, PluginList, Registered, Reloaded,
    ScheduleDetails, ScheduleList, ScheduleSpec, ScheduleView, StartExecution, Started, Validation, WorkflowList,
    WorkflowSource, WorkflowVersion, path,
};
use crate::{BeginTransaction, Cleared, Transaction, WorkflowHistory, WorkflowRollback};
use crate::{ExecutionItems, NodeList, SignalRequest, Signalled};
use crate::{FromTemplate, TemplateDetail, TemplateList, TemplateSummary};
use crate::{HookCreated, HookDetails, HookList, HookSpec};
use crate::{SecretInfo, SecretList, SecretSet};
use crate::{TransactionList, TransactionQuery, TransactionState};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// What a request to the daemon can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon answered with a non-2xx status. A body that is not the
    /// daemon's JSON error (e.g. from a proxy) becomes [`ErrorCode::Unknown`]
    /// with the body as its message.
    #[error("{} ({}){}", error.message, error.code, error.details.iter().map(|d| format!("\n  {d}")).collect::<String>())]
    Refused {
        /// HTTP status.
        status: u16,
        /// The daemon's error: code, message, details.
        error: DaemonError,
    },
    /// The daemon could not be reached, or the connection broke.
    #[error(
        "cannot reach the plexus daemon at {address}: {cause} (is `plexus daemon` running? set --url or $PLEXUS_URL)"
    )]
    Unreachable {
        /// Where it was looked for.
        address: String,
        /// Why it could not be reached.
        cause: String,
    },
    /// An address that is neither `host:port` nor `unix:/path`.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// The request could not be built (e.g. a path that is not a valid URI).
    #[error("invalid request: {0}")]
    Request(String),
    /// A 2xx answer whose body is not the type the route promises (a daemon
    /// of another version?).
    #[error("unexpected answer to {route}: {cause}")]
    Answer {
        /// `METHOD /path`.
        route: String,
        /// What did not fit.
        cause: String,
    },
}

impl ClientError {
    /// The HTTP status of a refused request (`None` for the other errors).
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The daemon's error code of a refused request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Refused { error, .. } => Some(error.code),
            _ => None,
        }
    }
}

/// A client of one daemon. Every call blocks the calling thread on the
/// client's own single-threaded tokio runtime; do not call it from inside
/// another tokio runtime's worker (use a blocking task).
pub struct Client {
    listen: Listen,
    token: String,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    /// A client of the daemon at `listen`, sending `token` as the bearer token.
    ///
    /// # Errors
    /// [`ClientError::Request`] when the client's runtime cannot start.
    pub fn new(listen: Listen, token: impl Into<String>) -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Request(format!("cannot start the client's runtime: {e}")))?;
        Ok(Self { listen, token: token.into(), runtime })
    }

    /// Where this client sends its requests.
    pub fn listen(&self) -> &Listen {
        &self.listen
    }

    // ----- the routes -----

    /// `GET /v1/health` (needs no token).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn health(&self) -> Result<Health, ClientError> {
        self.call("GET", "/v1/health", NONE)
    }

    /// `GET /metrics`: the OpenMetrics text.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub fn metrics(&self) -> Result<String, ClientError> {
        let (_, body) = self.runtime.block_on(self.send("GET", "/metrics", None))?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// `GET /v1/openapi.json`: the API's OpenAPI 3.1 document.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn openapi(&self) -> Result<Value, ClientError> {
        self.call("GET", "/v1/openapi.json", NONE)
    }

    /// `GET /v1/nodes`: the daemons sharing this daemon's state database.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn nodes(&self) -> Result<NodeList, ClientError> {
        self.call("GET", "/v1/nodes", NONE)
    }

    /// `GET /v1/plugins`.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn plugins(&self) -> Result<PluginList, ClientError> {
        self.call("GET", "/v1/plugins", NONE)
    }

    /// `GET /v1/plugins/{id}`.
    ///
    /// # Errors
    /// As [`Client::call`]; `PluginNotFound` when no such plugin is loaded.
    pub fn plugin(&self, id: &str) -> Result<PluginDetails, ClientError> {
        self.call("GET", &path(&["v1", "plugins", id], &[]), NONE)
    }

    /// `POST /v1/plugins/{id}/call`: call operation `request.operation` of
    /// plugin `id` (see [`CallPlugin`]).
    ///
    /// # Errors
    /// As [`Client::call`]; the plugin's own failure is
    /// [`ErrorCode::ExecutionFailed`](crate::ErrorCode::ExecutionFailed).
    pub fn call_plugin(&self, id: &str, request: &CallPlugin) -> Result<CallResult, ClientError> {
        self.call("POST", &path(&["v1", "plugins", id, "call"], &[]), Some(request))
    }

    /// `POST /v1/plugins/reload`: rescan the plugin directories now.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn reload_plugins(&self) -> Result<Reloaded, ClientError> {
        self.call("POST", "/v1/plugins/reload", NONE)
    }

    /// `GET /v1/workflows`.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn workflows(&self) -> Result<WorkflowList, ClientError> {
        self.call("GET", "/v1/workflows", NONE)
    }

    /// `POST /v1/workflows`: register `source` (a new version if the id exists).
    ///
    /// # Errors
    /// As [`Client::call`]; `InvalidConfiguration` with every problem in `details`.
    pub fn register_workflow(&self, source: impl Into<String>) -> Result<Registered, ClientError> {
        self.call("POST", "/v1/workflows", Some(&WorkflowSource { source: source.into() }))
    }

    /// `POST /v1/workflows/validate`: check `source` against the loaded plugins.
    ///
    /// # Errors
    /// As [`Client::call`]; `InvalidConfiguration` with every problem in `details`.
    pub fn validate_workflow(&self, source: impl Into<String>) -> Result<Validation, ClientError> {
        self.call("POST", "/v1/workflows/validate", Some(&WorkflowSource { source: source.into() }))
    }

    /// `GET /v1/workflows/{id}`: the current version, or `version`.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn workflow(&self, id: &str, version: Option<u32>) -> Result<WorkflowVersion, ClientError> {
        let version = version.map(|v| v.to_string());
        self.call("GET", &path(&["v1", "workflows", id], &[("version", version.as_deref())]), NONE)
    }

    /// `GET /v1/workflows/{id}/versions`: every version, newest first.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn workflow_history(&self, id: &str) -> Result<WorkflowHistory, ClientError> {
        self.call("GET", &path(&["v1", "workflows", id, "versions"], &[]), NONE)
    }

    /// `POST /v1/workflows/{id}/rollback`: make `version` current again (as a new version).
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`; `InvalidConfiguration` if that
    /// version no longer validates against the loaded plugins.
    pub fn rollback_workflow(&self, id: &str, version: u32) -> Result<Registered, ClientError> {
        self.call("POST", &path(&["v1", "workflows", id, "rollback"], &[]), Some(&WorkflowRollback { version }))
    }

    /// `POST /v1/hooks`: create a webhook; the answer holds its secret, this once.
    ///
    /// # Errors
    /// As [`Client::call`]; `InvalidState` when the daemon has no secrets key
    /// (hook secrets are kept encrypted with it).
    pub fn create_hook(&self, spec: &HookSpec) -> Result<HookCreated, ClientError> {
        self.call("POST", "/v1/hooks", Some(spec))
    }

    /// `GET /v1/hooks`.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn hooks(&self) -> Result<HookList, ClientError> {
        self.call("GET", "/v1/hooks", NONE)
    }

    /// `GET /v1/hooks/{id}`: the hook and its recent deliveries.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn hook(&self, id: &str) -> Result<HookDetails, ClientError> {
        self.call("GET", &path(&["v1", "hooks", id], &[]), NONE)
    }

    /// `DELETE /v1/hooks/{id}`.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn delete_hook(&self, id: &str) -> Result<(), ClientError> {
        self.call_empty("DELETE", &path(&["v1", "hooks", id], &[]))
    }

    /// `POST /v1/hooks/{id}`: deliver `body` to hook `id`, signed with
    /// `secret` as delivery `delivery` at the current time (what a webhook
    /// sender does; see [`crate::hooks::signature`]).
    ///
    /// # Errors
    /// As [`Client::call`]: `Unauthorized` for a bad signature, `AlreadyExists`
    /// for a delivery id seen before.
    pub fn deliver_hook(&self, id: &str, secret: &str, delivery: &str, body: &[u8]) -> Result<Started, ClientError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let headers = [
            (crate::hooks::TIMESTAMP_HEADER, now.to_string()),
            (crate::hooks::DELIVERY_HEADER, delivery.to_owned()),
            (crate::hooks::SIGNATURE_HEADER, crate::hooks::signature(secret, now, delivery, body)),
        ];
        let route = path(&["v1", "hooks", id], &[]);
        let (_, bytes) = self.runtime.block_on(self.send_with("POST", &route, Some(body.to_vec()), &headers))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Answer { route: format!("POST {route}"), cause: e.to_string() })
    }

    /// `PUT /v1/secrets/{name}`: set secret `name` to `value` (replacing it).
    ///
    /// # Errors
    /// As [`Client::call`]; `InvalidState` when the daemon has no secrets key.
    pub fn set_secret(&self, name: &str, value: &str) -> Result<SecretInfo, ClientError> {
        self.call("PUT", &path(&["v1", "secrets", name], &[]), Some(&SecretSet { value: value.to_owned() }))
    }

    /// `GET /v1/secrets`: names and times, never values.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn secrets(&self) -> Result<SecretList, ClientError> {
        self.call("GET", "/v1/secrets", NONE)
    }

    /// `DELETE /v1/secrets/{name}`.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn delete_secret(&self, name: &str) -> Result<(), ClientError> {
        self.call_empty("DELETE", &path(&["v1", "secrets", name], &[]))
    }

    /// `POST /v1/templates`: register `source` as a template (replacing one
    /// with the same id).
    ///
    /// # Errors
    /// As [`Client::call`]; `InvalidConfiguration` with every problem in `details`.
    pub fn register_template(&self, source: impl Into<String>) -> Result<TemplateSummary, ClientError> {
        self.call("POST", "/v1/templates", Some(&WorkflowSource { source: source.into() }))
    }

    /// `GET /v1/templates`.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn templates(&self) -> Result<TemplateList, ClientError> {
        self.call("GET", "/v1/templates", NONE)
    }

    /// `GET /v1/templates/{id}`.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn template(&self, id: &str) -> Result<TemplateDetail, ClientError> {
        self.call("GET", &path(&["v1", "templates", id], &[]), NONE)
    }

    /// `DELETE /v1/templates/{id}` (workflows created from it stay).
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn delete_template(&self, id: &str) -> Result<(), ClientError> {
        self.call_empty("DELETE", &path(&["v1", "templates", id], &[]))
    }

    /// `POST /v1/templates/{id}/workflows`: create and register a workflow
    /// from template `id` (the project orchestrator's `create_from_template`).
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`; `InvalidConfiguration` for bad
    /// params or overrides, or a created definition that does not validate.
    pub fn create_from_template(&self, id: &str, request: &FromTemplate) -> Result<Registered, ClientError> {
        self.call("POST", &path(&["v1", "templates", id, "workflows"], &[]), Some(request))
    }

    /// `DELETE /v1/workflows`: delete every workflow; returns how many.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn clear_workflows(&self) -> Result<Cleared, ClientError> {
        self.call("DELETE", "/v1/workflows", NONE)
    }

    /// `POST /v1/transactions`: begin transaction `id`.
    ///
    /// # Errors
    /// As [`Client::call`]; `AlreadyExists`; `InvalidConfiguration` for a bad id.
    pub fn begin_transaction(&self, id: &str) -> Result<Transaction, ClientError> {
        self.call("POST", "/v1/transactions", Some(&BeginTransaction { id: id.to_owned() }))
    }

    /// `GET /v1/transactions`, newest first, filtered.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn transactions(&self, query: &TransactionQuery) -> Result<TransactionList, ClientError> {
        let limit = query.limit.map(|l| l.to_string());
        let route = path(
            &["v1", "transactions"],
            &[("state", query.state.map(TransactionState::as_str)), ("limit", limit.as_deref())],
        );
        self.call("GET", &route, NONE)
    }

    /// `GET /v1/transactions/{id}`.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn transaction(&self, id: &str) -> Result<Transaction, ClientError> {
        self.call("GET", &path(&["v1", "transactions", id], &[]), NONE)
    }

    /// `POST /v1/transactions/{id}/commit`.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`; `InvalidState` if it is not open or
    /// an execution of it still runs.
    pub fn commit_transaction(&self, id: &str) -> Result<Transaction, ClientError> {
        self.call("POST", &path(&["v1", "transactions", id, "commit"], &[]), NONE)
    }

    /// `POST /v1/transactions/{id}/rollback`: compensates its executions' completed steps.
    ///
    /// # Errors
    /// As [`Client::commit_transaction`].
    pub fn rollback_transaction(&self, id: &str) -> Result<Transaction, ClientError> {
        self.call("POST", &path(&["v1", "transactions", id, "rollback"], &[]), NONE)
    }

    /// `DELETE /v1/workflows/{id}`; executions pinned to it go on.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn delete_workflow(&self, id: &str) -> Result<(), ClientError> {
        self.call_empty("DELETE", &path(&["v1", "workflows", id], &[]))
    }

    /// `GET /v1/executions`, filtered, newest first.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn executions(&self, query: &ExecutionQuery) -> Result<ExecutionList, ClientError> {
        let limit = query.limit.map(|l| l.to_string());
        let route = path(
            &["v1", "executions"],
            &[
                ("workflow", query.workflow.as_deref()),
                ("status", query.status.map(WorkflowStatus::as_str)),
                ("schedule", query.schedule.as_deref()),
                ("limit", limit.as_deref()),
                ("active", query.active.map(|a| if a { "true" } else { "false" })),
                ("before", query.before.as_deref()),
            ],
        );
        self.call("GET", &route, NONE)
    }

    /// `POST /v1/executions`: start `workflow`'s current version with `inputs`.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound` for an unknown workflow,
    /// `InvalidConfiguration` for bad inputs, `InvalidState` while the daemon stops.
    pub fn start(&self, workflow: &str, inputs: Map<String, Value>) -> Result<Started, ClientError> {
        self.start_execution(&StartExecution {
            workflow: workflow.to_owned(),
            version: None,
            transaction: None,
            inputs,
            priority: None,
        })
    }

    /// `POST /v1/executions` with every option (a version to pin).
    ///
    /// # Errors
    /// As [`Client::start`]; `NotFound` for an unknown version.
    pub fn start_execution(&self, request: &StartExecution) -> Result<Started, ClientError> {
        self.call("POST", "/v1/executions", Some(request))
    }

    /// `GET /v1/executions/{id}`; with `wait_ms`, the daemon first waits up to
    /// that long (at most 60,000 ms) for the execution to end.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`; `Timeout` (504) when it is still
    /// running after `wait_ms`.
    pub fn execution(&self, id: &str, wait_ms: Option<u64>) -> Result<Execution, ClientError> {
        let wait = wait_ms.map(|ms| ms.to_string());
        self.call("GET", &path(&["v1", "executions", id], &[("wait_ms", wait.as_deref())]), NONE)
    }

    /// `GET /v1/executions/{id}/steps`.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn steps(&self, id: &str) -> Result<ExecutionSteps, ClientError> {
        self.call("GET", &path(&["v1", "executions", id, "steps"], &[]), NONE)
    }

    /// `GET /v1/executions/{id}/logs`: events after `after` (a `seq`; 0 for
    /// the start), at most `limit` (default 1,000, at most 10,000).
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn logs(&self, id: &str, after: i64, limit: Option<u32>) -> Result<ExecutionLogs, ClientError> {
        let (after, limit) = (after.to_string(), limit.map(|l| l.to_string()));
        let route = path(&["v1", "executions", id, "logs"], &[("after", Some(&after)), ("limit", limit.as_deref())]);
        self.call("GET", &route, NONE)
    }

    /// `GET /v1/executions/{id}/steps/{step}/items`: map step `step`'s items
    /// after item `after` (exclusive), at most `limit` (default 1,000).
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound` (no such execution or step).
    pub fn items(
        &self,
        id: &str,
        step: &str,
        after: Option<usize>,
        limit: Option<u32>,
    ) -> Result<ExecutionItems, ClientError> {
        let (after, limit) = (after.map(|a| a.to_string()), limit.map(|l| l.to_string()));
        let query = [("after", after.as_deref()), ("limit", limit.as_deref())];
        let route = path(&["v1", "executions", id, "steps", step, "items"], &query);
        self.call("GET", &route, NONE)
    }

    /// `GET /v1/executions/{id}/artifacts`: the artifacts execution `id` holds.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn artifacts(&self, id: &str) -> Result<crate::ExecutionArtifacts, ClientError> {
        self.call("GET", &path(&["v1", "executions", id, "artifacts"], &[]), NONE)
    }

    /// `GET /v1/executions/{id}/artifacts/{digest}`: the artifact's bytes,
    /// written to `out` as they come (never held whole); how many.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`; [`ClientError::Request`] when `out`
    /// cannot be written.
    pub fn download_artifact(&self, id: &str, digest: &str, out: &mut dyn std::io::Write) -> Result<u64, ClientError> {
        use http_body_util::BodyExt;
        let route = path(&["v1", "executions", id, "artifacts", digest], &[]);
        let unreachable = |cause: String| ClientError::Unreachable { address: self.listen.to_string(), cause };
        let request = Request::builder()
            .method("GET")
            .uri(&route)
            .header("host", "plexus")
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Request(e.to_string()))?;
        self.runtime.block_on(async {
            let transport = |e: hyper::Error| unreachable(e.to_string());
            let mut sender = match &self.listen {
                Listen::Tcp(addr) => {
                    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| unreachable(e.to_string()))?;
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(transport)?;
                    tokio::spawn(conn);
                    sender
                }
                #[cfg(unix)]
                Listen::Unix(path) => {
                    let stream = tokio::net::UnixStream::connect(path).await.map_err(|e| unreachable(e.to_string()))?;
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(transport)?;
                    tokio::spawn(conn);
                    sender
                }
                #[cfg(not(unix))]
                Listen::Unix(_) => return Err(unreachable("Unix sockets need a Unix system".into())),
            };
            let response = sender.send_request(request).await.map_err(transport)?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            if !(200..300).contains(&status) {
                let text = http_body_util::Limited::new(body, 1 << 20)
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let error = serde_json::from_slice::<DaemonError>(&text).unwrap_or_else(|_| {
                    DaemonError::new(
                        ErrorCode::Unknown,
                        format!("HTTP {status}: {}", String::from_utf8_lossy(&text).trim()),
                    )
                });
                return Err(ClientError::Refused { status, error });
            }
            let mut written = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(transport)?;
                if let Some(data) = frame.data_ref() {
                    out.write_all(data).map_err(|e| ClientError::Request(format!("writing the artifact: {e}")))?;
                    written += data.len() as u64;
                }
            }
            out.flush().map_err(|e| ClientError::Request(format!("writing the artifact: {e}")))?;
            Ok(written)
        })
    }

    /// `POST /v1/executions/{id}/signals/{name}`: deliver signal `name`
    /// (for the execution's wait steps named so).
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`; `InvalidState` (it ended);
    /// `AlreadyExists` (a signal of that name came before).
    pub fn signal(&self, id: &str, name: &str, request: &SignalRequest) -> Result<Signalled, ClientError> {
        self.call("POST", &path(&["v1", "executions", id, "signals", name], &[]), Some(request))
    }

    /// `POST /v1/executions/{id}/cancel`.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`; `InvalidState` when it already ended.
    pub fn cancel(&self, id: &str) -> Result<Cancelling, ClientError> {
        self.call("POST", &path(&["v1", "executions", id, "cancel"], &[]), NONE)
    }

    /// `POST /v1/executions/{id}/retry`: run a failed execution again from
    /// the steps that did not complete.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`; `InvalidState` unless it failed.
    pub fn retry(&self, id: &str) -> Result<Execution, ClientError> {
        self.call("POST", &path(&["v1", "executions", id, "retry"], &[]), NONE)
    }

    /// `GET /v1/schedules`.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn schedules(&self) -> Result<ScheduleList, ClientError> {
        self.call("GET", "/v1/schedules", NONE)
    }

    /// `POST /v1/schedules`.
    ///
    /// # Errors
    /// As [`Client::call`]; `InvalidConfiguration` naming the bad field;
    /// `AlreadyExists`.
    pub fn create_schedule(&self, spec: &ScheduleSpec) -> Result<ScheduleView, ClientError> {
        self.call("POST", "/v1/schedules", Some(spec))
    }

    /// `GET /v1/schedules/{id}`: the schedule and its latest fires.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn schedule(&self, id: &str) -> Result<ScheduleDetails, ClientError> {
        self.call("GET", &path(&["v1", "schedules", id], &[]), NONE)
    }

    /// `DELETE /v1/schedules/{id}`.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn delete_schedule(&self, id: &str) -> Result<(), ClientError> {
        self.call_empty("DELETE", &path(&["v1", "schedules", id], &[]))
    }

    /// `POST /v1/schedules/{id}/pause`.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn pause_schedule(&self, id: &str) -> Result<ScheduleView, ClientError> {
        self.call("POST", &path(&["v1", "schedules", id, "pause"], &[]), NONE)
    }

    /// `POST /v1/schedules/{id}/resume` (missed fires are not caught up).
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn resume_schedule(&self, id: &str) -> Result<ScheduleView, ClientError> {
        self.call("POST", &path(&["v1", "schedules", id, "resume"], &[]), NONE)
    }

    /// `POST /v1/schedules/{id}/run`: fire it now.
    ///
    /// # Errors
    /// As [`Client::call`]; `NotFound`.
    pub fn run_schedule(&self, id: &str) -> Result<Fired, ClientError> {
        self.call("POST", &path(&["v1", "schedules", id, "run"], &[]), NONE)
    }

    // ----- the transport -----

    /// Send `body` as JSON to `method path` and read the answer as `T`. For
    /// routes this client has no method for; `path` must be encoded already
    /// (see [`path`]).
    ///
    /// # Errors
    /// [`ClientError::Refused`] for a non-2xx answer, [`ClientError::Answer`]
    /// for a body that is not a `T`, and as [`Client::request`].
    pub fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| ClientError::Request(e.to_string()))?),
            None => None,
        };
        let (_, bytes) = self.runtime.block_on(self.send(method, path, body))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Answer { route: format!("{method} {path}"), cause: e.to_string() })
    }

    fn call_empty(&self, method: &str, path: &str) -> Result<(), ClientError> {
        self.runtime.block_on(self.send(method, path, None)).map(drop)
    }

    /// Send one request with a raw JSON body and read the JSON answer (an
    /// empty body reads as `null`, one that is not JSON as a string).
    ///
    /// # Errors
    /// [`ClientError::Refused`] for a non-2xx answer, [`ClientError::Unreachable`]
    /// when the daemon cannot be reached, [`ClientError::Request`] for a
    /// request that cannot be built.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        let body = body.map(|b| b.to_string().into_bytes());
        let (_, text) = self.runtime.block_on(self.send(method, path, body))?;
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&text).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&text).into_owned()))
        })
    }

    async fn send(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<(u16, Bytes), ClientError> {
        self.send_with(method, path, body, &[]).await
    }

    async fn send_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> Result<(u16, Bytes), ClientError> {
        let unreachable = |cause: String| ClientError::Unreachable { address: self.listen.to_string(), cause };
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "plexus")
            .header("authorization", format!("Bearer {}", self.token));
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let exchanged = async {
            match &self.listen {
                Listen::Tcp(addr) => {
                    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| unreachable(e.to_string()))?;
                    exchange(TokioIo::new(stream), request).await
                }
                #[cfg(unix)]
                Listen::Unix(path) => {
                    let stream = tokio::net::UnixStream::connect(path).await.map_err(|e| unreachable(e.to_string()))?;
                    exchange(TokioIo::new(stream), request).await
                }
                #[cfg(not(unix))]
                Listen::Unix(_) => Err(unreachable("Unix sockets need a Unix system".into())),
            }
        };
        let (status, text) = tokio::time::timeout(REQUEST_TIMEOUT, exchanged)
            .await
            .map_err(|_| unreachable(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())))?
            .map_err(|e| match e {
                Exchange::Transport(cause) => unreachable(cause),
                Exchange::TooLarge => ClientError::Answer {
                    route: format!("{method} {path}"),
                    cause: format!("the answer is over {MAX_ANSWER_BYTES} bytes"),
                },
                Exchange::Unreachable(e) => e,
            })?;
        if (200..300).contains(&status) {
            return Ok((status, text));
        }
        let error = serde_json::from_slice::<DaemonError>(&text).unwrap_or_else(|_| {
            let body = String::from_utf8_lossy(&text);
            DaemonError::new(ErrorCode::Unknown, format!("HTTP {status}: {}", body.trim()))
        });
        Err(ClientError::Refused { status, error })
    }
}

/// No request body.
const NONE: Option<&()> = None;

/// The longest a request may take, answer included: longer than the
/// daemon's longest long-poll (`wait_ms`, at most 60 s).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The largest answer read (bytes); the daemon's largest page is far smaller.
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Why an exchange gave no answer.
enum Exchange {
    /// The connection failed (the cause, one line).
    Transport(String),
    /// The answer was over [`MAX_ANSWER_BYTES`].
    TooLarge,
    /// Connecting failed.
    Unreachable(ClientError),
}

impl From<ClientError> for Exchange {
    fn from(e: ClientError) -> Self {
        Self::Unreachable(e)
    }
}

async fn exchange<I>(io: TokioIo<I>, request: Request<Full<Bytes>>) -> Result<(u16, Bytes), Exchange>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let transport = |e: hyper::Error| Exchange::Transport(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(transport)?;
    tokio::spawn(conn);
    let response = sender.send_request(request).await.map_err(transport)?;
    let status = response.status().as_u16();
    let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect().await.map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() { Exchange::TooLarge } else { Exchange::Transport(e.to_string()) }
    })?;
    Ok((status, body.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_over_the_limit_is_refused_not_read_whole() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let huge = MAX_ANSWER_BYTES + 1;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {huge}\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            let chunk = vec![b' '; 1 << 20];
            for _ in 0..=(huge >> 20) {
                if stream.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let client = Client::new(Listen::Tcp(addr.to_string()), "t").unwrap();
        let err = client.health().unwrap_err();
        assert!(matches!(&err, ClientError::Answer { cause, .. } if cause.contains("bytes")), "{err}");
        drop(client);
        server.join().unwrap();
    }

    #[test]
    fn a_daemon_that_is_not_there_is_unreachable() {
        // Bind and drop a listener: nothing listens on that port afterwards.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let client = Client::new(Listen::Tcp(addr.to_string()), "t").unwrap();
        let err = client.health().unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
        assert_eq!(err.status(), None);
    }
}
