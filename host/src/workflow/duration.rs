//! Durations in workflow files: integer milliseconds (QtForge's format) or
//! text such as `"250ms"`, `"30s"`, `"5m"`, `"1h 30m"` (humantime).

use serde_json::Value;
use std::time::Duration;

/// Read a duration from JSON: a non-negative integer is milliseconds, a string
/// is parsed by `humantime` (`"30s"`, `"5m"`, `"1h 30m"`, `"250ms"`).
///
/// # Errors
/// A message naming the value, for negative numbers, fractions, other types,
/// and unparsable text.
pub fn parse(value: &Value) -> Result<Duration, String> {
    match value {
        Value::Number(n) => match n.as_u64() {
            Some(ms) => Ok(Duration::from_millis(ms)),
            None => Err(format!("invalid duration {n}: expected whole milliseconds ≥ 0 or text like \"30s\"")),
        },
        Value::String(text) => humantime::parse_duration(text.trim())
            .map_err(|e| format!("invalid duration \"{text}\": {e} (expected e.g. \"500ms\", \"30s\", \"5m\")")),
        other => Err(format!("invalid duration {other}: expected milliseconds or text like \"30s\"")),
    }
}

/// Serialize a duration as whole milliseconds (for `#[serde(serialize_with)]`).
pub fn serialize_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Serialize an optional duration as whole milliseconds or null.
pub fn serialize_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_millis() as u64)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn milliseconds_and_text() {
        assert_eq!(parse(&json!(1500)).unwrap(), Duration::from_millis(1500));
        assert_eq!(parse(&json!("30s")).unwrap(), Duration::from_secs(30));
        assert_eq!(parse(&json!("5m")).unwrap(), Duration::from_secs(300));
        assert_eq!(parse(&json!("250ms")).unwrap(), Duration::from_millis(250));
        assert!(parse(&json!(-1)).unwrap_err().contains("-1"));
        assert!(parse(&json!(1.5)).is_err());
        assert!(parse(&json!("five minutes")).unwrap_err().contains("five minutes"));
        assert!(parse(&json!(true)).is_err());
    }
}
