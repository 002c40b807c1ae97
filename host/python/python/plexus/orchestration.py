"""QtForge's ``qtforge.orchestration`` interface over Plexus.

The names and behaviour follow QtForge's PluginOrchestrator Python API
(``PluginOrchestrator``, ``Workflow``, ``WorkflowStep``, ``ExecutionMode``,
``StepStatus``, ``Expected`` results); the engine underneath is Plexus's, in
this process (``PluginOrchestrator(plugin_dirs)``, optionally recorded in a
SQLite file with ``state=``) or a daemon's (``PluginOrchestrator.connect``).
The same calls work on both.

Units: ``timeout`` and ``retry_delay`` are milliseconds, as in QtForge;
``progress`` is 0.0–1.0.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Sequence, Union

from . import _native
from .errors import Expected, PluginError, PluginErrorCode

__all__ = [
    "ExecutionMode",
    "StepStatus",
    "WorkflowStep",
    "Workflow",
    "PluginOrchestrator",
    "create_orchestrator",
    "create_workflow",
    "create_workflow_step",
    "TERMINAL_STATUSES",
]

#: Execution statuses after which nothing changes any more.
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "rolled_back", "rollback_failed"})


class ExecutionMode(enum.IntEnum):
    """How the steps of a workflow are scheduled (QtForge's numbers)."""

    Sequential = 0
    """One step at a time, in dependency order."""
    Parallel = 1
    """Every step whose dependencies are done runs at once."""
    Conditional = 2
    """Like Parallel; a step runs only if its ``when`` holds (Skipped otherwise)."""
    Pipeline = 3
    """One step at a time; each step's object output is merged into the context later steps see."""


class StepStatus(str, enum.Enum):
    """What happened to a step (QtForge's names; values as the API writes them)."""

    Pending = "pending"
    Running = "running"
    Completed = "completed"
    Failed = "failed"
    Skipped = "skipped"
    Cancelled = "cancelled"
    Retrying = "retrying"
    Waiting = "waiting"
    """A wait step waiting for its signal (``wait_for``)."""


def _started(error: PluginError, execution_id: str) -> PluginError:
    """``error``, which came after execution ``execution_id`` started: its
    id is added (``details``: ``execution_id: …``), so that nobody runs it
    again to be sure it ran."""
    error.message = f"{error.message} (execution `{execution_id}` started and may still run)"
    error.details.append(f"execution_id: {execution_id}")
    error.execution_id = execution_id
    return error


def _native_error(e: BaseException) -> PluginError:
    """A ``_native.NativeError`` as its :class:`PluginError` subclass."""
    code, message, details = e.args if len(e.args) == 3 else ("Internal", str(e), [])
    return PluginError.of(code, message, details)


# ----- workflow model -----


_STEP_KEYS = frozenset({
    "id", "name", "description", "plugin_id", "service_name", "method_name", "operation", "kind", "parameters",
    "dependencies", "timeout", "max_retries", "retry_delay", "critical", "metadata", "when", "retry", "compensate",
})
_WORKFLOW_KEYS = frozenset({
    "id", "name", "description", "execution_mode", "steps", "rollback_steps", "inputs", "outputs", "metadata",
    "timeout", "max_parallel", "transaction",
})


class WorkflowStep:
    """One step: call ``method_name`` of plugin ``plugin_id`` with ``parameters``.

    QtForge's fields: ``parameters`` (dict; strings may hold ``${{ … }}``
    expressions, e.g. ``"${{ steps.load.output.rows }}"``), ``dependencies``
    (step ids), ``timeout`` (ms, default 60000; ``None``: the plugin's own
    limit in a Plexus-shaped document), ``max_retries`` (retries after the
    first attempt, default 0), ``retry_delay`` (ms, default 1000),
    ``critical`` (default True: a failure fails the workflow; False: it is
    recorded and the workflow goes on), ``metadata``, ``name``,
    ``description``, ``service_name``.

    Plexus's own: ``when`` (a condition; the step is Skipped when false),
    ``retry`` (a whole retry policy: ``{"max_attempts", "initial_delay",
    "backoff", "multiplier", "max_delay", "jitter", "retry_on"}``, instead of
    ``max_retries``/``retry_delay``; setting those two then changes its
    ``max_attempts``/``initial_delay``), ``compensate`` (the step that undoes
    this one on rollback: a ``WorkflowStep`` or ``{"plugin_id",
    "method_name", "parameters"}``), ``kind`` (``"native"`` or ``"wasm"``
    for a plugin loaded as both). ``extra`` keeps the keys of a document
    this class does not model (e.g. ``resources``), written back as read.
    """

    def __init__(self, step_id: str = "", plugin_id: str = "", method_name: str = ""):
        self.id: str = step_id
        self.name: str = step_id
        self.description: str = ""
        self.plugin_id: str = plugin_id
        self.service_name: Optional[str] = None
        self.method_name: str = method_name
        self.parameters: Dict[str, Any] = {}
        self.dependencies: List[str] = []
        self.timeout: Optional[int] = 60_000
        self.retry: Optional[Dict[str, Any]] = None
        self._max_retries = 0
        self._retry_delay = 1_000
        self.critical: bool = True
        self.metadata: Dict[str, Any] = {}
        self.when: Optional[str] = None
        self.compensate: Optional[Union["WorkflowStep", Dict[str, Any]]] = None
        self.kind: Optional[str] = None
        self.extra: Dict[str, Any] = {}

    @property
    def step_id(self) -> str:
        """The step's id (``id``)."""
        return self.id

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt (QtForge's ``max_retries``)."""
        return self._max_retries

    @max_retries.setter
    def max_retries(self, value: int) -> None:
        self._max_retries = int(value)
        if self.retry is not None:
            self.retry["max_attempts"] = self._max_retries + 1

    @property
    def retry_delay(self) -> int:
        """Delay before a retry, ms (QtForge's ``retry_delay``)."""
        return self._retry_delay

    @retry_delay.setter
    def retry_delay(self, value: int) -> None:
        self._retry_delay = int(value)
        if self.retry is not None:
            self.retry["initial_delay"] = self._retry_delay

    def to_json(self) -> Dict[str, Any]:
        """The step as QtForge's JSON (with Plexus's fields when set)."""
        doc: Dict[str, Any] = copy.deepcopy(self.extra)
        doc.update({
            "id": self.id,
            "name": self.name or self.id,
            "description": self.description,
            "plugin_id": self.plugin_id,
            "method_name": self.method_name,
            "parameters": copy.deepcopy(self.parameters),
            "dependencies": list(self.dependencies),
            "critical": self.critical,
            "metadata": copy.deepcopy(self.metadata),
        })
        if self.timeout is not None:
            doc["timeout"] = self.timeout
        if self.service_name is not None:
            doc["service_name"] = self.service_name
        if self.kind is not None:
            doc["kind"] = self.kind
        if self.retry is not None:
            doc["retry"] = copy.deepcopy(self.retry)
        else:
            doc["max_retries"] = self._max_retries
            doc["retry_delay"] = self._retry_delay
        if self.when is not None:
            doc["when"] = self.when
        if self.compensate is not None:
            doc["compensate"] = _action(self.compensate)
        return doc

    @classmethod
    def from_json(cls, doc: Dict[str, Any], step_id: Optional[str] = None) -> "WorkflowStep":
        """A step from QtForge's JSON or Plexus's (``operation`` for
        ``method_name``); ``step_id`` is its key in a QtForge document, used
        when the step names no ``id`` of its own."""
        step = cls(str(doc.get("id") or step_id or ""), str(doc.get("plugin_id", "")),
                   str(doc.get("method_name", doc.get("operation", ""))))
        step.name = str(doc.get("name") or step.id)
        step.description = str(doc.get("description") or "")
        step.service_name = doc.get("service_name")
        step.kind = doc.get("kind")
        step.parameters = copy.deepcopy(doc.get("parameters") or {})
        step.dependencies = list(doc.get("dependencies") or [])
        step.timeout = doc.get("timeout")
        step.critical = bool(doc.get("critical", True))
        step.metadata = copy.deepcopy(doc.get("metadata") or {})
        step.when = doc.get("when")
        retry = doc.get("retry")
        if isinstance(retry, dict):
            step._max_retries = max(int(retry.get("max_attempts", 1)) - 1, 0)
            if isinstance(retry.get("initial_delay"), int):
                step._retry_delay = retry["initial_delay"]
            step.retry = copy.deepcopy(retry)
        else:
            step._max_retries = int(doc.get("max_retries", 0))
            if isinstance(doc.get("retry_delay"), int):
                step._retry_delay = doc["retry_delay"]
        if isinstance(doc.get("compensate"), dict):
            step.compensate = copy.deepcopy(doc["compensate"])
        step.extra = {k: copy.deepcopy(v) for k, v in doc.items() if k not in _STEP_KEYS}
        return step

    def __repr__(self) -> str:
        return f"WorkflowStep({self.id!r}, {self.plugin_id!r}, {self.method_name!r})"


def _action(action: Union[WorkflowStep, Dict[str, Any]]) -> Dict[str, Any]:
    """A rollback or compensation action as a document writes it."""
    if isinstance(action, WorkflowStep):
        doc: Dict[str, Any] = {
            "plugin_id": action.plugin_id,
            "method_name": action.method_name,
            "parameters": copy.deepcopy(action.parameters),
        }
        if action.kind is not None:
            doc["kind"] = action.kind
        return doc
    return copy.deepcopy(dict(action))


class Workflow:
    """A workflow: steps keyed by id, an execution mode, rollback steps.

    Configuration methods return the workflow, so calls chain as in
    QtForge: ``Workflow("w", "W").set_description("…").add_step(a).add_step(b)``.
    Plexus's own fields are attributes: ``inputs`` (declared inputs,
    ``{"name": {"type": "string", "default": …}}``), ``outputs``
    (``{"name": "${{ steps.x.output.y }}"}``), ``timeout`` (ms, the whole
    execution), ``max_parallel``, ``transaction`` (run only inside a
    transaction), ``metadata``; ``extra`` keeps the keys of a document this
    class does not model (e.g. ``resources``).
    """

    def __init__(self, workflow_id: str = "", name: str = ""):
        self._id = workflow_id
        self._name = name or workflow_id
        self.description: str = ""
        self._mode = ExecutionMode.Sequential
        self.steps: Dict[str, WorkflowStep] = {}
        self.rollback_steps: Dict[str, Union[WorkflowStep, Dict[str, Any]]] = {}
        self.inputs: Dict[str, Any] = {}
        self.outputs: Dict[str, Any] = {}
        self.timeout: Optional[int] = None
        self.max_parallel: Optional[int] = None
        self.transaction: Optional[Any] = None
        self.metadata: Dict[str, Any] = {}
        self.extra: Dict[str, Any] = {}
        #: Write the steps as a list (Plexus's shape, whose defaults are the
        #: plugin's limits and retries of retryable failures only) rather
        #: than keyed by id (QtForge's, with QtForge's defaults). True for a
        #: workflow read from a Plexus-shaped document, so it runs the same.
        self.steps_as_list: bool = False

    def id(self) -> str:
        """The workflow's id."""
        return self._id

    def name(self) -> str:
        """The workflow's name."""
        return self._name

    def execution_mode(self) -> ExecutionMode:
        """How its steps are scheduled."""
        return self._mode

    def set_description(self, description: str) -> "Workflow":
        """Set the description; returns the workflow."""
        self.description = description
        return self

    def set_execution_mode(self, mode: Union[ExecutionMode, int]) -> "Workflow":
        """Set the execution mode; returns the workflow."""
        self._mode = ExecutionMode(mode)
        return self

    def add_step(self, step: WorkflowStep) -> "Workflow":
        """Add ``step`` (replacing one with its id); returns the workflow."""
        if not isinstance(step, WorkflowStep):
            raise TypeError(f"add_step: expected a WorkflowStep, got {type(step).__name__}")
        self.steps[step.id] = step
        return self

    def add_rollback_step(self, step_id: str, rollback_step: Union[WorkflowStep, Dict[str, Any]]) -> "Workflow":
        """Run ``rollback_step`` to undo step ``step_id`` when the execution
        is rolled back (QtForge's ``add_rollback_step``); returns the workflow."""
        self.rollback_steps[step_id] = rollback_step
        return self

    def get_step(self, step_id: str) -> Optional[WorkflowStep]:
        """Step ``step_id``, or None."""
        return self.steps.get(step_id)

    def to_json(self) -> Dict[str, Any]:
        """The workflow as QtForge's JSON document (steps keyed by id,
        ``execution_mode`` as a number), with Plexus's fields when set; steps
        as a list with :attr:`steps_as_list`."""
        doc: Dict[str, Any] = copy.deepcopy(self.extra)
        steps = [step.to_json() for step in self.steps.values()]
        doc.update({
            "id": self._id,
            "name": self._name,
            "description": self.description,
            "execution_mode": int(self._mode),
            "steps": steps if self.steps_as_list else {step["id"]: step for step in steps},
        })
        if self.rollback_steps:
            doc["rollback_steps"] = {sid: _action(a) for sid, a in self.rollback_steps.items()}
        for key in ("inputs", "outputs", "metadata"):
            value = getattr(self, key)
            if value:
                doc[key] = copy.deepcopy(value)
        for key in ("timeout", "max_parallel", "transaction"):
            value = getattr(self, key)
            if value is not None:
                doc[key] = copy.deepcopy(value)
        return doc

    @classmethod
    def from_json(cls, doc: Union[Dict[str, Any], str]) -> "Workflow":
        """A workflow from a JSON document (a dict or JSON text), QtForge's
        shape (steps keyed by id) or Plexus's (steps as a list). Only the
        shape is checked here (``TypeError``/``ValueError``; QtForge answers
        an ``expected``): ``register_workflow`` validates it against the
        plugins."""
        if isinstance(doc, str):
            doc = json.loads(doc)
        if not isinstance(doc, dict):
            raise TypeError(f"from_json: expected a dict, got {type(doc).__name__}")
        workflow = cls(str(doc.get("id", "")), str(doc.get("name") or doc.get("id", "")))
        workflow.description = str(doc.get("description") or "")
        mode = doc.get("execution_mode", 0)
        try:
            workflow._mode = ExecutionMode[mode.capitalize()] if isinstance(mode, str) else ExecutionMode(mode)
        except (KeyError, ValueError):
            raise ValueError(f"execution_mode: 0–3 or sequential, parallel, conditional, pipeline; got {mode!r}") from None
        steps = doc.get("steps") or {}
        if isinstance(steps, dict):
            for key, step_doc in steps.items():
                workflow.add_step(WorkflowStep.from_json(step_doc, key))
        else:
            workflow.steps_as_list = True
            for step_doc in steps:
                workflow.add_step(WorkflowStep.from_json(step_doc))
        workflow.rollback_steps = copy.deepcopy(doc.get("rollback_steps") or {})
        workflow.inputs = copy.deepcopy(doc.get("inputs") or {})
        workflow.outputs = copy.deepcopy(doc.get("outputs") or {})
        workflow.metadata = copy.deepcopy(doc.get("metadata") or {})
        workflow.timeout = doc.get("timeout")
        workflow.max_parallel = doc.get("max_parallel")
        workflow.transaction = doc.get("transaction")
        workflow.extra = {k: copy.deepcopy(v) for k, v in doc.items() if k not in _WORKFLOW_KEYS}
        return workflow

    def __repr__(self) -> str:
        return f"Workflow({self._id!r}, {self._name!r}, steps={list(self.steps)})"


def create_workflow(workflow_id: str, name: str = "") -> Workflow:
    """``Workflow(workflow_id, name)``."""
    return Workflow(workflow_id, name)


def create_workflow_step(step_id: str, plugin_id: str, method_name: str) -> WorkflowStep:
    """``WorkflowStep(step_id, plugin_id, method_name)``."""
    return WorkflowStep(step_id, plugin_id, method_name)


# ----- the orchestrator -----


def _default_plugin_dirs() -> List[str]:
    """``$PLEXUS_PLUGINS_DIR`` (``os.pathsep``-separated), else
    ``<data dir>/plugins`` (``$PLEXUS_DATA_DIR``, else
    ``~/.local/share/plexus``), as the ``plexus`` command line."""
    dirs = os.environ.get("PLEXUS_PLUGINS_DIR")
    if dirs:
        return [d for d in dirs.split(os.pathsep) if d]
    return [str(_data_dir() / "plugins")]


def _data_dir() -> Path:
    """The data directory, as the daemon and the command line find it."""
    return Path(_native.data_dir())


def _results(status: Dict[str, Any]) -> Dict[str, Any]:
    """What an ended execution produced, from its status."""
    return {
        "status": status["status"],
        "outputs": status.get("outputs") or {},
        "steps": {s["id"]: s.get("output") for s in status["steps"] if s["status"] == "completed"},
        "error": status.get("error"),
    }


#: The longest duration passed on, ms (about 292 million years: no limit).
_MAX_MS = 2**63 - 1


def _ms(seconds: Optional[float], what: str) -> Optional[int]:
    """``seconds`` in whole ms; ``None`` and infinity are no limit."""
    if seconds is None or seconds == float("inf"):
        return None
    if not seconds >= 0:  # negative or NaN
        raise ValueError(f"{what}: a duration in seconds, not {seconds}")
    return min(int(seconds * 1000), _MAX_MS)


class PluginOrchestrator:
    """Registers workflows and runs executions of them (QtForge's
    ``PluginOrchestrator``), on an engine in this process or a daemon.

    * ``PluginOrchestrator()`` — embedded, plugins from ``$PLEXUS_PLUGINS_DIR``
      (else ``~/.local/share/plexus/plugins``), state in memory;
    * ``PluginOrchestrator(["plugins/"], state="plexus.db")`` — embedded,
      workflows, executions and transactions recorded in a SQLite file:
      executions unfinished when the process ended resume when it is opened
      again (one process at a time: the file is locked);
    * ``PluginOrchestrator.connect("127.0.0.1:7070", token=...)`` — the daemon's.

    Compiled WASM components are cached in ``cache_dir`` (default
    ``$PLEXUS_CACHE_DIR``, else ``~/.cache/plexus/components``) unless
    ``no_cache``; ``workers`` bounds the executions a durable engine runs at once.

    Methods return :class:`~plexus.Expected` results as QtForge does; with
    ``raise_errors=True`` they return the plain value and raise
    :class:`~plexus.PluginError` subclasses instead. Thread-safe; plugins
    and workflows run with the GIL released. Use it as a context manager (or
    call :meth:`close`) to run the plugins' cleanup at the end.
    """

    def __init__(
        self,
        plugin_dirs: Optional[Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]] = None,
        *,
        state: Optional[Union[str, os.PathLike]] = None,
        workers: int = 8,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        no_cache: bool = False,
        raise_errors: bool = False,
        _engine: Any = None,
    ):
        self.raise_errors = raise_errors
        if _engine is not None:
            self._engine = _engine
            return
        if isinstance(plugin_dirs, (str, os.PathLike)):
            plugin_dirs = [plugin_dirs]
        dirs = [str(d) for d in plugin_dirs] if plugin_dirs is not None else _default_plugin_dirs()
        try:
            self._engine = _native.Engine.embedded(
                dirs,
                str(state) if state is not None else None,
                workers,
                str(cache_dir) if cache_dir is not None else None,
                no_cache,
            )
        except _native.NativeError as e:
            raise _native_error(e) from None

    @classmethod
    def connect(
        cls,
        url: Optional[str] = None,
        token: Optional[str] = None,
        *,
        token_file: Optional[Union[str, os.PathLike]] = None,
        raise_errors: bool = False,
    ) -> "PluginOrchestrator":
        """An orchestrator that is the daemon at ``url`` (``host:port``,
        ``http://host:port`` or ``unix:/path``; default ``$PLEXUS_URL``, else
        ``127.0.0.1:7070``). The token: ``token``, else ``$PLEXUS_TOKEN``,
        else the file ``token_file`` / ``$PLEXUS_TOKEN_FILE`` /
        ``<data dir>/token``. Raises :class:`~plexus.PluginError`
        (``NetworkError``, ``Unauthorized``) when it cannot talk to it."""
        url = url or os.environ.get("PLEXUS_URL") or _native.DEFAULT_LISTEN
        if token is None:
            token = os.environ.get("PLEXUS_TOKEN")
        if token is None:
            path = Path(token_file or os.environ.get("PLEXUS_TOKEN_FILE") or _data_dir() / "token")
            try:
                token = path.read_text().strip()
            except OSError as e:
                raise PluginError.of(
                    PluginErrorCode.Unauthorized, f"cannot read the daemon's token from {path}: {e}"
                ) from None
        try:
            engine = _native.Engine.remote(url, token)
        except _native.NativeError as e:
            raise _native_error(e) from None
        return cls(raise_errors=raise_errors, _engine=engine)

    @property
    def backend(self) -> str:
        """``embedded``, ``durable`` (embedded with a state file) or ``remote``."""
        return self._engine.kind

    # --- plumbing ---

    def _run(self, f: Callable[..., Any], *args: Any, then: Optional[Callable[[Any], Any]] = None) -> Any:
        """``f(*args)`` as an :class:`Expected` (or the value, raising)."""
        try:
            value = f(*args)
            if then is not None:
                value = then(value)
        except _native.NativeError as e:
            error = _native_error(e)
            if self.raise_errors:
                raise error from None
            return Expected.fail(error)
        return value if self.raise_errors else Expected.ok(value)

    @staticmethod
    def _call(f: Callable[..., Any], *args: Any) -> Any:
        """``f(*args)``, raising a failure as its :class:`PluginError` (for
        the methods whose QtForge form returns a plain value)."""
        try:
            return f(*args)
        except _native.NativeError as e:
            raise _native_error(e) from None

    def _fail(self, error: PluginError) -> Any:
        if self.raise_errors:
            raise error
        return Expected.fail(error)

    def close(self) -> None:
        """Stop: plugins' cleanup runs (embedded); a durable engine lets
        running steps finish for up to 5 s, the rest resume at the next open.
        Idempotent; later calls fail with ``InvalidState``."""
        self._engine.close()

    def __enter__(self) -> "PluginOrchestrator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- workflows ---

    def register_workflow(self, workflow: Union[Workflow, Dict[str, Any]]):
        """Register ``workflow`` (a :class:`Workflow` or its JSON dict).

        Errors: ``InvalidConfiguration`` (every problem in ``details``: an
        unknown plugin or operation, a cycle, a bad expression…),
        ``AlreadyExists`` (unregister it first)."""
        doc = workflow.to_json() if isinstance(workflow, Workflow) else workflow
        return self._run(self._engine.register, doc, then=lambda _: None)

    def unregister_workflow(self, workflow_id: str):
        """Remove workflow ``workflow_id``; its running executions go on. Errors: ``NotFound``."""
        return self._run(self._engine.unregister, workflow_id)

    def has_workflow(self, workflow_id: str) -> bool:
        """Whether workflow ``workflow_id`` is registered. It has no
        ``Expected`` to carry an error: a failure (a closed orchestrator, an
        unreachable daemon) raises its :class:`~plexus.PluginError`."""
        return self._call(self._engine.has, workflow_id)

    def get_workflow(self, workflow_id: str):
        """Workflow ``workflow_id`` (every default written out). Errors: ``NotFound``."""
        return self._run(self._engine.get, workflow_id, then=Workflow.from_json)

    def list_workflows(self) -> List[str]:
        """The registered workflows' ids, sorted (raises on failure, as :meth:`has_workflow`)."""
        return self._call(self._engine.list)

    def clear_workflows(self) -> None:
        """Remove every workflow; running executions go on (raises on failure, as :meth:`has_workflow`)."""
        self._call(self._engine.clear)

    # --- executions ---

    def execute_workflow(
        self,
        workflow_id: str,
        initial_data: Optional[Dict[str, Any]] = None,
        async_execution: bool = False,
        *,
        transaction: Optional[str] = None,
        on_progress: Optional[Callable[[Dict[str, Any]], Any]] = None,
    ):
        """Run workflow ``workflow_id``; returns the execution id.

        ``initial_data`` fills the workflow's declared inputs; other keys go
        into the execution's context (``${{ context.key }}``). Without
        ``async_execution`` it returns when the execution has ended (with the
        GIL released meanwhile), whatever its outcome: read it with
        :meth:`get_workflow_status`; with it, at once. ``transaction``: run
        in that open transaction. ``on_progress(status)`` is called on the
        engine's callback thread at each change of the status (see
        :meth:`watch_workflow`, also for its ``{"error": …}`` call).

        Errors: ``NotFound`` (no such workflow), ``InvalidConfiguration``
        (bad inputs), ``InvalidState`` (a transaction not open). An error
        while waiting (the orchestrator closed, the daemon unreachable) comes
        after the execution started: its ``details`` and ``execution_id``
        attribute name it, so it is not started twice."""
        try:
            execution_id = self._engine.execute(workflow_id, initial_data, transaction)
        except _native.NativeError as e:
            return self._fail(_native_error(e))
        if on_progress is not None:
            try:
                self._engine.watch(execution_id, on_progress, 100)
            except _native.NativeError as e:
                # It runs already: say so rather than fail (a retry would run it twice).
                warnings.warn(f"no progress callbacks for execution {execution_id}: {e.args[1]}", RuntimeWarning)
        if not async_execution:
            try:
                self._engine.wait(execution_id, None, False)
            except _native.NativeError as e:
                return self._fail(_started(_native_error(e), execution_id))
        return execution_id if self.raise_errors else Expected.ok(execution_id)

    def cancel_workflow(self, execution_id: str):
        """Ask execution ``execution_id`` to stop: running steps are
        cancelled, completed ones compensated. Errors: ``NotFound``,
        ``InvalidState`` (it ended already)."""
        return self._run(self._engine.cancel, execution_id)

    def get_workflow_status(self, execution_id: str):
        """The status of execution ``execution_id``: a dict with QtForge's
        ``execution_id``, ``workflow_id``, ``status`` (``pending``,
        ``running``, ``completed``, ``failed``, ``cancelled``,
        ``rolled_back``, ``rollback_failed``), ``progress`` (0.0–1.0),
        ``current_step``, ``completed_steps``, ``total_steps``, and Plexus's
        ``current_steps``, ``steps`` (per-step records), ``outputs``,
        ``error``, ``started_at_ms``, ``ended_at_ms``. Errors: ``NotFound``."""
        return self._run(self._engine.status, execution_id)

    get_execution_status = get_workflow_status

    def get_workflow_results(self, execution_id: str):
        """What an ended execution produced: ``{"status", "outputs"
        (the workflow's declared outputs), "steps" (each completed step's
        output, by step id), "error"}``. Errors: ``NotFound``,
        ``InvalidState`` while it runs."""

        def results(status: Dict[str, Any]) -> Dict[str, Any]:
            if status["status"] not in TERMINAL_STATUSES:
                raise _native.NativeError(
                    "InvalidState", f"execution `{execution_id}` is {status['status']}: it has no results yet", []
                )
            return _results(status)

        return self._run(self._engine.status, execution_id, then=results)

    def get_step_results(self, execution_id: str):
        """QtForge's ``StepResult`` of every step of execution
        ``execution_id``, in declaration order: dicts with ``step_id``,
        ``status`` (a :class:`StepStatus`), ``result_data``,
        ``error_message``, ``retry_count``, ``start_time``, ``end_time``,
        ``execution_time`` (ms). Errors: ``NotFound``."""

        def typed(results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
            for r in results:
                try:
                    r["status"] = StepStatus(r["status"])
                except ValueError:
                    pass
            return results

        return self._run(self._engine.step_results, execution_id, then=typed)

    def list_active_executions(self) -> List[str]:
        """The executions that have not ended, oldest first (of a durable
        engine or a daemon: the newest 1,000 of them). Raises on failure, as
        :meth:`has_workflow`."""
        return self._call(self._engine.active)

    def wait_for_completion(self, execution_id: str, timeout: Optional[float] = None):
        """Wait (GIL released) until execution ``execution_id`` ends, at most
        ``timeout`` seconds; its final status. Errors: ``Timeout``, ``NotFound``."""
        return self._run(self._engine.wait, execution_id, _ms(timeout, "timeout"))

    def watch_workflow(
        self, execution_id: str, callback: Callable[[Dict[str, Any]], Any], interval: float = 0.1
    ) -> None:
        """Call ``callback(status)`` each time execution ``execution_id``'s
        status changes (checked every ``interval`` seconds, 0.01–60), the
        last time with its final status. Callbacks run on the engine's
        callback thread, one at a time (keep them short: the others wait).
        Returning ``False`` stops the watch; an exception is reported through
        ``sys.unraisablehook`` and the watch goes on. When the status cannot
        be read (the orchestrator closed, the daemon unreachable) the last
        call is ``callback({"error": {"code": …, "message": …}})``.
        Raises (it has no ``Expected``) when the watch cannot start."""
        interval_ms = _ms(interval, "interval")
        if interval_ms is None:
            raise ValueError("interval: a finite number of seconds")
        try:
            self._engine.watch(execution_id, callback, interval_ms)
        except _native.NativeError as e:
            raise _native_error(e) from None

    # --- asyncio ---

    async def wait_async(self, execution_id: str, timeout: Optional[float] = None):
        """Await the end of execution ``execution_id`` (at most ``timeout``
        seconds) without blocking the event loop; its final status."""
        try:
            status = await self._await_end(execution_id, timeout)
        except _native.NativeError as e:
            return self._fail(_native_error(e))
        return status if self.raise_errors else Expected.ok(status)

    async def _await_end(self, execution_id: str, timeout: Optional[float]) -> Dict[str, Any]:
        """The final status of ``execution_id``, awaited (raises ``NativeError``)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def settle(error: Optional[BaseException], status: Optional[Dict[str, Any]]) -> None:
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(status)

        def done(error: Optional[BaseException], status: Optional[Dict[str, Any]]) -> None:
            try:
                loop.call_soon_threadsafe(settle, error, status)
            except RuntimeError:
                pass  # the loop closed meanwhile: nobody awaits it any more

        self._engine.wait_then(execution_id, done, _ms(timeout, "timeout"))
        return await future

    async def execute_workflow_async(
        self,
        workflow_id: str,
        initial_data: Optional[Dict[str, Any]] = None,
        *,
        transaction: Optional[str] = None,
        timeout: Optional[float] = None,
    ):
        """Run workflow ``workflow_id`` and await its end (QtForge's
        ``execute_workflow_async``): its results (as
        :meth:`get_workflow_results`, plus ``execution_id``) when it
        completed; an ``ExecutionFailed`` error (whose message is the
        execution's error) when it did not; ``Timeout`` after ``timeout``
        seconds (the execution goes on)."""
        loop = asyncio.get_running_loop()
        try:
            # Off the event loop: a durable engine writes to its file, a remote one asks the daemon.
            execution_id = await loop.run_in_executor(None, self._engine.execute, workflow_id, initial_data, transaction)
        except _native.NativeError as e:
            return self._fail(_native_error(e))
        try:
            status = await self._await_end(execution_id, timeout)
        except _native.NativeError as e:
            return self._fail(_started(_native_error(e), execution_id))
        if status["status"] != "completed":
            error = PluginError.of(
                PluginErrorCode.ExecutionFailed,
                f"execution `{execution_id}` of `{workflow_id}` ended {status['status']}: {status.get('error') or ''}".rstrip(": "),
                [f"execution_id: {execution_id}"],
            )
            return self._fail(error)
        results = {"execution_id": execution_id, **_results(status)}
        return results if self.raise_errors else Expected.ok(results)

    async def watch(self, execution_id: str, interval: float = 0.1) -> AsyncIterator[Dict[str, Any]]:
        """An async stream of execution ``execution_id``'s statuses: one at
        each change (checked every ``interval`` seconds), ending after the
        final one::

            async for status in orchestrator.watch(execution_id):
                print(status["status"], f"{status['progress']:.0%}")

        Raises :class:`~plexus.PluginError` (``NotFound``…) when the status
        cannot be read."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stopped = threading.Event()

        def on_status(status: Dict[str, Any]) -> bool:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, status)
            except RuntimeError:
                return False
            return not stopped.is_set()

        try:
            self._engine.watch(execution_id, on_status, _ms(interval, "interval") or 0)
        except _native.NativeError as e:
            raise _native_error(e) from None
        try:
            while True:
                status = await queue.get()
                if "error" in status and "status" not in status:
                    err = status["error"]
                    raise PluginError.of(err.get("code", "Internal"), err.get("message", ""))
                yield status
                if status["status"] in TERMINAL_STATUSES:
                    return
        finally:
            stopped.set()

    # --- transactions ---

    def begin_transaction(self, transaction_id: str):
        """Begin transaction ``transaction_id``: executions started in it
        (``execute_workflow(..., transaction=transaction_id)``) are committed
        or rolled back together. Errors: ``AlreadyExists``, ``InvalidConfiguration``."""
        return self._run(self._engine.begin_transaction, transaction_id, then=lambda _: None)

    def commit_transaction(self, transaction_id: str):
        """Commit it: its executions' effects stay (their compensations can
        no longer run). Errors: ``NotFound``, ``InvalidState`` (not open, or
        an execution of it still running)."""
        return self._run(self._engine.commit_transaction, transaction_id, then=lambda _: None)

    def rollback_transaction(self, transaction_id: str):
        """Roll it back: the compensation of every completed step of its
        completed executions runs, newest first, before this returns.
        Errors: as :meth:`commit_transaction`."""
        return self._run(self._engine.rollback_transaction, transaction_id, then=lambda _: None)

    def get_transaction(self, transaction_id: str):
        """Transaction ``transaction_id``: ``{"id", "state", "executions",
        "compensations", …}``. Errors: ``NotFound``."""
        return self._run(self._engine.transaction, transaction_id)

    # --- plugins ---

    def list_plugins(self) -> List[Dict[str, Any]]:
        """The loaded plugins: dicts with ``id``, ``version``, ``kind``,
        ``capabilities``, ``operations``, ``status``… (raises on failure)."""
        return self._call(self._engine.plugins)["plugins"]

    def plugin_load_errors(self) -> List[Dict[str, Any]]:
        """The plugin folders that did not load, each with why (raises on failure)."""
        return self._call(self._engine.plugins).get("errors", [])

    def get_plugin_info(self, plugin_id: str):
        """Plugin ``plugin_id``: metadata, operations with their schemas,
        capabilities, limits, permissions. Errors: ``PluginNotFound``."""
        return self._run(self._engine.plugin, plugin_id)

    def call(
        self,
        plugin_id: str,
        operation: str,
        params: Any = None,
        *,
        timeout: Optional[float] = None,
        kind: Optional[str] = None,
    ):
        """Call ``operation`` of plugin ``plugin_id`` with ``params`` (JSON
        values); its output. ``timeout`` in seconds (default: the plugin's
        limit); ``kind``: ``"native"`` or ``"wasm"`` for a plugin loaded as
        both. Errors: ``PluginNotFound``, ``NotFound`` (no such operation),
        ``Timeout``, ``ExecutionFailed`` (the plugin failed; ``details`` has
        its error)."""
        return self._run(self._engine.call, plugin_id, operation, params, _ms(timeout, "timeout"), kind)


def create_orchestrator(*args: Any, **kwargs: Any) -> PluginOrchestrator:
    """``PluginOrchestrator(*args, **kwargs)`` (QtForge's factory)."""
    return PluginOrchestrator(*args, **kwargs)
