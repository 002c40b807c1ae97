"""The author-facing API: :class:`Plugin`, its operations and their :class:`Example`\\ s."""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

from .context import CallOutput, Context, HostServices, LogLevel
from .errors import ErrorKind, PluginError, from_exception
from .schema import Invalid, Params, first_paragraph, output_schema_of, params_of

__all__ = ["CONTRACT_VERSION", "Example", "Operation", "Plugin", "capability"]

CONTRACT_VERSION = "0.4.0"
"""The contract version this SDK implements: the version of the WIT package
``plexus:plugin`` it builds against. A plugin built against 0.3.x runs on any
host implementing 0.3.y, y >= x."""


class capability:
    """Capability tags a plugin may declare (``Plugin(capabilities=[...])``)."""

    WORKFLOW_STEP = "workflow-step"
    """The plugin's operations can run as workflow steps."""
    SCHEDULED_TASK = "scheduled-task"
    """The plugin's operations can run as scheduled tasks."""
    CONTEXT_MANAGEMENT = "context-management"
    """The plugin reads or writes the execution's shared state."""
    ORCHESTRATION = "orchestration"
    """The plugin starts workflows, reads executions and creates or cancels its
    schedules (``ctx.start_workflow`` and friends; its manifest must grant it
    too: ``[permissions] orchestration = true``)."""


_NO_OUTPUT = object()


class Example:
    """An example of an operation: parameters and what the call gives.

    ``Example({"values": [1, 3]}, {"mean": 2.0})`` expects that output
    (compared as JSON, ``2 == 2.0``); ``Example({"values": []},
    error=ErrorKind.INVALID_INPUT)`` expects an error of that kind;
    ``Example(params)`` alone expects only success.
    :meth:`plexus_sdk.testing.TestHost.check_examples` runs them all.

    Args:
        params: the parameters (a JSON value, usually a dict).
        output: the output expected (any JSON value, ``None`` is ``null``).
        error: the error kind expected instead of an output.
        description: one line: what the example shows.

    Raises:
        ValueError: both ``output`` and ``error`` given.
        TypeError: ``params`` or ``output`` is not JSON-serialisable.
    """

    __slots__ = ("params", "output", "error", "description")

    def __init__(
        self,
        params: Any,
        output: Any = _NO_OUTPUT,
        *,
        error: ErrorKind | str | None = None,
        description: str = "",
    ) -> None:
        if output is not _NO_OUTPUT and error is not None:
            raise ValueError("an example expects an output or an error, not both")
        for what, value in (("params", params), ("output", None if output is _NO_OUTPUT else output)):
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise TypeError(f"example {what} are not JSON: {e}") from None
        self.params = params
        self.output = output
        self.error = ErrorKind(error) if error is not None else None
        self.description = description

    @property
    def expects_output(self) -> bool:
        """Whether the example names an output (else an error kind, or only success)."""
        return self.output is not _NO_OUTPUT

    def __repr__(self) -> str:
        parts = [repr(self.params)]
        if self.expects_output:
            parts.append(repr(self.output))
        if self.error is not None:
            parts.append(f"error={self.error.value!r}")
        if self.description:
            parts.append(f"description={self.description!r}")
        return f"Example({', '.join(parts)})"


@dataclass
class Operation:
    """One operation of a plugin, as :meth:`Plugin.operation` registered it."""

    name: str
    """Name used to call it."""
    description: str
    """One line for ``plexus plugins info``."""
    func: Callable
    """The function: ``func(ctx, **params)``, or ``func(ctx, params)`` when raw."""
    params: Optional[Params]
    """The derived parameters (``None`` for a raw operation)."""
    params_schema: Optional[dict]
    """JSON Schema of the parameters, as declared in the metadata."""
    output_schema: Optional[dict]
    """JSON Schema of the output, as declared in the metadata."""
    examples: tuple[Example, ...]
    """Examples, checked by :meth:`plexus_sdk.testing.TestHost.check_examples`."""
    raw: bool = False
    """Whether the function takes the parameters as one JSON value."""


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))


