"""plexus_sdk: write a Plexus plugin in Python, test it in CPython, build it
into a WASM component.

A plugin is one :class:`Plugin` object with operations: functions that take
a :class:`Context` and typed parameters and return JSON-serialisable data.
``python -m plexus_sdk build`` turns the module into a component of the
``plexus:plugin/plexus-plugin`` world (with componentize-py, which bundles
CPython 3.14 into it); the host runs it sandboxed like any WASM plugin.

A whole plugin, ``app.py``::

    from plexus_sdk import Context, Example, ErrorKind, Plugin, PluginError, capability

    plugin = Plugin(
        id="example.stats",
        name="Stats",
        version="0.1.0",
        description="Small statistics over lists of numbers",
        authors=["Ada <ada@example.org>"],
        license="Apache-2.0",
        capabilities=[capability.WORKFLOW_STEP],
    )

    @plugin.operation(examples=[
        Example({"values": [1, 3]}, {"mean": 2.0}),
        Example({"values": []}, error=ErrorKind.INVALID_INPUT, description="refuses no values"),
    ])
    def mean(ctx: Context, values: list[float], skip_nan: bool = False) -> dict:
        \"\"\"Mean of values.

        Args:
            values: the numbers.
            skip_nan: ignore NaN values.
        \"\"\"
        if not values:
            raise PluginError.invalid_input("`values` is empty")
        ctx.log.info(f"mean of {len(values)} values")
        ctx.metric("values", len(values))
        return {"mean": sum(values) / len(values)}

Its test, ``test_app.py`` (pytest)::

    from plexus_sdk.testing import TestHost
    from app import plugin

    def test_examples_hold():
        TestHost(plugin).check_examples()

Build and call it::

    python -m plexus_sdk build . --out target/stats.wasm
    plexus call --artifact target/stats.wasm mean --params '{"values": [1, 3]}'

Parameters are checked against the type hints before the function runs (see
:mod:`plexus_sdk.schema`); a mismatch is an invalid-input :class:`PluginError`
naming the field. Exceptions are data too: raise :class:`PluginError`, or let
an ordinary exception out and the SDK maps it (``ValueError``, ``TypeError``,
``KeyError`` → invalid-input; ``FileNotFoundError`` → not-found; others →
failed). The component never traps on a Python exception.
"""

from .context import (
    ArtifactReader,
    ArtifactWriter,
    CallOutput,
    Context,
    ExecutionContext,
    HostServices,
    Log,
    LogLevel,
    ScheduleInfo,
)
from .errors import ErrorKind, PluginError
from .plugin import CONTRACT_VERSION, Example, Operation, Plugin, capability

__version__ = "0.4.0"
"""The SDK's version (its contract version is :data:`CONTRACT_VERSION`)."""

__all__ = [
    "ArtifactReader",
    "ArtifactWriter",
    "CONTRACT_VERSION",
    "CallOutput",
    "Context",
    "ErrorKind",
    "Example",
    "ExecutionContext",
    "HostServices",
    "Log",
    "LogLevel",
    "Operation",
    "Plugin",
    "PluginError",
    "ScheduleInfo",
    "capability",
]
