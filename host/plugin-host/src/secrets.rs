//! Secrets: named values a plugin may be handed (in its `[config]` or a
//! step's parameters, as `${{ secrets.NAME }}`) that Plexus never shows.
//!
//! * [`SecretSource`]: where values come from — the daemon's encrypted
//!   store, or for `plexus run` / `plexus call` the environment
//!   (`PLEXUS_SECRET_<NAME>`, [`EnvSecrets`]) and a secrets file ([`MapSecrets`]).
//! * [`SecretValue`]: a value whose `Debug` and `Display` print `***`.
//! * [`Redactor`]: replaces every value it was given with `***` in text and
//!   JSON. The process keeps one ([`redactor`]) holding every secret value
//!   handed out (a plugin's config, a step's parameters) or loaded by the
//!   daemon; what an execution records (outputs, errors, the shared state,
//!   the event log) and every plugin log line (its log service, progress
//!   messages, a WASM instance's and a worker's stdout/stderr) goes through it.
//!
//! Names are `[A-Za-z_][A-Za-z0-9_]{0,63}` (an expression's identifier).
//! Values shorter than [`MIN_REDACTED_BYTES`] are refused by the stores
//! (redacting `"1"` everywhere would hide more than it protects).

use aho_corasick::AhoCorasick;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError, RwLock};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "***";

/// The shortest secret value a store accepts, bytes.
pub const MIN_REDACTED_BYTES: usize = 4;

/// The longest secret value a store accepts, bytes (64 KiB).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// The most distinct values the process's [`redactor`] holds (each value a
/// secret handed out since the process started: rotated values stay).
pub const MAX_REDACTED_VALUES: usize = 4096;

/// The most bytes of values the process's [`redactor`] holds (16 MiB).
pub const MAX_REDACTED_BYTES: usize = 16 << 20;

/// The longest secret name, characters.
pub const MAX_SECRET_NAME: usize = 64;

/// A secret's value. `Debug` and `Display` print `***`; [`Self::expose`]
/// gives the text.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Arc<str>);

impl SecretValue {
    /// Wrap `value`.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The value itself: only to hand to a plugin, or to a [`Redactor`].
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::fmt::Display for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Where secret values come from. Looked up when a plugin loads (its
/// `[config]`) and when a step's parameters are rendered; must not block
/// for long (the daemon's keeps its values decrypted in memory).
pub trait SecretSource: Send + Sync {
    /// The value of secret `name`, or `None` when it is not set.
    fn secret(&self, name: &str) -> Option<SecretValue>;
}

/// No secrets at all.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn secret(&self, _: &str) -> Option<SecretValue> {
        None
    }
}

/// Secrets from the environment: `NAME` is `$PLEXUS_SECRET_NAME` (read at
/// each lookup).
#[derive(Debug, Default, Clone, Copy)]
pub struct EnvSecrets;

/// The prefix of [`EnvSecrets`]' variables.
pub const ENV_PREFIX: &str = "PLEXUS_SECRET_";

impl SecretSource for EnvSecrets {
    fn secret(&self, name: &str) -> Option<SecretValue> {
        check_name(name).ok()?;
        std::env::var(format!("{ENV_PREFIX}{name}")).ok().map(SecretValue::new)
    }
}

/// Secrets from a map (a secrets file), falling back to another source.
pub struct MapSecrets {
    values: BTreeMap<String, SecretValue>,
    fallback: Arc<dyn SecretSource>,
}

impl MapSecrets {
    /// `values` first, then `fallback`.
    pub fn new(values: BTreeMap<String, SecretValue>, fallback: Arc<dyn SecretSource>) -> Self {
        Self { values, fallback }
    }

