"""Fixtures: the example plugins, the repository's data, a daemon, and an
orchestrator of each backend (``embedded`` in this process, ``durable`` in
this process over a SQLite file, ``remote`` through that daemon): every test
taking ``orchestrator`` runs on each.

Environment: ``PLEXUS_TEST_PLUGINS`` (the built example plugins, default
``target/test-plugins``) and ``PLEXUS_BIN`` (the ``plexus`` binary, default
``target/debug/plexus``), as ``scripts/test.sh`` sets them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from plexus.orchestration import PluginOrchestrator

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "examples" / "data" / "seattle-weather.csv"


def _path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else default


PLUGINS = _path("PLEXUS_TEST_PLUGINS", ROOT / "target" / "test-plugins")
PLEXUS_BIN = _path("PLEXUS_BIN", ROOT / "target" / "debug" / "plexus")


#: The plugin folders the tests use (the Python and JavaScript components are
#: left out: they take seconds to load, and their SDKs have tests of their own).
USED = ("csv-native", "echo-native", "echo-wasm", "transformer-wasm", "validator-wasm")


@pytest.fixture(scope="session")
def plugins_dir(tmp_path_factory) -> Path:
    """A plugin directory holding links to the used example plugins."""
    chosen = tmp_path_factory.mktemp("plugins")
    for name in USED:
        assert (PLUGINS / name).is_dir(), f"no plugin {name} in {PLUGINS}: run scripts/build-plugins.sh {PLUGINS}"
        (chosen / name).symlink_to(PLUGINS / name, target_is_directory=True)
    return chosen


@pytest.fixture(scope="session")
def data_csv() -> Path:
    assert DATA.is_file(), DATA
    return DATA


class Daemon:
    """A ``plexus daemon`` on an ephemeral loopback port, over a throw-away data directory."""

    def __init__(self, data: Path, plugins: Path):
        self.data = data
        self.log = open(data / "daemon.log", "wb")
        self.process = subprocess.Popen(
            [
                str(PLEXUS_BIN), "daemon", "--listen", "127.0.0.1:0", "--grace-period", "5s",
                "--plugins-dir", str(plugins), "--state-db", str(data / "state.db"),
                "--token-file", str(data / "token"), "--cache-dir", str(data / "cache"),
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env={**os.environ, "PLEXUS_DATA_DIR": str(data), "RUST_LOG": "info"},
        )
        line = self.process.stdout.readline().decode()
        try:
            self.address = json.loads(line)["listening"]
        except (ValueError, KeyError):
            self.stop()
            raise RuntimeError(f"the daemon did not start: {line}\n{(data / 'daemon.log').read_text()}")
        self.token = (data / "token").read_text().strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="session")
def daemon(tmp_path_factory, plugins_dir):
    d = Daemon(tmp_path_factory.mktemp("daemon"), plugins_dir)
    yield d
    d.stop()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """Compiled components, shared by the embedded orchestrators of the session."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(params=["embedded", "durable", "remote"])
def backend(request) -> str:
    """In this process (state in memory, or in a SQLite file), or a daemon."""
    return request.param


@pytest.fixture
def make_orchestrator(backend, plugins_dir, cache_dir, tmp_path, request):
    """Build orchestrators of the test's backend; each is closed after the
    test (a remote one also clears the workflows it registered). The durable
    ones of a test share one state file, one at a time."""
    made = []

    def make(**options) -> PluginOrchestrator:
        if backend == "embedded":
            o = PluginOrchestrator([plugins_dir], cache_dir=cache_dir, **options)
        elif backend == "durable":
            for earlier in made:
                earlier.close()
            o = PluginOrchestrator([plugins_dir], state=tmp_path / "state.db", cache_dir=cache_dir, **options)
        else:
            d = request.getfixturevalue("daemon")
            o = PluginOrchestrator.connect(d.address, token=d.token, **options)
        made.append(o)
        return o

    yield make
    for o in made:
        if o.backend == "remote" and not o._engine.closed:
            o.clear_workflows()
        o.close()


@pytest.fixture
def orchestrator(make_orchestrator) -> PluginOrchestrator:
    return make_orchestrator()


@pytest.fixture
def unique() -> str:
    """A suffix that keeps ids apart on the shared daemon."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A directory the CSV plugin may write into (the daemon runs as this user too)."""
    out = tmp_path / "out"
    out.mkdir()
    yield out
    shutil.rmtree(out, ignore_errors=True)


def slow_workflow(orchestrator, workflow_id: str, ms: int = 150, steps: int = 3, **fields) -> None:
    """Register ``steps`` steps in a row, each sleeping ``ms`` (echo's ``sleep``)."""
    from plexus.orchestration import Workflow, WorkflowStep

    workflow = Workflow(workflow_id, "Slow")
    for key, value in fields.items():
        setattr(workflow, key, value)
    previous = None
    for i in range(steps):
        step = WorkflowStep(f"s{i + 1}", "plexus.echo.native", "sleep")
        step.parameters = {"ms": ms}
        if previous:
            step.dependencies = [previous]
        workflow.add_step(step)
        previous = step.id
    result = orchestrator.register_workflow(workflow)
    assert result, result.error()
