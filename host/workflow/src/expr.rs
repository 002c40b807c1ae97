//! The one expression language of workflows: **minijinja expressions**.
//!
//! It serves both conditions and data passing:
//!
//! * `when: "steps.validate.output.invalid_rows == 0"` — an expression, true or false;
//! * parameters: `"${{ inputs.path }}"` or `"${{ steps.load.output.rows }}"`. A
//!   string that is exactly one `${{ … }}` yields the expression's value with
//!   its type (a number, a list, an object); a string with text around one or
//!   more `${{ … }}` yields text.
//!
//! Names available in expressions: `inputs` (the workflow's inputs),
//! `steps.<id>.output`, `steps.<id>.status` (`completed`, `failed`, …),
//! `steps.<id>.attempts`, `context` (the execution's shared state; in pipeline
//! mode every completed step's object output is merged into it) and
//! `workflow.id` / `workflow.execution_id`. Filters and operators are
//! minijinja's: `steps.load.output.rows | length > 100`,
//! `inputs.mode in ["fast", "full"]`, `not steps.check.output.ok`.

use minijinja::value::{Enumerator, Object, ObjectRepr, Value as MjValue};
use minijinja::{Environment, Expression};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
});

/// A compiled expression.
pub(crate) struct Expr {
    source: String,
    compiled: Expression<'static, 'static>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl Expr {
    /// Compile `source`.
    ///
    /// # Errors
    /// The syntax error, as one line.
    pub fn compile(source: &str) -> Result<Self, ExprError> {
        let compiled = ENV
            .compile_expression_owned(source.to_owned())
            .map_err(|e| ExprError::Syntax { expression: source.to_owned(), message: error_line(&e) })?;
        Ok(Self { source: source.to_owned(), compiled })
    }

    /// The text of the expression.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Top-level names and dotted paths the expression reads, e.g. `steps.load.output`.
    pub(crate) fn references(&self) -> BTreeSet<String> {
        self.compiled.undeclared_variables(true).into_iter().collect()
    }

    /// Evaluate to JSON.
    ///
    /// # Errors
    /// [`ExprError::Eval`]: the evaluation failed, or its value is not JSON.
    pub(crate) fn eval(&self, scope: &Scope) -> Result<Value, ExprError> {
        let value = self.compiled.eval(scope.value()).map_err(|e| self.failed(error_line(&e)))?;
        to_json(&value).map_err(|e| self.failed(e.to_string()))
    }

    /// Evaluate as a condition (minijinja truthiness).
    ///
    /// # Errors
    /// [`ExprError::Eval`].
    pub(crate) fn eval_bool(&self, scope: &Scope) -> Result<bool, ExprError> {
        self.compiled.eval(scope.value()).map(|v| v.is_true()).map_err(|e| self.failed(error_line(&e)))
    }

    fn failed(&self, message: String) -> ExprError {
        ExprError::Eval { expression: self.source.clone(), message }
    }
}

/// An expression that does not compile or fails to evaluate. The message is
/// one line and names the expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExprError {
    /// A syntax error.
    #[error("invalid expression `{expression}`: {message}")]
    Syntax {
        /// The expression's text.
        expression: String,
        /// minijinja's message.
        message: String,
    },
    /// Evaluation failed (an undefined name, a type error, a value that is not JSON).
    #[error("`{expression}`: {message}")]
    Eval {
        /// The expression's text.
        expression: String,
        /// What failed.
        message: String,
    },
}

