//! [`Orchestrator`]: the library API of workflows — register, execute,
//! observe, cancel, wait. Thread-safe; many executions at once.

use super::clock::{Clock, SystemClock};
use super::definition::Workflow;
use super::definition::{ID_RULE, MAX_ID_LEN, is_valid_id};
use super::engine::{Engine, Execution, Prepared};
use super::status::{ExecutionStatus, StepRecord, StepResult, epoch_ms};
use super::transaction::Member;
use super::validate::ValidWorkflow;
use plexus_client::{Transaction, TransactionState};
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
    /// Inputs missing or of the wrong type ("invalid inputs: …"); a bad transaction id.
    #[error("{0}")]
    InvalidConfiguration(String),
    /// Not allowed in the current state (a transaction not open, or with an
    /// execution still running).
    #[error("{0}")]
    InvalidState(String),
}

/// Registers workflows and runs executions of them on a tokio runtime.
#[derive(Clone)]
pub struct Orchestrator {
    engine: Engine,
    runtime: tokio::runtime::Handle,
    workflows: Arc<RwLock<BTreeMap<String, Arc<Prepared>>>>,
    executions: Arc<RwLock<BTreeMap<String, Member>>>,
    transactions: Arc<RwLock<BTreeMap<String, Transaction>>>,
    templates: Arc<RwLock<BTreeMap<String, Workflow>>>,
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
    /// Its sub-workflow steps run children of its registered workflows (or
    /// of their inline definitions), in memory.
    pub fn with_clock(host: Arc<Host>, clock: Arc<dyn Clock>, runtime: tokio::runtime::Handle) -> Self {
        let (workflows, executions): (Arc<RwLock<_>>, Arc<RwLock<_>>) = (Arc::default(), Arc::default());
        let children =
            LocalChildren { workflows: workflows.clone(), executions: executions.clone(), runtime: runtime.clone() };
        Self {
            engine: Engine::new(host, clock).with_children(Arc::new(children)),
            runtime,
            workflows,
            executions,
            transactions: Arc::default(),
            templates: Arc::default(),
        }
    }

    /// This orchestrator, looking up `${{ secrets.NAME }}` in step
    /// parameters in `secrets` (see [`Engine::with_secrets`]).
    pub fn with_secrets(mut self, secrets: Arc<dyn plexus_host::secrets::SecretSource>) -> Self {
        self.engine = self.engine.with_secrets(secrets);
        self
    }

