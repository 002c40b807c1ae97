//! Workflows: definitions, validation, and the DAG execution engine.
//!
//! * [`source`] reads YAML or JSON (by extension), keeping YAML line numbers;
//! * [`definition`] is the model, reading our format and QtForge's unchanged;
//! * [`expr`] is the one expression language (minijinja expressions) for
//!   conditions and data passing;
//! * [`validate`] reports every problem at once; [`dag`] orders, stages and draws;
//! * [`engine`] runs a workflow; [`orchestrator::Orchestrator`] is the API.

pub mod clock;
pub mod dag;
pub mod definition;
pub mod duration;
pub mod engine;
pub mod expr;
pub mod journal;
pub mod orchestrator;
mod scheduler;
pub mod source;
pub mod status;
pub mod validate;

pub use clock::{Clock, MockClock, SystemClock};
pub use definition::{ExecutionMode, Problem, RetryPolicy, Step, Workflow};
pub use engine::{Drain, Engine, Execution, Prepared};
pub use journal::{Journal, JournalError, JournalResult, NoJournal};
pub use orchestrator::{Orchestrator, OrchestratorError};
pub use status::{ExecutionStatus, StepRecord, StepStatus, WorkflowStatus};
pub use validate::{Invalid, ValidWorkflow, load_file, validate};
#[cfg(test)]
mod tests;
