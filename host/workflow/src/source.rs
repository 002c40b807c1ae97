//! Reading a workflow file: YAML or JSON by extension, into JSON plus, for
//! YAML, the line of every key so problems can point at it. The lines come
//! from the YAML library's spans (`serde_saphyr::Spanned`), read in the same
//! pass as the values.

use super::definition::{MAX_ID_LEN, is_valid_id};
use super::dialect::{Dialect, original, translate};
use serde_json::Value;
use serde_saphyr::Spanned;
use std::fmt;
use std::path::Path;

/// The most YAML nodes (mappings, sequences and scalars) a workflow file may
/// hold: 4 million, room for workflows of 100,000 steps and more (a step is
/// about 10–20 nodes) while a hostile document stays bounded. The YAML
/// library's default, 250,000, refused workflows of about 20,000 steps.
pub(crate) const MAX_YAML_NODES: usize = 4_000_000;

/// One step of a path into a document: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A path into a document, e.g. `steps.load.timeout` or `steps[2].id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct DocPath(pub Vec<Seg>);

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
    /// The content, as a Plexus document (another system's format is
    /// translated, see [`crate::dialect`]).
    pub value: Value,
    /// The format it was written in.
    pub dialect: Dialect,
    /// 1-based line of each mapping key and sequence item (YAML only), in
    /// the document as written.
    pub(crate) lines: Lines,
    /// Where the translation's paths come from in the document as written.
    pub(crate) origin: Vec<(DocPath, DocPath)>,
    /// Problems found while translating: (step, path as written, message).
    pub(crate) found: Vec<(Option<String>, DocPath, String)>,
}

