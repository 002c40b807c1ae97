//! The author-facing API: [`Plugin`], [`Operations`] and [`Context`].

use crate::contract::{
    CONTRACT_VERSION, CallOutput, ErrorKind, ExecutionContext, HostServices, LogLevel, Metadata, OperationInfo,
    Orchestration, PluginError,
};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::sync::OnceLock;

/// A Plexus plugin: static information plus a set of typed operations.
///
/// One value of the type is created with [`Default`] per loaded instance (once
/// per process for a native plugin; once per call for a WASM component, which
/// gets a fresh instance per call), and every call borrows it. When the host
/// reuses a WASM instance (`[instances] reuse` in the manifest), the instance's
/// second call creates the value its later calls share. Export it with
/// [`crate::export_plugin!`].
///
/// ## Lifecycle (Framework0's `initialize(config)` / `cleanup()`)
///
/// [`Plugin::initialize`] runs once per plugin value before its first call,
/// [`Plugin::cleanup`] once when the value is discarded, both on the value
/// the calls use:
///
/// * **native**, in the host's process: `initialize` when the host loads the
///   plugin (an error: the plugin does not load), `cleanup` when the host
///   stops (a native library is never unloaded). In worker processes
///   (`isolation = "process"`): in each worker, when it starts and when it
///   is retired or the host stops.
/// * **WASM**: per instance. An instance per call (the default) runs
///   `initialize`, its one call, then `cleanup`; a reused instance
///   (`[instances] reuse`) runs `initialize` before its first call and
///   `cleanup` when it retires (calls or age spent, its execution ended,
///   the plugin unloaded, the host stopped). An `initialize` error fails
///   the call the instance was made for.
///
/// `cleanup` is best effort: a process that is killed runs nothing. Both get
/// at most the plugin's timeout (`[limits] timeout_ms`); `cleanup` never more
/// than 10 s.
pub trait Plugin: Default + Send + Sync + 'static {
    /// Id, name, version and the rest of the plugin's self-description.
    fn info() -> PluginInfo;
    /// Register the plugin's operations.
    fn operations(ops: &mut Operations<Self>);
    /// Prepare for calls with `config` (the `[config]` table of the plugin's
    /// manifest, `null` when it has none); see the lifecycle above. Keep
    /// what it sets up in fields with interior mutability (`OnceLock`, `Mutex`).
    ///
    /// # Errors
    /// Any [`PluginError`]: the plugin (native) or the call (WASM) fails with it.
    fn initialize(&self, config: &Value) -> Result<(), PluginError> {
        let _ = config;
        Ok(())
    }
    /// Release what [`Self::initialize`] set up; see the lifecycle above.
    fn cleanup(&self) {}
}

/// The static part of a plugin's [`Metadata`]; operations and the contract
/// version are added by the SDK.
#[derive(Debug, Clone, Default)]
pub struct PluginInfo {
    id: String,
    name: String,
    version: String,
    description: String,
    authors: Vec<String>,
    license: Option<String>,
    capabilities: Vec<String>,
}

impl PluginInfo {
    /// Id (unique, e.g. `plexus.echo`), display name and semver version
    /// (usually `env!("CARGO_PKG_VERSION")`).
    pub fn new(id: impl Into<String>, name: impl Into<String>, version: impl Into<String>) -> Self {
        Self { id: id.into(), name: name.into(), version: version.into(), ..Self::default() }
    }
    /// What the plugin does.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }
    /// Who wrote it.
    pub fn authors<I: IntoIterator<Item = S>, S: Into<String>>(mut self, authors: I) -> Self {
        self.authors = authors.into_iter().map(Into::into).collect();
        self
    }
    /// SPDX licence expression.
    pub fn license(mut self, license: impl Into<String>) -> Self {
        self.license = Some(license.into());
        self
    }
    /// Capability tags, see [`crate::capability`].
    pub fn capabilities<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.capabilities = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Id `id` with the rest from a Cargo package's fields, as
    /// [`crate::plugin_info!`] passes them: `authors` is Cargo's
    /// colon-separated list; an empty `license` is none.
    #[doc(hidden)]
    pub fn from_package(id: &str, name: &str, version: &str, description: &str, authors: &str, license: &str) -> Self {
        let info = Self::new(id, name, version)
            .description(description.trim())
            .authors(authors.split(':').map(str::trim).filter(|a| !a.is_empty()));
        if license.is_empty() { info } else { info.license(license) }
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The version.
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// What an example expects of its call.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// This output, compared as JSON.
    Output(Value),
    /// An error of this kind.
    Error(ErrorKind),
}

/// An example of an operation: parameters and what the call gives (see
/// [`Operations::example`]; [`crate::testing::TestHost::check_examples`] runs them).
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The operation.
    pub operation: String,
    /// One line: what the example shows.
    pub description: String,
    /// The parameters.
    pub params: Value,
    /// The output or error it gives.
    pub expected: Expected,
}