fn error_line(e: &minijinja::Error) -> String {
    let mut text = e.to_string();
    if let Some(detail) = e.detail()
        && !text.contains(detail)
    {
        text = format!("{text}: {detail}");
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What expressions can see: built by the engine from the execution's state.
#[derive(Clone)]
pub(crate) struct Scope {
    names: std::collections::BTreeMap<&'static str, MjValue>,
}

impl Scope {
    /// A scope with `inputs`, `steps`, `context` and `workflow` (each a JSON value).
    #[cfg(test)]
    pub fn new(inputs: Value, steps: Value, context: Value, workflow: Value) -> Self {
        Self::with_secrets(inputs, steps, context, workflow, None)
    }

    /// [`Self::new`] with `secrets` (an object of the secrets the
    /// expressions name, by name), when they name any.
    pub fn with_secrets(inputs: Value, steps: Value, context: Value, workflow: Value, secrets: Option<Value>) -> Self {
        let mut root = std::collections::BTreeMap::from([
            ("inputs", json_value(inputs)),
            ("steps", json_value(steps)),
            ("context", json_value(context)),
            ("workflow", json_value(workflow)),
        ]);
        if let Some(secrets) = secrets {
            root.insert("secrets", json_value(secrets));
        }
        Self { names: root }
    }

    /// This scope with a map step's `item` and its `index`.
    pub fn with_item(&self, item: Value, index: usize) -> Self {
        let mut names = self.names.clone();
        names.insert("item", json_value(item));
        names.insert("index", MjValue::from(index));
        Self { names }
    }

    fn value(&self) -> MjValue {
        MjValue::from(self.names.clone())
    }
}

/// A JSON value seen by minijinja lazily: children are converted on access.
#[derive(Debug)]
struct Json(Value);

impl Object for Json {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.0 {
            Value::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }
    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        match &self.0 {
            Value::Object(map) => key.as_str().and_then(|k| map.get(k)).map(|v| json_value(v.clone())),
            Value::Array(items) => key.as_usize().and_then(|i| items.get(i)).map(|v| json_value(v.clone())),
            _ => None,
        }
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match &self.0 {
            Value::Object(map) => Enumerator::Values(map.keys().map(|k| MjValue::from(k.as_str())).collect()),
            Value::Array(items) => Enumerator::Seq(items.len()),
            _ => Enumerator::Empty,
        }
    }
}

/// A JSON value as a minijinja value (scalars directly, containers lazily).
fn json_value(value: Value) -> MjValue {
    match value {
        Value::Null => MjValue::from(()),
        Value::Bool(b) => MjValue::from(b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => MjValue::from(i),
            (None, Some(u)) => MjValue::from(u),
            _ => MjValue::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => MjValue::from(s),
        container => MjValue::from_object(Json(container)),
    }
}

/// A minijinja value back to JSON (a lazily wrapped JSON value is unwrapped as is).
fn to_json(value: &MjValue) -> Result<Value, String> {
    if let Some(json) = value.downcast_object_ref::<Json>() {
        return Ok(json.0.clone());
    }
    if value.is_undefined() {
        return Err("the result is undefined".into());
    }
    serde_json::to_value(value).map_err(|e| format!("the result is not JSON: {e}"))
}

/// A parameter value with its templates compiled: evaluated per step run.
#[derive(Debug)]
pub(crate) enum Template {
    /// No `${{ }}` anywhere below: used as is.
    Literal(Value),
    /// A string that is exactly one `${{ expr }}`: the expression's typed value.
    Whole(Expr),
    /// Text with `${{ expr }}` parts: a string.
    Text(Vec<Part>),
    /// An array with templates inside.
    Array(Vec<Template>),
    /// An object with templates inside.
    Object(Vec<(String, Template)>),
}

/// A piece of a [`Template::Text`].
#[derive(Debug)]
pub(crate) enum Part {
    /// Literal text.
    Text(String),
    /// An interpolated expression.
    Expr(Expr),
}

const OPEN: &str = "${{";
const CLOSE: &str = "}}";

impl Template {
    /// Compile every `${{ … }}` inside `value`; all errors are returned at once.
    pub fn compile(value: &Value) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let template = Self::compile_into(value, &mut errors);
        if errors.is_empty() { Ok(template) } else { Err(errors) }
    }

    fn compile_into(value: &Value, errors: &mut Vec<String>) -> Self {
        if !contains_template(value) {
            return Template::Literal(value.clone());
        }
        match value {
            Value::String(text) => compile_text(text, errors),
            Value::Array(items) => Template::Array(items.iter().map(|v| Self::compile_into(v, errors)).collect()),
            Value::Object(map) => {
                Template::Object(map.iter().map(|(k, v)| (k.clone(), Self::compile_into(v, errors))).collect())
            }
            other => Template::Literal(other.clone()),
        }
    }

    /// Whether nothing needs evaluating.
    pub(crate) fn is_literal(&self) -> bool {
        matches!(self, Template::Literal(_))
    }

    /// The JSON Pointers (RFC 6901, e.g. `/columns/0`) of the values that are
    /// expressions (whole or text with `${{ }}` parts); `""` when the value
    /// itself is one. Everything else is literal and known before the run.
    pub(crate) fn expression_paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_paths(String::new(), &mut out);
        out
    }

    fn collect_paths(&self, at: String, out: &mut Vec<String>) {
        match self {
            Template::Literal(_) => {}
            Template::Whole(_) | Template::Text(_) => out.push(at),
            Template::Array(items) => {
                for (i, t) in items.iter().enumerate() {
                    t.collect_paths(format!("{at}/{i}"), out);
                }
            }
            Template::Object(fields) => {
                for (k, t) in fields {
                    t.collect_paths(format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
                }
            }
        }
    }

    /// Every expression inside.
    pub(crate) fn exprs(&self) -> Vec<&Expr> {
        let mut out = Vec::new();
        self.collect_exprs(&mut out);
        out
    }

    fn collect_exprs<'a>(&'a self, out: &mut Vec<&'a Expr>) {
        match self {
            Template::Literal(_) => {}
            Template::Whole(e) => out.push(e),
            Template::Text(parts) => out.extend(parts.iter().filter_map(|p| match p {
                Part::Expr(e) => Some(e),
                Part::Text(_) => None,
            })),
            Template::Array(items) => items.iter().for_each(|t| t.collect_exprs(out)),
            Template::Object(fields) => fields.iter().for_each(|(_, t)| t.collect_exprs(out)),
        }
    }

    /// Evaluate against `scope`.
    ///
    /// # Errors
    /// The first expression that fails ([`ExprError::Eval`]).
    pub fn render(&self, scope: &Scope) -> Result<Value, ExprError> {
        Ok(match self {
            Template::Literal(v) => v.clone(),
            Template::Whole(e) => e.eval(scope)?,
            Template::Text(parts) => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        Part::Text(t) => out.push_str(t),
                        Part::Expr(e) => match e.eval(scope)? {
                            Value::String(s) => out.push_str(&s),
                            other => out.push_str(&other.to_string()),
                        },
                    }
                }
                Value::String(out)
            }
            Template::Array(items) => Value::Array(items.iter().map(|t| t.render(scope)).collect::<Result<_, _>>()?),
            Template::Object(fields) => Value::Object(
                fields.iter().map(|(k, t)| Ok((k.clone(), t.render(scope)?))).collect::<Result<_, ExprError>>()?,
            ),
        })
    }
}

