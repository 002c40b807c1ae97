//! [`Orchestrator`]: the library API of workflows — register, execute,
//! observe, cancel, wait. Thread-safe; many executions at once.

use super::clock::{Clock, SystemClock};
use super::definition::Workflow;
use super::engine::{Engine, Execution, Prepared};
use super::status::{ExecutionStatus, StepRecord};
use super::validate::ValidWorkflow;
use plexus_host::{Host, new_execution_id};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

/// Why an orchestrator call was refused. Codes follow QtForge's error list.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OrchestratorError {
    /// No workflow or execution with that id.
    #[error("{0} not found")]
    NotFound(String),
    /// A workflow with that id is already registered.
    #[error("workflow `{0}` is already registered")]
    AlreadyExists(String),
    /// Inputs missing, of the wrong type, or undeclared.
    #[error("invalid inputs: {0}")]
    InvalidConfiguration(String),
}

/// Registers workflows and runs executions of them on a tokio runtime.
#[derive(Clone)]
pub struct Orchestrator {
    engine: Engine,
    runtime: tokio::runtime::Handle,
    workflows: Arc<RwLock<BTreeMap<String, Arc<Prepared>>>>,
    executions: Arc<RwLock<BTreeMap<String, Arc<Execution>>>>,
}

impl Orchestrator {
    /// An orchestrator calling plugins of `host`, running executions on the
    /// current tokio runtime with the system clock.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(host: Arc<Host>) -> Self {
        Self::with_clock(host, Arc::new(SystemClock), tokio::runtime::Handle::current())
    }

    /// An orchestrator with an injected clock and runtime (tests use a `MockClock`).
    pub fn with_clock(host: Arc<Host>, clock: Arc<dyn Clock>, runtime: tokio::runtime::Handle) -> Self {
        Self { engine: Engine::new(host, clock), runtime, workflows: Arc::default(), executions: Arc::default() }
    }

    /// Register a validated workflow.
    ///
    /// # Errors
    /// [`OrchestratorError::AlreadyExists`] if its id is taken.
    pub fn register(&self, workflow: ValidWorkflow) -> Result<(), OrchestratorError> {
        let id = workflow.workflow.id.clone();
        let prepared = Prepared::new(workflow);
        let mut map = self.workflows.write().unwrap_or_else(PoisonError::into_inner);
        if map.contains_key(&id) {
            return Err(OrchestratorError::AlreadyExists(id));
        }
        map.insert(id, Arc::new(prepared));
        Ok(())
    }

    /// Remove a workflow; running executions of it go on.
    pub fn unregister(&self, id: &str) -> Result<(), OrchestratorError> {
        let mut map = self.workflows.write().unwrap_or_else(PoisonError::into_inner);
        map.remove(id).map(|_| ()).ok_or_else(|| OrchestratorError::NotFound(format!("workflow `{id}`")))
    }

    /// The workflow `id`.
    pub fn get(&self, id: &str) -> Option<Workflow> {
        self.workflows.read().unwrap_or_else(PoisonError::into_inner).get(id).map(|p| p.workflow.clone())
    }

    /// Ids of the registered workflows.
    pub fn list(&self) -> Vec<String> {
        self.workflows.read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect()
    }

    /// Start an execution of workflow `id` with `inputs`; returns its id at
    /// once while it runs in the background.
    ///
    /// # Errors
    /// [`OrchestratorError::NotFound`] for an unknown workflow,
    /// [`OrchestratorError::InvalidConfiguration`] for bad inputs.
    pub fn execute(&self, id: &str, inputs: Map<String, Value>) -> Result<String, OrchestratorError> {
        let prepared = self
            .workflows
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| OrchestratorError::NotFound(format!("workflow `{id}`")))?;
        let inputs = resolve_inputs(&prepared.workflow, inputs)?;
        let execution_id = new_execution_id();
        let exec = Execution::new(execution_id.clone(), &prepared, inputs);
        self.executions.write().unwrap_or_else(PoisonError::into_inner).insert(execution_id.clone(), exec.clone());
        let engine = self.engine.clone();
        self.runtime.spawn(async move { engine.run(prepared, exec).await });
        Ok(execution_id)
    }

    fn execution(&self, id: &str) -> Result<Arc<Execution>, OrchestratorError> {
        self.executions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| OrchestratorError::NotFound(format!("execution `{id}`")))
    }

    /// The status of execution `id`.
    pub fn status(&self, id: &str) -> Result<ExecutionStatus, OrchestratorError> {
        Ok(self.execution(id)?.snapshot())
    }

    /// The per-step results of execution `id`.
    pub fn step_results(&self, id: &str) -> Result<Vec<StepRecord>, OrchestratorError> {
        Ok(self.execution(id)?.snapshot().steps)
    }

    /// Ask execution `id` to stop (see [`Execution::cancel`]).
    pub fn cancel(&self, id: &str) -> Result<(), OrchestratorError> {
        self.execution(id)?.cancel();
        Ok(())
    }

    /// Wait for execution `id` to finish; returns its final status.
    pub async fn wait(&self, id: &str) -> Result<ExecutionStatus, OrchestratorError> {
        let exec = self.execution(id)?;
        Ok(exec.wait().await)
    }

    /// Ids of all executions, oldest first (ids are time-ordered).
    pub fn executions(&self) -> Vec<String> {
        self.executions.read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect()
    }
}

/// Apply defaults and check types of `given` against the declared inputs.
pub fn resolve_inputs(
    workflow: &Workflow,
    mut given: Map<String, Value>,
) -> Result<Map<String, Value>, OrchestratorError> {
    let mut problems = Vec::new();
    for name in given.keys() {
        if !workflow.inputs.contains_key(name) {
            let known: Vec<&str> = workflow.inputs.keys().map(String::as_str).collect();
            problems.push(format!("`{name}` is not an input of `{}` (inputs: {})", workflow.id, known.join(", ")));
        }
    }
    let mut out = Map::new();
    for (name, spec) in &workflow.inputs {
        match given.remove(name).or_else(|| spec.default.clone()) {
            Some(v) if spec.kind.accepts(&v) => {
                out.insert(name.clone(), v);
            }
            Some(v) => problems.push(format!("`{name}` must be of type {:?}, got {v}", spec.kind).to_lowercase()),
            None if spec.required => problems.push(format!("`{name}` is required")),
            None => {
                out.insert(name.clone(), Value::Null);
            }
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(OrchestratorError::InvalidConfiguration(problems.join("; "))) }
}