/// An operation's handler: plugin, context, parameters, and whether the
/// output is wanted as JSON text (a WASM call's answer) rather than a value.
type Handler<P> = Box<dyn Fn(&P, &mut Context<'_>, &Value, bool) -> Result<Output, PluginError> + Send + Sync>;

/// An operation's output, as a value or, serialized straight from the
/// handler's type, as JSON text.
enum Output {
    Value(Value),
    Text(String),
}

/// An operation's description; its schemas are generated only when the
/// metadata is asked for (a WASM plugin is instantiated per call, and most
/// calls never need them).
struct OperationEntry {
    name: String,
    description: String,
    params_schema: fn() -> Value,
    output_schema: fn() -> Value,
}

fn schema_of<T: JsonSchema>() -> Value {
    schemars::schema_for!(T).to_value()
}

/// The operations of a plugin, registered in [`Plugin::operations`].
pub struct Operations<P> {
    /// Descriptions, for the metadata (empty when only one operation is wanted).
    entries: Vec<OperationEntry>,
    /// Handlers by name, in registration order. A list, not a hash map: a
    /// plugin has tens of operations, and a hash map's random seed costs a
    /// host call in every fresh WASM instance.
    handlers: Vec<(String, Handler<P>)>,
    /// When set, only this operation is kept and nothing is described: the
    /// table of one WASM call, built in a fresh instance.
    only: Option<String>,
    /// Examples, in registration order (none kept for a table of one operation).
    examples: Vec<Example>,
    /// The operation registered last (what [`Self::example`] refers to).
    last: Option<String>,
}

impl<P: 'static> Operations<P> {
    fn new(only: Option<String>) -> Self {
        Self { entries: Vec::new(), handlers: Vec::new(), only, examples: Vec::new(), last: None }
    }

    /// An example of the operation registered last: calling it with `params`
    /// gives `output` (compared as JSON). Checked by
    /// [`crate::testing::TestHost::check_examples`], as Nushell checks a
    /// command's examples.
    ///
    /// ```
    /// # use plexus_sdk::{Plugin, PluginInfo, Operations, PluginError};
    /// # use serde_json::json;
    /// # #[derive(Default)] struct Maths;
    /// # impl Plugin for Maths {
    /// #     fn info() -> PluginInfo { PluginInfo::new("demo.maths", "Maths", "0.1.0") }
    /// fn operations(ops: &mut Operations<Self>) {
    ///     ops.add("double", "Doubles a number", |_, _, n: i64| Ok::<_, PluginError>(n * 2))
    ///         .example("doubles 21", json!(21), json!(42))
    ///         .example_error("refuses text", json!("21"), plexus_sdk::ErrorKind::InvalidInput);
    /// }
    /// # }
    /// let host = plexus_sdk::testing::TestHost::<Maths>::new();
    /// assert_eq!(host.check_examples().unwrap(), 2);
    /// ```
    ///
    /// # Panics
    /// If no operation was registered before (a bug in the plugin).
    pub fn example(&mut self, description: &str, params: Value, output: Value) -> &mut Self {
        self.push_example(description, params, Expected::Output(output))
    }

    /// An example of the operation registered last that fails with an error of `kind`.
    ///
    /// # Panics
    /// If no operation was registered before (a bug in the plugin).
    pub fn example_error(&mut self, description: &str, params: Value, kind: ErrorKind) -> &mut Self {
        self.push_example(description, params, Expected::Error(kind))
    }

    fn push_example(&mut self, description: &str, params: Value, expected: Expected) -> &mut Self {
        // A table of one operation keeps no examples (and skipped the
        // operations registered before this one's).
        if self.only.is_some() {
            return self;
        }
        let operation = self.last.clone().expect("an example before any operation was registered");
        self.examples.push(Example { operation, description: description.to_owned(), params, expected });
        self
    }

    /// Register `name`. Parameters are deserialized into `I` (a mismatch is an
    /// [`crate::ErrorKind::InvalidInput`] error naming the operation) and the
    /// output serialized from `O`; both types' JSON Schemas go into the metadata.
    ///
    /// # Panics
    /// If `name` is registered twice: that is a bug in the plugin (found when
    /// the plugin is described, that is when the host loads it).
    pub fn add<I, O, F>(&mut self, name: &str, description: &str, handler: F) -> &mut Self
    where
        I: DeserializeOwned + JsonSchema,
        O: Serialize + JsonSchema,
        F: Fn(&P, &mut Context<'_>, I) -> Result<O, PluginError> + Send + Sync + 'static,
    {
        match &self.only {
            Some(only) if only != name => return self,
            Some(_) => {}
            None => {
                assert!(!self.handlers.iter().any(|(n, _)| n == name), "operation `{name}` registered twice");
                self.entries.push(OperationEntry {
                    name: name.to_owned(),
                    description: description.to_owned(),
                    params_schema: schema_of::<I>,
                    output_schema: schema_of::<O>,
                });
            }
        }
        self.last = Some(name.to_owned());
        let op = name.to_owned();
        let erased: Handler<P> = Box::new(move |plugin, ctx, params, as_text| {
            // Read from the borrowed value: no copy of the parameters first.
            // No parameters at all means "all defaults" when the type allows it.
            let input = match I::deserialize(params) {
                Err(_) if params.is_null() => I::deserialize(&Value::Object(Map::new())),
                other => other,
            }
            .map_err(|e| PluginError::invalid_input(format!("parameters of `{op}`: {e}")))?;
            let output = handler(plugin, ctx, input)?;
            if as_text {
                serde_json::to_string(&output).map(Output::Text)
            } else {
                serde_json::to_value(output).map(Output::Value)
            }
            .map_err(|e| PluginError::failed(format!("output of `{op}` is not JSON: {e}")))
        });
        self.handlers.push((name.to_owned(), erased));
        self
    }
}

/// What an operation sees of its call: the execution context and the host services.
pub struct Context<'a> {
    exec: &'a ExecutionContext,
    host: &'a dyn HostServices,
    metrics: Vec<(String, f64)>,
}

