//! Workflows: definitions, validation, and the DAG execution engine.
//!
//! * [`source`] reads YAML or JSON (by extension), keeping YAML line numbers;
//! * [`definition`] is the model, reading our format and QtForge's unchanged
//!   (through serde; [`workflow_schema`] is the format's JSON Schema);
//!   [`dialect`] reads Codomyrmex's and the project orchestrator's formats;
//! * [`expr`] is the one expression language (minijinja expressions) for
//!   conditions and data passing;
//! * [`validate()`] reports every problem at once; [`dag`] orders, stages and draws;
//! * [`engine`] runs a workflow; [`orchestrator::Orchestrator`] is the API.
//!
//! ```no_run
//! use plexus_host::HostBuilder;
//! use plexus_workflow::{Orchestrator, load_file};
//! use std::sync::Arc;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let host = Arc::new(HostBuilder::new().plugin_dir("target/plugins").build()?);
//! let workflow = load_file("examples/pipeline.yaml".as_ref(), Some(&host))?;
//! let id = workflow.workflow.id.clone();
//! let orchestrator = Orchestrator::new(host);
//! orchestrator.register(workflow)?;
//! let execution = orchestrator.execute(&id, Default::default())?;
//! let status = orchestrator.wait(&execution).await?;
//! println!("{}: {:?}", execution, status.status);
//! # Ok(())
//! # }
//! ```

pub mod clock;
pub mod dag;
pub mod definition;
pub mod dialect;
pub mod duration;
pub mod engine;
pub mod expr;
pub mod journal;
pub mod orchestrator;
mod raw;
mod scheduler;
pub mod source;
pub mod status;
pub mod template;
pub mod transaction;
pub mod validate;

pub use clock::{Clock, MockClock, SystemClock};
pub use definition::{
    ExecutionMode, Problem, ResourceBudget, RetryOn, RetryPolicy, Step, StepResources, TransactionRule, Workflow,
    workflow_schema,
};
pub use engine::{Children, Engine, Execution, Prepared};
pub use journal::{Journal, JournalError, JournalFuture, JournalResult, NoJournal};
pub use orchestrator::{Orchestrator, OrchestratorError};
pub use status::{ExecutionStatus, IllegalTransition, StepEvent, StepRecord, StepStatus, WorkflowStatus};
pub use validate::{Invalid, ValidWorkflow, load_file, validate, validate_for};
#[cfg(test)]
mod tests;
