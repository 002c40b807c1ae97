"""What an operation sees of its call: :class:`Context`, over the host services.

The host services are the WIT ``host`` interface: log, shared state,
progress and cancellation. :class:`HostServices` is their shape in Python; the
component glue implements it over the WIT imports and
:class:`plexus_sdk.testing.TestHost` implements it in memory.
"""

from __future__ import annotations

import enum
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from .errors import PluginError

__all__ = [
    "ArtifactReader",
    "ArtifactWriter",
    "CallOutput",
    "Context",
    "ExecutionContext",
    "HostServices",
    "Log",
    "LogLevel",
    "ScheduleInfo",
]

CHUNK = 1 << 20
"""Bytes an artifact stream moves per host request (the host takes at most 4 MiB)."""


class LogLevel(str, enum.Enum):
    """Severity of a log record (the WIT ``log-level``); members are their names as strings."""

    TRACE = "trace"
    """Very detailed."""
    DEBUG = "debug"
    """Useful when debugging."""
    INFO = "info"
    """Normal operation."""
    WARN = "warn"
    """Something unexpected that the plugin handled."""
    ERROR = "error"
    """Something failed."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def of(cls, level: LogLevel | str) -> LogLevel:
        """The level for a member or a name (any case; ``"warning"`` is :attr:`WARN`).

        Raises:
            ValueError: an unknown name.
        """
        if isinstance(level, LogLevel):
            return level
        name = str(level).lower()
        return cls("warn" if name == "warning" else name)


class HostServices(Protocol):
    """The services the host offers during a call (the WIT ``host`` interface).

    State values cross as JSON text, as in the WIT. Implemented by the
    component glue and by :class:`plexus_sdk.testing.TestHost`; plugin code
    uses :class:`Context` instead.
    """

    def log(self, level: LogLevel, message: str) -> None:
        """Forward a log record to the host (``tracing``, tagged with the plugin id)."""

    def state_get(self, key: str) -> Optional[str]:
        """A key of the execution's shared state, as JSON text, or ``None`` when unset."""

    def state_set(self, key: str, value: str) -> None:
        """Write a key of the execution's shared state (``value`` is JSON text)."""

    def report_progress(self, fraction: float, message: str) -> None:
        """Report progress: ``fraction`` in 0.0..1.0 plus a message."""

    def is_cancelled(self) -> bool:
        """Whether the host has asked this execution to stop."""

    def orchestrate(self, request: dict) -> Any:
        """Run an orchestration request (contract 0.3): ``{"op": "start-workflow",
        "workflow": ..., "inputs": {...}}``, ``{"op": "execution-status",
        "execution": ...}``, ``{"op": "create-schedule", "spec": {...}}`` or
        ``{"op": "cancel-schedule", "schedule": ...}``; returns the answer as
        JSON data (an execution id, a status, a schedule id, ``None``).

        Raises:
            PluginError: the host refused or failed the request.
        """

    def artifact_create(self, name: str, media_type: Optional[str]) -> int:
        """Begin artifact ``name`` (contract 0.4); returns a writer id.

        Raises:
            PluginError: invalid-input for a bad name, failed when refused.
        """

    def artifact_write(self, writer: int, data: bytes) -> None:
        """Append ``data`` (at most 4 MiB) to writer ``writer``.

        Raises:
            PluginError: failed past the plugin's ``limits.artifact_bytes``.
        """

    def artifact_finish(self, writer: int) -> str:
        """Store writer ``writer``'s bytes; returns the artifact's reference as JSON text."""

    def artifact_open(self, reference: str) -> int:
        """Open the artifact a reference (JSON text) names; returns a reader id.

        Raises:
            PluginError: not-found when it is not this execution's.
        """

    def artifact_read(self, reader: int, max_bytes: int) -> bytes:
        """The next at most ``max_bytes`` of reader ``reader``; empty at the end."""