    /// This orchestrator, giving the steps' calls `artifacts` (see
    /// [`Engine::with_artifacts`]).
    pub fn with_artifacts(mut self, artifacts: plexus_host::artifacts::Artifacts) -> Self {
        self.engine = self.engine.with_artifacts(artifacts);
        self
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

    /// Register a validated workflow as a template (the project
    /// orchestrator's `register_template`), replacing one with the same id.
    /// Templates are not run; [`Self::create_from_template`] makes
    /// workflows of them (see [`crate::template`]).
    pub fn register_template(&self, template: ValidWorkflow) {
        let workflow = template.workflow;
        self.templates.write().unwrap_or_else(PoisonError::into_inner).insert(workflow.id.clone(), workflow);
    }

    /// Remove template `id`; workflows created from it stay.
    ///
    /// # Errors
    /// [`OrchestratorError::NotFound`].
    pub fn unregister_template(&self, id: &str) -> Result<(), OrchestratorError> {
        let mut map = self.templates.write().unwrap_or_else(PoisonError::into_inner);
        map.remove(id).map(|_| ()).ok_or_else(|| OrchestratorError::NotFound(format!("template `{id}`")))
    }

    /// Ids of the templates.
    pub fn templates(&self) -> Vec<String> {
        self.templates.read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect()
    }

    /// The definition of template `id`.
    pub fn template(&self, id: &str) -> Option<Workflow> {
        self.templates.read().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    }

    /// Create a workflow from template `template_id` and register it (the
    /// project orchestrator's `create_from_template`); returns its id.
    ///
    /// # Errors
    /// [`OrchestratorError::NotFound`] for an unknown template;
    /// [`OrchestratorError::InvalidConfiguration`] for bad params or
    /// overrides, or a created definition that does not validate (every
    /// problem in the message); [`OrchestratorError::AlreadyExists`] when
    /// the asked id is taken.
    pub fn create_from_template(
        &self,
        template_id: &str,
        request: &crate::template::FromTemplate,
    ) -> Result<String, OrchestratorError> {
        let template = self
            .template(template_id)
            .ok_or_else(|| OrchestratorError::NotFound(format!("template `{template_id}`")))?;
        let id = match &request.id {
            Some(id) => id.clone(),
            None => crate::template::next_id(template_id, |id| self.has(id)),
        };
        let doc = crate::template::instantiate(&template, &id, request)
            .map_err(|e| OrchestratorError::InvalidConfiguration(e.to_string()))?;
        let valid = crate::template::validate_created(&doc, template_id, Some(self.engine.host()))
            .map_err(OrchestratorError::InvalidConfiguration)?;
        self.register(valid)?;
        Ok(id)
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
        self.execute_in(id, inputs, None)
    }

    /// [`Self::execute`] in open transaction `transaction` (`None`: the
    /// workflow's own `transaction`, if it names one).
    ///
    /// # Errors
    /// As [`Self::execute`]; [`OrchestratorError::NotFound`] for an unknown
    /// transaction, [`OrchestratorError::InvalidState`] for one not open or
    /// when the workflow needs a transaction and none is given.
    pub fn execute_in(
        &self,
        id: &str,
        inputs: Map<String, Value>,
        transaction: Option<&str>,
    ) -> Result<String, OrchestratorError> {
        let prepared = self
            .workflows
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| OrchestratorError::NotFound(format!("workflow `{id}`")))?;
        let resolved = resolve_inputs(&prepared.workflow, inputs)?;
        let transaction = prepared.workflow.transaction_for(transaction).map_err(OrchestratorError::InvalidState)?;
        let execution_id = new_execution_id();
        let exec = Execution::new(execution_id.clone(), &prepared, resolved.inputs);
        for (key, value) in resolved.context {
            exec.state().set(&key, value);
        }
        // Joining and registering are one step under the transactions' lock:
        // a commit or rollback sees every execution of its transaction.
        let mut transactions = self.transactions.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = &transaction {
            let tx = open(&mut transactions, tx)?;
            tx.executions.push(execution_id.clone());
        }
        self.executions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(execution_id.clone(), (prepared.clone(), exec.clone()));
        drop(transactions);
        let engine = self.engine.clone();
        self.runtime.spawn(async move { engine.run(prepared, exec).await });
        Ok(execution_id)
    }

    fn execution(&self, id: &str) -> Result<Arc<Execution>, OrchestratorError> {
        self.executions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .map(|(_, e)| e.clone())
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
        executions.iter().filter(|(_, (_, e))| !e.lock().status.is_terminal()).map(|(id, _)| id.clone()).collect()
    }

    // ----- transactions -----

    /// Begin transaction `id` (QtForge's `begin_transaction`): executions
    /// started in it ([`Self::execute_in`]) are committed or rolled back
    /// together (the rules: [`plexus_client::Transaction`]).
    ///
    /// # Errors
    /// [`OrchestratorError::AlreadyExists`]; [`OrchestratorError::InvalidConfiguration`] for a bad id.
    pub fn begin_transaction(&self, id: &str) -> Result<Transaction, OrchestratorError> {
        if !is_valid_id(id, MAX_ID_LEN) {
            return Err(OrchestratorError::InvalidConfiguration(format!(
                "transaction id `{id}`: {ID_RULE}, at most {MAX_ID_LEN}"
            )));
        }
        let mut transactions = self.transactions.write().unwrap_or_else(PoisonError::into_inner);
        if transactions.contains_key(id) {
            return Err(OrchestratorError::AlreadyExists(format!("transaction `{id}`")));
        }
        let tx = Transaction::open(id, epoch_ms(self.engine.clock().now()));
        transactions.insert(id.to_owned(), tx.clone());
        Ok(tx)
    }

