"""A real component: `python -m plexus_sdk build`, then called through a Plexus binary.

Needs PLEXUS_BIN (a `plexus` binary, e.g. target/release/plexus); skipped without it.
Slow: about 15 s to build and 15-30 s for the host's first compile (cached after that).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

PLEXUS_BIN = os.environ.get("PLEXUS_BIN")

pytestmark = pytest.mark.skipif(
    not PLEXUS_BIN, reason="set PLEXUS_BIN to a plexus binary to build a component and call it through the host"
)

APP = textwrap.dedent(
    """
    from typing import Optional
    from plexus_sdk import Context, Plugin, PluginError

    plugin = Plugin("test.component", version="0.1.0", name="Component test", capabilities=["workflow-step"])

    @plugin.operation
    def mean(ctx: Context, values: list[float], label: Optional[str] = None) -> dict:
        \"\"\"Mean of values.\"\"\"
        if not values:
            raise PluginError.invalid_input("`values` is empty")
        ctx.log.info(f"mean of {len(values)} values")
        ctx.progress(1.0, "done")
        ctx.metric("values", len(values))
        ctx.state_set("seen", len(values))
        return {"mean": sum(values) / len(values), "label": label, "seen": ctx.state_get("seen")}

    @plugin.operation
    def crash(ctx: Context, n: int = 0) -> int:
        return 1 // n

    SEEN = []

    @plugin.on_initialize
    def setup(config):
        SEEN.append(config)

    @plugin.operation
    def initialized(ctx: Context) -> list:
        \"\"\"The configs on_initialize got in this instance.\"\"\"
        return SEEN

    @plugin.operation
    def start(ctx: Context) -> str:
        return ctx.start_workflow("nightly")
    """
)


@pytest.fixture(scope="module")
def component(tmp_path_factory):
    project = tmp_path_factory.mktemp("project")
    (project / "app.py").write_text(APP)
    (project / "pyproject.toml").write_text('[project]\nname = "t"\nversion = "0.1.0"\n\n[tool.plexus]\nmodule = "app"\n')
    out = project / "out" / "t.wasm"
    done = subprocess.run(
        [sys.executable, "-m", "plexus_sdk", "build", str(project), "--out", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    return out, tmp_path_factory.mktemp("cache")


def call(component, operation, params):
    artifact, cache = component
    done = subprocess.run(
        [PLEXUS_BIN, "call", "--artifact", str(artifact), operation, "--params", json.dumps(params), "--json",
         "--cache-dir", str(cache)],
        capture_output=True,
        text=True,
    )
    return done.returncode, json.loads(done.stdout), done.stderr


def test_the_component_loads_and_describes_itself(component):
    artifact, cache = component
    done = subprocess.run(
        [PLEXUS_BIN, "plugins", "check", str(artifact), "--json", "--cache-dir", str(cache)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [checked] = json.loads(done.stdout)["checked"]
    assert (checked["ok"], checked["id"], checked["version"]) == (True, "test.component", "0.1.0")


def test_a_call_returns_output_and_metrics(component):
    code, out, err = call(component, "mean", {"values": [1, 2, 4.5], "label": "x"})
    assert code == 0, err
    assert out["output"] == {"mean": 2.5, "label": "x", "seen": 3}
    assert out["metrics"] == {"values": 3.0}
    assert "mean of 3 values" in err


def test_errors_are_plugin_errors_not_traps(component):
    code, out, _ = call(component, "mean", {"values": [1, "x"]})
    assert code == 3
    assert out["error"]["plugin_error"] == {
        "kind": "invalid-input",
        "message": 'parameters of `mean`: `values[1]`: expected a number, got a string "x"',
        "retryable": False,
    }
    code, out, _ = call(component, "crash", {})
    assert code == 3
    assert out["error"]["plugin_error"]["kind"] == "failed"
    # The component runs CPython 3.14, whose message may differ from this Python's.
    assert out["error"]["plugin_error"]["message"].startswith("`crash` raised ZeroDivisionError: ")


def test_the_host_runs_the_initialize_hook_before_the_call_and_links_orchestration(component):
    code, out, err = call(component, "initialized", {})
    assert code == 0, err
    assert out["output"] == [{}], "one instance per call: initialized once, with the (empty) config"
    code, out, _ = call(component, "start", {})
    assert code == 3
    assert out["error"]["plugin_error"]["kind"] == "failed"
    assert "no orchestration services" in out["error"]["plugin_error"]["message"]