class ArtifactWriter:
    """An artifact being written (:meth:`Context.create_artifact`): :meth:`write`
    bytes (or text, as UTF-8), then :meth:`finish` for its reference. Also a
    context manager that finishes it on leaving (a reference in :attr:`reference`).
    Bytes go to the host 1 MiB at a time."""

    def __init__(self, host: HostServices, writer: int) -> None:
        self._host = host
        self._id = writer
        self._buffer = bytearray()
        self.reference: Optional[dict] = None
        """The reference, once finished."""

    def write(self, data: bytes | str) -> int:
        """Append ``data`` (``str`` as UTF-8); returns how many bytes."""
        chunk = data.encode() if isinstance(data, str) else bytes(data)
        self._buffer += chunk
        while len(self._buffer) >= CHUNK:
            self._host.artifact_write(self._id, bytes(self._buffer[:CHUNK]))
            del self._buffer[:CHUNK]
        return len(chunk)

    def finish(self) -> dict:
        """Store the bytes written (once per content) and return the artifact's
        reference: ``{"artifact": "sha256:…", "name", "bytes", "media_type"}``,
        what later steps read as ``${{ steps.<id>.artifacts.<name> }}``.

        Raises:
            PluginError: the host refused the artifact (e.g. past ``limits.artifact_bytes``).
        """
        if self.reference is None:
            if self._buffer:
                self._host.artifact_write(self._id, bytes(self._buffer))
                self._buffer.clear()
            self.reference = json.loads(self._host.artifact_finish(self._id))
        return self.reference

    def __enter__(self) -> ArtifactWriter:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is None:
            self.finish()


class ArtifactReader:
    """An artifact opened for reading (:meth:`Context.open_artifact`):
    :meth:`read`, or iterate over its lines (bytes, each with its ``\\n``).
    Bytes come from the host 1 MiB at a time."""

    def __init__(self, host: HostServices, reader: int) -> None:
        self._host = host
        self._id = reader
        # Bytes received and not yet read: `_buffer[_at:]` (compacted at each fill,
        # so reading stays linear in the artifact's size).
        self._buffer = bytearray()
        self._at = 0
        self._ended = False

    def _fill(self) -> bool:
        if self._ended:
            return False
        chunk = self._host.artifact_read(self._id, CHUNK)
        if not chunk:
            self._ended = True
            return False
        del self._buffer[: self._at]
        self._at = 0
        self._buffer += chunk
        return True

    def _take(self, end: int) -> bytes:
        out = bytes(self._buffer[self._at : end])
        self._at = end
        return out

    def read(self, size: int = -1) -> bytes:
        """At most ``size`` bytes (all that is left when negative); ``b""`` at the end."""
        while (size < 0 or len(self._buffer) - self._at < size) and self._fill():
            pass
        end = len(self._buffer) if size < 0 else min(len(self._buffer), self._at + size)
        return self._take(end)

    def __iter__(self) -> Any:
        while True:
            at = self._buffer.find(b"\n", self._at)
            while at < 0:
                searched = len(self._buffer) - self._at
                if not self._fill():
                    break
                at = self._buffer.find(b"\n", self._at + searched)
            if at < 0:
                if self._at < len(self._buffer):
                    yield self._take(len(self._buffer))
                return
            yield self._take(at + 1)


def is_artifact(value: Any) -> bool:
    """Whether ``value`` is an artifact reference (an object with a ``sha256:`` ``artifact``)."""
    return isinstance(value, dict) and str(value.get("artifact", "")).startswith("sha256:") and "name" in value


@dataclass
class ScheduleInfo:
    """The schedule that fired a call (the WIT ``schedule-info`` record)."""

    id: str
    """The schedule id (also the call's ``task_id``)."""
    fire_time_ms: int
    """The fire time it was scheduled for, ms since the Unix epoch."""
    fire_time: str
    """The same time as RFC 3339 text."""