fn contains_template(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains(OPEN),
        Value::Array(items) => items.iter().any(contains_template),
        Value::Object(map) => map.values().any(contains_template),
        _ => false,
    }
}

fn compile_text(text: &str, errors: &mut Vec<String>) -> Template {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_owned()));
        }
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find(CLOSE) else {
            errors.push(format!("unclosed `${{{{` in \"{text}\""));
            return Template::Literal(Value::String(text.to_owned()));
        };
        match Expr::compile(after[..end].trim()) {
            Ok(e) => parts.push(Part::Expr(e)),
            Err(e) => errors.push(e.to_string()),
        }
        rest = &after[end + CLOSE.len()..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    match parts.as_slice() {
        [Part::Expr(_)] => match parts.pop() {
            Some(Part::Expr(e)) => Template::Whole(e),
            _ => unreachable!("matched a single expression"),
        },
        _ => Template::Text(parts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        Scope::new(
            json!({"path": "data.csv", "limit": 3}),
            json!({"load": {"output": {"rows": [{"a": 1}, {"a": 2}], "count": 2}, "status": "completed"}}),
            json!({"seen": true}),
            json!({"id": "wf", "execution_id": "e1"}),
        )
    }

    #[test]
    fn a_whole_template_keeps_its_type() {
        let t = Template::compile(&json!({"rows": "${{ steps.load.output.rows }}", "n": "${{ inputs.limit + 1 }}"}))
            .unwrap();
        assert_eq!(t.render(&scope()).unwrap(), json!({"rows": [{"a": 1}, {"a": 2}], "n": 4}));
    }

    #[test]
    fn text_with_templates_is_text() {
        let t = Template::compile(&json!("file ${{ inputs.path }} has ${{ steps.load.output.count }} rows")).unwrap();
        assert_eq!(t.render(&scope()).unwrap(), json!("file data.csv has 2 rows"));
    }

    #[test]
    fn literals_stay_literal() {
        let t = Template::compile(&json!({"a": [1, "x"], "b": null})).unwrap();
        assert!(t.is_literal());
    }

    #[test]
    fn conditions_and_references() {
        let e = Expr::compile("steps.load.output.count == 2 and context.seen").unwrap();
        assert!(e.eval_bool(&scope()).unwrap());
        assert!(e.references().contains("steps.load.output.count"), "{:?}", e.references());
        assert!(!Expr::compile("steps.load.output.rows | length > 5").unwrap().eval_bool(&scope()).unwrap());
    }

    #[test]
    fn errors_are_reported_with_the_source() {
        assert!(Expr::compile("steps.load ==").unwrap_err().to_string().contains("steps.load =="));
        let errs = Template::compile(&json!(["${{ a + }}", "${{ b", "${{ ok }}"])).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        let missing = Expr::compile("steps.nope.output").unwrap().eval(&scope()).unwrap_err().to_string();
        assert!(missing.contains("steps.nope.output"), "{missing}");
    }
}
