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
}
