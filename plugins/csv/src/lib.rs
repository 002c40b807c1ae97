//! Plexus plugin: CSV files in and out, with the `csv` crate.
//!
//! * `load {path, delimiter?, as_artifact?}` → `{columns, rows, row_count}`:
//!   each row an object; cells that parse as numbers become numbers, empty
//!   cells null. With `as_artifact: NAME` the rows go to artifact `NAME`
//!   (JSON lines) instead of the output: `steps.<id>.artifacts.NAME`.
//! * `save {path, rows, columns?, delimiter?}` → `{path, row_count}`: writes
//!   rows (objects, or an artifact of them) with a header; parent
//!   directories are created.
//! * `remove {path}` → `{path, removed}`: deletes a file (a compensation for `save`).
#![forbid(unsafe_code)]

use plexus_sdk::{Context, Operations, Plugin, PluginError, PluginInfo, capability};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// The CSV plugin.
#[derive(Default)]
pub struct Csv;

/// Parameters of `load`.
#[derive(Deserialize, JsonSchema)]
pub struct Load {
    /// File to read.
    pub path: String,
    /// Field delimiter (default `,`).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// Write the rows to an artifact of this name (JSON lines) instead of the output.
    #[serde(default)]
    pub as_artifact: Option<String>,
}

/// Output of `load`.
#[derive(Serialize, JsonSchema)]
pub struct Table {
    /// Column names, from the header.
    pub columns: Vec<String>,
    /// One object per record (absent when they went to an artifact).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<Vec<Map<String, Value>>>,
    /// How many records.
    pub row_count: usize,
}

/// Parameters of `save`.
#[derive(Deserialize, JsonSchema)]
pub struct Save {
    /// File to write.
    pub path: String,
    /// Records to write (objects, or an artifact of them).
    pub rows: plexus_sdk::Rows,
    /// Column order (default: the keys of the first row).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Field delimiter (default `,`).
    #[serde(default)]
    pub delimiter: Option<char>,
}

/// Output of `save`.
#[derive(Serialize, JsonSchema)]
pub struct Saved {
    /// The file written.
    pub path: String,
    /// Records written.
    pub row_count: usize,
}

/// Parameters of `remove`.
#[derive(Deserialize, JsonSchema)]
pub struct Remove {
    /// File to delete.
    pub path: String,
}

impl Plugin for Csv {
    fn info() -> PluginInfo {
        PluginInfo::new("plexus.csv", "CSV", env!("CARGO_PKG_VERSION"))
            .description("Loads CSV files into rows and saves rows as CSV files.")
            .authors(["The Plexus developers"])
            .license("Apache-2.0")
            .capabilities([capability::WORKFLOW_STEP, capability::SCHEDULED_TASK])
    }

    fn operations(ops: &mut Operations<Self>) {
        ops.add("load", "Reads a CSV file with a header into rows", Self::load)
            .add("save", "Writes rows to a CSV file with a header", Self::save)
            .add("remove", "Deletes a file (compensation for save)", |_, ctx: &mut Context<'_>, p: Remove| {
                let removed = match std::fs::remove_file(&p.path) {
                    Ok(()) => true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                    Err(e) => return Err(PluginError::failed(format!("{}: {e}", p.path))),
                };
                ctx.info(format!("removed {}: {removed}", p.path));
                Ok(serde_json::json!({"path": p.path, "removed": removed}))
            });
    }
}

fn delimiter(d: Option<char>) -> Result<u8, PluginError> {
    let d = d.unwrap_or(',');
    u8::try_from(d).map_err(|_| PluginError::invalid_input(format!("delimiter {d:?} is not a single byte")))
}

/// A cell as JSON: integer, float, null for empty, else text.
fn cell(text: &str) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::from(i);
    }
    match text.parse::<f64>().ok().and_then(Number::from_f64) {
        Some(n) => Value::Number(n),
        None => Value::String(text.to_owned()),
    }
}