    /// Transaction `id` as it is now.
    pub fn transaction(&self, id: &str) -> Result<Transaction, OrchestratorError> {
        let transactions = self.transactions.read().unwrap_or_else(PoisonError::into_inner);
        transactions.get(id).cloned().ok_or_else(|| OrchestratorError::NotFound(format!("transaction `{id}`")))
    }

    /// Commit transaction `id` (QtForge's `commit_transaction`): its
    /// executions' effects become permanent (their compensations can no
    /// longer run).
    ///
    /// # Errors
    /// [`OrchestratorError::NotFound`]; [`OrchestratorError::InvalidState`]
    /// if it is not open or one of its executions is still running.
    pub fn commit_transaction(&self, id: &str) -> Result<Transaction, OrchestratorError> {
        let mut transactions = self.transactions.write().unwrap_or_else(PoisonError::into_inner);
        self.check_settled(open(&mut transactions, id)?)?;
        let tx = transactions.get_mut(id).expect("checked open");
        tx.state = TransactionState::Committed;
        tx.ended_at_ms = Some(epoch_ms(self.engine.clock().now()));
        Ok(tx.clone())
    }

    /// Roll back transaction `id` (QtForge's `rollback_transaction`): the
    /// compensation of every completed step of its completed executions
    /// runs, newest first ([`Engine::roll_back_transaction`]); returns the
    /// transaction with each compensation.
    ///
    /// # Errors
    /// As [`Self::commit_transaction`].
    pub async fn rollback_transaction(&self, id: &str) -> Result<Transaction, OrchestratorError> {
        let members: Vec<Member> = {
            let mut transactions = self.transactions.write().unwrap_or_else(PoisonError::into_inner);
            let tx = open(&mut transactions, id)?;
            self.check_settled(tx)?;
            tx.state = TransactionState::RollingBack;
            let executions = self.executions.read().unwrap_or_else(PoisonError::into_inner);
            tx.executions.iter().filter_map(|e| executions.get(e).cloned()).collect()
        };
        let (ok, report) = self.engine.roll_back_transaction(id, &members).await;
        let mut transactions = self.transactions.write().unwrap_or_else(PoisonError::into_inner);
        let tx = transactions.get_mut(id).expect("a transaction is never removed");
        tx.state = if ok { TransactionState::RolledBack } else { TransactionState::RollbackFailed };
        tx.compensations = report;
        tx.ended_at_ms = Some(epoch_ms(self.engine.clock().now()));
        Ok(tx.clone())
    }

    /// Refuse while an execution of `tx` has not ended.
    fn check_settled(&self, tx: &Transaction) -> Result<(), OrchestratorError> {
        let executions = self.executions.read().unwrap_or_else(PoisonError::into_inner);
        for id in &tx.executions {
            if executions.get(id).is_some_and(|(_, e)| !e.lock().status.is_terminal()) {
                return Err(OrchestratorError::InvalidState(format!(
                    "execution `{id}` of transaction `{}` is still running: wait for it or cancel it first",
                    tx.id
                )));
            }
        }
        Ok(())
    }
}

/// Sub-workflow children in memory: executions of an orchestrator's
/// registered workflows (or a step's inline definition), run on the
/// parent's engine; a child's end reaches its parent as the signal
/// `child:<step>` (see [`crate::engine::Children`]). Versions are the
/// daemon's: here a child runs the workflow as registered.
struct LocalChildren {
    workflows: Arc<RwLock<BTreeMap<String, Arc<Prepared>>>>,
    executions: Arc<RwLock<BTreeMap<String, Member>>>,
    runtime: tokio::runtime::Handle,
}

impl LocalChildren {
    fn member(&self, id: &str) -> Option<Member> {
        self.executions.read().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    }

    /// Tell child `status`'s parent that it ended.
    fn tell(
        executions: &RwLock<BTreeMap<String, Member>>,
        parent: &str,
        step: &str,
        status: &ExecutionStatus,
        at_ms: u64,
    ) {
        let signal = crate::engine::child_ended_signal(step, status, at_ms);
        let parent = executions.read().unwrap_or_else(PoisonError::into_inner).get(parent).map(|(_, e)| e.clone());
        if let Some(parent) = parent {
            parent.deliver_signal(signal);
        }
    }
}

