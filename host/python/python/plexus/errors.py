"""Errors of the Python API, two ways (QtForge's and Python's).

* QtForge's way: a method returns an :class:`Expected` — true when it holds a
  value (``.value()``), false when it holds an error (``.error().code`` /
  ``.error().message``).
* Python's way: ``PluginOrchestrator(..., raise_errors=True)`` makes the same
  methods return the plain value and raise a :class:`PluginError` subclass;
  ``Expected.value()`` raises it too.

Codes come from QtForge's ``PluginErrorCode`` list (as the daemon's API uses
them), plus ``ExecutionFailed`` (a plugin or an execution ran and failed),
``NetworkError`` (the daemon could not be reached), ``Unauthorized`` and
``Internal``.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Generic, List, Optional, TypeVar, Union

T = TypeVar("T")
U = TypeVar("U")

__all__ = [
    "PluginErrorCode",
    "PluginError",
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
    "Expected",
]


class PluginErrorCode(str, enum.Enum):
    """What kind of failure (QtForge's ``PluginErrorCode`` names)."""

    InvalidConfiguration = "InvalidConfiguration"
    """Invalid input: a bad workflow, bad inputs, a bad id."""
    NotFound = "NotFound"
    """No such workflow, execution, transaction or operation."""
    AlreadyExists = "AlreadyExists"
    """The id is taken."""
    InvalidState = "InvalidState"
    """Not allowed now (cancel an ended execution, commit a running transaction)."""
    PluginNotFound = "PluginNotFound"
    """No plugin with that id is loaded."""
    DependencyNotSatisfied = "DependencyNotSatisfied"
    """Something it depends on is missing or unusable now (no capacity)."""
    Timeout = "Timeout"
    """It did not finish in time."""
    ExecutionFailed = "ExecutionFailed"
    """A plugin call or an execution ran and failed."""
    NetworkError = "NetworkError"
    """The daemon could not be reached."""
    Unauthorized = "Unauthorized"
    """The daemon refused the token."""
    Internal = "Internal"
    """The engine failed (e.g. its database); the message says how."""
    Unknown = "Unknown"
    """A code this version does not know."""


class PluginError(Exception):
    """A refused or failed request: ``code``, ``message`` and ``details``
    (one line each, e.g. every problem of an invalid workflow)."""

    code: PluginErrorCode

    def __init__(self, code: Union[PluginErrorCode, str], message: str, details: Optional[List[str]] = None):
        super().__init__(message)
        try:
            self.code = PluginErrorCode(code)
        except ValueError:
            self.code = PluginErrorCode.Unknown
        self.message = message
        self.details: List[str] = list(details or [])
        #: The execution the failure came after, when one had started (a
        #: wait that failed): it is not to be started again.
        self.execution_id: Optional[str] = None

    def __str__(self) -> str:
        lines = [f"{self.message} ({self.code.value})"]
        lines.extend(f"  {d}" for d in self.details)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.value!r}, message={self.message!r})"

    @staticmethod
    def of(code: Union[PluginErrorCode, str], message: str, details: Optional[List[str]] = None) -> "PluginError":
        """The error of ``code``, as its subclass."""
        try:
            cls = _BY_CODE.get(PluginErrorCode(code), PluginError)
        except ValueError:
            cls = PluginError
        return cls(code, message, details)


class InvalidConfigurationError(PluginError, ValueError):
    """``InvalidConfiguration``."""


class NotFoundError(PluginError, LookupError):
    """``NotFound``."""


class AlreadyExistsError(PluginError):
    """``AlreadyExists``."""


class InvalidStateError(PluginError):
    """``InvalidState``."""


class PluginNotFoundError(NotFoundError):
    """``PluginNotFound``."""


class DependencyNotSatisfiedError(PluginError):
    """``DependencyNotSatisfied``."""


class PluginTimeoutError(PluginError, TimeoutError):
    """``Timeout`` (also a builtin ``TimeoutError``)."""


class ExecutionFailedError(PluginError):
    """``ExecutionFailed``."""


class NetworkError(PluginError, ConnectionError):
    """``NetworkError`` (also a builtin ``ConnectionError``)."""


class UnauthorizedError(PluginError, PermissionError):
    """``Unauthorized``."""


class InternalError(PluginError):
    """``Internal``."""


_BY_CODE = {
    PluginErrorCode.InvalidConfiguration: InvalidConfigurationError,
    PluginErrorCode.NotFound: NotFoundError,
    PluginErrorCode.AlreadyExists: AlreadyExistsError,
    PluginErrorCode.InvalidState: InvalidStateError,
    PluginErrorCode.PluginNotFound: PluginNotFoundError,
    PluginErrorCode.DependencyNotSatisfied: DependencyNotSatisfiedError,
    PluginErrorCode.Timeout: PluginTimeoutError,
    PluginErrorCode.ExecutionFailed: ExecutionFailedError,
    PluginErrorCode.NetworkError: NetworkError,
    PluginErrorCode.Unauthorized: UnauthorizedError,
    PluginErrorCode.Internal: InternalError,
}


class Expected(Generic[T]):
    """QtForge's ``expected<T, PluginError>``: a value or an error.

    True when it holds a value::

        result = orchestrator.execute_workflow("data_processing")
        if result:
            execution_id = result.value()
        else:
            print(result.error().code, result.error().message)
    """

    __slots__ = ("_value", "_error")

    def __init__(self, value: Any = None, error: Optional[PluginError] = None):
        self._value = value
        self._error = error

    @classmethod
    def ok(cls, value: T) -> "Expected[T]":
        """An ``Expected`` holding ``value``."""
        return cls(value, None)

    @classmethod
    def fail(cls, error: PluginError) -> "Expected[Any]":
        """An ``Expected`` holding ``error``."""
        return cls(None, error)

    def __bool__(self) -> bool:
        return self._error is None

    def has_value(self) -> bool:
        """Whether it holds a value (QtForge's ``has_value``)."""
        return self._error is None

    def value(self) -> T:
        """The value; raises the error (a :class:`PluginError` subclass) if it holds one."""
        if self._error is not None:
            raise self._error
        return self._value

    def error(self) -> Optional[PluginError]:
        """The error, or ``None`` when it holds a value."""
        return self._error

    def value_or(self, default: U) -> Union[T, U]:
        """The value, or ``default`` when it holds an error."""
        return self._value if self._error is None else default

    def map(self, f: Callable[[T], U]) -> "Expected[U]":
        """``f(value)`` in an ``Expected``; an error is kept."""
        return Expected(f(self._value), None) if self._error is None else Expected(None, self._error)

    def __repr__(self) -> str:
        if self._error is None:
            return f"Expected(value={self._value!r})"
        return f"Expected(error={self._error!r}, details={self._error.details!r})"
