"""The in-process test host: calls, recorded services, and the declared examples."""

import pytest

from plexus_sdk import ErrorKind, Example, Plugin, PluginError
from plexus_sdk.testing import TestHost, json_equal

plugin = Plugin("test.examples", version="0.1.0")


@plugin.operation(
    examples=[
        Example({"n": 1}, 2, description="right"),
        Example({"n": 1}, 3, description="wrong output"),
        Example({"n": 1}, error=ErrorKind.INVALID_INPUT, description="no error happens"),
        Example({"n": "x"}, error="invalid-input", description="text is refused"),
        Example({"n": "x"}, description="fails but should succeed"),
        Example({"n": -1}, error=ErrorKind.NOT_FOUND, description="wrong kind"),
    ]
)
def inc(ctx, n: int) -> int:
    if n < 0:
        raise PluginError.failed("negative")
    return n + 1


def test_check_examples_lists_every_example_that_does_not_hold():
    with pytest.raises(AssertionError) as caught:
        TestHost(plugin).check_examples()
    lines = str(caught.value).splitlines()
    assert lines == [
        "4 of 6 examples did not hold:",
        '`inc` example "wrong output" with {"n": 1}: expected output 3, got output 2',
        '`inc` example "no error happens" with {"n": 1}: expected a `invalid-input` error, got output 2',
        '`inc` example "fails but should succeed" with {"n": "x"}: expected success, got error invalid-input: '
        'parameters of `inc`: `n`: expected an integer, got a string "x"',
        '`inc` example "wrong kind" with {"n": -1}: expected a `not-found` error, got error failed: negative',
    ]


def test_examples_that_hold_are_counted_and_each_starts_from_a_fresh_state():
    p = Plugin("test.ok", version="0.1.0")

    @p.operation(examples=[Example({"rows": [{"a": 1}]}, {"rows": [{"a": 1.0}], "first": True}), Example({"rows": []})])
    def keep(ctx, rows: list[dict]) -> dict:
        ctx.state_set("seen", ctx.state_get("seen", 0) + 1)
        return {"rows": rows, "first": ctx.state_get("seen") == 1}

    host = TestHost(p, state={"seen": 5})
    assert host.check_examples() == 2
    assert host.state == {"seen": 5}  # the examples ran in hosts of their own


def test_json_equal_compares_numbers_by_value_but_not_booleans():
    assert json_equal({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not json_equal(True, 1)
    assert not json_equal({"a": 1}, {"a": 1, "b": 2})
    assert not json_equal("1", 1)
    assert json_equal(None, None)


def test_call_returns_the_output_as_the_host_would_decode_it():
    p = Plugin("test.decode", version="0.1.0")

    @p.operation
    def shape(ctx):
        return {"tuple": (1, 2), 3: "int key"}

    assert TestHost(p).call("shape") == {"tuple": [1, 2], "3": "int key"}


def test_params_that_are_not_json_are_a_test_bug():
    with pytest.raises(TypeError, match="parameters are not JSON"):
        TestHost(plugin).call("inc", {"n": {1}})


def test_test_host_needs_a_plugin():
    with pytest.raises(TypeError):
        TestHost(object())


def test_the_test_host_runs_the_hooks_and_answers_orchestration():
    from plexus_sdk import Plugin, PluginError
    from plexus_sdk.testing import TestHost

    plugin = Plugin("test.orch", version="0.1.0")
    seen = []
    plugin.on_initialize(lambda config: seen.append(config))
    plugin.on_cleanup(lambda: seen.append("cleanup"))

    @plugin.operation
    def go(ctx, workflow: str) -> str:
        return ctx.start_workflow(workflow)

    host = TestHost(plugin, config={"a": 1}, orchestrator=lambda r: f"exec-of-{r['workflow']}")
    host.initialize()
    assert host.call("go", {"workflow": "w"}) == "exec-of-w"
    host.cleanup()
    assert seen == [{"a": 1}, "cleanup"]
    assert host.orchestrated == [{"op": "start-workflow", "workflow": "w", "inputs": {}}]
    alone = TestHost(plugin)
    try:
        alone.call("go", {"workflow": "w"})
        raise AssertionError("no orchestrator: refused")
    except PluginError as e:
        assert "no orchestration services" in e.message