    /// Read a secrets file: a TOML table of names to strings
    /// (`DB_PASSWORD = "…"`). Falls back to `fallback` for other names.
    ///
    /// # Errors
    /// The file cannot be read, is not TOML, or has a bad name or a value
    /// that is not a string (named; the value never is).
    pub fn from_file(path: &std::path::Path, fallback: Arc<dyn SecretSource>) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("secrets file {}: {e}", path.display()))?;
        // toml's errors quote the line, which may hold a value: give the position only.
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let at = e.span().map(|s| format!(" at byte {}", s.start)).unwrap_or_default();
            format!("secrets file {}: not a TOML table of names to strings{at}", path.display())
        })?;
        let mut values = BTreeMap::new();
        for (name, value) in table {
            check_name(&name).map_err(|e| format!("secrets file {}: {e}", path.display()))?;
            let toml::Value::String(value) = value else {
                return Err(format!("secrets file {}: `{name}` is not a string", path.display()));
            };
            values.insert(name, SecretValue::new(value));
        }
        Ok(Self::new(values, fallback))
    }
}

impl SecretSource for MapSecrets {
    fn secret(&self, name: &str) -> Option<SecretValue> {
        self.values.get(name).cloned().or_else(|| self.fallback.secret(name))
    }
}

/// Whether `name` is a valid secret name (`[A-Za-z_][A-Za-z0-9_]{0,63}`).
///
/// # Errors
/// Why not, naming it.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || name.len() > MAX_SECRET_NAME {
        let shown: String = name.chars().take(MAX_SECRET_NAME).collect();
        return Err(format!(
            "secret name `{shown}` is not valid: letters, digits and `_`, not starting with a digit, \
             at most {MAX_SECRET_NAME} characters"
        ));
    }
    Ok(())
}

/// Whether `value` may be stored as a secret: [`MIN_REDACTED_BYTES`] to
/// [`MAX_SECRET_BYTES`] bytes.
///
/// # Errors
/// Why not (never quoting it).
pub fn check_value(value: &str) -> Result<(), String> {
    if value.len() < MIN_REDACTED_BYTES {
        return Err(format!(
            "a secret's value must be at least {MIN_REDACTED_BYTES} bytes (shorter ones cannot be redacted usefully)"
        ));
    }
    if value.len() > MAX_SECRET_BYTES {
        return Err(format!("a secret's value is at most {MAX_SECRET_BYTES} bytes; this one has {}", value.len()));
    }
    Ok(())
}

/// The secret names `${{ secrets.NAME }}` references in `text` name (spaces
/// inside the braces allowed), in order of appearance.
pub fn references(text: &str) -> Vec<String> {
    spans(text).into_iter().map(|(_, _, name)| name).collect()
}

/// `(start, end, name)` of each `${{ secrets.NAME }}` in `text`.
fn spans(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find("${{").map(|i| from + i) {
        let Some(close) = text[open..].find("}}").map(|i| open + i) else { break };
        let inner = text[open + 3..close].trim();
        if let Some(name) = inner.strip_prefix("secrets.")
            && check_name(name).is_ok()
        {
            out.push((open, close + 2, name.to_owned()));
        }
        from = close + 2;
    }
    out
}

/// Why a plugin's `[config]` cannot have its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSecretError {
    /// A referenced secret is not granted by `[permissions] secrets`.
    NotGranted(String),
    /// A referenced secret is not set.
    NotSet(String),
    /// The redactor cannot take the value (see [`Redactor::add`]).
    Unredactable(String),
}

impl std::fmt::Display for ConfigSecretError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotGranted(m) | Self::NotSet(m) | Self::Unredactable(m) => f.write_str(m),
        }
    }
}

/// A plugin's `[config]` with its `${{ secrets.NAME }}` references replaced
/// by their values (anywhere in a string; nested tables and arrays too),
/// each one of `granted` (`[permissions] secrets`: the operator's grant).
/// Returns the resolved config and the secrets used (added to [`redactor`]).
///
/// # Errors
/// A referenced secret is not granted or not set (naming it and the config
/// key that needs it), or cannot be redacted.
pub fn resolve_config(
    config: &Value,
    source: &dyn SecretSource,
    granted: &[String],
) -> Result<(Value, Vec<SecretValue>), ConfigSecretError> {
    let mut used = Vec::new();
    let resolved = resolve_value(config, source, granted, "config", &mut used)?;
    Ok((resolved, used))
}

