//! `/v1/templates`: workflow templates (the project orchestrator's
//! `register_template` / `create_from_template`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/templates/{id}/workflows`: how to create a workflow from the
/// template. A template's parameters are its declared `inputs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FromTemplate {
    /// The new workflow's id (default `<template>-<n>`, the first free n ≥ 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A value for a declared input becomes its default (checked against
    /// its type); any other name is merged into every step's parameters,
    /// winning over the step's own. At most 1,000.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
    /// A JSON merge patch (RFC 7386) over the template's definition as a
    /// Plexus JSON document, e.g. `{"max_parallel": 2}`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub overrides: Value,
}

/// A registered template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateSummary {
    /// Template id (the id of its definition).
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Its parameters: the definition's declared inputs, by name.
    pub parameters: Vec<String>,
    /// When it was registered (or last replaced), ms since the Unix epoch.
    pub updated_at_ms: u64,
}

/// `GET /v1/templates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateList {
    /// Every template, by id.
    pub templates: Vec<TemplateSummary>,
}

/// `GET /v1/templates/{id}`: a template with its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateDetail {
    /// What it is.
    #[serde(flatten)]
    pub summary: TemplateSummary,
    /// The definition as registered (YAML or JSON text).
    pub source: String,
}
