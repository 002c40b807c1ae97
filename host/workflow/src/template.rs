//! Workflow templates, as the project orchestrator's `WorkflowManager` has
//! them (`register_template(name, definition)`, `create_from_template(name,
//! overrides)`): a template is a workflow definition (any format Plexus
//! reads) that is not run itself; workflows are created from it.
//!
//! A template's **parameters** are its declared `inputs`. Creating a
//! workflow from a template ([`instantiate`]) takes:
//! * `id`: the new workflow's id (default `<template>-<n>`, the first free n ≥ 1);
//! * `params`: a value for a declared input becomes that input's default
//!   (checked against its type); any other name is merged into every
//!   step's `parameters`, winning over the step's own (the project
//!   orchestrator's `create_from_template(name, {"params": {...}})`);
//! * `overrides`: a JSON merge patch (RFC 7386) over the template's
//!   definition as a Plexus JSON document ([`Workflow::to_json`]), e.g.
//!   `{"max_parallel": 2, "description": "…"}` (`null` removes a key; a
//!   list, such as `steps`, is replaced whole).
//!
//! The created workflow is a Plexus JSON document, validated like any other.

use super::definition::{MAX_ID_LEN, Workflow, is_valid_id};
use super::source::Document;
use super::validate::{ValidWorkflow, validate};
use plexus_host::Host;
use serde_json::{Map, Value};
use std::path::Path;

pub use plexus_client::FromTemplate;

/// Why a workflow cannot be created from a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// The most `params` a request may give.
pub const MAX_PARAMS: usize = 1000;

/// The document (a Plexus JSON workflow) of the workflow created from
/// `template` with `request`, named `id`. Validate it before use.
///
/// # Errors
/// A bad id, `overrides` that is not a mapping, too many `params`, or a
/// step whose parameters are not a mapping when a param must be merged in.
pub fn instantiate(template: &Workflow, id: &str, request: &FromTemplate) -> Result<Value, TemplateError> {
    if !is_valid_id(id, MAX_ID_LEN) {
        return Err(TemplateError(format!("workflow id `{id}`: {}, at most {MAX_ID_LEN}", super::definition::ID_RULE)));
    }
    if request.params.len() > MAX_PARAMS {
        return Err(TemplateError(format!("params: {} values, at most {MAX_PARAMS}", request.params.len())));
    }
    let mut doc = template.to_json();
    match &request.overrides {
        Value::Null => {}
        patch @ Value::Object(_) => json_patch::merge(&mut doc, patch),
        other => {
            return Err(TemplateError(format!(
                "overrides: expected a mapping (a JSON merge patch), found {}",
                super::definition::kind(other)
            )));
        }
    }
    doc["id"] = Value::String(id.to_owned());
    for (name, value) in &request.params {
        if let Some(Value::Object(input)) = doc.get_mut("inputs").and_then(|i| i.get_mut(name)) {
            input.insert("default".into(), value.clone());
            input.insert("required".into(), Value::Bool(false));
            continue;
        }
        let Some(Value::Array(steps)) = doc.get_mut("steps") else { continue };
        for step in steps.iter_mut() {
            let step_id = step.get("id").and_then(Value::as_str).unwrap_or("?").to_owned();
            match step.get_mut("parameters") {
                Some(Value::Object(params)) => {
                    params.insert(name.clone(), value.clone());
                }
                Some(Value::Null) | None => {
                    step["parameters"] = Value::Object(Map::from_iter([(name.clone(), value.clone())]));
                }
                Some(other) => {
                    return Err(TemplateError(format!(
                        "params.{name}: step `{step_id}` takes {} as parameters, not a mapping to add it to",
                        super::definition::kind(other)
                    )));
                }
            }
        }
    }
    Ok(doc)
}

/// The id of the next workflow created from `template` when none is asked
/// for: `<template>-<n>`, the first n ≥ 1 for which `taken` is false.
pub fn next_id(template: &str, taken: impl Fn(&str) -> bool) -> String {
    // The suffix may take the id past the limit: cut the template's part.
    let base: String = template.chars().take(MAX_ID_LEN - 12).collect();
    (1u64..).map(|n| format!("{base}-{n}")).find(|id| !taken(id)).unwrap_or(base)
}

/// Validate `doc`, a workflow created from template `template_id`.
///
/// # Errors
/// Every problem, in one message naming the template.
pub fn validate_created(doc: &Value, template_id: &str, host: Option<&Host>) -> Result<ValidWorkflow, String> {
    let parsed = Document::parse(Path::new("<template>.json"), &doc.to_string()).map_err(|e| e.to_string())?;
    validate(&parsed, host).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        format!("the workflow created from template `{template_id}` has {} problem(s): {}", list.len(), list.join("; "))
    })
}
