"""The Python API's behaviour beyond QtForge's examples, on both backends:
errors both ways, the workflow registry, Plexus's step fields, cancel,
transactions, plugins, values crossing the boundary, callbacks, asyncio and
the GIL."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path

import pytest

import plexus
from plexus import PluginErrorCode
from plexus import orchestration as qo

from conftest import ROOT, slow_workflow


def echo_step(step_id, **parameters):
    step = qo.WorkflowStep(step_id, "plexus.echo.native", "echo")
    step.parameters = parameters
    return step


# ----- errors -----


def test_errors_come_as_expected_results_or_as_exceptions(make_orchestrator, unique):
    o = make_orchestrator()
    result = o.execute_workflow(f"missing_{unique}")
    assert not result and not result.has_value()
    error = result.error()
    assert error.code is PluginErrorCode.NotFound
    assert isinstance(error, plexus.NotFoundError) and f"missing_{unique}" in error.message
    assert result.value_or("fallback") == "fallback"
    with pytest.raises(plexus.NotFoundError):
        result.value()

    raising = make_orchestrator(raise_errors=True)
    with pytest.raises(plexus.NotFoundError) as caught:
        raising.execute_workflow(f"missing_{unique}")
    assert caught.value.code is PluginErrorCode.NotFound
    with pytest.raises(plexus.PluginNotFoundError):
        raising.get_plugin_info("no.such.plugin")
    assert raising.has_workflow(f"missing_{unique}") is False


def test_an_invalid_workflow_names_every_problem(orchestrator, unique):
    workflow = qo.Workflow(f"invalid_{unique}", "Invalid")
    a = echo_step("a")
    a.dependencies = ["b"]
    b = echo_step("b")
    b.dependencies = ["a"]
    ghost = qo.WorkflowStep("ghost", "no.such.plugin", "run")
    workflow.add_step(a).add_step(b).add_step(ghost)
    result = orchestrator.register_workflow(workflow)
    assert not result
    error = result.error()
    assert error.code is PluginErrorCode.InvalidConfiguration
    text = "\n".join(error.details)
    assert "no.such.plugin" in text and "cycle" in text, text
    assert not orchestrator.has_workflow(f"invalid_{unique}")


# ----- the registry -----


def test_register_get_list_unregister_clear(orchestrator, unique):
    wid = f"registry_{unique}"
    step = echo_step("only", rows=[1, 2, 3])
    step.timeout = 5000
    step.max_retries = 2
    step.retry_delay = 250
    step.critical = False
    step.metadata = {"owner": "python"}
    workflow = qo.create_workflow(wid, "Registry").set_description("kept").add_step(step)
    assert orchestrator.register_workflow(workflow)
    assert orchestrator.has_workflow(wid)
    assert wid in orchestrator.list_workflows()

    again = orchestrator.register_workflow(workflow)
    assert again.error().code is PluginErrorCode.AlreadyExists

    got = orchestrator.get_workflow(wid).value()
    assert (got.id(), got.name(), got.description) == (wid, "Registry", "kept")
    only = got.get_step("only")
    assert (only.plugin_id, only.method_name, only.parameters) == ("plexus.echo.native", "echo", {"rows": [1, 2, 3]})
    assert (only.timeout, only.max_retries, only.retry_delay, only.critical) == (5000, 2, 250, False)
    assert only.metadata == {"owner": "python"}

    assert orchestrator.unregister_workflow(wid)
    assert not orchestrator.has_workflow(wid)
    assert orchestrator.unregister_workflow(wid).error().code is PluginErrorCode.NotFound

    slow_workflow(orchestrator, f"{wid}_a")
    slow_workflow(orchestrator, f"{wid}_b")
    orchestrator.clear_workflows()
    assert orchestrator.list_workflows() == []


def test_parallel_branches_run_at_once(orchestrator, unique):
    wid = f"branches_{unique}"
    workflow = qo.Workflow(wid, "Branches").set_execution_mode(qo.ExecutionMode.Parallel)
    for name in ("a", "b", "c"):
        step = qo.WorkflowStep(name, "plexus.echo.native", "sleep")
        step.parameters = {"ms": 400}
        workflow.add_step(step)
    assert orchestrator.register_workflow(workflow)
    started = time.monotonic()
    execution_id = orchestrator.execute_workflow(wid).value()
    # One after another they take 1.2 s at the least.
    assert time.monotonic() - started < 1.2
    assert orchestrator.get_workflow_status(execution_id).value()["status"] == "completed"


def test_json_documents_round_trip(orchestrator, unique):
    fixture = json.loads((ROOT / "tests" / "fixtures" / "qtforge-workflow.json").read_text())
    workflow = qo.Workflow.from_json(fixture)
    assert workflow.execution_mode() is qo.ExecutionMode.Parallel
    assert list(workflow.steps) == ["extract", "transform", "load"]
    assert workflow.get_step("transform").max_retries == 2 and workflow.get_step("load").critical is False
    # QtForge's shape out, the same workflow back.
    assert qo.Workflow.from_json(json.dumps(workflow.to_json())).to_json() == workflow.to_json()

    # A registered workflow comes back in Plexus's shape and runs the same.
    wid = f"round_trip_{unique}"
    original = qo.Workflow(wid, "Round trip").add_step(echo_step("one", n=1))
    second = echo_step("two", n="${{ steps.one.output.n }}")
    second.dependencies = ["one"]
    original.add_step(second)
    assert orchestrator.register_workflow(original)
    copy = orchestrator.get_workflow(wid).value()
    doc = copy.to_json()
    doc["id"] = f"{wid}_copy"
    assert orchestrator.register_workflow(doc)
    run = orchestrator.execute_workflow(f"{wid}_copy").value()
    assert orchestrator.get_workflow_results(run).value()["steps"] == {"one": {"n": 1}, "two": {"n": 1}}


def test_a_workflow_read_back_edits_and_runs_as_written(orchestrator, unique):
    # Plexus's shape, no timeout (the plugin's limit), a field Python does not model.
    wid = f"edit_{unique}"
    doc = {
        "id": wid,
        "execution_mode": "sequential",
        "steps": [{"id": "flaky", "plugin_id": "plexus.echo.native", "method_name": "flaky",
                   "parameters": {"failures": 2}, "resources": {"memory_mb": 64}}],
    }
    assert orchestrator.register_workflow(doc)
    got = orchestrator.get_workflow(wid).value()
    assert got.steps_as_list
    step = got.get_step("flaky")
    assert step.timeout is None and step.extra == {"resources": {"cpu": 0.0, "memory_mb": 64}}
    assert step.max_retries == 0
    # Two failures need two retries: editing QtForge's field edits the policy read back.
    step.max_retries = 2
    step.retry_delay = 10
    assert step.retry["max_attempts"] == 3 and step.retry["initial_delay"] == 10
    copy = got.to_json()
    assert isinstance(copy["steps"], list) and "timeout" not in copy["steps"][0]
    assert copy["steps"][0]["resources"] == {"cpu": 0.0, "memory_mb": 64}
    copy["id"] = f"{wid}_edited"
    assert orchestrator.register_workflow(copy)
    run = orchestrator.execute_workflow(f"{wid}_edited").value()
    status = orchestrator.get_workflow_status(run).value()
    assert status["status"] == "completed" and status["steps"][0]["attempts"] == 3

    # QtForge's shape with steps known only by their keys.
    keyed = qo.Workflow.from_json({"id": "k", "steps": {"a": {"plugin_id": "p", "method_name": "m"},
                                                        "b": {"plugin_id": "p", "method_name": "m"}}})
    assert list(keyed.steps) == ["a", "b"] and keyed.get_step("b").id == "b"
    with pytest.raises(ValueError, match="execution_mode"):
        qo.Workflow.from_json({"id": "x", "execution_mode": 7})


# ----- Plexus's fields -----


def test_conditions_retry_policies_and_compensations(orchestrator, workdir, unique):
    wid = f"plexus_fields_{unique}"
    target = workdir / "saved.csv"
    workflow = qo.Workflow(wid, "Plexus fields").set_execution_mode(qo.ExecutionMode.Conditional)
    save = qo.WorkflowStep("save", "plexus.csv", "save")
    save.parameters = {"path": str(target), "rows": [{"a": 1}]}
    save.compensate = {"plugin_id": "plexus.csv", "method_name": "remove", "parameters": {"path": str(target)}}
    skipped = echo_step("skipped")
    skipped.when = "inputs.never == true"
    flaky = qo.WorkflowStep("flaky", "plexus.echo.wasm", "flaky")
    flaky.parameters = {"failures": 1}
    flaky.retry = {"max_attempts": 2, "initial_delay": 10, "backoff": "constant"}
    flaky.dependencies = ["save"]
    publish = qo.WorkflowStep("publish", "plexus.echo.native", "fail")
    publish.parameters = {"kind": "failed", "message": "publishing rejected"}
    publish.dependencies = ["flaky"]
    workflow.inputs = {"never": {"type": "boolean", "default": False}}
    for step in (save, skipped, flaky, publish):
        workflow.add_step(step)
    assert orchestrator.register_workflow(workflow)

    execution_id = orchestrator.execute_workflow(wid).value()
    status = orchestrator.get_workflow_status(execution_id).value()
    assert status["status"] == "failed" and "publishing rejected" in status["error"]
    steps = {s["id"]: s for s in status["steps"]}
    assert steps["skipped"]["status"] == "skipped"
    assert steps["flaky"]["status"] == "completed" and steps["flaky"]["attempts"] == 2
    # The critical failure rolled the saved file back.
    assert [c["step"] for c in status["compensations"]] == ["save"]
    assert not target.exists()


# ----- executions -----


def test_cancel_and_the_active_list(orchestrator, unique):
    wid = f"cancel_{unique}"
    slow_workflow(orchestrator, wid, ms=2000)
    execution_id = orchestrator.execute_workflow(wid, async_execution=True).value()
    assert execution_id in orchestrator.list_active_executions()
    assert orchestrator.cancel_workflow(execution_id)
    final = orchestrator.wait_for_completion(execution_id, timeout=30).value()
    assert final["status"] == "cancelled"
    assert execution_id not in orchestrator.list_active_executions()
    assert orchestrator.cancel_workflow(execution_id).error().code is PluginErrorCode.InvalidState
    assert orchestrator.get_workflow_results(execution_id).value()["status"] == "cancelled"


def test_a_string_names_one_plugin_directory(plugins_dir, cache_dir):
    with qo.PluginOrchestrator(str(plugins_dir), cache_dir=cache_dir) as o:
        assert "plexus.csv" in {p["id"] for p in o.list_plugins()}


def test_a_failed_wait_names_the_execution_it_started(make_orchestrator, unique):
    o = make_orchestrator()
    wid = f"started_{unique}"
    slow_workflow(o, wid, ms=2000, steps=1)
    closer = threading.Timer(0.3, o.close)
    closer.start()
    result = o.execute_workflow(wid)
    closer.join()
    assert result.error().code is PluginErrorCode.InvalidState
    assert result.error().execution_id and f"execution_id: {result.error().execution_id}" in result.error().details


def test_results_are_refused_while_running_and_waits_time_out(orchestrator, unique):
    wid = f"running_{unique}"
    slow_workflow(orchestrator, wid, ms=400, steps=2)
    execution_id = orchestrator.execute_workflow(wid, async_execution=True).value()
    assert orchestrator.get_workflow_results(execution_id).error().code is PluginErrorCode.InvalidState
    timed_out = orchestrator.wait_for_completion(execution_id, timeout=0.05)
    assert timed_out.error().code is PluginErrorCode.Timeout
    assert isinstance(timed_out.error(), TimeoutError)
    assert orchestrator.wait_for_completion(execution_id, timeout=30).value()["status"] == "completed"


def test_transactions_commit_and_roll_back(orchestrator, workdir, unique):
    wid = f"tx_{unique}"
    workflow = qo.Workflow(wid, "Transactional")
    workflow.inputs = {"path": {"type": "string", "required": True}}
    save = qo.WorkflowStep("save", "plexus.csv", "save")
    save.parameters = {"path": "${{ inputs.path }}", "rows": [{"a": 1}]}
    workflow.add_step(save).add_rollback_step(
        "save", {"plugin_id": "plexus.csv", "method_name": "remove", "parameters": {"path": "${{ inputs.path }}"}}
    )
    assert orchestrator.register_workflow(workflow)

    kept, undone = workdir / "kept.csv", workdir / "undone.csv"
    assert orchestrator.begin_transaction(f"keep_{unique}")
    orchestrator.execute_workflow(wid, {"path": str(kept)}, transaction=f"keep_{unique}").value()
    assert orchestrator.commit_transaction(f"keep_{unique}")
    assert orchestrator.get_transaction(f"keep_{unique}").value()["state"] == "committed"
    assert orchestrator.commit_transaction(f"keep_{unique}").error().code is PluginErrorCode.InvalidState

    assert orchestrator.begin_transaction(f"undo_{unique}")
    assert orchestrator.begin_transaction(f"undo_{unique}").error().code is PluginErrorCode.AlreadyExists
    run = orchestrator.execute_workflow(wid, {"path": str(undone)}, transaction=f"undo_{unique}").value()
    assert undone.exists()
    assert orchestrator.rollback_transaction(f"undo_{unique}")
    assert not undone.exists() and kept.exists()
    tx = orchestrator.get_transaction(f"undo_{unique}").value()
    assert tx["state"] == "rolled_back" and tx["executions"] == [run]
    assert orchestrator.get_workflow_status(run).value()["status"] == "rolled_back"


# ----- plugins -----


def test_plugins_list_info_and_call(orchestrator):
    ids = {p["id"] for p in orchestrator.list_plugins()}
    assert {"plexus.csv", "plexus.echo.native", "plexus.transformer", "plexus.validator"} <= ids
    info = orchestrator.get_plugin_info("plexus.transformer").value()
    assert "normalize" in {op["name"] for op in info["metadata"]["operations"]}

    assert orchestrator.call("plexus.echo.native", "echo", {"n": [1, 2.5, None, True, "x"]}).value() == {
        "n": [1, 2.5, None, True, "x"]
    }
    assert orchestrator.call("plexus.echo.wasm", "echo", 7, kind="wasm").value() == 7
    assert orchestrator.call("no.such", "echo").error().code is PluginErrorCode.PluginNotFound
    assert orchestrator.call("plexus.echo.native", "nope").error().code is PluginErrorCode.NotFound
    failed = orchestrator.call("plexus.echo.native", "fail", {"kind": "invalid-input", "message": "bad row 3"})
    assert failed.error().code is PluginErrorCode.ExecutionFailed
    assert "bad row 3" in failed.error().message
    assert any("invalid-input" in d for d in failed.error().details)
    slow = orchestrator.call("plexus.echo.wasm", "sleep", {"ms": 5000}, timeout=0.2)
    assert slow.error().code is PluginErrorCode.Timeout


def test_values_that_json_cannot_hold_are_refused_by_name(orchestrator):
    with pytest.raises(TypeError, match=r"params\[\"rows\"\]\[1\]: a value of type set"):
        orchestrator.call("plexus.echo.native", "echo", {"rows": [1, {2}]})
    with pytest.raises(ValueError, match="not a finite number"):
        orchestrator.call("plexus.echo.native", "echo", {"x": float("nan")})
    with pytest.raises(ValueError, match="beyond 64 bits"):
        orchestrator.call("plexus.echo.native", "echo", 2**70)
    with pytest.raises(TypeError, match="JSON keys are str"):
        orchestrator.call("plexus.echo.native", "echo", {1: "a"})
    deep = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(ValueError, match="deeper than 128"):
        orchestrator.call("plexus.echo.native", "echo", deep)
    # 64-bit edges and unicode cross intact.
    edge = {"big": 2**64 - 1, "small": -(2**63), "text": "żółw ✓"}
    assert orchestrator.call("plexus.echo.native", "echo", edge).value() == edge


# ----- callbacks, asyncio, the GIL -----


def test_progress_callbacks_come_from_another_thread(orchestrator, unique, monkeypatch):
    wid = f"progress_{unique}"
    slow_workflow(orchestrator, wid, ms=120)
    seen, threads = [], set()

    def on_progress(status):
        seen.append(status)
        threads.add(threading.get_ident())

    execution_id = orchestrator.execute_workflow(wid, on_progress=on_progress).value()
    deadline = time.monotonic() + 10
    while (not seen or seen[-1]["status"] != "completed") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert seen[-1]["status"] == "completed" and seen[-1]["execution_id"] == execution_id
    assert any(s["status"] == "running" for s in seen)
    assert threading.get_ident() not in threads

    # A callback that raises is reported, and the watch goes on to the end.
    reported, final = [], []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u.exc_value))

    def flaky_callback(status):
        if status["status"] in qo.TERMINAL_STATUSES:
            final.append(status)
        raise RuntimeError("callback bug")

    second = orchestrator.execute_workflow(wid, async_execution=True).value()
    orchestrator.watch_workflow(second, flaky_callback, interval=0.02)
    deadline = time.monotonic() + 10
    while not final and time.monotonic() < deadline:
        time.sleep(0.02)
    assert final and final[0]["status"] == "completed"
    assert reported and all(isinstance(e, RuntimeError) for e in reported)


def test_the_gil_is_released_while_workflows_run(orchestrator, unique):
    wid = f"gil_{unique}"
    slow_workflow(orchestrator, wid, ms=200, steps=2)
    ticks = 0
    stop = threading.Event()

    def count():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    counter = threading.Thread(target=count)
    counter.start()
    try:
        orchestrator.execute_workflow(wid).value()  # blocks ~400 ms
    finally:
        stop.set()
        counter.join()
    # Python code ran the whole time the call waited.
    assert ticks > 100_000


def test_asyncio_awaits_streams_and_gathers(orchestrator, unique):
    wid = f"async_{unique}"
    slow_workflow(orchestrator, wid, ms=100, outputs={"last": "${{ steps.s3.output }}"})
    failing = qo.Workflow(f"async_fail_{unique}", "Fails").add_step(
        qo.WorkflowStep("boom", "plexus.echo.native", "fail")
    )
    failing.get_step("boom").parameters = {"kind": "failed", "message": "boom"}
    assert orchestrator.register_workflow(failing)

    async def scenario():
        results = await orchestrator.execute_workflow_async(wid)
        assert results and results.value()["status"] == "completed"
        assert set(results.value()["steps"]) == {"s1", "s2", "s3"}

        failed = await orchestrator.execute_workflow_async(f"async_fail_{unique}")
        assert failed.error().code is PluginErrorCode.ExecutionFailed and "boom" in failed.error().message

        execution_id = orchestrator.execute_workflow(wid, async_execution=True).value()
        statuses = [s async for s in orchestrator.watch(execution_id, interval=0.02)]
        assert statuses[-1]["status"] == "completed"
        assert [s["completed_steps"] for s in statuses] == sorted(s["completed_steps"] for s in statuses)
        assert len({s["completed_steps"] for s in statuses}) >= 2

        slow = orchestrator.execute_workflow(wid, async_execution=True).value()
        timed_out = await orchestrator.wait_async(slow, timeout=0.01)
        assert timed_out.error().code is PluginErrorCode.Timeout

        started = time.monotonic()
        many = await asyncio.gather(*(orchestrator.execute_workflow_async(wid) for _ in range(4)))
        assert all(r and r.value()["status"] == "completed" for r in many)
        # Awaited side by side: about one execution's time, not four.
        assert time.monotonic() - started < 4 * 0.3

    asyncio.run(scenario())


def test_closed_orchestrators_refuse_work(make_orchestrator, unique):
    o = make_orchestrator()
    o.close()
    o.close()  # idempotent
    assert o.execute_workflow("anything").error().code is PluginErrorCode.InvalidState
    assert o.call("plexus.echo.native", "echo").error().code is PluginErrorCode.InvalidState
    # The methods QtForge gives no Expected raise instead of answering "none".
    for method in (o.list_workflows, o.list_active_executions, o.list_plugins, o.clear_workflows):
        with pytest.raises(plexus.InvalidStateError):
            method()
    with pytest.raises(plexus.InvalidStateError):
        o.has_workflow("anything")


def test_a_closed_orchestrator_ends_its_waits(make_orchestrator, unique):
    o = make_orchestrator()
    wid = f"closing_{unique}"
    slow_workflow(o, wid, ms=20_000, steps=1)
    execution_id = o.execute_workflow(wid, async_execution=True).value()
    seen = []
    o.watch_workflow(execution_id, seen.append, interval=0.02)

    async def close_while_awaiting():
        waiting = asyncio.ensure_future(o.wait_async(execution_id))
        await asyncio.sleep(0.3)
        threading.Thread(target=o.close).start()
        return await asyncio.wait_for(waiting, timeout=15)

    started = time.monotonic()
    result = asyncio.run(close_while_awaiting())
    # Ended long before the 20 s step: refused as closed, or with the end the
    # close brought (an embedded engine's plugins are stopped).
    if result:
        assert result.value()["status"] in qo.TERMINAL_STATUSES and o.backend != "remote"
    else:
        assert result.error().code is PluginErrorCode.InvalidState
    deadline = time.monotonic() + 15
    while not (seen and ("status" not in seen[-1] or seen[-1]["status"] in qo.TERMINAL_STATUSES)):
        assert time.monotonic() < deadline, seen[-1:]
        time.sleep(0.02)
    if "status" not in seen[-1]:
        assert seen[-1]["error"]["code"] == "InvalidState"
    assert time.monotonic() - started < 12


# ----- connecting -----


def test_connect_errors_are_typed(daemon):
    with pytest.raises(plexus.NetworkError):
        qo.PluginOrchestrator.connect("127.0.0.1:1", token="x")
    with pytest.raises(plexus.UnauthorizedError):
        qo.PluginOrchestrator.connect(daemon.address, token="wrong")
    with pytest.raises(plexus.InvalidConfigurationError, match="TLS"):
        qo.PluginOrchestrator.connect("https://example.invalid", token="x")
    with qo.PluginOrchestrator.connect(f"http://{daemon.address}/", token=daemon.token) as o:
        assert o.backend == "remote"


def test_connect_reads_the_token_file(daemon, monkeypatch):
    monkeypatch.delenv("PLEXUS_TOKEN", raising=False)
    with qo.PluginOrchestrator.connect(daemon.address, token_file=Path(daemon.data) / "token") as o:
        assert "plexus.csv" in {p["id"] for p in o.list_plugins()}


def test_the_wheel_ships_type_stubs_that_match_the_extension():
    import ast

    from plexus import _native

    package = Path(plexus.__file__).parent
    assert (package / "py.typed").is_file()
    stub = ast.parse((package / "_native.pyi").read_text())
    engine = next(n for n in stub.body if isinstance(n, ast.ClassDef) and n.name == "Engine")
    stubbed = {f.name for f in engine.body if isinstance(f, ast.FunctionDef)}
    assert stubbed == {name for name in dir(_native.Engine) if not name.startswith("_")}
    functions = {f.name for f in stub.body if isinstance(f, ast.FunctionDef)}
    assert functions == {"set_log_handler", "data_dir"} and callable(_native.set_log_handler)


def test_one_id_registered_from_many_threads_is_registered_once(orchestrator, backend, unique):
    import concurrent.futures

    workflow = qo.Workflow(f"race_{unique}", "Race").add_step(echo_step("only"))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: orchestrator.register_workflow(workflow), range(8)))
    won = [r for r in results if r]
    assert all(r.error().code is PluginErrorCode.AlreadyExists for r in results if not r)
    # In this process it is one step; a daemon's other clients are not held back.
    assert len(won) == 1 if backend != "remote" else len(won) >= 1
