"""The component glue (`Guest`), in CPython: over the stub bindings componentize-py
generates for the world, with the host imports replaced by recorders."""

import json
import subprocess
import sys

import pytest

from plexus_sdk import ErrorKind, Plugin, PluginError
from plexus_sdk.build import WORLD, wit_path

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="componentize-py's generated stub bindings import typing.Self (Python 3.11+)"
)

plugin = Plugin("test.glue", version="0.3.0", name="Glue", license="MIT", capabilities=["workflow-step"])


@plugin.operation
def work(ctx, n: int = 1) -> dict:
    """Does some work."""
    ctx.log.warn("working")
    ctx.state_set("n", ctx.state_get("n", 0) + n)
    ctx.progress(0.5, "half")
    ctx.metric("n", n)
    if ctx.is_cancelled():
        raise PluginError.cancelled()
    if n == 0:
        return 1 / n
    return {"n": n}


@pytest.fixture(scope="module")
def wit(tmp_path_factory):
    out = tmp_path_factory.mktemp("bindings")
    run = "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())"
    subprocess.run(
        [sys.executable, "-c", run, "-d", str(wit_path()), "-w", WORLD, "bindings", str(out)],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(out))
    import componentize_py_types
    from wit_world.imports import host, types

    yield host, types, componentize_py_types
    sys.path.remove(str(out))
    for name in [m for m in sys.modules if m.startswith(("wit_world", "componentize_py_"))]:
        del sys.modules[name]


@pytest.fixture
def host(wit, monkeypatch):
    wit_host, types, _ = wit
    record = {"logs": [], "state": {}, "progress": [], "cancelled": False}
    monkeypatch.setattr(wit_host, "log", lambda level, message: record["logs"].append((level, message)))
    monkeypatch.setattr(wit_host, "state_get", lambda key: record["state"].get(key))
    monkeypatch.setattr(wit_host, "state_set", lambda key, value: record["state"].__setitem__(key, value))
    monkeypatch.setattr(wit_host, "report_progress", lambda f, m: record["progress"].append((f, m)))
    monkeypatch.setattr(wit_host, "is_cancelled", lambda: record["cancelled"])
    return record


def execution(types, operation, parameters="null"):
    return types.ExecutionContext(
        execution_id="e", workflow_id=None, step_id=None, task_id=None, attempt=1, deadline_ms=None,
        operation=operation, parameters=parameters, upstream="{}", config="{}",
    )


def test_describe_returns_the_metadata_as_wit_records(wit):
    _, types, _ = wit
    from wit_world import exports

    guest_class = plugin._guest_class()
    assert exports.Guest in guest_class.__mro__
    meta = guest_class().describe()
    assert isinstance(meta, types.Metadata)
    assert (meta.id, meta.name, meta.version, meta.contract_version, meta.license) == (
        "test.glue", "Glue", "0.3.0", "0.2.0", "MIT",
    )
    [op] = meta.operations
    assert (op.name, op.description) == ("work", "Does some work.")
    assert json.loads(op.params_schema)["properties"] == {"n": {"type": "integer", "default": 1}}
    assert json.loads(op.output_schema)["type"] == "object"


def test_call_uses_the_host_imports_and_returns_a_call_output(wit, host):
    _, types, _ = wit
    guest = plugin._guest_class()()
    host["state"]["n"] = "41"
    out = guest.call(execution(types, "work", '{"n": 1}'))
    assert isinstance(out, types.CallOutput)
    assert json.loads(out.output) == {"n": 1}
    assert out.metrics == [types.Metric(name="n", value=1.0)]
    assert host["logs"] == [(types.LogLevel.WARN, "working")]
    assert host["state"] == {"n": "42"}  # JSON text, as the WIT says
    assert host["progress"] == [(0.5, "half")]


@pytest.mark.parametrize(
    "operation, parameters, kind, message",
    [
        ("work", '{"n": "x"}', "INVALID_INPUT", 'parameters of `work`: `n`: expected an integer, got a string "x"'),
        ("work", '{"n": 0}', "FAILED", "`work` raised ZeroDivisionError: division by zero"),
        ("nope", "null", "UNSUPPORTED_OPERATION", "no operation named `nope`"),
    ],
)
def test_errors_are_raised_as_err_of_a_plugin_error(wit, host, operation, parameters, kind, message):
    _, types, cpt = wit
    guest = plugin._guest_class()()
    with pytest.raises(cpt.Err) as caught:
        guest.call(execution(types, operation, parameters))
    error = caught.value.value
    assert isinstance(error, types.PluginError)
    assert (error.kind, error.message, error.retryable) == (getattr(types.ErrorKind, kind), message, False)


def test_cancelled_crosses_as_its_own_kind(wit, host):
    _, types, cpt = wit
    host["cancelled"] = True
    with pytest.raises(cpt.Err) as caught:
        plugin._guest_class()().call(execution(types, "work"))
    assert caught.value.value.kind == types.ErrorKind.CANCELLED


def test_every_kind_and_level_has_a_wit_twin(wit):
    _, types, _ = wit
    from plexus_sdk import LogLevel

    assert [k.name for k in ErrorKind] == [k.name for k in types.ErrorKind]
    assert [level.name for level in LogLevel] == [level.name for level in types.LogLevel]
