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
        operation=operation, parameters=parameters, upstream="{}", config="{}", schedule=None,
    )


def test_describe_returns_the_metadata_as_wit_records(wit):
    _, types, _ = wit
    from wit_world import exports

    guest_class = plugin._guest_class()
    assert exports.Guest in guest_class.__mro__
    meta = guest_class().describe()
    assert isinstance(meta, types.Metadata)
    assert (meta.id, meta.name, meta.version, meta.contract_version, meta.license) == (
        "test.glue", "Glue", "0.3.0", "0.4.0", "MIT",
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


hooked = Plugin("test.hooks", version="0.1.0", capabilities=["workflow-step", "orchestration"])
seen = []


@hooked.on_initialize
def setup(config):
    if config.get("fail"):
        raise ValueError("fail is set")
    seen.append(("initialize", config))


@hooked.on_cleanup
def teardown():
    seen.append(("cleanup",))


@hooked.operation
def orchestrate(ctx, what: str) -> dict:
    """Orchestration requests, through the host."""
    if what == "start":
        return {"id": ctx.start_workflow("nightly", {"n": 1})}
    if what == "status":
        return ctx.execution_status("e-1")
    if what == "schedule":
        return {"id": ctx.create_schedule({"id": "s1", "when": "every 1h", "workflow": "nightly"})}
    ctx.cancel_schedule("s1")
    return {"schedule": ctx.schedule}


def test_initialize_and_cleanup_run_the_hooks_and_an_error_crosses_as_data(wit, host):
    _, types, cpt = wit
    seen.clear()
    guest = hooked._guest_class()()
    guest.initialize('{"level": 2}')
    guest.cleanup()
    assert seen == [("initialize", {"level": 2}), ("cleanup",)]
    with pytest.raises(cpt.Err) as caught:
        guest.initialize('{"fail": true}')
    error = caught.value.value
    assert (error.kind, error.message) == (types.ErrorKind.INVALID_INPUT, "`initialize` raised ValueError: fail is set")


def test_orchestration_goes_through_the_host_imports_and_their_errors_come_back(wit, host, monkeypatch):
    wit_host, types, cpt = wit
    calls = []

    def start_workflow(workflow, inputs):
        calls.append(("start", workflow, json.loads(inputs)))
        return "e-7"

    def execution_status(execution):
        return json.dumps({"execution_id": execution, "state": "Completed"})

    def create_schedule(spec):
        raise cpt.Err(types.PluginError(kind=types.ErrorKind.FAILED, message="not granted", retryable=False))

    monkeypatch.setattr(wit_host, "start_workflow", start_workflow)
    monkeypatch.setattr(wit_host, "execution_status", execution_status)
    monkeypatch.setattr(wit_host, "create_schedule", create_schedule)
    monkeypatch.setattr(wit_host, "cancel_schedule", lambda schedule: calls.append(("cancel", schedule)))
    guest = hooked._guest_class()()
    out = guest.call(execution(types, "orchestrate", '{"what": "start"}'))
    assert json.loads(out.output) == {"id": "e-7"}
    assert calls == [("start", "nightly", {"n": 1})]
    out = guest.call(execution(types, "orchestrate", '{"what": "status"}'))
    assert json.loads(out.output) == {"execution_id": "e-1", "state": "Completed"}
    with pytest.raises(cpt.Err) as caught:
        guest.call(execution(types, "orchestrate", '{"what": "schedule"}'))
    assert (caught.value.value.kind, caught.value.value.message) == (types.ErrorKind.FAILED, "not granted")
    ctx = execution(types, "orchestrate", '{"what": "cancel"}')
    ctx.schedule = types.ScheduleInfo(id="s1", fire_time_ms=5, fire_time="1970-01-01T00:00:00.005+00:00")
    out = guest.call(ctx)
    assert json.loads(out.output) == {"schedule": {"id": "s1", "fire_time_ms": 5, "fire_time": "1970-01-01T00:00:00.005+00:00"}}
    assert calls[-1] == ("cancel", "s1")


@hooked.operation
def copy(ctx, artifact: dict) -> dict:
    """Reads an artifact and writes its bytes again, through the host."""
    data = ctx.open_artifact(artifact).read()
    with ctx.create_artifact("copy", "text/plain") as out:
        out.write(data)
    return out.reference


def test_artifacts_go_through_the_host_imports(wit, host, monkeypatch):
    wit_host, types, cpt = wit
    stored = {"sha256:" + "a" * 64: b"hello " * 300_000}
    writers, readers = {}, {}

    def artifact_create(name, media_type):
        writers[len(writers) + 1] = [name, media_type, b""]
        return len(writers)

    def artifact_write(writer, data):
        assert isinstance(data, bytes) and len(data) <= 1 << 20
        writers[writer][2] += data

    def artifact_finish(writer):
        name, media_type, data = writers[writer]
        return json.dumps({"artifact": "sha256:" + "b" * 64, "name": name, "bytes": len(data), "media_type": media_type})

    def artifact_open(reference):
        digest = json.loads(reference)["artifact"]
        if digest not in stored:
            raise cpt.Err(types.PluginError(kind=types.ErrorKind.NOT_FOUND, message="not yours", retryable=False))
        readers[len(readers) + 1] = [stored[digest], 0]
        return len(readers)

    def artifact_read(reader, max_bytes):
        data, at = readers[reader]
        readers[reader][1] = at + max_bytes
        return data[at : at + max_bytes]

    # (setattr refuses a name the generated bindings do not have: the glue's names are the world's.)
    for name, fake in [("artifact_create", artifact_create), ("artifact_write", artifact_write),
                       ("artifact_finish", artifact_finish), ("artifact_open", artifact_open),
                       ("artifact_read", artifact_read)]:
        monkeypatch.setattr(wit_host, name, fake)
    guest = hooked._guest_class()()
    reference = {"artifact": "sha256:" + "a" * 64, "name": "in", "bytes": 1_800_000}
    out = json.loads(guest.call(execution(types, "copy", json.dumps({"artifact": reference}))).output)
    assert (out["name"], out["bytes"], out["media_type"]) == ("copy", 1_800_000, "text/plain")
    assert writers[1][2] == stored[reference["artifact"]]
    forged = dict(reference, artifact="sha256:" + "c" * 64)
    with pytest.raises(cpt.Err) as caught:
        guest.call(execution(types, "copy", json.dumps({"artifact": forged})))
    assert (caught.value.value.kind, caught.value.value.message) == (types.ErrorKind.NOT_FOUND, "not yours")
