//! An in-process harness: test a plugin's operations without a host.
//!
//! [`TestHost`] runs operations through the same dispatch as both transports
//! (parameter decoding, unknown operations, metrics) and records what the
//! plugin did with the host services: logs, shared state, progress,
//! artifacts (kept in memory, addressed by their sha256 like the host's).

use crate::contract::{
    ArtifactHandle, ArtifactRef, CallOutput, ExecutionContext, HostServices, LogLevel, Metadata, Orchestration,
    PluginError,
};
use crate::plugin::{Expected, Plugin, Runtime};
use serde_json::{Map, Value};
use std::cell::{Cell, RefCell};

/// Runs a plugin's operations in-process, recording host-service use.
///
/// ```
/// # use plexus_sdk::{testing::TestHost, Plugin, PluginInfo, Operations, Context, PluginError};
/// # #[derive(Default)] struct Hello;
/// # impl Plugin for Hello {
/// #     fn info() -> PluginInfo { PluginInfo::new("demo.hello", "Hello", "0.1.0") }
/// #     fn operations(ops: &mut Operations<Self>) {
/// #         ops.add("hello", "Greets", |_, _, name: String| Ok::<_, PluginError>(format!("hello {name}")));
/// #     }
/// # }
/// let host = TestHost::<Hello>::new();
/// let out = host.call("hello", serde_json::json!("Ada")).unwrap();
/// assert_eq!(out.output, "hello Ada");
/// ```
pub struct TestHost<P: Plugin> {
    runtime: Runtime<P>,
    /// Log records, in order.
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    /// The execution's shared state.
    pub state: RefCell<Map<String, Value>>,
    /// Progress reports, in order.
    pub progress: RefCell<Vec<(f64, String)>>,
    /// What [`HostServices::is_cancelled`] answers.
    pub cancelled: Cell<bool>,
    /// Orchestration requests, in order.
    pub orchestrated: RefCell<Vec<Orchestration>>,
    orchestrator: Option<Orchestrator>,
    config: Value,
    /// Stored artifacts by digest; the ones being written; the ones open for reading.
    artifacts: RefCell<std::collections::HashMap<String, Vec<u8>>>,
    writers: RefCell<Vec<Option<Writing>>>,
    readers: RefCell<Vec<(String, usize)>>,
    /// References of the artifacts the calls finished, in order.
    pub written: RefCell<Vec<ArtifactRef>>,
}

/// An artifact being written: its name, media type and bytes so far.
type Writing = (String, Option<String>, Vec<u8>);

/// What answers a [`TestHost`]'s orchestration requests.
type Orchestrator = Box<dyn Fn(&Orchestration) -> Result<Value, PluginError>>;

impl<P: Plugin> Default for TestHost<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Plugin> TestHost<P> {
    /// A harness around a fresh `P`.
    pub fn new() -> Self {
        Self {
            runtime: Runtime::new(),
            logs: RefCell::default(),
            state: RefCell::default(),
            progress: RefCell::default(),
            cancelled: Cell::new(false),
            orchestrated: RefCell::default(),
            orchestrator: None,
            config: Value::Null,
            artifacts: RefCell::default(),
            writers: RefCell::default(),
            readers: RefCell::default(),
            written: RefCell::default(),
        }
    }

    /// Store `bytes` as artifact `name` (an input for a call under test) and
    /// answer its reference.
    pub fn put_artifact(&self, name: &str, bytes: &[u8]) -> ArtifactRef {
        use sha2::Digest;
        let hex: String = sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        let digest = format!("sha256:{hex}");
        self.artifacts.borrow_mut().insert(digest.clone(), bytes.to_vec());
        ArtifactRef { artifact: digest, name: name.to_owned(), bytes: bytes.len() as u64, media_type: None }
    }

    /// The bytes of a stored artifact.
    pub fn artifact(&self, reference: &ArtifactRef) -> Option<Vec<u8>> {
        self.artifacts.borrow().get(&reference.artifact).cloned()
    }

    /// Answer orchestration requests with `answer` (without one, every
    /// request fails as on a host with no orchestrator); all are recorded
    /// in [`Self::orchestrated`].
    pub fn with_orchestrator(
        mut self,
        answer: impl Fn(&Orchestration) -> Result<Value, PluginError> + 'static,
    ) -> Self {
        self.orchestrator = Some(Box::new(answer));
        self
    }

