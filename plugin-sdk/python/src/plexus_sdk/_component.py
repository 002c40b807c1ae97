"""The component glue: a :class:`~plexus_sdk.Plugin` as the WIT ``guest`` export.

Used only inside a component build: the entry module ``python -m plexus_sdk
build`` generates is::

    import app
    from plexus_sdk._component import plugin_of
    Guest = plugin_of(app)._guest_class()

componentize-py runs it at build time (pre-initialisation) and snapshots the
result, so everything here, the metadata included, is computed once at build
time; each call then starts from that snapshot in a fresh instance. Modules
must be imported at build time: nothing here imports lazily at call time.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any, Optional

from .context import LogLevel
from .errors import ErrorKind, PluginError
from .plugin import Plugin

__all__ = ["guest_class", "plugin_of"]


def plugin_of(module: ModuleType) -> Plugin:
    """The one :class:`Plugin` object defined at the top level of ``module``.

    Raises:
        LookupError: the module defines none, or more than one (named).
    """
    found: dict[int, tuple[str, Plugin]] = {}
    for name, value in vars(module).items():
        if isinstance(value, Plugin) and id(value) not in found:
            found[id(value)] = (name, value)
    if not found:
        raise LookupError(
            f"module `{module.__name__}` defines no Plugin object: add one at module level, "
            'e.g. plugin = Plugin(id="com.example.name", version="0.1.0")'
        )
    if len(found) > 1:
        names = ", ".join(sorted(name for name, _ in found.values()))
        raise LookupError(f"module `{module.__name__}` defines {len(found)} Plugin objects ({names}): keep one")
    return next(iter(found.values()))[1]


def guest_class(plugin: Plugin) -> type:
    """The ``Guest`` class (a subclass of ``wit_world.exports.Guest``) serving
    ``plugin``: ``describe`` returns its metadata; ``call`` runs an operation
    and returns a ``CallOutput`` or raises ``Err(PluginError)``. It never lets
    an exception escape (that would trap the component)."""
    from componentize_py_types import Err
    from wit_world import exports
    from wit_world.imports import host as wit_host
    from wit_world.imports import types as wit

    meta = plugin.metadata()
    metadata = wit.Metadata(
        id=meta["id"],
        name=meta["name"],
        version=meta["version"],
        description=meta["description"],
        authors=meta["authors"],
        license=meta["license"],
        contract_version=meta["contract_version"],
        capabilities=meta["capabilities"],
        operations=[
            wit.Operation(
                name=op["name"],
                description=op["description"],
                params_schema=None if op["params_schema"] is None else json.dumps(op["params_schema"]),
                output_schema=None if op["output_schema"] is None else json.dumps(op["output_schema"]),
            )
            for op in meta["operations"]
        ],
    )
    levels = {level: getattr(wit.LogLevel, level.name) for level in LogLevel}
    kinds = {kind: getattr(wit.ErrorKind, kind.name) for kind in ErrorKind}
    from_kinds = {wit_kind: kind for kind, wit_kind in kinds.items()}

    def answered(request: Any) -> Any:
        """The value of a host function returning ``result<T, plugin-error>``
        (componentize-py raises ``Err`` for the error), errors as PluginError."""
        try:
            return request()
        except Err as e:
            error = e.value
            raise PluginError(from_kinds[error.kind], error.message, retryable=error.retryable) from None

    class WitHost:
        """:class:`~plexus_sdk.context.HostServices` over the ``plexus:plugin/host`` imports."""

        def log(self, level: LogLevel, message: str) -> None:
            wit_host.log(levels[level], message)

        def state_get(self, key: str) -> Optional[str]:
            return wit_host.state_get(key)

        def state_set(self, key: str, value: str) -> None:
            wit_host.state_set(key, value)

        def report_progress(self, fraction: float, message: str) -> None:
            wit_host.report_progress(fraction, message)

        def is_cancelled(self) -> bool:
            return wit_host.is_cancelled()

        def orchestrate(self, request: dict) -> Any:
            op = request.get("op")
            if op == "start-workflow":
                inputs = json.dumps(request.get("inputs") or {})
                return answered(lambda: wit_host.start_workflow(request["workflow"], inputs))
            if op == "execution-status":
                return json.loads(answered(lambda: wit_host.execution_status(request["execution"])))
            if op == "create-schedule":
                spec = json.dumps(request.get("spec"))
                return answered(lambda: wit_host.create_schedule(spec))
            if op == "cancel-schedule":
                answered(lambda: wit_host.cancel_schedule(request["schedule"]))
                return None
            raise PluginError.invalid_input(f"unknown orchestration request {op!r}")

        def artifact_create(self, name: str, media_type: Optional[str]) -> int:
            return answered(lambda: wit_host.artifact_create(name, media_type))

        def artifact_write(self, writer: int, data: bytes) -> None:
            answered(lambda: wit_host.artifact_write(writer, data))

        def artifact_finish(self, writer: int) -> str:
            return answered(lambda: wit_host.artifact_finish(writer))

        def artifact_open(self, reference: str) -> int:
            return answered(lambda: wit_host.artifact_open(reference))

        def artifact_read(self, reader: int, max_bytes: int) -> bytes:
            return bytes(answered(lambda: wit_host.artifact_read(reader, max_bytes)))

    services = WitHost()

    def to_wit(error: PluginError) -> Any:
        return Err(wit.PluginError(kind=kinds[error.kind], message=error.message, retryable=error.retryable))

    class Guest(exports.Guest):
        """The ``plexus:plugin/guest`` export of plugin ``{id}``."""

        def describe(self) -> Any:
            return metadata

        def initialize(self, config: str) -> None:
            try:
                plugin._initialize(config)
            except PluginError as e:
                raise to_wit(e) from None
            except Exception as e:  # an SDK bug: still data, never a trap
                raise to_wit(PluginError.failed(f"plexus_sdk: {type(e).__name__}: {e}")) from None

        def cleanup(self) -> None:
            plugin._cleanup()

        def call(self, ctx: Any) -> Any:
            try:
                out = plugin._call(ctx, services)
            except PluginError as e:
                raise to_wit(e) from None
            except Exception as e:  # an SDK bug: still data, never a trap
                raise to_wit(PluginError.failed(f"plexus_sdk: {type(e).__name__}: {e}")) from None
            return wit.CallOutput(output=out.output, metrics=[wit.Metric(name=n, value=v) for n, v in out.metrics])

    Guest.__doc__ = f"The plexus:plugin/guest export of plugin `{plugin.id}`."
    return Guest