impl Csv {
    fn load(&self, ctx: &mut Context<'_>, p: Load) -> Result<Table, PluginError> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter(p.delimiter)?)
            .from_path(&p.path)
            .map_err(|e| PluginError::not_found(format!("{}: {e}", p.path)))?;
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| PluginError::invalid_input(format!("{}: {e}", p.path)))?
            .iter()
            .map(str::to_owned)
            .collect();
        let mut rows = Vec::new();
        for (n, record) in reader.records().enumerate() {
            let record = record.map_err(|e| PluginError::invalid_input(format!("{} record {}: {e}", p.path, n + 1)))?;
            rows.push(columns.iter().cloned().zip(record.iter().map(cell)).collect());
            if n % 500 == 0 && ctx.is_cancelled() {
                return Err(PluginError::failed("cancelled while loading").retryable());
            }
        }
        ctx.info(format!("loaded {} rows of {} columns from {}", rows.len(), columns.len(), p.path));
        ctx.metric("rows", rows.len() as f64);
        let row_count = rows.len();
        if let Some(name) = &p.as_artifact {
            plexus_sdk::write_rows(ctx, name, &rows)?;
            return Ok(Table { row_count, columns, rows: None });
        }
        Ok(Table { row_count, columns, rows: Some(rows) })
    }

    fn save(&self, ctx: &mut Context<'_>, p: Save) -> Result<Saved, PluginError> {
        let rows = p.rows.read(ctx)?;
        let columns = match p.columns {
            Some(c) => c,
            None => rows.first().map(|r| r.keys().cloned().collect()).unwrap_or_default(),
        };
        if let Some(parent) = std::path::Path::new(&p.path).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| PluginError::failed(format!("{}: {e}", parent.display())))?;
        }
        let mut writer = csv::WriterBuilder::new()
            .delimiter(delimiter(p.delimiter)?)
            .from_path(&p.path)
            .map_err(|e| PluginError::failed(format!("{}: {e}", p.path)))?;
        let fail = |e: csv::Error| PluginError::failed(format!("{}: {e}", p.path));
        writer.write_record(&columns).map_err(fail)?;
        for row in &rows {
            let record = columns.iter().map(|c| match row.get(c) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            });
            writer.write_record(record).map_err(fail)?;
        }
        writer.flush().map_err(|e| PluginError::failed(format!("{}: {e}", p.path)))?;
        ctx.info(format!("saved {} rows to {}", rows.len(), p.path));
        Ok(Saved { path: p.path, row_count: rows.len() })
    }
}

plexus_sdk::export_plugin!(Csv);

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_sdk::{ErrorKind, testing::TestHost};
    use serde_json::json;

    #[test]
    fn load_save_roundtrip_keeps_types_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(&input, "date,temp,weather,n\n2012/01/01,12.8,rain,3\n2012/01/02,,sun,4\n").unwrap();
        let host = TestHost::<Csv>::new();
        let table = host.call("load", json!({"path": input})).unwrap().output;
        assert_eq!(table["columns"], json!(["date", "temp", "weather", "n"]));
        assert_eq!(table["rows"][0], json!({"date": "2012/01/01", "temp": 12.8, "weather": "rain", "n": 3}));
        assert_eq!(table["rows"][1]["temp"], Value::Null);
        let output = dir.path().join("sub/out.csv");
        host.call("save", json!({"path": output, "rows": table["rows"]})).unwrap();
        assert_eq!(
            std::fs::read_to_string(&output).unwrap(),
            "date,temp,weather,n\n2012/01/01,12.8,rain,3\n2012/01/02,,sun,4\n"
        );
        assert_eq!(host.call("remove", json!({"path": output})).unwrap().output["removed"], true);
        assert!(!output.exists());
    }

    #[test]
    fn rows_go_to_an_artifact_of_json_lines_and_save_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(&input, "a,b\n1,x\n2,\n").unwrap();
        let host = TestHost::<Csv>::new();
        let table = host.call("load", json!({"path": input, "as_artifact": "rows"})).unwrap().output;
        assert_eq!(table, json!({"columns": ["a", "b"], "row_count": 2}), "no rows by value");
        let written = host.written.borrow().clone();
        assert_eq!(written.len(), 1);
        assert_eq!(
            (written[0].name.as_str(), written[0].media_type.as_deref()),
            ("rows", Some("application/x-ndjson"))
        );
        let lines = String::from_utf8(host.artifact(&written[0]).unwrap()).unwrap();
        assert_eq!(lines, "{\"a\":1,\"b\":\"x\"}\n{\"a\":2,\"b\":null}\n");
        let output = dir.path().join("out.csv");
        let saved = host.call("save", json!({"path": output, "rows": written[0]})).unwrap().output;
        assert_eq!(saved["row_count"], 2);
        assert_eq!(std::fs::read_to_string(&output).unwrap(), "a,b\n1,x\n2,\n");
    }

    #[test]
    fn a_missing_file_is_not_found() {
        let err = TestHost::<Csv>::new().call("load", json!({"path": "/no/such.csv"})).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
    }
}
