"""Plugin errors are data; ordinary exceptions are mapped to them, never let out."""

import json

import pytest

from plexus_sdk import ErrorKind, Plugin, PluginError
from plexus_sdk.errors import from_exception
from plexus_sdk.testing import TestHost


def test_constructors_set_kind_message_and_retryable():
    assert PluginError.invalid_input("bad").to_dict() == {"kind": "invalid-input", "message": "bad", "retryable": False}
    assert PluginError.not_found("gone").kind is ErrorKind.NOT_FOUND
    assert PluginError.failed("busy", retryable=True).retryable
    assert PluginError.cancelled().kind is ErrorKind.CANCELLED
    assert PluginError.unsupported_operation("x").message == "no operation named `x`"
    assert PluginError("failed", "m") == PluginError(ErrorKind.FAILED, "m")
    assert str(PluginError.failed("busy", retryable=True)) == "failed: busy (retryable)"
    assert ErrorKind.INVALID_INPUT == "invalid-input" and str(ErrorKind.NOT_FOUND) == "not-found"
    with pytest.raises(ValueError):
        PluginError("oops", "m")


@pytest.mark.parametrize(
    "error, kind, retryable",
    [
        (ValueError("v"), ErrorKind.INVALID_INPUT, False),
        (json.JSONDecodeError("j", "doc", 0), ErrorKind.INVALID_INPUT, False),
        (TypeError("t"), ErrorKind.INVALID_INPUT, False),
        (KeyError("date"), ErrorKind.INVALID_INPUT, False),
        (FileNotFoundError(2, "No such file", "/x"), ErrorKind.NOT_FOUND, False),
        (PermissionError("p"), ErrorKind.FAILED, False),
        (TimeoutError("slow"), ErrorKind.FAILED, True),
        (ConnectionResetError("reset"), ErrorKind.FAILED, True),
        (ZeroDivisionError("division by zero"), ErrorKind.FAILED, False),
        (RuntimeError(), ErrorKind.FAILED, False),
    ],
)
def test_exceptions_map_to_kinds(error, kind, retryable):
    mapped = from_exception(error, "op")
    assert (mapped.kind, mapped.retryable) == (kind, retryable)
    assert mapped.message.startswith(f"`op` raised {type(error).__name__}")


def test_a_missing_module_gets_a_hint():
    mapped = from_exception(ModuleNotFoundError("No module named 'csv'"), "op")
    assert mapped.message == (
        "`op` raised ModuleNotFoundError: No module named 'csv' (a component holds only the modules imported "
        "while it was built: import it at module level)"
    )


def test_a_plugin_error_is_kept():
    e = PluginError.failed("x", retryable=True)
    assert from_exception(e, "op") is e


plugin = Plugin("test.errors", version="0.1.0")


@plugin.operation
def raise_(ctx, what: str):
    if what == "key":
        return {}["date"]
    if what == "zero":
        return 1 / 0
    if what == "missing":
        open("/nonexistent/plexus/file")
    raise PluginError.not_found(what)


@plugin.operation
def not_json(ctx, what: str):
    return {"set": {1}} if what == "set" else {"nan": float("nan")}


def call_error(op, params) -> PluginError:
    host = TestHost(plugin)
    with pytest.raises(PluginError) as caught:
        host.call(op, params)
    return caught.value, host


def test_operation_exceptions_become_plugin_errors_with_a_logged_traceback():
    e, host = call_error("raise_", {"what": "key"})
    assert (e.kind, e.message) == (ErrorKind.INVALID_INPUT, "`raise_` raised KeyError: 'date'")
    assert host.logs[-1][0] == "debug" and "Traceback" in host.logs[-1][1]
    e, host = call_error("raise_", {"what": "zero"})
    assert (e.kind, e.message) == (ErrorKind.FAILED, "`raise_` raised ZeroDivisionError: division by zero")
    assert host.logs[-1][0] == "error" and "ZeroDivisionError" in host.logs[-1][1]
    e, _ = call_error("raise_", {"what": "missing"})
    assert e.kind is ErrorKind.NOT_FOUND
    e, host = call_error("raise_", {"what": "thing"})
    assert e == PluginError.not_found("thing")
    assert host.logs == []  # a PluginError is no surprise: nothing logged


def test_an_output_that_is_not_json_is_a_failure():
    e, _ = call_error("not_json", {"what": "set"})
    assert e.kind is ErrorKind.FAILED and e.message.startswith("output of `not_json` is not JSON")
    e, _ = call_error("not_json", {"what": "nan"})
    assert e.kind is ErrorKind.FAILED


def test_an_unknown_operation_is_unsupported():
    e, _ = call_error("nope", None)
    assert e == PluginError.unsupported_operation("nope")