fn resolve_value(
    value: &Value,
    source: &dyn SecretSource,
    granted: &[String],
    at: &str,
    used: &mut Vec<SecretValue>,
) -> Result<Value, ConfigSecretError> {
    Ok(match value {
        Value::String(text) => {
            let spans = spans(text);
            if spans.is_empty() {
                return Ok(value.clone());
            }
            let mut out = String::with_capacity(text.len());
            let mut last = 0;
            for (start, end, name) in spans {
                if !granted.contains(&name) {
                    return Err(ConfigSecretError::NotGranted(format!(
                        "`{at}` names secret `{name}`, which `[permissions] secrets` does not grant"
                    )));
                }
                let secret = source.secret(&name).ok_or_else(|| {
                    ConfigSecretError::NotSet(format!("`{at}` needs secret `{name}`, which is not set"))
                })?;
                redactor().add(&secret).map_err(ConfigSecretError::Unredactable)?;
                out.push_str(&text[last..start]);
                out.push_str(secret.expose());
                used.push(secret);
                last = end;
            }
            out.push_str(&text[last..]);
            Value::String(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| resolve_value(v, source, granted, &format!("{at}[{i}]"), used))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), resolve_value(v, source, granted, &format!("{at}.{k}"), used)?)))
                .collect::<Result<_, ConfigSecretError>>()?,
        ),
        other => other.clone(),
    })
}

/// The process's redactor: every secret value handed to a plugin (or
/// loaded by the daemon) is added to it, and never removed (a value that
/// was rotated away may still sit in a plugin's memory or output).
pub fn redactor() -> &'static Redactor {
    static GLOBAL: std::sync::LazyLock<Redactor> = std::sync::LazyLock::new(Redactor::new);
    &GLOBAL
}

/// Replaces secret values with `***`. Shared (`Arc`) by everything that
/// records an execution; values can be added while it runs. Empty, it
/// costs one read lock per call.
#[derive(Default)]
pub struct Redactor {
    inner: RwLock<Patterns>,
}

#[derive(Default)]
struct Patterns {
    values: BTreeSet<Arc<str>>,
    matcher: Option<AhoCorasick>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.inner.read().unwrap_or_else(PoisonError::into_inner).values.len();
        write!(f, "Redactor({n} values)")
    }
}

impl Redactor {
    /// An empty redactor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Redact `secret`'s value from now on (values under
    /// [`MIN_REDACTED_BYTES`] are not: they are never stored as secrets).
    ///
    /// # Errors
    /// The redactor holds [`MAX_REDACTED_VALUES`] values or
    /// [`MAX_REDACTED_BYTES`] bytes already, or cannot be rebuilt: the value
    /// is refused (its secret must not be handed out) and what was redacted
    /// stays redacted.
    pub fn add(&self, secret: &SecretValue) -> Result<(), String> {
        let value = secret.expose();
        if value.len() < MIN_REDACTED_BYTES {
            return Ok(());
        }
        if self.inner.read().unwrap_or_else(PoisonError::into_inner).values.contains(value) {
            return Ok(());
        }
        let mut p = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if p.values.contains(value) {
            return Ok(());
        }
        let bytes: usize = p.values.iter().map(|v| v.len()).sum();
        if p.values.len() >= MAX_REDACTED_VALUES || bytes + value.len() > MAX_REDACTED_BYTES {
            return Err(format!(
                "this process redacts at most {MAX_REDACTED_VALUES} secret values ({MAX_REDACTED_BYTES} bytes) \
                 and holds them already: restart it to forget values no longer used"
            ));
        }
        // Longest first: a value containing another is replaced whole.
        let mut patterns: Vec<&str> = p.values.iter().map(|v| &**v).chain([value]).collect();
        patterns.sort_by_key(|v| std::cmp::Reverse(v.len()));
        let matcher = AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(patterns)
            .map_err(|e| format!("the redactor cannot take one more value: {e}"))?;
        p.values.insert(value.into());
        p.matcher = Some(matcher);
        Ok(())
    }