impl Document {
    /// Parse `text`; `path` decides the format: `.json` is JSON, anything else YAML.
    ///
    /// # Errors
    /// The parser's message, with its line where it gives one.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SyntaxError> {
        let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        // A document that names no id of its own (a factories workflow) takes the file's name.
        let stem = path.file_stem().and_then(|s| s.to_str()).filter(|s| is_valid_id(s, MAX_ID_LEN));
        if is_json {
            let value = serde_json::from_str(text).map_err(|e| SyntaxError(format!("invalid JSON: {e}")))?;
            return Ok(Self::written(value, Lines::default(), stem));
        }
        // YAML 1.2 booleans only: `y`, `no`, `on` are text (step ids, words), not booleans.
        let options = serde_saphyr::options! {
            strict_booleans: true,
            with_snippet: false,
            budget: serde_saphyr::budget! { max_nodes: MAX_YAML_NODES, max_events: 2 * MAX_YAML_NODES },
        };
        let root: Node = serde_saphyr::from_str_with_options(text, options)
            .map_err(|e| SyntaxError(format!("invalid YAML: {}", one_line(&e.to_string()))))?;
        let (value, tree) = root.into_value();
        Ok(Self::written(value, Lines(tree), stem))
    }

    /// The document whose content as written is `value`, translated into a
    /// Plexus document when it is in another system's format.
    fn written(value: Value, lines: Lines, fallback_id: Option<&str>) -> Self {
        let dialect = Dialect::detect(&value);
        if dialect == Dialect::Plexus {
            return Self { value, dialect, lines, origin: Vec::new(), found: Vec::new() };
        }
        let t = translate(dialect, &value, fallback_id);
        Self { value: t.value, dialect, lines, origin: t.origin, found: t.problems }
    }

    /// `path` (in [`Self::value`]) as it is in the document as written.
    pub(crate) fn written_path(&self, path: &DocPath) -> DocPath {
        if self.origin.is_empty() { path.clone() } else { original(&self.origin, path) }
    }

    /// The document `value` (a part of this one, at `path`: an inline
    /// sub-workflow), its lines those of this document under `path` (so a
    /// problem in it points at its line in this file).
    pub(crate) fn part(&self, path: &DocPath, value: Value) -> Self {
        let lines = self.lines.part(&self.written_path(path));
        Self { value, dialect: Dialect::Plexus, lines, origin: Vec::new(), found: Vec::new() }
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub(crate) fn line_of(&self, path: &DocPath) -> Option<usize> {
        let mut p = path.clone();
        loop {
            if let Some(line) = self.lines.get(&p) {
                return Some(line);
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

/// The line of every mapping key and sequence item of a YAML document, in
/// the document's own shape (looked up only when a problem is reported).
#[derive(Debug, Default)]
pub(crate) struct Lines(LineTree);

#[derive(Debug, Default, Clone)]
enum LineTree {
    /// Each key with its line and what is under it.
    Map(Vec<(String, usize, LineTree)>),
    /// Each item's line and what is under it.
    Seq(Vec<(usize, LineTree)>),
    /// A scalar, or no document.
    #[default]
    Leaf,
}

impl Lines {
    /// The 1-based line of the key or item at `path`, if the document has it.
    pub fn get(&self, path: &DocPath) -> Option<usize> {
        let mut tree = &self.0;
        let mut line = None;
        for seg in &path.0 {
            let (at, under) = match (tree, seg) {
                (LineTree::Map(entries), Seg::Key(k)) => {
                    entries.iter().find(|(key, ..)| key == k).map(|(_, l, t)| (*l, t))?
                }
                (LineTree::Seq(items), Seg::Index(i)) => items.get(*i).map(|(l, t)| (*l, t))?,
                _ => return None,
            };
            line = Some(at);
            tree = under;
        }
        line
    }

    /// The lines under `path`, as a document of their own.
    pub(crate) fn part(&self, path: &DocPath) -> Lines {
        let mut tree = &self.0;
        for seg in &path.0 {
            let under = match (tree, seg) {
                (LineTree::Map(entries), Seg::Key(k)) => entries.iter().find(|(key, ..)| key == k).map(|(_, _, t)| t),
                (LineTree::Seq(items), Seg::Index(i)) => items.get(*i).map(|(_, t)| t),
                _ => None,
            };
            match under {
                Some(t) => tree = t,
                None => return Lines::default(),
            }
        }
        Lines(tree.clone())
    }

    /// Whether no line is known (a JSON document).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self.0, LineTree::Leaf)
    }
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
    /// The node as JSON, and the lines of its keys and items.
    fn into_value(self) -> (Value, LineTree) {
        match self.0.value {
            Tree::Scalar(value) => (value, LineTree::Leaf),
            Tree::Seq(items) => {
                let mut values = Vec::with_capacity(items.len());
                let mut lines = Vec::with_capacity(items.len());
                for item in items {
                    let at = line(&item.0.referenced);
                    let (value, tree) = item.into_value();
                    values.push(value);
                    lines.push((at, tree));
                }
                (Value::Array(values), LineTree::Seq(lines))
            }
            Tree::Map(entries) => {
                let mut values = serde_json::Map::new();
                let mut lines = Vec::with_capacity(entries.len());
                for (key, item) in entries {
                    let (value, tree) = item.into_value();
                    lines.push((key.value.clone(), line(&key.referenced), tree));
                    values.insert(key.value, value);
                }
                (Value::Object(values), LineTree::Map(lines))
            }
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
        assert_eq!(doc.lines.get(&p(&[k("id")])).unwrap(), 1);
        assert_eq!(doc.lines.get(&p(&[k("steps"), Seg::Index(0)])).unwrap(), 3);
        assert_eq!(doc.lines.get(&p(&[k("steps"), Seg::Index(0), k("plugin_id")])).unwrap(), 4);
        assert_eq!(doc.lines.get(&p(&[k("steps"), Seg::Index(0), k("parameters"), k("path")])).unwrap(), 6);
        assert_eq!(doc.lines.get(&p(&[k("steps"), Seg::Index(1), k("retry"), k("max_attempts")])).unwrap(), 9);
        assert_eq!(doc.lines.get(&p(&[k("rollback_steps"), k("load"), k("plugin_id")])).unwrap(), 12);
        assert_eq!(doc.line_of(&p(&[k("steps"), Seg::Index(1), k("missing")])), Some(7));
        assert_eq!(doc.value["steps"][1]["retry"]["max_attempts"], 3);
    }

    #[test]
    fn yaml_lines_come_from_flow_collections_too_and_values_keep_their_types() {
        let text = "id: wf\nsteps:\n  - {id: a, plugin_id: p,\n     parameters: {n: 1.5, ok: true, none: ~}}\n  - id: b\n    dependencies: [a]\n";
        let doc = Document::parse(Path::new("w.yaml"), text).unwrap();
        let p = |s: &[Seg]| DocPath(s.to_vec());
        let k = |s: &str| Seg::Key(s.into());
        assert_eq!(doc.lines.get(&p(&[k("steps"), Seg::Index(0), k("plugin_id")])).unwrap(), 3);
        assert_eq!(doc.lines.get(&p(&[k("steps"), Seg::Index(0), k("parameters"), k("ok")])).unwrap(), 4);
        assert_eq!(doc.lines.get(&p(&[k("steps"), Seg::Index(1), k("dependencies"), Seg::Index(0)])).unwrap(), 6);
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