    /// Run the plugin's [`Plugin::initialize`] with the configuration (as
    /// the host does before the first call).
    ///
    /// # Errors
    /// What `initialize` returned.
    pub fn initialize(&self) -> Result<(), PluginError> {
        self.runtime.initialize(&self.config)
    }

    /// Run the plugin's [`Plugin::cleanup`] (as the host does at the end).
    pub fn cleanup(&self) {
        self.runtime.cleanup();
    }

    /// Use `config` as the plugin configuration of every call.
    pub fn with_config(mut self, config: Value) -> Self {
        self.config = config;
        self
    }

    /// The metadata the plugin declares.
    pub fn metadata(&self) -> &Metadata {
        self.runtime.metadata()
    }

    /// Call `operation` with `params` (attempt 1, no upstream outputs).
    pub fn call(&self, operation: &str, params: Value) -> Result<CallOutput, PluginError> {
        let exec = ExecutionContext {
            execution_id: "test-execution".into(),
            attempt: 1,
            operation: operation.into(),
            parameters: params,
            config: self.config.clone(),
            ..ExecutionContext::default()
        };
        self.call_with(&exec)
    }

    /// Call with a whole execution context.
    pub fn call_with(&self, exec: &ExecutionContext) -> Result<CallOutput, PluginError> {
        self.runtime.call(exec, self)
    }

    /// Run every example the operations declare (see
    /// [`crate::Operations::example`]), each on a fresh shared state; returns
    /// how many ran.
    ///
    /// # Errors
    /// Every example whose call gave something else, one per line, naming
    /// the operation, the example and what was expected and got.
    pub fn check_examples(&self) -> Result<usize, String> {
        let examples = self.runtime.examples();
        let mut problems = Vec::new();
        for ex in examples {
            self.state.borrow_mut().clear();
            let got = self.call(&ex.operation, ex.params.clone());
            let matches = match (&ex.expected, &got) {
                (Expected::Output(want), Ok(out)) => *want == out.output,
                (Expected::Error(kind), Err(e)) => *kind == e.kind,
                _ => false,
            };
            if !matches {
                let want = match &ex.expected {
                    Expected::Output(v) => format!("output {v}"),
                    Expected::Error(kind) => format!("a `{kind}` error"),
                };
                let got = match &got {
                    Ok(out) => format!("output {}", out.output),
                    Err(e) => format!("error {e}"),
                };
                problems.push(format!(
                    "`{}` example \"{}\" with {}: expected {want}, got {got}",
                    ex.operation, ex.description, ex.params
                ));
            }
        }
        if problems.is_empty() { Ok(examples.len()) } else { Err(problems.join("\n")) }
    }
}

