//! [`Orchestrator`]: the library API of workflows — register, execute,
//! observe, cancel, wait. Thread-safe; many executions at once.

use super::clock::{Clock, SystemClock};
use super::definition::Workflow;
use super::engine::{Engine, Execution, Prepared};
use super::status::{ExecutionStatus, StepRecord, StepResult};
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

    /// Whether a workflow `id` is registered (QtForge's `has_workflow`).
    pub fn has(&self, id: &str) -> bool {
        self.workflows.read().unwrap_or_else(PoisonError::into_inner).contains_key(id)
    }

    /// Remove every workflow (QtForge's `clear_workflows`); running
    /// executions go on. Returns how many were registered.
    pub fn clear(&self) -> usize {
        let mut map = self.workflows.write().unwrap_or_else(PoisonError::into_inner);
        let n = map.len();
        map.clear();
        n
    }

    /// The definition of workflow `id` (QtForge's `get_workflow`;
    /// [`Workflow::to_json`] writes it as a document).
    pub fn get(&self, id: &str) -> Option<Workflow> {
        self.workflows.read().unwrap_or_else(PoisonError::into_inner).get(id).map(|p| p.workflow.clone())
    }

    /// Ids of the registered workflows.
    pub fn list(&self) -> Vec<String> {
        self.workflows.read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect()
    }

    /// Start an execution of workflow `id` with `inputs` (QtForge's
    /// `execute_workflow(id, initial_data)`); returns its id at once while it
    /// runs in the background. Keys the workflow does not declare go into the
    /// execution's shared context ([`resolve_inputs`]).
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
        let resolved = resolve_inputs(&prepared.workflow, inputs)?;
        let execution_id = new_execution_id();
        let exec = Execution::new(execution_id.clone(), &prepared, resolved.inputs);
        for (key, value) in resolved.context {
            exec.state().set(&key, value);
        }
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

    /// The per-step records of execution `id`, in declaration order.
    pub fn step_records(&self, id: &str) -> Result<Vec<StepRecord>, OrchestratorError> {
        Ok(self.execution(id)?.snapshot().steps)
    }

    /// The per-step results of execution `id` under QtForge's `StepResult`
    /// names (`get_step_results`), in declaration order.
    pub fn step_results(&self, id: &str) -> Result<Vec<StepResult>, OrchestratorError> {
        Ok(self.execution(id)?.snapshot().steps.iter().map(StepResult::from).collect())
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

    /// Ids of the executions that have not ended (pending, running or
    /// rolling back), oldest first: QtForge's `list_active_executions`.
    pub fn active_executions(&self) -> Vec<String> {
        let executions = self.executions.read().unwrap_or_else(PoisonError::into_inner);
        executions.iter().filter(|(_, e)| !e.lock().status.is_terminal()).map(|(id, _)| id.clone()).collect()
    }
}

/// A caller's initial data split by [`resolve_inputs`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolvedInputs {
    /// The declared inputs, defaults applied, types checked.
    pub inputs: Map<String, Value>,
    /// The keys the workflow does not declare: QtForge's `initial_data` is
    /// free-form, so they go into the execution's shared context
    /// (`${{ context.key }}` in expressions, `state.get` in plugins).
    pub context: Map<String, Value>,
}

/// The most undeclared keys one execution's initial data may carry into its context.
pub const MAX_CONTEXT_KEYS: usize = 1_000;

/// Apply defaults and check types of `given` against the declared inputs;
/// keys the workflow does not declare are kept for the execution's context
/// (see [`ResolvedInputs::context`]).
///
/// # Errors
/// [`OrchestratorError::InvalidConfiguration`] naming every declared input
/// that is missing or of the wrong type, or more than [`MAX_CONTEXT_KEYS`]
/// undeclared keys.
pub fn resolve_inputs(workflow: &Workflow, mut given: Map<String, Value>) -> Result<ResolvedInputs, OrchestratorError> {
    let mut problems = Vec::new();
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
    if given.len() > MAX_CONTEXT_KEYS {
        problems.push(format!(
            "{} keys that `{}` does not declare as inputs: at most {MAX_CONTEXT_KEYS} go into the context",
            given.len(),
            workflow.id
        ));
    }
    if problems.is_empty() {
        Ok(ResolvedInputs { inputs: out, context: given })
    } else {
        Err(OrchestratorError::InvalidConfiguration(problems.join("; ")))
    }
}
