"""Context services: logs, shared state, progress, cancellation, metrics, the execution."""

import json
import time

import pytest

from plexus_sdk import Context, ErrorKind, ExecutionContext, LogLevel, Plugin, PluginError
from plexus_sdk.testing import TestHost

plugin = Plugin("test.context", version="0.1.0")


@plugin.operation
def logs(ctx: Context):
    ctx.log.trace("t")
    ctx.log.debug("d")
    ctx.log.info("i")
    ctx.log.warn("w")
    ctx.log.warning("w2")
    ctx.log.error(RuntimeError("e"))
    ctx.log("INFO", "by name")
    ctx.log(LogLevel.DEBUG, "by level")


@plugin.operation
def bad_level(ctx: Context):
    ctx.log("loud", "x")


@plugin.operation
def count(ctx: Context, key: str = "n"):
    n = ctx.state_get(key, 0) + 1
    ctx.state_set(key, n)
    ctx.state_set("last", {"key": key, "tags": ["a"]})
    return {"n": n, "missing": ctx.state_get("missing"), "text": ctx.state_get("text")}


@plugin.operation
def progress(ctx: Context):
    for f in (-1, 0.5, 2, float("nan")):
        ctx.progress(f, f"at {f}")


@plugin.operation
def loop(ctx: Context, n: int):
    for i in range(n):
        ctx.check_cancelled()
    return {"cancelled": ctx.is_cancelled()}


@plugin.operation
def metrics(ctx: Context, bad: str = ""):
    ctx.metric("rows", 12)
    ctx.metric("rate", 0.5)
    if bad == "text":
        ctx.metric("x", "1")
    if bad == "inf":
        ctx.metric("x", float("inf"))
    return ctx.metrics


@plugin.operation
def execution(ctx: Context):
    return {
        "operation": ctx.operation,
        "execution_id": ctx.execution_id,
        "workflow_id": ctx.workflow_id,
        "step_id": ctx.step_id,
        "task_id": ctx.task_id,
        "attempt": ctx.attempt,
        "deadline_ms": ctx.deadline_ms,
        "remaining_ms": ctx.remaining_ms(),
        "upstream": ctx.upstream,
        "config": ctx.config,
    }


def test_logs_at_every_level():
    host = TestHost(plugin)
    host.call("logs")
    assert host.logs == [
        ("trace", "t"),
        ("debug", "d"),
        ("info", "i"),
        ("warn", "w"),
        ("warn", "w2"),
        ("error", "e"),
        ("info", "by name"),
        ("debug", "by level"),
    ]
    assert all(isinstance(level, LogLevel) for level, _ in host.logs)


def test_an_unknown_log_level_is_an_error_of_the_call():
    with pytest.raises(PluginError) as caught:
        TestHost(plugin).call("bad_level")
    assert caught.value.kind is ErrorKind.INVALID_INPUT  # a ValueError, mapped
    assert "'loud' is not a valid LogLevel" in caught.value.message


def test_state_values_are_json_and_survive_across_calls():
    host = TestHost(plugin, state={"text": "hello"})
    assert host.call("count") == {"n": 1, "missing": None, "text": "hello"}
    assert host.call("count") == {"n": 2, "missing": None, "text": "hello"}
    assert host.state == {"text": "hello", "n": 2, "last": {"key": "n", "tags": ["a"]}}
    # What crosses to the host is JSON text; text that is not JSON comes back as a string.
    host.state_set("raw", "not json")
    assert host.state["raw"] == "not json"
    assert json.loads(host.state_get("last")) == {"key": "n", "tags": ["a"]}


def test_state_set_of_a_value_that_is_not_json_fails_the_call():
    p = Plugin("test.state", version="0.1.0")

    @p.operation
    def put(ctx):
        ctx.state_set("k", {1, 2})

    with pytest.raises(PluginError) as caught:
        TestHost(p).call("put")
    assert caught.value.kind is ErrorKind.INVALID_INPUT  # TypeError


def test_progress_is_clamped():
    host = TestHost(plugin)
    host.call("progress")
    assert host.progress == [(0.0, "at -1"), (0.5, "at 0.5"), (1.0, "at 2"), (0.0, "at nan")]


def test_cancellation():
    host = TestHost(plugin)
    assert host.call("loop", {"n": 3}) == {"cancelled": False}
    host.cancel()
    with pytest.raises(PluginError) as caught:
        host.call("loop", {"n": 3})
    assert caught.value.kind is ErrorKind.CANCELLED and not caught.value.retryable
    assert host.call("loop", {"n": 0}) == {"cancelled": True}


def test_metrics():
    host = TestHost(plugin)
    assert host.call("metrics") == [["rows", 12.0], ["rate", 0.5]]
    assert host.metrics == {"rows": 12.0, "rate": 0.5}
    for bad in ("text", "inf"):
        with pytest.raises(PluginError):
            host.call("metrics", {"bad": bad})


def test_execution_fields_upstream_and_config():
    host = TestHost(plugin, config={"limit": 3})
    out = host.call("execution", upstream={"load": {"rows": []}}, attempt=2)
    assert out == {
        "operation": "execution",
        "execution_id": "test-execution",
        "workflow_id": None,
        "step_id": None,
        "task_id": None,
        "attempt": 2,
        "deadline_ms": None,
        "remaining_ms": None,
        "upstream": {"load": {"rows": []}},
        "config": {"limit": 3},
    }
    deadline = int(time.time() * 1000) + 60_000
    exec_ = ExecutionContext(
        operation="execution", execution_id="e1", workflow_id="w", step_id="s", deadline_ms=deadline,
        upstream="", config="",
    )
    out = host.call_with(exec_)
    assert (out["workflow_id"], out["step_id"], out["upstream"], out["config"]) == ("w", "s", {}, {})
    assert 0 < out["remaining_ms"] <= 60_000


def test_upstream_that_is_not_an_object_is_invalid_input():
    host = TestHost(plugin)
    with pytest.raises(PluginError, match="upstream must be a JSON object"):
        host.call_with(ExecutionContext(operation="execution", upstream="[1]"))
    with pytest.raises(PluginError, match="config is not valid JSON"):
        host.call_with(ExecutionContext(operation="execution", config="{"))
