//! Reading a workflow file: YAML or JSON by extension, into JSON plus, for
//! YAML, the line of every key so problems can point at it. The lines come
//! from the YAML library's spans (`serde_saphyr::Spanned`), read in the same
//! pass as the values.

use serde_json::Value;
use serde_saphyr::Spanned;
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
        let root: Node = serde_saphyr::from_str_with_options(text, options)
            .map_err(|e| SyntaxError(format!("invalid YAML: {}", one_line(&e.to_string()))))?;
        let mut lines = HashMap::new();
        let value = root.into_value(&DocPath::default(), &mut lines);
        Ok(Self { value, lines })
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

/// A YAML node with where it starts, read by the YAML library in the same
/// pass as its value.
#[derive(serde::Deserialize)]
#[serde(transparent)]
struct Node(Spanned<Tree>);

/// A YAML node's content; mapping keys keep their own location.
enum Tree {
    Map(Vec<(Spanned<String>, Node)>),
    Seq(Vec<Node>),
    Scalar(Value),
}

impl Node {
    /// The node as JSON; records the line of every mapping key and sequence
    /// item under `path` in `lines`.
    fn into_value(self, path: &DocPath, lines: &mut HashMap<DocPath, usize>) -> Value {
        match self.0.value {
            Tree::Scalar(value) => value,
            Tree::Seq(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let p = path.index(i);
                        lines.insert(p.clone(), line(&item.0.referenced));
                        item.into_value(&p, lines)
                    })
                    .collect(),
            ),
            Tree::Map(entries) => Value::Object(
                entries
                    .into_iter()
                    .map(|(key, item)| {
                        let p = path.key(&key.value);
                        lines.insert(p.clone(), line(&key.referenced));
                        let value = item.into_value(&p, lines);
                        (key.value, value)
                    })
                    .collect(),
            ),
        }
    }
}

fn line(at: &serde_saphyr::Location) -> usize {
    usize::try_from(at.line()).unwrap_or(usize::MAX)
}

impl<'de> serde::Deserialize<'de> for Tree {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> serde::de::Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Tree, E> {
        Ok(Tree::Scalar(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Tree, E> {
        Ok(Tree::Scalar(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Tree, E> {
        Ok(Tree::Scalar(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Tree, E> {
        // As serde_json does: a float JSON cannot hold (NaN, ±inf) is null.
        Ok(Tree::Scalar(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
        Ok(Tree::Scalar(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Tree, E> {
        Ok(Tree::Scalar(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Tree, E> {
        Ok(Tree::Scalar(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Tree, E> {
        Ok(Tree::Scalar(Value::Null))
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Tree::Seq(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Tree::Map(entries))
    }
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
    fn yaml_lines_come_from_flow_collections_too_and_values_keep_their_types() {
        let text = "id: wf\nsteps:\n  - {id: a, plugin_id: p,\n     parameters: {n: 1.5, ok: true, none: ~}}\n  - id: b\n    dependencies: [a]\n";
        let doc = Document::parse(Path::new("w.yaml"), text).unwrap();
        let p = |s: &[Seg]| DocPath(s.to_vec());
        let k = |s: &str| Seg::Key(s.into());
        assert_eq!(doc.lines[&p(&[k("steps"), Seg::Index(0), k("plugin_id")])], 3);
        assert_eq!(doc.lines[&p(&[k("steps"), Seg::Index(0), k("parameters"), k("ok")])], 4);
        assert_eq!(doc.lines[&p(&[k("steps"), Seg::Index(1), k("dependencies"), Seg::Index(0)])], 6);
        assert_eq!(doc.value["steps"][0]["parameters"], serde_json::json!({"n": 1.5, "ok": true, "none": null}));
        // YAML 1.2 booleans only: `no` is text.
        let doc = Document::parse(Path::new("w.yaml"), "a: no\nb: 0x10\n").unwrap();
        assert_eq!(doc.value, serde_json::json!({"a": "no", "b": 16}));
        let dup = Document::parse(Path::new("w.yaml"), "a: 1\na: 2\n");
        assert!(dup.is_err(), "a duplicate key is refused: {dup:?}");
    }

    #[test]
    fn json_by_extension_and_errors_name_the_format() {
        assert!(Document::parse(Path::new("w.json"), "{\"id\": 1}").unwrap().lines.is_empty());
        assert!(Document::parse(Path::new("w.json"), "{").unwrap_err().to_string().contains("JSON"));
        assert!(Document::parse(Path::new("w.yaml"), "a: [1,").unwrap_err().to_string().contains("YAML"));
    }
}