class Plugin:
    """A Plexus plugin: its self-description plus its operations.

    Create one at module level and register operations with
    :meth:`operation`; ``python -m plexus_sdk build`` turns the module into a
    WASM component, and :class:`plexus_sdk.testing.TestHost` runs it in
    CPython::

        plugin = Plugin(id="example.stats", name="Stats", version="0.1.0",
                        capabilities=[capability.WORKFLOW_STEP])

        @plugin.operation(examples=[Example({"values": [1, 3]}, {"mean": 2.0})])
        def mean(ctx: Context, values: list[float]) -> dict:
            \"\"\"Mean of values.\"\"\"
            return {"mean": sum(values) / len(values)}

    Args:
        id: unique id, reverse-DNS style, e.g. ``com.example.stats``.
        version: semantic version of the plugin, e.g. ``0.1.0``.
        name: human-readable name (default: the id).
        description: what the plugin does.
        authors: e.g. ``["Ada <ada@example.org>"]``.
        license: SPDX licence expression, if any.
        capabilities: tags, see :class:`capability`.

    The contract version is the SDK's (:data:`CONTRACT_VERSION`).

    Raises:
        ValueError: an empty or blank ``id`` or ``version``.
    """

    def __init__(
        self,
        id: str,
        *,
        version: str,
        name: Optional[str] = None,
        description: str = "",
        authors: Iterable[str] = (),
        license: Optional[str] = None,
        capabilities: Iterable[str] = (),
    ) -> None:
        for what, value in (("id", id), ("version", version)):
            if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
                raise ValueError(f"plugin {what} {value!r}: a non-empty string without spaces")
        self.id = id
        self.version = version
        self.name = name if name is not None else id
        self.description = description
        self.authors = [str(a) for a in authors]
        self.license = license
        self.capabilities = [str(c) for c in capabilities]
        self._operations: dict[str, Operation] = {}
        self._on_initialize: Optional[Callable[[Any], None]] = None
        self._on_cleanup: Optional[Callable[[], None]] = None

    def on_initialize(self, func: Callable[[Any], None]) -> Callable[[Any], None]:
        """Register the lifecycle hook run before the first call (Framework0's
        ``initialize(config)``), as ``@plugin.on_initialize``; it gets the
        manifest's ``[config]`` (parsed JSON, ``{}`` without one). A component
        instance per call (the default) runs it before its call; a reused one
        before its first call. Raise to fail: the call fails with the error.

        Raises:
            ValueError: a hook is registered already.
        """
        if self._on_initialize is not None:
            raise ValueError(f"plugin `{self.id}`: on_initialize registered twice")
        self._on_initialize = func
        return func

    def on_cleanup(self, func: Callable[[], None]) -> Callable[[], None]:
        """Register the lifecycle hook run when the host discards the instance
        (Framework0's ``cleanup()``), as ``@plugin.on_cleanup``: after the call of
        an instance per call, when a reused instance retires. Best effort: its
        exceptions are logged by nobody and ignored.

        Raises:
            ValueError: a hook is registered already.
        """
        if self._on_cleanup is not None:
            raise ValueError(f"plugin `{self.id}`: on_cleanup registered twice")
        self._on_cleanup = func
        return func

    def _initialize(self, config_text: str) -> None:
        """Run the ``on_initialize`` hook with the config (JSON text).

        Raises:
            PluginError: every failure, as data.
        """
        if self._on_initialize is None:
            return
        try:
            config = json.loads(config_text) if config_text else None
        except ValueError as e:
            raise PluginError.invalid_input(f"config is not valid JSON: {e}") from None
        try:
            self._on_initialize({} if config is None else config)
        except PluginError:
            raise
        except Exception as e:
            raise from_exception(e, "initialize") from e

    def _cleanup(self) -> None:
        """Run the ``on_cleanup`` hook, ignoring its exceptions."""
        if self._on_cleanup is None:
            return
        try:
            self._on_cleanup()
        except Exception:
            pass

    def operation(
        self,
        func: Optional[Callable] = None,
        *,
        name: Optional[str] = None,
        description: Optional[str] = None,
        examples: Sequence[Example] = (),
        params_schema: Optional[dict] = None,
        output_schema: Optional[dict] = None,
        raw: bool = False,
    ) -> Callable:
        """Register an operation: use as ``@plugin.operation`` or ``@plugin.operation(...)``.

        The function takes the :class:`~plexus_sdk.Context` first, then the
        parameters by name, typed with hints (see :mod:`plexus_sdk.schema`).
        The SDK checks incoming parameters against the hints before the call
        (a misspelled or unknown key, a missing required key or a wrong type is
        an invalid-input error naming the field) and passes them as keyword
        arguments. It returns any JSON-serialisable value: the call's output.

        Args:
            func: the function (when used without arguments).
            name: the operation's name (default: the function's).
            description: one line (default: the docstring's first paragraph).
            examples: :class:`Example`\\ s of calls.
            params_schema: the parameters' JSON Schema to declare instead of
                the derived one (the hints still do the checking).
            output_schema: the output's JSON Schema (default: derived from the
                return annotation, none without one).
            raw: pass the parameters as one JSON value (``func(ctx, params)``),
                unchecked: ``null`` or no parameters give ``{}``. Declares no
                params schema unless ``params_schema`` is given.

        Returns:
            The function, unchanged (call it directly in tests if you like).

        Raises:
            TypeError: a hint has no JSON Schema, the function has no context
                parameter, or a schema is not a dict.
            ValueError: the name is registered already.
        """

        def register(f: Callable) -> Callable:
            op_name = name or f.__name__
            if op_name in self._operations:
                raise ValueError(f"plugin `{self.id}`: operation `{op_name}` registered twice")
            for what, schema in (("params_schema", params_schema), ("output_schema", output_schema)):
                if schema is not None and not isinstance(schema, dict):
                    raise TypeError(f"operation `{op_name}`: {what} must be a dict (a JSON Schema)")
            if raw:
                params = None
                declared = params_schema
            else:
                params = params_of(f, op_name)
                declared = params_schema if params_schema is not None else params.schema
            out = output_schema if output_schema is not None else output_schema_of(f, op_name)
            for ex in examples:
                if not isinstance(ex, Example):
                    raise TypeError(f"operation `{op_name}`: examples must be Example(...), got {ex!r}")
            text = description if description is not None else first_paragraph(f.__doc__)
            self._operations[op_name] = Operation(
                op_name, text, f, params, declared, out, tuple(examples), raw
            )
            return f

        if func is not None:
            return register(func)
        return register

    @property
    def operations(self) -> tuple[Operation, ...]:
        """The operations, in registration order."""
        return tuple(self._operations.values())

    def metadata(self) -> dict:
        """The plugin's metadata as JSON data: what the host gets from ``describe``
        (schemas as JSON values)::

            {"id", "name", "version", "description", "authors", "license",
             "contract_version", "capabilities",
             "operations": [{"name", "description", "params_schema", "output_schema"}]}
        """
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "authors": list(self.authors),
            "license": self.license,
            "contract_version": CONTRACT_VERSION,
            "capabilities": list(self.capabilities),
            "operations": [
                {
                    "name": op.name,
                    "description": op.description,
                    "params_schema": op.params_schema,
                    "output_schema": op.output_schema,
                }
                for op in self._operations.values()
            ],
        }

    def _call(self, execution: Any, host: HostServices) -> CallOutput:
        """Run ``execution.operation`` (an :class:`~plexus_sdk.ExecutionContext`
        or the WIT record: the same fields) with ``host``'s services: what both
        the component and the test host call.

        Raises:
            PluginError: every failure, as data (never another exception).
        """
        op = self._operations.get(execution.operation)
        if op is None:
            raise PluginError.unsupported_operation(execution.operation)
        text = execution.parameters
        try:
            params = json.loads(text) if text else None
        except ValueError as e:
            raise PluginError.invalid_input(f"parameters of `{op.name}` are not valid JSON: {e}") from None
        ctx = Context(execution, host)
        try:
            if op.raw:
                result = op.func(ctx, {} if params is None else params)
            else:
                assert op.params is not None
                try:
                    kwargs = op.params.check(params)
                except Invalid as e:
                    raise PluginError.invalid_input(f"parameters of `{op.name}`: {e}") from None
                result = op.func(ctx, **kwargs)
        except PluginError:
            raise
        except Exception as e:
            error = from_exception(e, op.name)
            # The traceback helps the author; the error itself is data.
            level = LogLevel.ERROR if error.kind is ErrorKind.FAILED else LogLevel.DEBUG
            host.log(level, "".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip())
            raise error from e
        try:
            output = _dumps(result)
        except (TypeError, ValueError) as e:
            raise PluginError.failed(f"output of `{op.name}` is not JSON: {e}") from None
        return CallOutput(output, ctx.metrics)

    def _guest_class(self) -> type:
        """The ``Guest`` class componentize-py exports for this plugin (imports
        ``wit_world``: only inside a component build)."""
        from ._component import guest_class

        return guest_class(self)

    def __repr__(self) -> str:
        return f"Plugin(id={self.id!r}, version={self.version!r}, operations={list(self._operations)})"