impl<'a> Context<'a> {
    /// A context over `exec` whose services go to `host`.
    pub fn new(exec: &'a ExecutionContext, host: &'a dyn HostServices) -> Self {
        Self { exec, host, metrics: Vec::new() }
    }
    /// The whole execution context.
    pub fn execution(&self) -> &ExecutionContext {
        self.exec
    }
    /// Unique id of this execution.
    pub fn execution_id(&self) -> &str {
        &self.exec.execution_id
    }
    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub fn attempt(&self) -> u32 {
        self.exec.attempt
    }
    /// Outputs of upstream steps, keyed by step id.
    pub fn upstream(&self) -> &Map<String, Value> {
        &self.exec.upstream
    }
    /// The plugin's configuration from its manifest.
    pub fn config(&self) -> &Value {
        &self.exec.config
    }
    /// Send a log record to the host.
    pub fn log(&self, level: LogLevel, message: impl AsRef<str>) {
        self.host.log(level, message.as_ref());
    }
    /// [`Self::log`] at [`LogLevel::Info`].
    pub fn info(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Info, message);
    }
    /// [`Self::log`] at [`LogLevel::Warn`].
    pub fn warn(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Warn, message);
    }
    /// [`Self::log`] at [`LogLevel::Debug`].
    pub fn debug(&self, message: impl AsRef<str>) {
        self.log(LogLevel::Debug, message);
    }
    /// Read `key` of the execution's shared state.
    pub fn state_get(&self, key: &str) -> Option<Value> {
        self.host.state_get(key)
    }
    /// Write `key` of the execution's shared state.
    pub fn state_set(&self, key: &str, value: impl Into<Value>) {
        self.host.state_set(key, value.into());
    }
    /// The schedule that fired this call and its scheduled fire time, when
    /// the call is a scheduled task or a step of a scheduled workflow (from
    /// the execution context, which only the host sets).
    pub fn schedule(&self) -> Option<&crate::contract::ScheduleInfo> {
        self.exec.schedule.as_ref()
    }
    /// Start registered workflow `workflow` with `inputs` (a JSON object);
    /// the new execution's id, at once (it runs on its own). Needs the
    /// [`crate::capability::ORCHESTRATION`] capability and the manifest's grant.
    ///
    /// # Errors
    /// See [`HostServices::orchestrate`].
    pub fn start_workflow(&self, workflow: &str, inputs: Value) -> Result<String, PluginError> {
        let inputs = match inputs {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => return Err(PluginError::invalid_input("the inputs of a workflow are a JSON object")),
        };
        let answer = self.host.orchestrate(&Orchestration::StartWorkflow { workflow: workflow.to_owned(), inputs })?;
        answer.as_str().map(str::to_owned).ok_or_else(|| PluginError::failed("the host answered no execution id"))
    }
    /// The status of execution `execution` (the HTTP API's execution view:
    /// `state`, `progress`, `current_step`, `completed_steps`, `total_steps`, ...).
    ///
    /// # Errors
    /// See [`HostServices::orchestrate`]; `not-found` for an unknown execution.
    pub fn execution_status(&self, execution: &str) -> Result<Value, PluginError> {
        self.host.orchestrate(&Orchestration::ExecutionStatus { execution: execution.to_owned() })
    }
    /// Create a schedule from `spec` (the HTTP API's schedule spec); its id.
    /// The schedule belongs to this plugin: only it (or an operator) may cancel it.
    ///
    /// # Errors
    /// See [`HostServices::orchestrate`]; `invalid-input` for a bad spec.
    pub fn create_schedule(&self, spec: Value) -> Result<String, PluginError> {
        let answer = self.host.orchestrate(&Orchestration::CreateSchedule { spec })?;
        answer.as_str().map(str::to_owned).ok_or_else(|| PluginError::failed("the host answered no schedule id"))
    }
    /// Delete schedule `schedule`, which this plugin created.
    ///
    /// # Errors
    /// See [`HostServices::orchestrate`]; `not-found` for a schedule this
    /// plugin did not create.
    pub fn cancel_schedule(&self, schedule: &str) -> Result<(), PluginError> {
        self.host.orchestrate(&Orchestration::CancelSchedule { schedule: schedule.to_owned() }).map(drop)
    }
    /// Begin artifact `name` of `media_type` (e.g. `text/csv`): write its
    /// bytes (`std::io::Write`), then [`crate::ArtifactWriter::finish`] for
    /// its reference. The step's record lists it under `artifacts.<name>`,
    /// which later steps pass on (`${{ steps.<id>.artifacts.<name> }}`).
    ///
    /// # Errors
    /// See [`HostServices::artifact_create`].
    pub fn create_artifact(
        &self,
        name: &str,
        media_type: Option<&str>,
    ) -> Result<crate::ArtifactWriter<'a>, PluginError> {
        let handle = self.host.artifact_create(name, media_type)?;
        crate::ArtifactWriter::new(self.host, handle)
    }
    /// Open the artifact `reference` names (a value of the call's parameters,
    /// e.g. `${{ steps.load.artifacts.rows }}`; see
    /// [`crate::ArtifactRef::from_value`]) for reading (`std::io::Read`).
    ///
    /// # Errors
    /// See [`HostServices::artifact_open`].
    pub fn open_artifact(&self, reference: &crate::ArtifactRef) -> Result<crate::ArtifactReader<'a>, PluginError> {
        let handle = self.host.artifact_open(reference)?;
        crate::ArtifactReader::new(self.host, handle)
    }
    /// Report progress: `fraction` is clamped to `0.0..=1.0`.
    pub fn progress(&self, fraction: f64, message: impl AsRef<str>) {
        self.host.report_progress(fraction.clamp(0.0, 1.0), message.as_ref());
    }
    /// Whether the host has asked this execution to stop (timeout or cancel).
    /// Long-running native operations must poll this: native code cannot be pre-empted.
    pub fn is_cancelled(&self) -> bool {
        self.host.is_cancelled()
    }
    /// `Err(cancelled)` once the host has asked this execution to stop, for
    /// `?` in a long loop: `ctx.check_cancelled()?;`.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Cancelled`] when [`Self::is_cancelled`].
    pub fn check_cancelled(&self) -> Result<(), PluginError> {
        if self.is_cancelled() {
            Err(PluginError::cancelled("stopped: the host asked the operation to stop"))
        } else {
            Ok(())
        }
    }
    /// Report a named number with the result, e.g. `ctx.metric("rows", 1461.0)`.
    pub fn metric(&mut self, name: impl Into<String>, value: f64) {
        self.metrics.push((name.into(), value));
    }
}