@dataclass
class ExecutionContext:
    """Everything a call knows about its execution: the WIT ``execution-context``
    record, with ``parameters``, ``upstream`` and ``config`` as JSON text.

    Build one to call :meth:`plexus_sdk.testing.TestHost.call_with`.
    """

    operation: str
    """The operation to run."""
    parameters: str = "null"
    """Operation parameters (JSON text)."""
    execution_id: str = "test-execution"
    """Unique id of this execution."""
    workflow_id: Optional[str] = None
    """The workflow this call is a step of, if any."""
    step_id: Optional[str] = None
    """The step of ``workflow_id`` this call runs, if any."""
    task_id: Optional[str] = None
    """The scheduled task this call runs, if any."""
    attempt: int = 1
    """1 for the first attempt, 2 for the first retry, and so on."""
    deadline_ms: Optional[int] = None
    """Deadline in milliseconds since the Unix epoch, if any."""
    upstream: str = "{}"
    """Outputs of upstream steps: a JSON object keyed by step id (JSON text)."""
    config: str = "{}"
    """The plugin's configuration, the ``[config]`` table of its manifest (JSON text)."""
    schedule: Optional[ScheduleInfo] = None
    """The schedule that fired this call, if a schedule did (set by the host only)."""


@dataclass
class CallOutput:
    """A successful call's result, as it crosses to the host."""

    output: str
    """The output (JSON text)."""
    metrics: list[tuple[str, float]] = field(default_factory=list)
    """Named numbers reported with :meth:`Context.metric`, in order."""


