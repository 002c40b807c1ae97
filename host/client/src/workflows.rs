//! `/v1/workflows`: registered workflows and their versions.

use serde::{Deserialize, Serialize};

/// `POST /v1/workflows` and `POST /v1/workflows/validate`: the definition as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WorkflowSource {
    /// The workflow definition, YAML or JSON text (Plexus's or QtForge's format).
    pub source: String,
}

/// `POST /v1/workflows`: the version now current (201 when new, 200 when the
/// same text was already the current version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Registered {
    /// Workflow id.
    pub id: String,
    /// The version now current (1, 2, …).
    pub version: u32,
    /// `false` when the same text was already the current version.
    pub created: bool,
}

/// `POST /v1/workflows/validate`: a valid workflow's shape (an invalid one is
/// refused with `InvalidConfiguration` and every problem in `details`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Validation {
    /// Always `true`.
    pub valid: bool,
    /// Workflow id.
    pub id: String,
    /// Number of steps.
    pub steps: usize,
    /// Step ids by stage: every step of a stage depends only on earlier stages.
    pub stages: Vec<Vec<String>>,
}

/// `GET /v1/workflows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowList {
    /// The current version of every workflow, by id.
    pub workflows: Vec<WorkflowSummary>,
}

/// The text format of a workflow's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// YAML.
    Yaml,
    /// JSON (ours or QtForge's).
    Json,
}

impl SourceFormat {
    /// The format named `name` (`yaml` or `json`).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Yaml, Self::Json].into_iter().find(|f| f.as_str() == name)
    }

    /// The format of workflow text: JSON when it starts with `{`, else YAML.
    pub fn of(source: &str) -> Self {
        if source.trim_start().starts_with('{') { Self::Json } else { Self::Yaml }
    }

    /// `yaml` or `json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Yaml => "yaml",
            Self::Json => "json",
        }
    }
}

/// One workflow of [`WorkflowList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowSummary {
    /// Workflow id.
    pub id: String,
    /// Its current version.
    pub version: u32,
    /// YAML or JSON.
    pub format: SourceFormat,
    /// Registration time of this version, ms since the Unix epoch.
    pub created_at_ms: u64,
}

/// `GET /v1/workflows/{id}`: one stored version of a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowVersion {
    /// Workflow id.
    pub id: String,
    /// 1, 2, … in registration order.
    pub version: u32,
    /// The definition as registered (YAML or JSON text).
    pub source: String,
    /// YAML or JSON.
    pub format: SourceFormat,
    /// Registration time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// The definition as read, every default written out (QtForge's
    /// `get_workflow(...).to_json()`): a Plexus JSON document that registers
    /// as the same workflow. Answered by `GET /v1/workflows/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub definition: Option<serde_json::Value>,
}

impl From<WorkflowVersion> for WorkflowSummary {
    /// The version's id, number, format and registration time (not its text).
    fn from(v: WorkflowVersion) -> Self {
        Self { id: v.id, version: v.version, format: v.format, created_at_ms: v.created_at_ms }
    }
}

/// `GET /v1/workflows/{id}/versions`: a workflow's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowHistory {
    /// Workflow id.
    pub id: String,
    /// The version a start without `version` uses; `None` once deleted.
    pub current: Option<u32>,
    /// Every version, newest first (deleted workflows keep theirs for the
    /// executions pinned to them).
    pub versions: Vec<WorkflowSummary>,
}

/// `POST /v1/workflows/{id}/rollback`: which earlier version to make current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WorkflowRollback {
    /// The version whose definition becomes current again (as a new version,
    /// so the history only grows).
    pub version: u32,
}

/// `DELETE /v1/workflows`: how many workflows were deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cleared {
    /// Workflows deleted (their versions stay for pinned executions).
    pub deleted: usize,
}
