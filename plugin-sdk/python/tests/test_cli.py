"""`python -m plexus_sdk`: describe, and build's one-line errors (no component is built here)."""

import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest

from plexus_sdk import build

APP = textwrap.dedent(
    """
    from plexus_sdk import Plugin

    plugin = Plugin("example.cli", version="0.1.0", name="CLI")

    @plugin.operation
    def greet(ctx, name: str) -> str:
        \"\"\"Greets.\"\"\"
        return f"Hello, {name}!"
    """
)


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "plexus_sdk", *args], capture_output=True, text=True, cwd=cwd)


def project(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_help_shows_examples():
    done = run("--help")
    assert done.returncode == 0
    assert "python -m plexus_sdk build . --out target/plugin.wasm" in done.stdout
    assert run("build", "--help").returncode == 0


def test_describe_prints_the_metadata(tmp_path):
    done = run("describe", str(project(tmp_path, {"app.py": APP})))
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)
    assert (meta["id"], meta["contract_version"], meta["operations"][0]["name"]) == ("example.cli", "0.4.0", "greet")


def test_the_module_comes_from_pyproject_or_the_option(tmp_path):
    p = project(tmp_path, {"plugin/main.py": APP, "pyproject.toml": '[tool.plexus]\nmodule = "plugin.main"\n'})
    assert json.loads(run("describe", str(p)).stdout)["id"] == "example.cli"
    assert json.loads(run("describe", str(p), "--module", "plugin.main").stdout)["id"] == "example.cli"


@pytest.mark.parametrize(
    "files, message",
    [
        ({}, "error: no app.py (or app/__init__.py) in {dir}: write the plugin there, or name its module (the default module `app`)"),
        ({"pyproject.toml": '[tool.plexus]\nmodule = "main"\n'}, "error: no main.py (or main/__init__.py) in {dir}: write the plugin there, or name its module ([tool.plexus] module)"),
        ({"app.py": "x = 1\n"}, "error: module `app` defines no Plugin object: add one at module level, e.g. plugin = Plugin(id=\"com.example.name\", version=\"0.1.0\")"),
        ({"app.py": APP + "other = Plugin('b', version='1')\n"}, "error: module `app` defines 2 Plugin objects (other, plugin): keep one"),
        ({"app.py": "import not_a_module_anywhere\n"}, "error: importing `app` from {dir} failed: ModuleNotFoundError: No module named 'not_a_module_anywhere'"),
        ({"app.py": APP, "pyproject.toml": '[tool.plexus]\nmodul = "app"\n'}, "error: {dir}/pyproject.toml: unknown key `modul` in [tool.plexus] (known: module)"),
        ({"app.py": APP, "pyproject.toml": '[project]\nname = "x"\nversion = "0.2.0"\n'}, "error: version mismatch: pyproject.toml says 0.2.0, the Plugin in app says 0.1.0: make them equal"),
        ({"app.py": APP, "pyproject.toml": "[tool.plexus\n"}, "error: {dir}/pyproject.toml: "),
    ],
)
def test_build_and_describe_fail_with_one_clear_line(tmp_path, files, message):
    p = project(tmp_path, files)
    for command in ("build", "describe"):
        done = run(command, str(p), "--out", str(tmp_path / "x.wasm")) if command == "build" else run(command, str(p))
        assert done.returncode == 1
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(message.format(dir=p.resolve())), lines[0]
    assert not (tmp_path / "x.wasm").exists()


def test_a_missing_project_folder(tmp_path):
    done = run("build", str(tmp_path / "nope"))
    assert (done.returncode, done.stderr) == (1, f"error: {tmp_path / 'nope'}: no such project folder\n")


def test_bad_arguments_exit_2():
    assert run("build", "--nope").returncode == 2
    assert run().returncode == 2


def test_build_without_componentize_py_names_it(tmp_path, monkeypatch, capsys):
    p = project(tmp_path, {"app.py": APP})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "componentize_py" else real(name, *a))
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert build.main(["build", str(p)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: componentize-py is not installed in this Python ({sys.executable}): pip install componentize-py==0.25.1")
    assert not (p / "target").exists()
    sys.modules.pop("app", None)