    /// Whether it redacts nothing.
    pub fn is_empty(&self) -> bool {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).values.is_empty()
    }

    /// `text` with every value replaced by `***` (borrowed when none occurs).
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let p = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        match &p.matcher {
            Some(m) if m.is_match(text) => {
                let replaced = m.replace_all(text, &vec![REDACTED; p.values.len()]);
                Cow::Owned(replaced)
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// Redact every string of `value` (object keys too), in place.
    pub fn value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        self.value_inner(value);
    }

    fn value_inner(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Cow::Owned(r) = self.text(s) {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.value_inner(v)),
            Value::Object(map) => {
                let keys_hit = map.keys().any(|k| matches!(self.text(k), Cow::Owned(_)));
                if keys_hit {
                    let old = std::mem::take(map);
                    for (k, mut v) in old {
                        self.value_inner(&mut v);
                        map.insert(self.text(&k).into_owned(), v);
                    }
                } else {
                    map.values_mut().for_each(|v| self.value_inner(v));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fixed;
    impl SecretSource for Fixed {
        fn secret(&self, name: &str) -> Option<SecretValue> {
            (name == "PW").then(|| SecretValue::new("hunter22"))
        }
    }

    #[test]
    fn config_references_are_resolved_anywhere_in_strings() {
        let config = json!({"url": "postgres://u:${{ secrets.PW }}@h/db", "list": ["${{secrets.PW}}", 3], "n": 1});
        let granted = ["PW".to_owned(), "NOPE".to_owned()];
        let (resolved, used) = resolve_config(&config, &Fixed, &granted).unwrap();
        assert_eq!(resolved, json!({"url": "postgres://u:hunter22@h/db", "list": ["hunter22", 3], "n": 1}));
        assert_eq!(used.len(), 2);
        let missing = resolve_config(&json!({"a": {"b": "${{ secrets.NOPE }}"}}), &Fixed, &granted).unwrap_err();
        assert_eq!(missing.to_string(), "`config.a.b` needs secret `NOPE`, which is not set");
        let refused = resolve_config(&json!({"a": "${{ secrets.PW }}"}), &Fixed, &[]).unwrap_err();
        assert!(matches!(refused, ConfigSecretError::NotGranted(_)), "{refused}");
        // Not a secrets reference: left as written.
        let other = json!({"x": "${{ inputs.a }} ${{ secrets.1bad }}"});
        assert_eq!(resolve_config(&other, &Fixed, &granted).unwrap().0, other);
    }

    #[test]
    fn the_redactor_replaces_values_in_text_values_and_keys() {
        let r = Redactor::new();
        assert_eq!(r.text("hunter22"), "hunter22");
        r.add(&SecretValue::new("hunter22")).unwrap();
        r.add(&SecretValue::new("hunter2222")).unwrap();
        r.add(&SecretValue::new("abc")).unwrap(); // too short: ignored
        assert_eq!(r.text("pw=hunter2222; again hunter22, abc"), "pw=***; again ***, abc");
        let mut v = json!({"hunter22": ["x hunter22 y", {"k": "hunter22"}], "n": 5});
        r.value(&mut v);
        assert_eq!(v, json!({"***": ["x *** y", {"k": "***"}], "n": 5}));
        assert_eq!(format!("{:?} {}", SecretValue::new("hunter22"), SecretValue::new("hunter22")), "*** ***");
        // A ceiling: past it a value is refused, and what was redacted stays redacted.
        let small = Redactor::new();
        for n in 0..MAX_REDACTED_VALUES {
            small.add(&SecretValue::new(format!("value-{n:06}"))).unwrap();
        }
        assert!(small.add(&SecretValue::new("one-too-many")).is_err());
        assert_eq!(small.text("value-000007"), "***");
    }

    #[test]
    fn names_are_identifiers() {
        assert!(check_name("DB_PASSWORD").is_ok());
        assert!(check_name("_x1").is_ok());
        for bad in ["", "1a", "a-b", "a.b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_value("abc").is_err());
        assert!(check_value(&"x".repeat(MAX_SECRET_BYTES + 1)).is_err());
        assert!(check_value("abcd").is_ok());
    }
}
