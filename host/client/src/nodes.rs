//! `/v1/nodes`: the daemons sharing one state database.
//!
//! A daemon on a PostgreSQL store is a **node** of a cluster: it registers
//! itself, renews its lease by heartbeat, claims executions, and advertises
//! the plugins it has loaded; any node answers every API call. A daemon on
//! SQLite is a cluster of one and lists itself.

use serde::{Deserialize, Serialize};

/// One node, as `GET /v1/nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeView {
    /// Node id (`<host>-<pid>-<8 hex digits>`), printed by `plexus daemon` at start.
    pub id: String,
    /// Where its API listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// When it started, ms since the Unix epoch.
    pub started_at_ms: u64,
    /// Its last heartbeat, ms since the Unix epoch (the database's clock).
    pub heartbeat_ms: u64,
    /// Until when its lease holds, ms since the Unix epoch: after that its
    /// executions are claimed by other nodes.
    pub lease_until_ms: u64,
    /// `alive` (lease held), `stopped` (shut down cleanly) or `lost` (the
    /// lease ran out: killed, hung or cut off).
    pub state: NodeState,
    /// The plugin ids it has loaded, and the aliases it resolves to them
    /// (an execution is claimed only by a node that has every name its steps use).
    pub plugins: Vec<String>,
    /// Executions it runs at once at most.
    pub workers: u64,
    /// The executions it owns that have not ended (at most 100 listed).
    pub executions: Vec<String>,
    /// How many executions it owns that have not ended.
    pub running: u64,
}

/// A node's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Its lease holds.
    Alive,
    /// It shut down cleanly (its executions were handed back).
    Stopped,
    /// Its lease ran out.
    Lost,
}

impl NodeState {
    /// `alive`, `stopped` or `lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Stopped => "stopped",
            Self::Lost => "lost",
        }
    }
}

/// `GET /v1/nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeList {
    /// The node that answered.
    pub this: String,
    /// Every node that registered (stopped and lost ones for a day), by id.
    pub nodes: Vec<NodeView>,
}

/// `GET /v1/overview`: the state of the daemon at a glance (what the web
/// UI's health page shows): its health, its nodes, its worker slots, the
/// queue of executions waiting for one and the state writes that failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Overview {
    /// As `GET /v1/health` answers it.
    pub health: crate::Health,
    /// Executions in the state database, by status (`running`, `failed`, …).
    pub executions: std::collections::BTreeMap<String, u64>,
    /// The queue depth: executions accepted and not started yet (`pending`),
    /// on every node.
    pub queued: u64,
    /// This node's worker slots.
    pub workers: WorkerUsage,
    /// State database writes that failed since this node started
    /// (`plexus_journal_errors_total`).
    pub journal_errors: u64,
    /// The nodes sharing the state database (as `GET /v1/nodes`).
    pub nodes: NodeList,
}

/// A node's worker slots: executions run in one each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerUsage {
    /// Slots (`workers` in the daemon's configuration).
    pub limit: u64,
    /// Slots running an execution now.
    pub busy: u64,
    /// Executions started here and waiting for a slot.
    pub waiting: u64,
}

/// `POST /v1/session`: the daemon's token, exchanged for a session cookie
/// (what the web UI's login form sends).
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The daemon's bearer token (its token file's content).
    pub token: String,
}

impl std::fmt::Debug for Login {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").field("token", &"<redacted>").finish()
    }
}

/// The answer of `POST /v1/session`: the session's write key, which
/// requests that change something carry in the `X-Plexus-UI` header (the
/// session itself is the answer's cookie).
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    /// 64 hex digits.
    pub write_key: String,
}

impl std::fmt::Debug for Session {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("write_key", &"<redacted>").finish()
    }
}