/// A plugin value with its operation table: what both transports call into.
#[doc(hidden)]
pub struct Runtime<P: Plugin> {
    plugin: P,
    entries: Vec<OperationEntry>,
    metadata: OnceLock<Metadata>,
    handlers: Vec<(String, Handler<P>)>,
    examples: Vec<Example>,
    /// Built for one operation only ([`Runtime::for_operation`]): no metadata.
    partial: bool,
}

impl<P: Plugin> Default for Runtime<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Plugin> Runtime<P> {
    /// Build the plugin and its whole operation table.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// Build the plugin with the handler of `operation` alone (none if the
    /// plugin has no such operation): what one call in a fresh WASM instance
    /// needs, without allocating every other operation's name, description
    /// and handler on every call. [`Runtime::metadata`] is not available.
    pub fn for_operation(operation: &str) -> Self {
        Self::build(Some(operation.to_owned()))
    }

    fn build(only: Option<String>) -> Self {
        let partial = only.is_some();
        let mut ops = Operations::new(only);
        P::operations(&mut ops);
        Self {
            plugin: P::default(),
            entries: ops.entries,
            metadata: OnceLock::new(),
            handlers: ops.handlers,
            examples: ops.examples,
            partial,
        }
    }

    /// Run the plugin's [`Plugin::initialize`] with `config`; a panic in it
    /// is the caller's to catch (the transports do).
    ///
    /// # Errors
    /// What `initialize` returned.
    pub fn initialize(&self, config: &Value) -> Result<(), PluginError> {
        self.plugin.initialize(config)
    }