impl<P: Plugin> HostServices for TestHost<P> {
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }
    fn state_get(&self, key: &str) -> Option<Value> {
        self.state.borrow().get(key).cloned()
    }
    fn state_set(&self, key: &str, value: Value) {
        self.state.borrow_mut().insert(key.to_owned(), value);
    }
    fn report_progress(&self, fraction: f64, message: &str) {
        self.progress.borrow_mut().push((fraction, message.to_owned()));
    }
    fn is_cancelled(&self) -> bool {
        self.cancelled.get()
    }
    fn orchestrate(&self, request: &Orchestration) -> Result<Value, PluginError> {
        self.orchestrated.borrow_mut().push(request.clone());
        match &self.orchestrator {
            Some(answer) => answer(request),
            None => Err(PluginError::failed("this host offers no orchestration services")),
        }
    }
    fn artifact_create(&self, name: &str, media_type: Option<&str>) -> Result<ArtifactHandle, PluginError> {
        crate::contract::check_artifact_name(name).map_err(PluginError::invalid_input)?;
        let mut writers = self.writers.borrow_mut();
        writers.push(Some((name.to_owned(), media_type.map(str::to_owned), Vec::new())));
        Ok(ArtifactHandle { id: writers.len() as u32 - 1, path: None })
    }
    fn artifact_write(&self, id: u32, data: &[u8]) -> Result<(), PluginError> {
        match self.writers.borrow_mut().get_mut(id as usize) {
            Some(Some((_, _, bytes))) => {
                bytes.extend_from_slice(data);
                Ok(())
            }
            _ => Err(PluginError::not_found(format!("no artifact writer {id}"))),
        }
    }
    fn artifact_finish(&self, id: u32) -> Result<ArtifactRef, PluginError> {
        let taken = self.writers.borrow_mut().get_mut(id as usize).and_then(Option::take);
        let (name, media_type, bytes) =
            taken.ok_or_else(|| PluginError::not_found(format!("no artifact writer {id}")))?;
        let reference = ArtifactRef { media_type, ..self.put_artifact(&name, &bytes) };
        self.written.borrow_mut().push(reference.clone());
        Ok(reference)
    }
    fn artifact_open(&self, reference: &ArtifactRef) -> Result<ArtifactHandle, PluginError> {
        if !self.artifacts.borrow().contains_key(&reference.artifact) {
            return Err(PluginError::not_found(format!("no artifact {}", reference.artifact)));
        }
        let mut readers = self.readers.borrow_mut();
        readers.push((reference.artifact.clone(), 0));
        Ok(ArtifactHandle { id: readers.len() as u32 - 1, path: None })
    }
    fn artifact_read(&self, id: u32, max_bytes: u32) -> Result<Vec<u8>, PluginError> {
        let mut readers = self.readers.borrow_mut();
        let (digest, at) =
            readers.get_mut(id as usize).ok_or_else(|| PluginError::not_found(format!("no reader {id}")))?;
        let artifacts = self.artifacts.borrow();
        let bytes = &artifacts[digest.as_str()];
        let end = bytes.len().min(*at + max_bytes.min(crate::MAX_ARTIFACT_CHUNK_BYTES) as usize);
        let chunk = bytes[*at..end].to_vec();
        *at = end;
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, Operations, PluginInfo};
    use serde_json::json;

    #[derive(Default)]
    struct Wrong;

    impl Plugin for Wrong {
        fn info() -> PluginInfo {
            PluginInfo::new("test.wrong", "Wrong", "0.1.0")
        }
        fn operations(ops: &mut Operations<Self>) {
            ops.add("inc", "Adds one", |_, _, n: i64| Ok::<_, PluginError>(n + 1))
                .example("right", json!(1), json!(2))
                .example("wrong output", json!(1), json!(3))
                .example_error("no error happens", json!(1), ErrorKind::InvalidInput)
                .example_error("text is refused", json!("x"), ErrorKind::InvalidInput);
            ops.add("stop", "Stops when asked", |_, ctx, _: Value| {
                ctx.check_cancelled()?;
                Ok::<_, PluginError>(1)
            });
            ops.add("keep", "Returns its input", |_, _, v: Value| Ok::<_, PluginError>(v)).example(
                "an object",
                json!({"a": [1, 2]}),
                json!({"a": [1, 2]}),
            );
        }
    }

    #[test]
    fn check_examples_reports_every_example_that_does_not_hold() {
        let host = TestHost::<Wrong>::new();
        let problems = host.check_examples().unwrap_err();
        let lines: Vec<&str> = problems.lines().collect();
        assert_eq!(lines.len(), 2, "{problems}");
        assert_eq!(lines[0], "`inc` example \"wrong output\" with 1: expected output 3, got output 2");
        assert_eq!(
            lines[1],
            "`inc` example \"no error happens\" with 1: expected a `invalid-input` error, got output 2"
        );
    }

    #[test]
    fn check_cancelled_stops_with_the_cancelled_kind_once_asked() {
        let host = TestHost::<Wrong>::new();
        assert_eq!(host.call("stop", Value::Null).unwrap().output, json!(1));
        host.cancelled.set(true);
        assert_eq!(host.call("stop", Value::Null).unwrap_err().kind, ErrorKind::Cancelled);
    }

    #[test]
    fn a_table_for_one_operation_keeps_no_examples() {
        let one = Runtime::<Wrong>::for_operation("inc");
        assert!(one.examples().is_empty());
        // The second operation alone: the first's examples follow an operation it skipped.
        let keep = Runtime::<Wrong>::for_operation("keep");
        assert!(keep.examples().is_empty());
        let exec = ExecutionContext { operation: "keep".into(), parameters: json!(7), ..ExecutionContext::default() };
        assert_eq!(keep.call(&exec, &TestHost::<Wrong>::new()).unwrap().output, json!(7));
        assert_eq!(Runtime::<Wrong>::new().examples().len(), 5);
    }
}
