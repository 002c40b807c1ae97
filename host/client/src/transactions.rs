//! `/v1/transactions`: QtForge's `begin_transaction`, `commit_transaction`
//! and `rollback_transaction`.
//!
//! A transaction groups executions (started with `transaction: <id>`).
//! Committing it makes their effects permanent: their compensations can no
//! longer run. Rolling it back runs the compensation of every completed step
//! of every completed execution in it, newest step first across all of them,
//! and reports each; those executions end `rolled_back` (or
//! `rollback_failed` when one of their compensations failed). An execution
//! that fails inside an open transaction rolls itself back as any failed
//! execution does, and leaves the transaction open: the caller decides to
//! commit the others' work or roll it back. Neither commit nor rollback is
//! allowed while an execution of the transaction is still running.

use crate::status::CompensationRecord;
use serde::{Deserialize, Serialize};

/// Where a transaction is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TransactionState {
    /// Executions may join it.
    Open,
    /// Committed: its executions' effects are permanent.
    Committed,
    /// Its compensations are running (a restart carries on with the rest).
    RollingBack,
    /// Every compensation ran and succeeded.
    RolledBack,
    /// Every compensation ran; at least one failed.
    RollbackFailed,
}

impl TransactionState {
    /// `open`, `committed`, `rolling_back`, `rolled_back` or `rollback_failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Committed => "committed",
            Self::RollingBack => "rolling_back",
            Self::RolledBack => "rolled_back",
            Self::RollbackFailed => "rollback_failed",
        }
    }

    /// The state named `name` (its [`Self::as_str`] name).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Open, Self::Committed, Self::RollingBack, Self::RolledBack, Self::RollbackFailed]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// `POST /v1/transactions`: the id to give the new transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BeginTransaction {
    /// Transaction id, chosen by the caller as in QtForge's
    /// `begin_transaction(id)`: 1 to 200 ASCII letters, digits, `-`, `_`, `.`.
    pub id: String,
}

/// A compensation run by a transaction's rollback.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransactionCompensation {
    /// The execution whose step it compensated.
    pub execution_id: String,
    /// What ran and how it ended.
    #[serde(flatten)]
    pub record: CompensationRecord,
}

/// A transaction: `GET /v1/transactions/{id}` and the answer of each call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transaction {
    /// Transaction id.
    pub id: String,
    /// Open, committed, rolling back, rolled back or rollback failed.
    pub state: TransactionState,
    /// Its executions, oldest first.
    pub executions: Vec<String>,
    /// The compensations its rollback ran, in the order they ran (newest
    /// completed step first).
    #[serde(default)]
    pub compensations: Vec<TransactionCompensation>,
    /// Begun at, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Committed or rolled back at, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
}

impl Transaction {
    /// A transaction `id` just begun at `created_at_ms` (ms since the Unix
    /// epoch): open, without executions.
    pub fn open(id: impl Into<String>, created_at_ms: u64) -> Self {
        Self {
            id: id.into(),
            state: TransactionState::Open,
            executions: Vec::new(),
            compensations: Vec::new(),
            created_at_ms,
            ended_at_ms: None,
        }
    }
}

/// The query of `GET /v1/transactions`: filters, all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct TransactionQuery {
    /// Only transactions in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TransactionState>,
    /// At most this many (default 100, at most 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One transaction in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransactionSummary {
    /// Transaction id.
    pub id: String,
    /// Its state.
    pub state: TransactionState,
    /// How many executions it has.
    pub executions: u64,
    /// Begun at, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Committed or rolled back at, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
}

/// `GET /v1/transactions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransactionList {
    /// Newest first.
    pub transactions: Vec<TransactionSummary>,
}
