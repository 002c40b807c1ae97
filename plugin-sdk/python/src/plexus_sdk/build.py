"""``python -m plexus_sdk``: build a plugin project into a WASM component, or
print its metadata.

A project is a folder with the plugin module (``app.py`` unless
``pyproject.toml`` says otherwise in ``[tool.plexus] module = "..."``). The
build imports the module in this Python first (to find its :class:`Plugin`
and report problems in one line), then generates an entry module in a
temporary folder and runs componentize-py on it with the WIT this package
carries. ``plexus plugin pack`` runs the same command.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from .plugin import Plugin

__all__ = ["BuildError", "Project", "build", "find_plugin", "main", "wit_path"]

COMPONENTIZE_PY = "componentize-py"
COMPONENTIZE_PY_VERSION = "0.25.1"
WORLD = "plexus-plugin"
ENTRY_MODULE = "plexus_component_entry"
_SETTINGS = {"module"}

# Runs componentize-py's command line in a child Python (the one running this).
_RUN_COMPONENTIZE_PY = (
    "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())"
)


class BuildError(Exception):
    """A problem with the project or the tools, as one line for people."""


def wit_path() -> Path:
    """The WIT world file this SDK builds against (``plexus-plugin.wit``, carried in the package).

    Raises:
        BuildError: the file is missing (a broken install).
    """
    path = Path(__file__).resolve().parent / "wit" / "plexus-plugin.wit"
    if not path.is_file():
        raise BuildError(f"the SDK's WIT is missing ({path}): reinstall plexus-plugin-sdk")
    return path


def _load_toml(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, ValueError) as e:
        raise BuildError(f"{path}: {e}") from None


@dataclass
class Project:
    """A plugin project: its folder, the plugin module's name and, when
    ``pyproject.toml`` has one, its ``[project] version``."""

    dir: Path
    module: str
    version: Optional[str] = None

    @classmethod
    def open(cls, dir: Path, module: Optional[str] = None) -> Project:
        """Read ``dir`` (and ``dir/pyproject.toml`` if present); ``module``
        overrides ``[tool.plexus] module`` (default ``app``).

        Raises:
            BuildError: no such folder, a bad ``pyproject.toml``, an unknown
                ``[tool.plexus]`` key, or no module file.
        """
        dir = dir.resolve()
        if not dir.is_dir():
            raise BuildError(f"{dir}: no such project folder")
        settings: dict = {}
        version = None
        pyproject = dir / "pyproject.toml"
        if pyproject.is_file():
            data = _load_toml(pyproject)
            settings = data.get("tool", {}).get("plexus", {})
            if not isinstance(settings, dict):
                raise BuildError(f"{pyproject}: [tool.plexus] must be a table")
            unknown = sorted(set(settings) - _SETTINGS)
            if unknown:
                raise BuildError(
                    f"{pyproject}: unknown key `{unknown[0]}` in [tool.plexus] (known: {', '.join(sorted(_SETTINGS))})"
                )
            version = data.get("project", {}).get("version")
        name = module or settings.get("module") or "app"
        if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
            raise BuildError(f"module name {name!r} is not a Python module name")
        project = cls(dir, name, version if isinstance(version, str) else None)
        if project.module_file() is None:
            rel = name.replace(".", "/")
            where = "--module" if module else ("[tool.plexus] module" if "module" in settings else "the default module `app`")
            raise BuildError(f"no {rel}.py (or {rel}/__init__.py) in {dir}: write the plugin there, or name its module ({where})")
        return project

    def module_file(self) -> Optional[Path]:
        """The module's file, if it exists."""
        base = self.dir.joinpath(*self.module.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None


def find_plugin(project: Project) -> Plugin:
    """Import the project's module in this Python and return its one :class:`Plugin`.

    Raises:
        BuildError: the import failed (with the exception, one line), or the
            module defines no or several Plugin objects, or the plugin's
            version differs from ``pyproject.toml``'s.
    """
    from ._component import plugin_of

    top = project.module.split(".")[0]
    for name in list(sys.modules):
        if name == top or name.startswith(top + "."):
            del sys.modules[name]
    sys.path.insert(0, str(project.dir))
    try:
        module = importlib.import_module(project.module)
    except (Exception, SystemExit) as e:
        raise BuildError(f"importing `{project.module}` from {project.dir} failed: {type(e).__name__}: {e}") from e
    finally:
        sys.path.remove(str(project.dir))
    try:
        plugin = plugin_of(module)
    except LookupError as e:
        raise BuildError(str(e)) from None
    if project.version is not None and project.version != plugin.version:
        raise BuildError(
            f"version mismatch: pyproject.toml says {project.version}, the Plugin in {project.module} says "
            f"{plugin.version}: make them equal"
        )
    return plugin


def _componentize_py_version() -> str:
    if importlib.util.find_spec("componentize_py") is None:
        raise BuildError(
            f"componentize-py is not installed in this Python ({sys.executable}): "
            f"pip install {COMPONENTIZE_PY}=={COMPONENTIZE_PY_VERSION}"
        )
    try:
        return importlib.metadata.version(COMPONENTIZE_PY)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _stderr_fd() -> Optional[int]:
    """Our stderr's descriptor (componentize-py's stdout goes there: ours is
    the component's path alone), or None when stderr has none (e.g. captured)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def build(project: Project, out: Path, *, log=print) -> Path:
    """Build ``project`` into the component ``out``; returns its absolute path.

    ``log`` receives progress lines (default: printed; the CLI sends them to stderr).

    Raises:
        BuildError: a problem with the project (see :func:`find_plugin`), a
            missing componentize-py, or a failed componentize-py run (its own
            output comes first, on stderr).
    """
    plugin = find_plugin(project)
    version = _componentize_py_version()
    wit = wit_path()
    if version != COMPONENTIZE_PY_VERSION:
        log(f"warning: componentize-py {version} is installed; this SDK is tested with {COMPONENTIZE_PY_VERSION}")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    sdk_parent = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    site_dirs: list[str] = []
    if sys.prefix != sys.base_prefix:
        # componentize-py adds $VIRTUAL_ENV's site-packages (else it asks `python3` on PATH).
        env["VIRTUAL_ENV"] = sys.prefix
    else:
        # Not a venv: this Python's own site-packages, whatever `python3` is.
        site_dirs = [sysconfig.get_paths()[key] for key in ("purelib", "platlib")]
    with tempfile.TemporaryDirectory(prefix="plexus-build-") as tmp:
        entry = Path(tmp) / f"{ENTRY_MODULE}.py"
        entry.write_text(
            "# Generated by `python -m plexus_sdk build`: the component's entry module.\n"
            f"import {project.module} as _app\n"
            "from plexus_sdk._component import plugin_of as _plugin_of\n\n"
            "Guest = _plugin_of(_app)._guest_class()\n"
        )
        paths = [tmp, str(project.dir)]
        for extra in [str(sdk_parent), *site_dirs]:
            if extra not in paths and Path(extra).is_dir():
                paths.append(extra)
        command = [sys.executable, "-c", _RUN_COMPONENTIZE_PY, "-q", "-d", str(wit), "-w", WORLD, "componentize", ENTRY_MODULE]
        for p in paths:
            command += ["-p", p]
        command += ["-o", str(out)]
        log(f"building plugin `{plugin.id}` {plugin.version} ({project.module_file()}) with componentize-py {version} ...")
        started = time.monotonic()
        try:
            done = subprocess.run(command, cwd=tmp, env=env, stdout=_stderr_fd(), stderr=None)
        except OSError as e:
            raise BuildError(f"cannot run componentize-py: {e}") from None
        if done.returncode != 0:
            raise BuildError(f"componentize-py failed (exit {done.returncode}) building {project.dir}: see its output above")
    size = out.stat().st_size
    log(f"built {out} ({size / 1e6:.1f} MB) in {time.monotonic() - started:.1f} s")
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m plexus_sdk",
        description="Build a Python Plexus plugin into a WASM component, or print its metadata.",
        epilog=(
            "examples:\n"
            "  python -m plexus_sdk build . --out target/plugin.wasm\n"
            "  python -m plexus_sdk describe path/to/project\n"
            "  plexus call --artifact target/plugin.wasm greet --params '{\"name\": \"Ada\"}'"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"plexus-plugin-sdk {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    b = commands.add_parser(
        "build",
        help="build the project into a WASM component (componentize-py)",
        description="Build the project's plugin module into a WASM component; prints the component's path.",
    )
    b.add_argument("project", nargs="?", default=".", type=Path, help="the project folder (default: .)")
    b.add_argument("--out", "-o", type=Path, help="the component to write (default: PROJECT/target/<module>.wasm)")
    b.add_argument("--module", "-m", help="the plugin module (default: [tool.plexus] module in pyproject.toml, else app)")
    d = commands.add_parser(
        "describe",
        help="print the plugin's metadata as JSON (from this Python, no build)",
        description="Import the project's plugin module here and print its metadata (JSON), as the host would read it.",
    )
    d.add_argument("project", nargs="?", default=".", type=Path, help="the project folder (default: .)")
    d.add_argument("--module", "-m", help="the plugin module (default: [tool.plexus] module in pyproject.toml, else app)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line; returns the exit code (0 only on success, 1 on a
    problem, reported as one line on stderr, 2 on bad arguments)."""
    args = _parser().parse_args(argv)
    try:
        project = Project.open(args.project, args.module)
        if args.command == "describe":
            print(json.dumps(find_plugin(project).metadata(), indent=2))
            return 0
        out = args.out if args.out is not None else project.dir / "target" / f"{project.module.split('.')[-1]}.wasm"
        path = build(project, out, log=lambda line: print(line, file=sys.stderr, flush=True))
        print(path)
        return 0
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
