"""Plugin errors: what an operation returns when it refuses or fails, as plain data.

A :class:`PluginError` crosses the component boundary as the WIT record
``plugin-error {kind, message, retryable}``. Any other exception an operation
raises is turned into one by :func:`from_exception`, so a Python plugin never
traps on an ordinary exception.
"""

from __future__ import annotations

import enum

__all__ = ["ErrorKind", "PluginError", "from_exception"]


class ErrorKind(str, enum.Enum):
    """Why a plugin refused or failed an operation (the WIT ``error-kind``).

    Members are strings with the kebab-case names used in JSON, WIT and
    messages: ``ErrorKind.INVALID_INPUT == "invalid-input"``.
    """

    INVALID_INPUT = "invalid-input"
    """The parameters or upstream data are not acceptable."""
    UNSUPPORTED_OPERATION = "unsupported-operation"
    """The plugin has no operation of that name."""
    NOT_FOUND = "not-found"
    """Something the operation needs does not exist."""
    FAILED = "failed"
    """The operation ran and failed."""
    CANCELLED = "cancelled"
    """The operation stopped because the host asked it to (contract 0.2)."""

    def __str__(self) -> str:
        return self.value


class PluginError(Exception):
    """An error a plugin returned, as plain data: a kind, a message and whether
    retrying the same call may succeed.

    Raise it from an operation (``raise PluginError.invalid_input("`rows` is
    empty")``); the host reports it as the call's error, and a workflow
    retries the step only when ``retryable`` is true. A trap, a timeout or a
    memory-limit hit is never a ``PluginError``: the host reports those as
    their own kinds.

    Args:
        kind: an :class:`ErrorKind` or its name (``"invalid-input"``).
        message: a message for people.
        retryable: whether retrying the same call may succeed.

    Raises:
        ValueError: ``kind`` is not an error kind.
    """

    def __init__(self, kind: ErrorKind | str, message: str, retryable: bool = False) -> None:
        self.kind = ErrorKind(kind)
        self.message = str(message)
        self.retryable = bool(retryable)
        super().__init__(self.message)

    @classmethod
    def invalid_input(cls, message: str, *, retryable: bool = False) -> PluginError:
        """:attr:`ErrorKind.INVALID_INPUT`: the parameters or upstream data are not acceptable."""
        return cls(ErrorKind.INVALID_INPUT, message, retryable)

    @classmethod
    def not_found(cls, message: str, *, retryable: bool = False) -> PluginError:
        """:attr:`ErrorKind.NOT_FOUND`: something the operation needs does not exist."""
        return cls(ErrorKind.NOT_FOUND, message, retryable)

    @classmethod
    def failed(cls, message: str, *, retryable: bool = False) -> PluginError:
        """:attr:`ErrorKind.FAILED`: the operation ran and failed; ``retryable=True``
        when the same call may work later (a busy service, a timeout)."""
        return cls(ErrorKind.FAILED, message, retryable)

    @classmethod
    def cancelled(cls, message: str = "stopped: the host asked the operation to stop") -> PluginError:
        """:attr:`ErrorKind.CANCELLED`: the operation stopped because the host asked
        (see :meth:`plexus_sdk.Context.check_cancelled`)."""
        return cls(ErrorKind.CANCELLED, message)

    @classmethod
    def unsupported_operation(cls, operation: str) -> PluginError:
        """:attr:`ErrorKind.UNSUPPORTED_OPERATION` for ``operation``: the plugin has no
        operation of that name (the SDK raises it for unknown operations itself)."""
        return cls(ErrorKind.UNSUPPORTED_OPERATION, f"no operation named `{operation}`")

    def to_dict(self) -> dict:
        """The error as JSON data: ``{"kind": "invalid-input", "message": ..., "retryable": false}``."""
        return {"kind": self.kind.value, "message": self.message, "retryable": self.retryable}

    def __str__(self) -> str:
        text = f"{self.kind.value}: {self.message}"
        return text + " (retryable)" if self.retryable else text

    def __repr__(self) -> str:
        return f"PluginError({self.kind.value!r}, {self.message!r}, retryable={self.retryable})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PluginError):
            return NotImplemented
        return (self.kind, self.message, self.retryable) == (other.kind, other.message, other.retryable)

    __hash__ = Exception.__hash__


# Exceptions that say the same call may work later.
_RETRYABLE = (TimeoutError, ConnectionError, InterruptedError, BlockingIOError)


def from_exception(error: BaseException, operation: str) -> PluginError:
    """The :class:`PluginError` for an exception an operation raised.

    A ``PluginError`` is returned as it is. Otherwise the kind follows the
    exception's type: ``ValueError``, ``TypeError`` and ``KeyError`` (and
    their subclasses, e.g. ``json.JSONDecodeError``) are
    :attr:`ErrorKind.INVALID_INPUT`; ``FileNotFoundError`` is
    :attr:`ErrorKind.NOT_FOUND`; anything else is :attr:`ErrorKind.FAILED`,
    retryable for timeouts, connection errors and interrupted or would-block
    I/O; a ``ModuleNotFoundError`` gets a hint (a component has only the
    modules imported at build time). The message names the operation and the
    exception:
    ``"`mean` raised ZeroDivisionError: division by zero"``.
    """
    if isinstance(error, PluginError):
        return error
    detail = str(error)
    message = f"`{operation}` raised {type(error).__name__}" + (f": {detail}" if detail else "")
    if isinstance(error, (ValueError, TypeError, KeyError)):
        return PluginError.invalid_input(message)
    if isinstance(error, FileNotFoundError):
        return PluginError.not_found(message)
    if isinstance(error, ModuleNotFoundError):
        message += " (a component holds only the modules imported while it was built: import it at module level)"
    return PluginError.failed(message, retryable=isinstance(error, _RETRYABLE))
