//! Reading a workflow file: YAML or JSON by extension, into JSON plus, for
//! YAML, the line of every key so problems can point at it.

use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// The most YAML nodes (mappings, sequences and scalars) a workflow file may
/// hold: 4 million, room for workflows of 100,000 steps and more (a step is
/// about 10–20 nodes) while a hostile document stays bounded. The YAML
/// library's default, 250,000, refused workflows of about 20,000 steps.
pub const MAX_YAML_NODES: usize = 4_000_000;

/// One step of a path into a document: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A path into a document, e.g. `steps.load.timeout` or `steps[2].id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DocPath(pub Vec<Seg>);

impl DocPath {
    /// This path extended by a key.
    pub fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_owned()));
        p
    }
    /// This path extended by an index.
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl fmt::Display for DocPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A parsed workflow document.
#[derive(Debug)]
pub struct Document {
    /// The content.
    pub value: Value,
    /// 1-based line of each mapping key and sequence item (YAML only).
    pub lines: HashMap<DocPath, usize>,
}

impl Document {
    /// Parse `text`; `path` decides the format: `.json` is JSON, anything else YAML.
    ///
    /// # Errors
    /// The parser's message, with its line where it gives one.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SyntaxError> {
        let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        if is_json {
            let value = serde_json::from_str(text).map_err(|e| SyntaxError(format!("invalid JSON: {e}")))?;
            return Ok(Self { value, lines: HashMap::new() });
        }
        // YAML 1.2 booleans only: `y`, `no`, `on` are text (step ids, words), not booleans.
        let options = serde_saphyr::options! {
            strict_booleans: true,
            with_snippet: false,
            budget: serde_saphyr::budget! { max_nodes: MAX_YAML_NODES, max_events: 2 * MAX_YAML_NODES },
        };
        let value: Value = serde_saphyr::from_str_with_options(text, options)
            .map_err(|e| SyntaxError(format!("invalid YAML: {}", one_line(&e.to_string()))))?;
        Ok(Self { value, lines: yaml_key_lines(text) })
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &DocPath) -> Option<usize> {
        let mut p = path.clone();
        loop {
            if let Some(line) = self.lines.get(&p) {
                return Some(*line);
            }
            p.0.pop()?;
        }
    }
}

/// A workflow text that is not valid YAML or JSON: the parser's message, one
/// line, with its line and column where it gives them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyntaxError(pub String);

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Lines of the keys and items of block-style YAML, by path. Flow collections
/// and block scalars are skipped (their keys get their parent's line).
fn yaml_key_lines(text: &str) -> HashMap<DocPath, usize> {
    // Stack of (indent of the entries at this level, path of this level, next sequence index).
    struct Level {
        indent: usize,
        path: DocPath,
        next_index: usize,
    }
    let mut lines = HashMap::new();
    let mut stack: Vec<Level> = vec![Level { indent: 0, path: DocPath::default(), next_index: 0 }];
    let mut last_key_path: Option<(usize, DocPath)> = None; // (indent, path) of the last key line
    let mut block_scalar_indent: Option<usize> = None;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let mut indent = raw.len() - trimmed.len();
        if let Some(bi) = block_scalar_indent {
            if indent > bi {
                continue;
            }
            block_scalar_indent = None;
        }
        let mut rest = trimmed;
        // A nested level starts when a line is more indented than the last key.
        if let Some((key_indent, key_path)) = &last_key_path
            && indent > *key_indent
        {
            stack.push(Level { indent, path: key_path.clone(), next_index: 0 });
        }
        last_key_path = None;
        while stack.len() > 1 && indent < stack.last().map_or(0, |l| l.indent) {
            stack.pop();
        }
        // Sequence items: "- " opens an item whose content is one level deeper.
        while let Some(after) = rest.strip_prefix("- ").or_else(|| (rest == "-").then_some("")) {
            let level = stack.last_mut().expect("root level");
            let item = level.path.index(level.next_index);
            level.next_index += 1;
            lines.insert(item.clone(), line_no);
            let item_indent = indent + 2;
            stack.push(Level { indent: item_indent, path: item, next_index: 0 });
            indent = item_indent;
            rest = after.trim_start();
            if rest.is_empty() {
                break;
            }
        }
        if let Some((key, value)) = split_key(rest) {
            let path = stack.last().expect("root level").path.key(&key);
            lines.insert(path.clone(), line_no);
            let value = value.trim();
            if value.is_empty() {
                last_key_path = Some((indent, path));
            } else if value.starts_with('|') || value.starts_with('>') {
                block_scalar_indent = Some(indent);
            }
        }
    }
    lines
}

/// `key: value` → (key, value) for a plain or quoted key.
fn split_key(text: &str) -> Option<(String, &str)> {
    let (key, rest) = if let Some(q) = text.strip_prefix('"') {
        let end = q.find('"')?;
        (q[..end].to_owned(), q[end + 1..].strip_prefix(':')?)
    } else if let Some(q) = text.strip_prefix('\'') {
        let end = q.find('\'')?;
        (q[..end].to_owned(), q[end + 1..].strip_prefix(':')?)
    } else {
        let colon = text.find(": ").or_else(|| text.ends_with(':').then(|| text.len() - 1))?;
        let key = &text[..colon];
        if key.starts_with(['{', '[']) || key.contains(" #") {
            return None;
        }
        (key.trim().to_owned(), &text[colon + 1..])
    };
    Some((key, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_lines_follow_nesting_and_sequences() {
        let text = "id: wf\nsteps:\n  - id: load\n    plugin_id: csv\n    parameters:\n      path: x\n  - id: save\n    retry:\n      max_attempts: 3\nrollback_steps:\n  load:\n    plugin_id: csv\n";
        let doc = Document::parse(Path::new("w.yaml"), text).unwrap();
        let p = |s: &[Seg]| DocPath(s.to_vec());
        let k = |s: &str| Seg::Key(s.into());
        assert_eq!(doc.lines[&p(&[k("id")])], 1);
        assert_eq!(doc.lines[&p(&[k("steps"), Seg::Index(0)])], 3);
        assert_eq!(doc.lines[&p(&[k("steps"), Seg::Index(0), k("plugin_id")])], 4);
        assert_eq!(doc.lines[&p(&[k("steps"), Seg::Index(0), k("parameters"), k("path")])], 6);
        assert_eq!(doc.lines[&p(&[k("steps"), Seg::Index(1), k("retry"), k("max_attempts")])], 9);
        assert_eq!(doc.lines[&p(&[k("rollback_steps"), k("load"), k("plugin_id")])], 12);
        assert_eq!(doc.line_of(&p(&[k("steps"), Seg::Index(1), k("missing")])), Some(7));
        assert_eq!(doc.value["steps"][1]["retry"]["max_attempts"], 3);
    }

    #[test]
    fn json_by_extension_and_errors_name_the_format() {
        assert!(Document::parse(Path::new("w.json"), "{\"id\": 1}").unwrap().lines.is_empty());
        assert!(Document::parse(Path::new("w.json"), "{").unwrap_err().to_string().contains("JSON"));
        assert!(Document::parse(Path::new("w.yaml"), "a: [1,").unwrap_err().to_string().contains("YAML"));
    }
}
