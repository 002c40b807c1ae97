"""Plexus from Python: QtForge's PluginOrchestrator interface over the Plexus
plugin host and workflow engine, embedded in this process or a daemon's.

    import plexus
    from plexus.orchestration import PluginOrchestrator, Workflow, WorkflowStep

    with PluginOrchestrator(["target/plugins"]) as orchestrator:
        ...

See ``plexus.orchestration`` and the guide (host/python/README.md).
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Union

from . import _native, orchestration
from .errors import (
    AlreadyExistsError,
    DependencyNotSatisfiedError,
    ExecutionFailedError,
    Expected,
    InternalError,
    InvalidConfigurationError,
    InvalidStateError,
    NetworkError,
    NotFoundError,
    PluginError,
    PluginErrorCode,
    PluginNotFoundError,
    PluginTimeoutError,
    UnauthorizedError,
)
from .orchestration import PluginOrchestrator, create_orchestrator

__version__: str = _native.__version__

__all__ = [
    "orchestration",
    "PluginOrchestrator",
    "create_orchestrator",
    "Expected",
    "PluginError",
    "PluginErrorCode",
    "InvalidConfigurationError",
    "NotFoundError",
    "AlreadyExistsError",
    "InvalidStateError",
    "PluginNotFoundError",
    "DependencyNotSatisfiedError",
    "PluginTimeoutError",
    "ExecutionFailedError",
    "NetworkError",
    "UnauthorizedError",
    "InternalError",
    "enable_logging",
    "set_log_handler",
    "__version__",
]

_LEVELS = {"error": 40, "warning": 30, "warn": 30, "info": 20, "debug": 10, "trace": 5}


def _level(level: Union[int, str]) -> int:
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"level: one of {', '.join(_LEVELS)} or a number, got {level!r}") from None


def set_log_handler(handler: Optional[Callable[[int, str, str], object]], level: Union[int, str] = "info") -> None:
    """Send the host's log records (``tracing`` events of the engine, its
    plugins' ``ctx.log`` lines…) at ``level`` and above to
    ``handler(level, target, message)`` — ``level`` as :mod:`logging`
    numbers — called from a thread of its own; ``None`` stops. Records
    queue (at most 4096; beyond, they are dropped and counted) so a slow
    handler never holds the engine up."""
    _native.set_log_handler(handler, _level(level))


def enable_logging(level: Union[int, str] = "info") -> None:
    """Route the host's log records into :mod:`logging`, under the logger
    ``plexus.<target>``: ``plexus.plugin`` for plugins' own ``ctx.log``
    lines, ``plexus.plexus_daemon.core`` for the durable engine's…"""

    def emit(levelno: int, target: str, message: str) -> None:
        name = target[len("plexus::"):] if target.startswith("plexus::") else target
        logging.getLogger("plexus." + name.replace("::", ".")).log(levelno, "%s", message)

    set_log_handler(emit, level)
