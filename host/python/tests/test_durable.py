"""The embedded engine over a SQLite state file: what was recorded survives
the Python process, and a killed process's executions resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import plexus
from plexus import PluginErrorCode
from plexus.orchestration import PluginOrchestrator

from conftest import slow_workflow


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )


def test_a_killed_process_executions_resume_where_they_were(plugins_dir, cache_dir, tmp_path):
    state = tmp_path / "state.db"
    marker = tmp_path / "first-step-done"
    # A child registers a workflow of three 1.5 s steps, starts it, and is
    # killed (SIGKILL, no cleanup) once the first step has completed.
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import json, time
            from plexus.orchestration import PluginOrchestrator, Workflow, WorkflowStep
            o = PluginOrchestrator([{str(plugins_dir)!r}], state={str(state)!r}, cache_dir={str(cache_dir)!r})
            w = Workflow("durable", "Durable")
            for i, dep in ((1, None), (2, "s1"), (3, "s2")):
                s = WorkflowStep(f"s{{i}}", "plexus.echo.native", "sleep")
                s.parameters = {{"ms": 1500}}
                s.max_retries = 1  # an attempt the kill interrupted runs again
                s.dependencies = [dep] if dep else []
                w.add_step(s)
            assert o.register_workflow(w)
            eid = o.execute_workflow("durable", async_execution=True).value()
            print(json.dumps(eid), flush=True)
            while o.get_workflow_status(eid).value()["completed_steps"] < 1:
                time.sleep(0.01)
            open({str(marker)!r}, "w").close()
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        execution_id = json.loads(child.stdout.readline())
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), "the first step did not complete"
    finally:
        child.kill()
        child.wait()

    with PluginOrchestrator([plugins_dir], state=state, cache_dir=cache_dir) as o:
        assert o.backend == "durable"
        assert o.has_workflow("durable")
        final = o.wait_for_completion(execution_id, timeout=60).value()
        assert final["status"] == "completed", (final["error"], final["steps"])
        steps = {s["id"]: s for s in final["steps"]}
        # The step completed before the kill was not run again; the one it
        # interrupted was (its retry policy allows a second attempt).
        assert steps["s1"]["attempts"] == 1
        assert steps["s2"]["attempts"] == 2
        assert steps["s1"]["ended_at_ms"] < steps["s3"]["started_at_ms"]
        assert all(s["status"] == "completed" for s in steps.values())

    # Everything recorded is there in a third process too.
    check = run_python(f"""
        from plexus.orchestration import PluginOrchestrator
        o = PluginOrchestrator([{str(plugins_dir)!r}], state={str(state)!r}, cache_dir={str(cache_dir)!r})
        print(o.get_workflow_status({execution_id!r}).value()["status"], o.list_workflows())
    """)
    assert check.returncode == 0, check.stderr
    assert check.stdout.split(None, 1) == ["completed", "['durable']\n"]


def test_the_state_file_is_one_process_s(plugins_dir, cache_dir, tmp_path):
    state = tmp_path / "state.db"
    with PluginOrchestrator([plugins_dir], state=state, cache_dir=cache_dir) as first:
        slow_workflow(first, "held", ms=1, steps=1)
        with pytest.raises(plexus.PluginError) as taken:
            PluginOrchestrator([plugins_dir], state=state, cache_dir=cache_dir)
        assert taken.value.code is PluginErrorCode.Internal
        assert "lock" in taken.value.message
    # Released with the first.
    with PluginOrchestrator([plugins_dir], state=state, cache_dir=cache_dir) as second:
        assert second.list_workflows() == ["held"]
        run = second.execute_workflow("held").value()
        assert second.get_workflow_status(run).value()["status"] == "completed"


def test_host_logs_reach_python_logging(plugins_dir, cache_dir, tmp_path, caplog):
    records = []
    plexus.set_log_handler(lambda level, target, message: records.append((level, target, message)), "info")
    try:
        with PluginOrchestrator([plugins_dir], state=tmp_path / "s.db", cache_dir=cache_dir) as o:
            slow_workflow(o, "logged", ms=1, steps=1)
            deadline = time.monotonic() + 5
            while not any("workflow registered" in m for _, _, m in records) and time.monotonic() < deadline:
                time.sleep(0.01)
        registered = [r for r in records if "workflow registered" in r[2]]
        assert registered and registered[0][0] == 20 and "workflow=logged" in registered[0][2]
        assert registered[0][1].startswith("plexus_daemon")

        caplog.set_level("INFO", logger="plexus")
        plexus.enable_logging("info")
        with PluginOrchestrator([plugins_dir], state=tmp_path / "t.db", cache_dir=cache_dir) as o:
            slow_workflow(o, "logged_too", ms=1, steps=1)
            deadline = time.monotonic() + 5
            while "logged_too" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.01)
        assert "workflow=logged_too" in caplog.text
    finally:
        plexus.set_log_handler(None)


def test_no_state_means_nothing_is_kept(plugins_dir, cache_dir):
    with PluginOrchestrator([plugins_dir], cache_dir=cache_dir) as o:
        assert o.backend == "embedded"
        slow_workflow(o, "ephemeral", ms=1, steps=1)
    with PluginOrchestrator([plugins_dir], cache_dir=cache_dir) as o:
        assert not o.has_workflow("ephemeral")


def test_a_bad_plugin_directory_is_reported_not_fatal(tmp_path, cache_dir, plugins_dir):
    broken = tmp_path / "plugins"
    (broken / "bad").mkdir(parents=True)
    (broken / "bad" / "plugin.toml").write_text("this is not toml = = =")
    (broken / "echo-native").symlink_to(plugins_dir / "echo-native", target_is_directory=True)
    with PluginOrchestrator([broken], cache_dir=cache_dir) as o:
        assert [p["id"] for p in o.list_plugins()] == ["plexus.echo.native"]
        errors = o.plugin_load_errors()
        assert len(errors) == 1 and "bad" in json.dumps(errors)
    assert os.path.isdir(broken)


def test_ctrl_c_interrupts_a_waiting_call(plugins_dir, cache_dir, tmp_path):
    ready = tmp_path / "ready"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            from plexus.orchestration import PluginOrchestrator, Workflow, WorkflowStep
            o = PluginOrchestrator([{str(plugins_dir)!r}], cache_dir={str(cache_dir)!r})
            step = WorkflowStep("long", "plexus.echo.native", "sleep")
            step.parameters = {{"ms": 30000}}
            o.register_workflow(Workflow("long", "Long").add_step(step)).value()
            open({str(ready)!r}, "w").close()
            try:
                o.execute_workflow("long")          # waits for the end: 30 s
            except KeyboardInterrupt:
                print("interrupted", flush=True)
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=20)
        assert out.strip() == "interrupted"
        assert time.monotonic() - sent < 10
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
