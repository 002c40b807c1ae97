//! Plexus plugin: validate rows against a column schema.
//!
//! `validate {rows, schema, max_errors?, as_artifact?}` → `{valid_rows,
//! invalid_rows, errors, rows}`: `rows` are the valid ones; `errors` lists
//! the first `max_errors` problems (row number from 1, column, message).
//! `rows` may be an artifact of JSON lines (`${{ steps.load.artifacts.rows }}`);
//! with `as_artifact: NAME` the valid rows go to artifact `NAME` instead of
//! the output (all rows valid: the same content, stored once).
//!
//! A schema maps column names to rules: `type` (`number`, `integer`,
//! `string`, `boolean`), `required` (default true), `min`, `max`, `allowed`
//! (a list of values), `pattern_len` (exact text length).
#![deny(unsafe_code)]

use plexus_sdk::{Context, Operations, Plugin, PluginError, PluginInfo, capability};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The validator plugin.
#[derive(Default)]
pub struct Validator;

/// The rules of one column.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `number`, `integer`, `string` or `boolean`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether a value must be present (default true).
    #[serde(default = "yes")]
    pub required: bool,
    /// Smallest allowed number.
    #[serde(default)]
    pub min: Option<f64>,
    /// Largest allowed number.
    #[serde(default)]
    pub max: Option<f64>,
    /// Allowed values.
    #[serde(default)]
    pub allowed: Option<Vec<Value>>,
    /// Exact length of text values.
    #[serde(default)]
    pub pattern_len: Option<usize>,
}

fn yes() -> bool {
    true
}

/// Parameters of `validate`.
#[derive(Deserialize, JsonSchema)]
pub struct Validate {
    /// Rows to check (objects, or an artifact of them).
    pub rows: plexus_sdk::Rows,
    /// Rules by column.
    pub schema: BTreeMap<String, Rule>,
    /// How many problems to list (default 20).
    #[serde(default = "twenty")]
    pub max_errors: usize,
    /// Write the valid rows to an artifact of this name instead of the output.
    #[serde(default)]
    pub as_artifact: Option<String>,
}

fn twenty() -> usize {
    20
}

/// One problem.
#[derive(Serialize, JsonSchema)]
pub struct RowError {
    /// Row number, from 1.
    pub row: usize,
    /// Column.
    pub column: String,
    /// What is wrong.
    pub message: String,
}

/// Output of `validate`.
#[derive(Serialize, JsonSchema)]
pub struct Report {
    /// Rows without problems.
    pub valid_rows: usize,
    /// Rows with at least one problem.
    pub invalid_rows: usize,
    /// The first problems.
    pub errors: Vec<RowError>,
    /// The valid rows (absent when they went to an artifact).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<Vec<Map<String, Value>>>,
}

impl Plugin for Validator {
    fn info() -> PluginInfo {
        PluginInfo::new("plexus.validator", "Validator", env!("CARGO_PKG_VERSION"))
            .description("Checks rows against a column schema and counts the bad ones.")
            .authors(["The Plexus developers"])
            .license("Apache-2.0")
            .capabilities([capability::WORKFLOW_STEP])
    }

    fn operations(ops: &mut Operations<Self>) {
        ops.add("validate", "Checks rows against a schema; returns the valid rows and the problems", Self::validate);
    }
}

fn check(rule: &Rule, value: Option<&Value>) -> Result<(), String> {
    let value = match value {
        None | Some(Value::Null) if rule.required => return Err("missing".into()),
        None | Some(Value::Null) => return Ok(()),
        Some(v) => v,
    };
    let type_ok = match rule.kind.as_str() {
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        other => return Err(format!("unknown type `{other}` in the schema")),
    };
    if !type_ok {
        return Err(format!("{value} is not a {}", rule.kind));
    }
    if let Some(n) = value.as_f64() {
        if rule.min.is_some_and(|min| n < min) {
            return Err(format!("{n} is below the minimum {}", rule.min.unwrap_or_default()));
        }
        if rule.max.is_some_and(|max| n > max) {
            return Err(format!("{n} is above the maximum {}", rule.max.unwrap_or_default()));
        }
    }
    if let Some(allowed) = &rule.allowed
        && !allowed.contains(value)
    {
        return Err(format!("{value} is not one of the allowed values"));
    }
    if let (Some(len), Some(text)) = (rule.pattern_len, value.as_str())
        && text.chars().count() != len
    {
        return Err(format!("\"{text}\" is not {len} characters long"));
    }
    Ok(())
}

impl Validator {
    fn validate(&self, ctx: &mut Context<'_>, p: Validate) -> Result<Report, PluginError> {
        if let Some(bad) =
            p.schema.values().find(|r| !matches!(r.kind.as_str(), "number" | "integer" | "string" | "boolean"))
        {
            return Err(PluginError::invalid_input(format!("unknown type `{}` in the schema", bad.kind)));
        }
        let mut report = Report { valid_rows: 0, invalid_rows: 0, errors: Vec::new(), rows: None };
        let mut valid = Vec::new();
        for (n, row) in p.rows.read(ctx)?.into_iter().enumerate() {
            let mut ok = true;
            for (column, rule) in &p.schema {
                if let Err(message) = check(rule, row.get(column)) {
                    ok = false;
                    if report.errors.len() < p.max_errors {
                        report.errors.push(RowError { row: n + 1, column: column.clone(), message });
                    }
                }
            }
            if ok {
                report.valid_rows += 1;
                valid.push(row);
            } else {
                report.invalid_rows += 1;
            }
        }
        ctx.info(format!("{} valid rows, {} invalid", report.valid_rows, report.invalid_rows));
        ctx.metric("invalid_rows", report.invalid_rows as f64);
        match &p.as_artifact {
            Some(name) => drop(plexus_sdk::write_rows(ctx, name, &valid)?),
            None => report.rows = Some(valid),
        }
        Ok(report)
    }
}

plexus_sdk::export_plugin!(Validator);

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_sdk::testing::TestHost;
    use serde_json::json;

    #[test]
    fn counts_and_lists_bad_rows() {
        let out = TestHost::<Validator>::new()
            .call(
                "validate",
                json!({
                    "rows": [{"t": 1.5, "w": "rain"}, {"t": -90, "w": "rain"}, {"t": 2, "w": "hail"}, {"w": "sun"}],
                    "schema": {"t": {"type": "number", "min": -50}, "w": {"type": "string", "allowed": ["rain", "sun"]}}
                }),
            )
            .unwrap()
            .output;
        assert_eq!((out["valid_rows"].clone(), out["invalid_rows"].clone()), (json!(1), json!(3)));
        assert_eq!(out["errors"].as_array().unwrap().len(), 3);
        assert_eq!(out["errors"][0], json!({"row": 2, "column": "t", "message": "-90 is below the minimum -50"}));
        assert_eq!(out["rows"], json!([{"t": 1.5, "w": "rain"}]));
    }
}