impl crate::engine::Children for LocalChildren {
    fn start(
        &self,
        engine: &Engine,
        parent: &str,
        step: &str,
        call: &super::definition::SubWorkflow,
        inputs: Map<String, Value>,
    ) -> crate::engine::ChildFuture<String> {
        let id = crate::engine::child_id(parent, step);
        let now = || epoch_ms(engine.clock().now());
        let started = (|| {
            // Started before (its parent's step runs again): one that ended is told again.
            if let Some((_, exec)) = self.member(&id) {
                let status = exec.snapshot();
                if status.status.is_terminal() {
                    Self::tell(&self.executions, parent, step, &status, now());
                }
                return Ok(id.clone());
            }
            let prepared = match &call.inline {
                Some(inline) => {
                    let valid = inline.valid().ok_or("the inline workflow was not validated")?;
                    Arc::new(Prepared::new((**valid).clone()))
                }
                None => {
                    let workflows = self.workflows.read().unwrap_or_else(PoisonError::into_inner);
                    workflows.get(&call.workflow).cloned().ok_or_else(|| {
                        format!(
                            "workflow `{}` is not registered here (`plexus run --with FILE` registers one)",
                            call.workflow
                        )
                    })?
                }
            };
            let resolved = resolve_inputs(&prepared.workflow, inputs).map_err(|e| e.to_string())?;
            let exec = Execution::new(id.clone(), &prepared, resolved.inputs);
            for (key, value) in resolved.context {
                exec.state().set(&key, value);
            }
            self.executions
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id.clone(), (prepared.clone(), exec.clone()));
            let (engine, executions) = (engine.clone(), self.executions.clone());
            let (parent, step) = (parent.to_owned(), step.to_owned());
            self.runtime.spawn(async move {
                engine.run(prepared, exec.clone()).await;
                let status = exec.snapshot();
                // The artifacts its outputs name become its parent's too (as in the daemon).
                if let Some(artifacts) = engine.artifacts() {
                    let outputs = Value::Object(status.outputs.clone());
                    for reference in plexus_host::artifacts::references(&outputs, 1000) {
                        if artifacts.index.readable(&status.execution_id, &reference.artifact) == Ok(true) {
                            let _ = artifacts.index.link(&parent, Some(&step), &reference);
                        }
                    }
                }
                let at = epoch_ms(engine.clock().now());
                Self::tell(&executions, &parent, &step, &status, at);
            });
            tracing::info!(child = %id, workflow = %call.workflow, "child execution started");
            Ok::<_, String>(id.clone())
        })();
        Box::pin(async move { started })
    }

    fn cancel(&self, child: &str) -> crate::engine::ChildFuture<()> {
        if let Some((_, exec)) = self.member(child) {
            exec.cancel();
        }
        Box::pin(async { Ok(()) })
    }

    fn compensate(&self, engine: &Engine, child: &str) -> crate::engine::ChildFuture<bool> {
        let (engine, member, child) = (engine.clone(), self.member(child), child.to_owned());
        Box::pin(async move {
            let member = member.ok_or_else(|| format!("no child execution `{child}`"))?;
            Ok(engine.roll_back_transaction(&child, &[member]).await.0)
        })
    }
}

/// Open transaction `id` of `transactions`.
fn open<'t>(
    transactions: &'t mut BTreeMap<String, Transaction>,
    id: &str,
) -> Result<&'t mut Transaction, OrchestratorError> {
    let tx = transactions.get_mut(id).ok_or_else(|| OrchestratorError::NotFound(format!("transaction `{id}`")))?;
    if tx.state != TransactionState::Open {
        return Err(OrchestratorError::InvalidState(format!("transaction `{id}` is {}, not open", tx.state.as_str())));
    }
    Ok(tx)
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
        Err(OrchestratorError::InvalidConfiguration(format!("invalid inputs: {}", problems.join("; "))))
    }
}
