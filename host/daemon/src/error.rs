//! [`DaemonError`]: why the daemon refused a request, with a code from
//! QtForge's `PluginErrorCode` list so clients can branch on it.

use super::store::StoreError;
use serde::Serialize;

/// An error code, as in QtForge's list (plus `Unauthorized` and `Internal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// Missing or wrong bearer token.
    Unauthorized,
    /// The daemon failed (e.g. its database); the message says how.
    Internal,
}

impl ErrorCode {
    /// The HTTP status for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidConfiguration => 400,
            Self::Unauthorized => 401,
            Self::NotFound | Self::PluginNotFound => 404,
            Self::AlreadyExists | Self::InvalidState => 409,
            Self::DependencyNotSatisfied => 422,
            Self::Internal => 500,
            Self::Timeout => 504,
        }
    }
}

/// Why a daemon request failed: a code, a message, and optional details
/// (e.g. every problem of an invalid workflow).
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct DaemonError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// One line for people.
    pub message: String,
    /// Structured details, when there are any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
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
    /// [`ErrorCode::NotFound`].
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

impl From<StoreError> for DaemonError {
    fn from(e: StoreError) -> Self {
        tracing::error!("{e}");
        Self::new(ErrorCode::Internal, e.to_string())
    }
}

/// The result of daemon operations.
pub type DaemonResult<T> = Result<T, DaemonError>;
