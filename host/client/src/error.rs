//! The daemon's error body: a code from QtForge's list, a message and details.

use serde::{Deserialize, Serialize};

/// An error code, as in QtForge's `PluginErrorCode` list (plus `Unauthorized`
/// and `Internal`), so that clients can branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ErrorCode {
    /// Malformed or invalid input: a bad body, workflow, schedule or inputs.
    InvalidConfiguration,
    /// No such workflow, execution or schedule.
    NotFound,
    /// The id is taken.
    AlreadyExists,
    /// The request does not fit the object's state (e.g. retry a running execution).
    InvalidState,
    /// A plugin the request names is not loaded.
    PluginNotFound,
    /// A plugin or workflow the request depends on is missing or unusable.
    DependencyNotSatisfied,
    /// The operation did not finish in time.
    Timeout,
    /// A plugin call or an execution ran and failed (the plugin returned an
    /// error, panicked, trapped, crashed or broke a limit): QtForge's
    /// `ExecutionFailed`. The message says how.
    ExecutionFailed,
    /// Missing or wrong bearer token.
    Unauthorized,
    /// The daemon failed (e.g. its database); the message says how.
    Internal,
    /// A code this client does not know (a newer daemon), or an answer that
    /// was not the daemon's JSON error (e.g. from a proxy). Never sent.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The HTTP status for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidConfiguration => 400,
            Self::Unauthorized => 401,
            Self::NotFound | Self::PluginNotFound => 404,
            Self::AlreadyExists | Self::InvalidState => 409,
            Self::DependencyNotSatisfied | Self::ExecutionFailed => 422,
            Self::Internal | Self::Unknown => 500,
            Self::Timeout => 504,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Why the daemon refused a request: the body of every non-2xx JSON answer
/// (`{"code": "NotFound", "message": "...", "details": [...]}`), with the
/// HTTP status of [`ErrorCode::http_status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[error("{message}")]
pub struct DaemonError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// One line for people.
    pub message: String,
    /// Structured details, when there are any (e.g. every problem of an
    /// invalid workflow, one per line with its file and line).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl DaemonError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: Vec::new() }
    }
    /// [`ErrorCode::InvalidConfiguration`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidConfiguration, message)
    }
    /// [`ErrorCode::NotFound`]: "`what` not found".
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, format!("{} not found", what.into()))
    }
    /// [`ErrorCode::InvalidState`].
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidState, message)
    }
    /// With `details`.
    pub fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }
}
