"""An in-process harness: test a plugin's operations in plain CPython, without
a host or a component build.

:class:`TestHost` runs calls through the same dispatch as the component
(parameters as JSON text, their checks, error mapping, output to JSON text)
and records what the plugin did with the host services::

    from plexus_sdk.testing import TestHost
    from app import plugin

    def test_examples():
        TestHost(plugin).check_examples()

    def test_mean():
        host = TestHost(plugin)
        assert host.call("mean", {"values": [1, 3]}) == {"mean": 2.0}
        assert host.metrics == {"values": 2.0}
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Callable, Optional

from .context import ExecutionContext, LogLevel, ScheduleInfo
from .errors import PluginError
from .plugin import Plugin

__all__ = ["TestHost", "json_equal"]


def _json_text(what: str, value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} are not JSON: {e}") from None


def json_equal(a: Any, b: Any) -> bool:
    """Whether two JSON values are equal: numbers by value (``2 == 2.0``), but
    booleans never equal numbers, and objects and arrays compared deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


class TestHost:
    """Runs a plugin's operations in-process, recording host-service use.

    Args:
        plugin: the plugin to run.
        config: the plugin configuration every call sees (``ctx.config``),
            like the ``[config]`` table of a manifest; default ``{}``.
        state: the execution's shared state to start from (decoded values).

    Attributes:
        logs: log records, in order: ``(LogLevel, message)`` pairs
            (``LogLevel`` members equal their names: ``("info", "hi")`` matches).
        state: the execution's shared state, decoded: ``{key: value}``. It
            survives across calls, as in one execution; set or clear it freely.
        progress: progress reports, in order: ``(fraction, message)``.
        metrics: the metrics of the last successful call, ``{name: value}``
            (the last value of a name reported twice).
        cancelled: what ``ctx.is_cancelled()`` answers; see :meth:`cancel`.
        orchestrated: the orchestration requests the plugin made, in order
            (``{"op": "start-workflow", ...}``).
        orchestrator: what answers them: a function of the request returning
            the answer or raising :class:`PluginError` (default: none, so every
            request fails as on a host without a daemon).
        artifacts: the artifacts stored, by digest (``"sha256:…"`` → bytes),
            as the host's content-addressed store holds them; see
            :meth:`put_artifact`. ``written`` lists the references the calls finished.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        plugin: Plugin,
        *,
        config: Any = None,
        state: Optional[dict] = None,
        orchestrator: Optional[Callable[[dict], Any]] = None,
    ) -> None:
        if not isinstance(plugin, Plugin):
            raise TypeError(f"TestHost needs a Plugin, got {type(plugin).__name__}")
        self.plugin = plugin
        self.config = {} if config is None else config
        self.logs: list[tuple[LogLevel, str]] = []
        self.state: dict[str, Any] = dict(state or {})
        self.progress: list[tuple[float, str]] = []
        self.metrics: dict[str, float] = {}
        self.cancelled = False
        self.orchestrated: list[dict] = []
        self.orchestrator = orchestrator
        self.artifacts: dict[str, bytes] = {}
        self.written: list[dict] = []
        self._writers: dict[int, tuple[str, Optional[str], bytearray]] = {}
        self._readers: dict[int, list] = {}
        self._next = 0

    # HostServices: what the plugin's Context calls.

    def log(self, level: LogLevel, message: str) -> None:
        """Host service: record a log line in :attr:`logs`."""
        self.logs.append((level, message))

    def state_get(self, key: str) -> Optional[str]:
        """Host service: ``key`` of :attr:`state` as JSON text, ``None`` when unset."""
        if key not in self.state:
            return None
        return json.dumps(self.state[key])

    def state_set(self, key: str, value: str) -> None:
        """Host service: store JSON text ``value`` in :attr:`state`, decoded (as
        the host does: text that is not JSON is kept as a string)."""
        try:
            self.state[key] = json.loads(value)
        except ValueError:
            self.state[key] = value

    def report_progress(self, fraction: float, message: str) -> None:
        """Host service: record a progress report in :attr:`progress`."""
        self.progress.append((fraction, message))

    def is_cancelled(self) -> bool:
        """Host service: :attr:`cancelled`."""
        return self.cancelled

    def orchestrate(self, request: dict) -> Any:
        """Host service: record ``request`` in :attr:`orchestrated` and answer
        it with :attr:`orchestrator`.

        Raises:
            PluginError: failed without an orchestrator; what it raises.
        """
        self.orchestrated.append(json.loads(json.dumps(request)))
        if self.orchestrator is None:
            raise PluginError.failed("this host offers no orchestration services")
        return self.orchestrator(request)

    def artifact_create(self, name: str, media_type: Optional[str]) -> int:
        """Host service: begin an artifact (kept in memory)."""
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}", name or ""):
            raise PluginError.invalid_input(f"artifact name `{name}`: use A-Z a-z 0-9 . _ - (not first `.`), at most 128")
        self._next += 1
        self._writers[self._next] = (name, media_type, bytearray())
        return self._next

    def artifact_write(self, writer: int, data: bytes) -> None:
        """Host service: append to a writer."""
        if writer not in self._writers:
            raise PluginError.not_found(f"no artifact writer {writer}")
        self._writers[writer][2].extend(data)

    def artifact_finish(self, writer: int) -> str:
        """Host service: store a writer's bytes by digest; its reference as JSON text."""
        if writer not in self._writers:
            raise PluginError.not_found(f"no artifact writer {writer}")
        name, media_type, data = self._writers.pop(writer)
        reference = self.put_artifact(name, bytes(data), media_type)
        self.written.append(reference)
        return json.dumps(reference)

    def artifact_open(self, reference: str) -> int:
        """Host service: open a stored artifact."""
        digest = json.loads(reference).get("artifact")
        if digest not in self.artifacts:
            raise PluginError.not_found(f"artifact {digest} is not one of this execution's")
        self._next += 1
        self._readers[self._next] = [digest, 0]
        return self._next

    def artifact_read(self, reader: int, max_bytes: int) -> bytes:
        """Host service: the next chunk of a reader."""
        if reader not in self._readers:
            raise PluginError.not_found(f"no artifact reader {reader}")
        digest, at = self._readers[reader]
        chunk = self.artifacts[digest][at : at + min(max_bytes, 4 << 20)]
        self._readers[reader][1] = at + len(chunk)
        return chunk

    def put_artifact(self, name: str, data: bytes, media_type: Optional[str] = None) -> dict:
        """Store ``data`` as artifact ``name`` (an input for a call under test);
        returns its reference."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.artifacts[digest] = bytes(data)
        reference = {"artifact": digest, "name": name, "bytes": len(data)}
        if media_type is not None:
            reference["media_type"] = media_type
        return reference

    def initialize(self) -> None:
        """Run the plugin's ``on_initialize`` hook with :attr:`config`, as the
        host does before the first call.

        Raises:
            PluginError: what the hook raised (mapped as the component maps it).
        """
        self.plugin._initialize(_json_text("config", self.config))

    def cleanup(self) -> None:
        """Run the plugin's ``on_cleanup`` hook, as the host does at the end."""
        self.plugin._cleanup()

    # The harness.

    def cancel(self) -> None:
        """Ask the execution to stop: from now on ``ctx.is_cancelled()`` is true
        and ``ctx.check_cancelled()`` raises (set ``cancelled = False`` to undo)."""
        self.cancelled = True

    def describe(self) -> dict:
        """The metadata the plugin declares, as the host would read it (JSON data
        with the operations' schemas)."""
        return json.loads(json.dumps(self.plugin.metadata()))

    def call(
        self,
        operation: str,
        params: Any = None,
        *,
        upstream: Optional[dict] = None,
        attempt: int = 1,
        deadline_ms: Optional[int] = None,
        schedule: Optional[ScheduleInfo] = None,
    ) -> Any:
        """Call ``operation`` with ``params`` (any JSON value; ``None`` is ``null``,
        meaning all defaults) and return its output, decoded from the JSON text
        the host would get. Metrics go to :attr:`metrics`.

        Args:
            operation: the operation's name.
            params: its parameters.
            upstream: outputs of upstream steps, keyed by step id.
            attempt: 1 for the first attempt, 2 for the first retry, ...
            deadline_ms: the call's deadline in ms since the Unix epoch.
            schedule: the schedule that fired the call (``ctx.schedule``).

        Raises:
            PluginError: the plugin's error (an exception the operation raised,
                mapped as the component maps it; an unknown operation is
                unsupported-operation).
            TypeError: ``params``, ``upstream`` or the config are not JSON.
        """
        execution = ExecutionContext(
            operation=operation,
            parameters=_json_text("parameters", params),
            attempt=attempt,
            deadline_ms=deadline_ms,
            upstream=_json_text("upstream outputs", {} if upstream is None else upstream),
            config=_json_text("config", self.config),
            schedule=schedule,
        )
        return self.call_with(execution)

    def call_with(self, execution: ExecutionContext) -> Any:
        """Call with a whole :class:`~plexus_sdk.ExecutionContext` (its JSON
        text fields as the host sends them); returns the decoded output.

        Raises:
            PluginError: the plugin's error.
        """
        out = self.plugin._call(execution, self)
        self.metrics = dict(out.metrics)
        return json.loads(out.output)

    def check_examples(self) -> int:
        """Run every example of every operation, each in a fresh host with this
        one's config (empty state, not cancelled); returns how many ran.

        Raises:
            AssertionError: listing every example that did not hold, one per
                line, with its parameters, what it expected and what it got.
        """
        problems = []
        count = 0
        for op in self.plugin.operations:
            for ex in op.examples:
                count += 1
                host = TestHost(self.plugin, config=self.config)
                label = f"`{op.name}` example" + (f' "{ex.description}"' if ex.description else f" {count}")
                try:
                    got: Any = host.call(op.name, ex.params)
                    error: Optional[PluginError] = None
                except PluginError as e:
                    got, error = None, e
                if ex.error is not None:
                    if error is None:
                        problems.append(f"{label} with {json.dumps(ex.params)}: expected a `{ex.error}` error, got output {json.dumps(got)}")
                    elif error.kind is not ex.error:
                        problems.append(f"{label} with {json.dumps(ex.params)}: expected a `{ex.error}` error, got error {error}")
                elif error is not None:
                    want = f"output {json.dumps(ex.output)}" if ex.expects_output else "success"
                    problems.append(f"{label} with {json.dumps(ex.params)}: expected {want}, got error {error}")
                elif ex.expects_output and not json_equal(got, ex.output):
                    problems.append(
                        f"{label} with {json.dumps(ex.params)}: expected output {json.dumps(ex.output)}, got output {json.dumps(got)}"
                    )
        if problems:
            raise AssertionError(f"{len(problems)} of {count} examples did not hold:\n" + "\n".join(problems))
        return count

