//! Durations in workflow files: integer milliseconds (QtForge's format) or
//! text such as `"250ms"`, `"30s"`, `"5m"`, `"1h 30m"` (humantime).
//!
//! Every duration is bounded when it is read, so no later time arithmetic
//! (deadlines, retry delays, schedule intervals) can overflow: a workflow's
//! timeouts and retry delays are at most [`MAX`] (30 days); schedules use
//! [`parse_text`] with their own ceilings.

use serde_json::Value;
use std::time::Duration;

/// The longest timeout or retry delay a workflow may give: 30 days.
pub const MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// Read a duration from JSON: a non-negative integer is milliseconds, a string
/// is parsed by `humantime` (`"30s"`, `"5m"`, `"1h 30m"`, `"250ms"`). At most
/// [`MAX`].
///
/// # Errors
/// A message naming the value, for negative numbers, fractions, other types,
/// unparsable text and durations over [`MAX`].
pub fn parse(value: &Value) -> Result<Duration, DurationError> {
    let invalid = |message: String| DurationError::Invalid(message);
    let d = match value {
        Value::Number(n) => match n.as_u64() {
            Some(ms) => Duration::from_millis(ms),
            None => {
                return Err(invalid(format!(
                    "invalid duration {n}: expected whole milliseconds ≥ 0 or text like \"30s\""
                )));
            }
        },
        Value::String(text) => return parse_text(text, MAX),
        other => return Err(invalid(format!("invalid duration {other}: expected milliseconds or text like \"30s\""))),
    };
    check(d, &value.to_string(), MAX)
}

/// Parse `text` with `humantime` (`"30s"`, `"5m"`, `"1h 30m"`), refusing
/// anything longer than `max`.
///
/// # Errors
/// A message naming the text, for unparsable text and durations over `max`.
pub fn parse_text(text: &str, max: Duration) -> Result<Duration, DurationError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        DurationError::Invalid(format!("invalid duration \"{text}\": {e} (expected e.g. \"500ms\", \"30s\", \"5m\")"))
    })?;
    check(d, &format!("\"{text}\""), max)
}

fn check(d: Duration, shown: &str, max: Duration) -> Result<Duration, DurationError> {
    if d > max {
        return Err(DurationError::TooLong { shown: shown.to_owned(), max });
    }
    Ok(d)
}

/// A value that is not a duration, or a duration over its ceiling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a duration: a negative number, a fraction, another type, or text
    /// `humantime` does not read. The message names the value.
    #[error("{0}")]
    Invalid(String),
    /// Longer than allowed.
    #[error("duration {shown} is too long: at most {}", humantime::format_duration(*max))]
    TooLong {
        /// The value as written.
        shown: String,
        /// The ceiling.
        max: Duration,
    },
}

pub use plexus_host::manifest::serialize_ms;

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
        assert!(parse(&json!(-1)).unwrap_err().to_string().contains("-1"));
        assert!(parse(&json!(1.5)).is_err());
        assert!(parse(&json!("five minutes")).unwrap_err().to_string().contains("five minutes"));
        assert!(parse(&json!(true)).is_err());
    }

    #[test]
    fn bounded() {
        assert_eq!(parse(&json!("30days")).unwrap(), MAX);
        assert_eq!(parse(&json!(MAX.as_millis() as u64)).unwrap(), MAX);
        for too_long in [json!("31days"), json!("300000000000y"), json!(u64::MAX), json!(MAX.as_millis() as u64 + 1)] {
            let err = parse(&too_long).unwrap_err().to_string();
            assert!(err.contains("too long") && err.contains("30days"), "{too_long}: {err}");
        }
        assert!(parse_text("101y", Duration::from_secs(100 * 365 * 86400)).is_err());
    }
}