    /// Run the plugin's [`Plugin::cleanup`].
    pub fn cleanup(&self) {
        self.plugin.cleanup();
    }

    /// The examples the operations declare, in registration order.
    pub fn examples(&self) -> &[Example] {
        &self.examples
    }

    /// The plugin's metadata (built, with the operations' JSON Schemas, on first use).
    ///
    /// # Panics
    /// On a runtime built by [`Runtime::for_operation`] (an SDK bug).
    pub fn metadata(&self) -> &Metadata {
        assert!(!self.partial, "the metadata of a runtime built for one operation");
        self.metadata.get_or_init(|| {
            let info = P::info();
            Metadata {
                id: info.id,
                name: info.name,
                version: info.version,
                description: info.description,
                authors: info.authors,
                license: info.license,
                contract_version: CONTRACT_VERSION.to_owned(),
                capabilities: info.capabilities,
                operations: self
                    .entries
                    .iter()
                    .map(|op| OperationInfo {
                        name: op.name.clone(),
                        description: op.description.clone(),
                        params_schema: Some((op.params_schema)()),
                        output_schema: Some((op.output_schema)()),
                    })
                    .collect(),
            }
        })
    }

    /// Run `exec.operation`.
    pub fn call(&self, exec: &ExecutionContext, host: &dyn HostServices) -> Result<CallOutput, PluginError> {
        let (output, metrics) = self.run(&self.plugin, exec, host, false)?;
        let output = match output {
            Output::Value(value) => value,
            // Not asked for; read back all the same.
            Output::Text(text) => serde_json::from_str(&text)
                .map_err(|e| PluginError::failed(format!("output of `{}` is not JSON: {e}", exec.operation)))?,
        };
        Ok(CallOutput { output, metrics, artifacts: Vec::new() })
    }

    /// [`Self::call`], the output as JSON text (serialized from the
    /// operation's output type, without building a [`Value`] first), run on
    /// `plugin` rather than the runtime's own value (a WASM instance keeps
    /// one plugin value, made by `initialize`, across its tables).
    #[cfg_attr(not(target_family = "wasm"), allow(dead_code))] // the WASM glue's, and tested
    pub(crate) fn call_text_on(
        &self,
        plugin: &P,
        exec: &ExecutionContext,
        host: &dyn HostServices,
    ) -> Result<(String, Vec<(String, f64)>), PluginError> {
        let (output, metrics) = self.run(plugin, exec, host, true)?;
        let text = match output {
            Output::Text(text) => text,
            Output::Value(value) => value.to_string(),
        };
        Ok((text, metrics))
    }

