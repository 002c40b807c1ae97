"""Registering operations and describing the plugin."""

import pytest

from plexus_sdk import CONTRACT_VERSION, Context, Example, Plugin, capability
from plexus_sdk.testing import TestHost


def test_metadata_carries_the_plugin_and_its_operations():
    plugin = Plugin(
        "example.stats",
        name="Stats",
        version="0.1.0",
        description="d",
        authors=["Ada"],
        license="MIT",
        capabilities=[capability.WORKFLOW_STEP],
    )

    @plugin.operation
    def first(ctx: Context) -> None:
        """The first one.

        More text that is not the description.
        """

    @plugin.operation(name="second", description="Named", params_schema={"type": "object"})
    def _impl(ctx: Context, x: int) -> None:
        pass

    meta = TestHost(plugin).describe()
    assert CONTRACT_VERSION == "0.4.0"
    assert {k: v for k, v in meta.items() if k != "operations"} == {
        "id": "example.stats",
        "name": "Stats",
        "version": "0.1.0",
        "description": "d",
        "authors": ["Ada"],
        "license": "MIT",
        "contract_version": "0.4.0",
        "capabilities": ["workflow-step"],
    }
    assert [(op["name"], op["description"]) for op in meta["operations"]] == [
        ("first", "The first one."),
        ("second", "Named"),
    ]
    assert meta["operations"][1]["params_schema"] == {"type": "object"}
    # An explicit schema is what is declared; the hints still check.
    assert TestHost(plugin).call("second", {"x": 1}) is None


def test_name_defaults_to_the_id_and_bad_ids_are_refused():
    assert Plugin("a.b", version="1.0.0").name == "a.b"
    for bad in ("", " ", "a b"):
        with pytest.raises(ValueError):
            Plugin(bad, version="0.1.0")
    with pytest.raises(ValueError):
        Plugin("a.b", version="")


def test_an_operation_registered_twice_is_refused():
    plugin = Plugin("t.twice", version="0.1.0")

    @plugin.operation
    def same(ctx):
        pass

    with pytest.raises(ValueError, match="operation `same` registered twice"):
        plugin.operation(name="same")(lambda ctx: None)


def test_the_decorator_returns_the_function_unchanged():
    plugin = Plugin("t.fn", version="0.1.0")

    def double(ctx, n: int) -> int:
        return n * 2

    assert plugin.operation(double) is double
    assert double(None, 2) == 4


def test_raw_operations_get_the_parameters_unchecked():
    plugin = Plugin("t.raw", version="0.1.0")

    @plugin.operation(raw=True)
    def echo(ctx, params):
        return params

    host = TestHost(plugin)
    assert host.call("echo", [1, "a"]) == [1, "a"]
    assert host.call("echo") == {}
    assert plugin.operations[0].params_schema is None


def test_bad_declarations_are_refused():
    plugin = Plugin("t.bad", version="0.1.0")
    with pytest.raises(TypeError, match="params_schema must be a dict"):
        plugin.operation(params_schema="{}")(lambda ctx: None)
    with pytest.raises(TypeError, match="examples must be Example"):
        plugin.operation(name="e", examples=[({"a": 1}, 2)])(lambda ctx: None)
    with pytest.raises(TypeError, match="not JSON"):
        Example({"a": {1}})
    with pytest.raises(ValueError, match="not both"):
        Example({}, 1, error="failed")