def _parse(what: str, text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise PluginError.invalid_input(f"{what} is not valid JSON: {e}") from None


class Log:
    """Logging to the host: ``ctx.log.info("loaded 12 rows")`` or
    ``ctx.log("warn", "...")``. Messages go to the host's log, tagged with the
    plugin id (a component's stdout is captured and size-bounded: prefer this
    to ``print``)."""

    __slots__ = ("_host",)

    def __init__(self, host: HostServices) -> None:
        self._host = host

    def __call__(self, level: LogLevel | str, message: object) -> None:
        """Send ``message`` (made a string) at ``level`` (a :class:`LogLevel` or its name).

        Raises:
            ValueError: an unknown level name.
        """
        self._host.log(LogLevel.of(level), str(message))

    def trace(self, message: object) -> None:
        """Log at :attr:`LogLevel.TRACE`."""
        self._host.log(LogLevel.TRACE, str(message))

    def debug(self, message: object) -> None:
        """Log at :attr:`LogLevel.DEBUG`."""
        self._host.log(LogLevel.DEBUG, str(message))

    def info(self, message: object) -> None:
        """Log at :attr:`LogLevel.INFO`."""
        self._host.log(LogLevel.INFO, str(message))

    def warn(self, message: object) -> None:
        """Log at :attr:`LogLevel.WARN`."""
        self._host.log(LogLevel.WARN, str(message))

    warning = warn

    def error(self, message: object) -> None:
        """Log at :attr:`LogLevel.ERROR`."""
        self._host.log(LogLevel.ERROR, str(message))


_UNPARSED = object()


class Context:
    """What an operation sees of its call: the execution it belongs to and the
    host services. The SDK passes one as the first argument of every operation.

    ``upstream`` and ``config`` are parsed from JSON on first use.
    """

    def __init__(self, execution: Any, host: HostServices) -> None:
        self._exec = execution
        self._host = host
        self._upstream: Any = _UNPARSED
        self._config: Any = _UNPARSED
        self._metrics: list[tuple[str, float]] = []
        self.log = Log(host)
        """Logging to the host: ``ctx.log.info(msg)``, ``.debug``, ``.warn``,
        ``.error``, ``.trace``, or ``ctx.log(level, msg)``."""

    @property
    def operation(self) -> str:
        """The operation being run."""
        return self._exec.operation

    @property
    def execution_id(self) -> str:
        """Unique id of this execution."""
        return self._exec.execution_id

    @property
    def workflow_id(self) -> Optional[str]:
        """The workflow this call is a step of, if any."""
        return self._exec.workflow_id

    @property
    def step_id(self) -> Optional[str]:
        """The step of :attr:`workflow_id` this call runs, if any."""
        return self._exec.step_id

    @property
    def task_id(self) -> Optional[str]:
        """The scheduled task this call runs, if any."""
        return self._exec.task_id

    @property
    def schedule(self) -> Optional[dict]:
        """The schedule that fired this call, if one did: ``{"id", "fire_time_ms",
        "fire_time"}`` (the scheduled fire time, not the start time: a late or
        caught-up run sees its own). Set by the host only."""
        info = getattr(self._exec, "schedule", None)
        if info is None:
            return None
        return {"id": info.id, "fire_time_ms": info.fire_time_ms, "fire_time": info.fire_time}

    @property
    def attempt(self) -> int:
        """1 for the first attempt, 2 for the first retry, and so on."""
        return self._exec.attempt

    @property
    def deadline_ms(self) -> Optional[int]:
        """The call's deadline in milliseconds since the Unix epoch, if any."""
        return self._exec.deadline_ms

    def remaining_ms(self) -> Optional[int]:
        """Milliseconds left until :attr:`deadline_ms` (0 once past), or ``None`` without a deadline."""
        if self._exec.deadline_ms is None:
            return None
        return max(0, int(self._exec.deadline_ms - time.time() * 1000))

    @property
    def upstream(self) -> dict:
        """Outputs of upstream steps, keyed by step id (``{}`` outside a workflow).

        Raises:
            PluginError: invalid-input if the host sent text that is not a JSON object.
        """
        if self._upstream is _UNPARSED:
            value = _parse("upstream", self._exec.upstream)
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise PluginError.invalid_input("upstream must be a JSON object")
            self._upstream = value
        return self._upstream

    @property
    def config(self) -> Any:
        """The plugin's configuration: the ``[config]`` table of its manifest, as
        parsed JSON (``{}`` when there is none).

        Raises:
            PluginError: invalid-input if the host sent text that is not JSON.
        """
        if self._config is _UNPARSED:
            value = _parse("config", self._exec.config)
            self._config = {} if value is None else value
        return self._config

    def state_get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` in the execution's shared state, or ``default`` when unset.

        Values are JSON: what :meth:`state_set` stored (from this plugin or
        another, Rust or Python) comes back decoded — a number as ``int`` or
        ``float``, an object as a ``dict``, a string as ``str``.
        """
        text = self._host.state_get(key)
        if text is None:
            return default
        try:
            return json.loads(text)
        except ValueError:
            return text

    def state_set(self, key: str, value: Any) -> None:
        """Write ``key`` of the execution's shared state; ``value`` is JSON-encoded
        (any JSON-serialisable value: a ``str`` is stored as a JSON string), so
        every plugin of the execution reads the same value.

        Raises:
            TypeError: ``value`` is not JSON-serialisable.
            ValueError: ``value`` holds NaN or an infinity.
        """
        self._host.state_set(key, json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":")))

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress: ``fraction`` of the work done, clamped to 0.0..1.0, and a message."""
        f = float(fraction)
        self._host.report_progress(0.0 if math.isnan(f) else min(1.0, max(0.0, f)), str(message))

    def is_cancelled(self) -> bool:
        """Whether the host has asked this execution to stop (a cancel or its deadline).

        A component is also stopped at its deadline without asking; polling
        this lets a long operation stop cleanly with :meth:`check_cancelled`.
        """
        return self._host.is_cancelled()

    def check_cancelled(self) -> None:
        """Raise a cancelled :class:`PluginError` once the host has asked to stop;
        call it in long loops.

        Raises:
            PluginError: kind cancelled, when :meth:`is_cancelled`.
        """
        if self._host.is_cancelled():
            raise PluginError.cancelled()

    def metric(self, name: str, value: float) -> None:
        """Report a named number with the result, e.g. ``ctx.metric("rows", 1461)``
        (shown by ``plexus call`` and kept with a workflow step's record).

        Raises:
            TypeError: ``value`` is not a number.
            ValueError: ``value`` is NaN or infinite.
        """
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"metric `{name}`: {value!r} is not a number")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"metric `{name}`: {number} is not finite")
        self._metrics.append((str(name), number))

    def start_workflow(self, workflow: str, inputs: Optional[dict] = None) -> str:
        """Start registered workflow ``workflow`` with ``inputs``; returns the
        new execution's id at once (it runs on its own). Needs the
        ``orchestration`` capability and the manifest's grant
        (``[permissions] orchestration = true``), and a daemon.

        Raises:
            PluginError: not-found for an unknown workflow, invalid-input for
                inputs that do not fit, failed when refused.
        """
        return self._host.orchestrate({"op": "start-workflow", "workflow": workflow, "inputs": inputs or {}})

    def execution_status(self, execution_id: str) -> dict:
        """The status of execution ``execution_id``: the HTTP API's execution view.

        Raises:
            PluginError: not-found for an unknown execution, failed when refused.
        """
        return self._host.orchestrate({"op": "execution-status", "execution": execution_id})

    def create_schedule(self, spec: dict) -> str:
        """Create a schedule from ``spec`` (the body of ``POST /v1/schedules``);
        returns its id. It belongs to this plugin.

        Raises:
            PluginError: invalid-input for a bad spec, failed when refused.
        """
        return self._host.orchestrate({"op": "create-schedule", "spec": spec})

    def cancel_schedule(self, schedule_id: str) -> None:
        """Delete schedule ``schedule_id``, which this plugin created.

        Raises:
            PluginError: not-found for another's or an unknown schedule.
        """
        self._host.orchestrate({"op": "cancel-schedule", "schedule": schedule_id})

    def create_artifact(self, name: str, media_type: Optional[str] = None) -> ArtifactWriter:
        """Begin artifact ``name`` (1 to 128 of ``A-Z a-z 0-9 . _ -``) of
        ``media_type``: bytes stored once by the host, by reference, instead of
        in the output (contract 0.4). ``with ctx.create_artifact("rows") as out:
        out.write(...)``; the step's record lists it as ``artifacts.<name>``.

        Raises:
            PluginError: invalid-input for a bad name, failed when the host has
                no artifact store or the call wrote 64 already.
        """
        return ArtifactWriter(self._host, self._host.artifact_create(str(name), media_type))

    def open_artifact(self, reference: dict) -> ArtifactReader:
        """Open the artifact ``reference`` names (e.g. a parameter given
        ``${{ steps.load.artifacts.rows }}``) for reading.

        Raises:
            PluginError: not-found when it is not this execution's (or an
                execution it descends from), invalid-input for a value that is
                not a reference.
        """
        if not is_artifact(reference):
            raise PluginError.invalid_input(f"not an artifact reference: {reference!r}")
        return ArtifactReader(self._host, self._host.artifact_open(json.dumps(reference)))

    def read_rows(self, rows: Any) -> list:
        """Rows given inline (a list of objects) or as an artifact of JSON lines
        (a reference): the Rust SDK's ``plexus_sdk::Rows``.

        Raises:
            PluginError: invalid-input for a line that is not JSON, or a value
                that is neither.
        """
        if isinstance(rows, list):
            return rows
        out = []
        for n, line in enumerate(self.open_artifact(rows), start=1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError as e:
                    raise PluginError.invalid_input(f"artifact `{rows.get('name')}` line {n}: not JSON: {e}") from None
        return out

    def write_rows(self, name: str, rows: Any) -> dict:
        """Write ``rows`` (JSON objects) as artifact ``name`` of JSON lines
        (``application/x-ndjson``); returns its reference."""
        with self.create_artifact(name, "application/x-ndjson") as out:
            for row in rows:
                out.write(json.dumps(row, allow_nan=False, ensure_ascii=False, separators=(",", ":")) + "\n")
        assert out.reference is not None
        return out.reference

    @property
    def metrics(self) -> list[tuple[str, float]]:
        """The metrics reported so far in this call, in order (a copy)."""
        return list(self._metrics)
