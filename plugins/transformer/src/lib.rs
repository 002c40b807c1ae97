//! Plexus plugin: transformations of rows (JSON objects).
//!
//! * `normalize {rows, columns, method?}` → `{rows, stats}`: min-max
//!   normalisation of each column into [0, 1] (a constant column becomes 0).
//! * `filter {rows, column, op, value}` → `{rows, kept, dropped}`; `op` is one of
//!   `eq`, `ne`, `gt`, `ge`, `lt`, `le`.
//! * `summarize {rows, column, group_by?, starts_with?}` → `{column, count,
//!   mean, min, max, groups}`; `starts_with: {column, prefix}` keeps only
//!   the rows whose text in `column` starts with `prefix`.
//! * `merge {parts}` → the object `parts`, for joining branches.
//!
//! Every `rows` may be an artifact of JSON lines
//! (`${{ steps.load.artifacts.rows }}`); `normalize` and `filter` take
//! `as_artifact: NAME` to write their rows to artifact `NAME` instead of the output.
#![deny(unsafe_code)]

use plexus_sdk::{Context, Operations, Plugin, PluginError, PluginInfo, capability};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The transformer plugin.
#[derive(Default)]
pub struct Transformer;

/// Parameters of `normalize`.
#[derive(Deserialize, JsonSchema)]
pub struct Normalize {
    /// Rows to transform (objects, or an artifact of them).
    pub rows: plexus_sdk::Rows,
    /// Numeric columns to normalise.
    pub columns: Vec<String>,
    /// Only `min-max` (the default).
    #[serde(default)]
    pub method: Option<String>,
    /// Write the rows to an artifact of this name instead of the output.
    #[serde(default)]
    pub as_artifact: Option<String>,
}

/// Range of a column before normalisation.
#[derive(Serialize, JsonSchema, Clone, Copy)]
pub struct Range {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

/// Output of `normalize`.
#[derive(Serialize, JsonSchema)]
pub struct Normalized {
    /// The rows with the columns normalised (absent when they went to an artifact).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<Vec<Map<String, Value>>>,
    /// Each column's original range.
    pub stats: BTreeMap<String, Range>,
}

/// Parameters of `filter`.
#[derive(Deserialize, JsonSchema)]
pub struct Filter {
    /// Rows to filter (objects, or an artifact of them).
    pub rows: plexus_sdk::Rows,
    /// Column to compare.
    pub column: String,
    /// `eq`, `ne`, `gt`, `ge`, `lt` or `le`.
    pub op: String,
    /// Value to compare with.
    pub value: Value,
    /// Write the kept rows to an artifact of this name instead of the output.
    #[serde(default)]
    pub as_artifact: Option<String>,
}

/// Parameters of `summarize`.
#[derive(Deserialize, JsonSchema)]
pub struct Summarize {
    /// Rows to summarise (objects, or an artifact of them).
    pub rows: plexus_sdk::Rows,
    /// Numeric column.
    pub column: String,
    /// Optional grouping column.
    #[serde(default)]
    pub group_by: Option<String>,
    /// Only the rows whose text in a column starts with a prefix.
    #[serde(default)]
    pub starts_with: Option<Prefix>,
}

/// Rows whose text in `column` starts with `prefix`.
#[derive(Deserialize, JsonSchema)]
pub struct Prefix {
    /// The column.
    pub column: String,
    /// The prefix.
    pub prefix: String,
}

/// Parameters of `merge`.
#[derive(Deserialize, JsonSchema)]
pub struct Merge {
    /// Named parts to join into one object.
    pub parts: Map<String, Value>,
}

impl Plugin for Transformer {
    fn info() -> PluginInfo {
        PluginInfo::new("plexus.transformer", "Transformer", env!("CARGO_PKG_VERSION"))
            .description("Normalises, filters, summarises and merges rows.")
            .authors(["The Plexus developers"])
            .license("Apache-2.0")
            .capabilities([capability::WORKFLOW_STEP])
    }

    fn operations(ops: &mut Operations<Self>) {
        ops.add("normalize", "Min-max normalises numeric columns into [0, 1]", Self::normalize)
            .add("filter", "Keeps the rows whose column compares true with a value", Self::filter)
            .add("summarize", "Count, mean, min and max of a numeric column, optionally per group", Self::summarize)
            .add("merge", "Joins named parts into one object", |_, _, p: Merge| Ok(Value::Object(p.parts)));
    }
}

fn number(row: &Map<String, Value>, column: &str, n: usize) -> Result<f64, PluginError> {
    row.get(column)
        .and_then(Value::as_f64)
        .ok_or_else(|| PluginError::invalid_input(format!("row {}: `{column}` is not a number", n + 1)))
}

#[derive(Default)]
struct Acc {
    count: usize,
    sum: f64,
    min: f64,
    max: f64,
}

impl Acc {
    fn add(&mut self, x: f64) {
        if self.count == 0 {
            (self.min, self.max) = (x, x);
        }
        self.count += 1;
        self.sum += x;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }
    fn json(&self) -> Value {
        let mean = if self.count == 0 { 0.0 } else { self.sum / self.count as f64 };
        json!({"count": self.count, "mean": mean, "min": self.min, "max": self.max})
    }
}

impl Transformer {
    fn normalize(&self, ctx: &mut Context<'_>, p: Normalize) -> Result<Normalized, PluginError> {
        if let Some(m) = p.method.as_deref().filter(|m| *m != "min-max") {
            return Err(PluginError::invalid_input(format!("unknown method `{m}`: only `min-max`")));
        }
        let mut rows = p.rows.read(ctx)?;
        let mut stats = BTreeMap::new();
        for column in &p.columns {
            let mut range: Option<Range> = None;
            for (n, row) in rows.iter().enumerate() {
                let x = number(row, column, n)?;
                range = Some(match range {
                    None => Range { min: x, max: x },
                    Some(r) => Range { min: r.min.min(x), max: r.max.max(x) },
                });
            }
            let Some(range) = range else { continue };
            let span = range.max - range.min;
            for row in &mut rows {
                let x = row.get(column).and_then(Value::as_f64).unwrap_or(range.min);
                let scaled = if span > 0.0 { ((x - range.min) / span).clamp(0.0, 1.0) } else { 0.0 };
                row.insert(column.clone(), json!(scaled));
            }
            stats.insert(column.clone(), range);
        }
        ctx.info(format!("normalised {} columns of {} rows", stats.len(), rows.len()));
        if let Some(name) = &p.as_artifact {
            plexus_sdk::write_rows(ctx, name, &rows)?;
            return Ok(Normalized { rows: None, stats });
        }
        Ok(Normalized { rows: Some(rows), stats })
    }