    fn run(
        &self,
        plugin: &P,
        exec: &ExecutionContext,
        host: &dyn HostServices,
        as_text: bool,
    ) -> Result<(Output, Vec<(String, f64)>), PluginError> {
        let (_, handler) = self
            .handlers
            .iter()
            .find(|(name, _)| *name == exec.operation)
            .ok_or_else(|| PluginError::unsupported(&exec.operation))?;
        let mut ctx = Context::new(exec, host);
        let output = handler(plugin, &mut ctx, &exec.parameters, as_text)?;
        Ok((output, ctx.metrics))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Two;

    impl Plugin for Two {
        fn info() -> PluginInfo {
            PluginInfo::new("test.two", "Two", "0.1.0")
        }
        fn operations(ops: &mut Operations<Self>) {
            ops.add("double", "Doubles", |_, _, n: i64| Ok::<_, PluginError>(n * 2)).add(
                "negate",
                "Negates",
                |_, _, n: i64| Ok::<_, PluginError>(-n),
            );
        }
    }

    #[derive(Default)]
    struct Twice;

    impl Plugin for Twice {
        fn info() -> PluginInfo {
            PluginInfo::new("test.twice", "Twice", "0.1.0")
        }
        fn operations(ops: &mut Operations<Self>) {
            ops.add("same", "One", |_, _, v: Value| Ok::<_, PluginError>(v))
                .add("same", "Two", |_, _, v: Value| Ok::<_, PluginError>(v));
        }
    }

    struct NoHost;

    impl HostServices for NoHost {
        fn log(&self, _: LogLevel, _: &str) {}
        fn state_get(&self, _: &str) -> Option<Value> {
            None
        }
        fn state_set(&self, _: &str, _: Value) {}
        fn report_progress(&self, _: f64, _: &str) {}
        fn is_cancelled(&self) -> bool {
            false
        }
    }

    fn call<P: Plugin>(runtime: &Runtime<P>, operation: &str, params: Value) -> Result<Value, PluginError> {
        let exec = ExecutionContext { operation: operation.into(), parameters: params, ..ExecutionContext::default() };
        runtime.call(&exec, &NoHost).map(|out| out.output)
    }

    #[test]
    fn an_output_as_text_is_the_output_value_serialized() {
        let runtime = Runtime::<Two>::new();
        let exec =
            ExecutionContext { operation: "double".into(), parameters: 21.into(), ..ExecutionContext::default() };
        assert_eq!(runtime.call_text_on(&Two, &exec, &NoHost).unwrap(), ("42".to_owned(), vec![]));
        let bad = ExecutionContext { parameters: "x".into(), ..exec.clone() };
        let refused = runtime.call_text_on(&Two, &bad, &NoHost).unwrap_err();
        assert_eq!(refused.kind, ErrorKind::InvalidInput, "{refused:?}");
        assert!(refused.message.contains("parameters of `double`"), "{refused:?}");
        // No parameters at all still mean "all defaults" (here: none, so refused with the operation named).
        let none = ExecutionContext { parameters: Value::Null, ..exec };
        assert!(runtime.call_text_on(&Two, &none, &NoHost).unwrap_err().message.contains("`double`"));
    }

    #[test]
    fn a_table_for_one_operation_runs_it_and_nothing_else() {
        let double = Runtime::<Two>::for_operation("double");
        assert_eq!(call(&double, "double", 21.into()).unwrap(), Value::from(42));
        let refused = call(&double, "negate", 1.into()).unwrap_err();
        assert_eq!(refused.kind, ErrorKind::UnsupportedOperation);
        let none = Runtime::<Two>::for_operation("missing");
        assert_eq!(call(&none, "missing", 1.into()).unwrap_err().kind, ErrorKind::UnsupportedOperation);
        // The whole table runs both, and describes both in registration order.
        let full = Runtime::<Two>::new();
        assert_eq!(call(&full, "negate", 5.into()).unwrap(), Value::from(-5));
        let names: Vec<_> = full.metadata().operations.iter().map(|op| op.name.as_str()).collect();
        assert_eq!(names, ["double", "negate"]);
    }

    #[test]
    #[should_panic(expected = "operation `same` registered twice")]
    fn an_operation_registered_twice_is_found_when_the_plugin_is_described() {
        Runtime::<Twice>::new();
    }

    #[test]
    #[should_panic(expected = "built for one operation")]
    fn a_table_for_one_operation_has_no_metadata() {
        Runtime::<Two>::for_operation("double").metadata();
    }
}