    fn filter(&self, ctx: &mut Context<'_>, mut p: Filter) -> Result<Value, PluginError> {
        let cmp = |a: &Value| -> Result<bool, PluginError> {
            let ord = match (a.as_f64(), p.value.as_f64()) {
                (Some(x), Some(y)) => x.partial_cmp(&y),
                _ => a.as_str().zip(p.value.as_str()).map(|(x, y)| x.cmp(y)),
            };
            use std::cmp::Ordering::*;
            Ok(match p.op.as_str() {
                "eq" => a == &p.value,
                "ne" => a != &p.value,
                "gt" => ord == Some(Greater),
                "ge" => matches!(ord, Some(Greater | Equal)),
                "lt" => ord == Some(Less),
                "le" => matches!(ord, Some(Less | Equal)),
                other => {
                    return Err(PluginError::invalid_input(format!("unknown op `{other}`: eq, ne, gt, ge, lt or le")));
                }
            })
        };
        let rows = std::mem::replace(&mut p.rows, plexus_sdk::Rows::Inline(Vec::new())).read(ctx)?;
        let total = rows.len();
        let mut kept = Vec::new();
        for row in rows {
            if cmp(row.get(&p.column).unwrap_or(&Value::Null))? {
                kept.push(row);
            }
        }
        let counts = json!({"kept": kept.len(), "dropped": total - kept.len()});
        if let Some(name) = &p.as_artifact {
            plexus_sdk::write_rows(ctx, name, &kept)?;
            return Ok(counts);
        }
        Ok(json!({"kept": kept.len(), "dropped": total - kept.len(), "rows": kept}))
    }

    fn summarize(&self, ctx: &mut Context<'_>, p: Summarize) -> Result<Value, PluginError> {
        let mut all = Acc::default();
        let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
        let kept = |row: &Map<String, Value>| match &p.starts_with {
            None => true,
            Some(f) => row.get(&f.column).and_then(Value::as_str).is_some_and(|t| t.starts_with(&f.prefix)),
        };
        for (n, row) in p.rows.read(ctx)?.iter().enumerate().filter(|(_, row)| kept(row)) {
            let x = number(row, &p.column, n)?;
            all.add(x);
            if let Some(g) = &p.group_by {
                let key = match row.get(g) {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => "null".into(),
                };
                groups.entry(key).or_default().add(x);
            }
        }
        let mut out = all.json();
        out["column"] = json!(p.column);
        out["groups"] = Value::Object(groups.into_iter().map(|(k, a)| (k, a.json())).collect());
        Ok(out)
    }
}

plexus_sdk::export_plugin!(Transformer);

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_sdk::testing::TestHost;

    #[test]
    fn normalize_maps_into_the_unit_interval() {
        let out = TestHost::<Transformer>::new()
            .call(
                "normalize",
                json!({"rows": [{"x": 10, "k": 1}, {"x": 20, "k": 1}, {"x": 15, "k": 1}], "columns": ["x", "k"]}),
            )
            .unwrap()
            .output;
        let xs: Vec<f64> = out["rows"].as_array().unwrap().iter().map(|r| r["x"].as_f64().unwrap()).collect();
        assert_eq!(xs, [0.0, 1.0, 0.5]);
        assert_eq!(out["rows"][0]["k"], json!(0.0), "a constant column becomes 0");
        assert_eq!(out["stats"]["x"], json!({"min": 10.0, "max": 20.0}));
    }

    #[test]
    fn filter_and_summarize() {
        let host = TestHost::<Transformer>::new();
        let rows = json!([{"w": "rain", "p": 5.0}, {"w": "sun", "p": 0.0}, {"w": "rain", "p": 7.0}]);
        let f = host.call("filter", json!({"rows": rows, "column": "p", "op": "gt", "value": 0})).unwrap().output;
        assert_eq!((f["kept"].clone(), f["dropped"].clone()), (json!(2), json!(1)));
        let s = host.call("summarize", json!({"rows": rows, "column": "p", "group_by": "w"})).unwrap().output;
        assert_eq!(s["count"], 3);
        assert_eq!(s["groups"]["rain"]["mean"], 6.0);
        assert!(host.call("filter", json!({"rows": rows, "column": "p", "op": "like", "value": 0})).is_err());
    }
}
