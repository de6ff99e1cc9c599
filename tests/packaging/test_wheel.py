"""The sdist and the wheel hold everything the package needs.

The distributions are built from a copy of the working tree (``python -m
build --no-isolation``: the sdist, then the wheel from the sdist, with the
pinned setuptools of this environment and no network). The wheel is installed
alone into a fresh virtual environment, and ``backchannel --version`` and
``backchannel demo`` (which starts a relay subprocess) run from it, outside
the checkout.

Why this fails when a file is missing from the wheel: the fresh environment is
made without ``--system-site-packages`` (which would also bring in whatever
the base interpreter has), and holds only the wheel. The dependencies come
from this environment's site-packages, added by a ``.pth`` file as plain
``sys.path`` entries: the ``.pth`` files *inside* those directories are not
processed, so the editable install's path to ``src/`` never joins
``sys.path``. PYTHONPATH is unset and the working directory is an empty
temporary one. ``import backchannel`` can then only find the installed copy
(checked), so a missing SQL migration leaves the demo relay without its
tables, and a missing ``py.typed`` or module fails the checks below.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from backchannel import __version__
from tests.e2e.test_demo_cmd import EXPECTED
from tests.relay.procs import REPO

pytestmark = pytest.mark.slow

PACKAGE = REPO / "src" / "backchannel"
# What a build must not see: the environment, caches, earlier build output.
IGNORE = shutil.ignore_patterns(".*", "__pycache__", "*.egg-info", "build", "dist")

_PROBE = """
import importlib.metadata, importlib.resources, json, sys
import backchannel
from backchannel.store import _migrations
root = importlib.resources.files("backchannel")
print(json.dumps({
    "file": backchannel.__file__,
    "version": backchannel.__version__,
    "metadata_version": importlib.metadata.version("backchannel"),
    "py_typed": root.joinpath("py.typed").is_file(),
    "migrations": {d: len(_migrations.load(d)) for d in ("sqlite", "postgres")},
    "path": sys.path,
}))
"""


def _env(**extra: str) -> dict[str, str]:
    """This environment without PYTHON* (PYTHONPATH, PYTHONHOME, ...) nor BACKCHANNEL_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "BACKCHANNEL_"))}
    env.update(extra)
    return env


def _run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    p = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 0, f"{cmd} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


def _package_files() -> set[str]:
    """Every file of the package in the working tree, as a path inside the wheel."""
    return {
        p.relative_to(PACKAGE.parent).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_wheel_installs_alone_and_runs_the_demo_outside_the_checkout(tmp_path: Path) -> None:
    pytest.importorskip("build", reason="the build package is absent: run make (requirements.lock)")
    pytest.importorskip("setuptools", reason="setuptools is absent: nothing to build with offline")
    work = tmp_path / "work"  # an empty working directory for every command
    work.mkdir()

    # Build from a copy, so that the checkout gets no build/ nor egg-info.
    tree = tmp_path / "tree"
    shutil.copytree(REPO, tree, ignore=IGNORE)
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, tree, cwd=work)
    [sdist] = dist.glob("backchannel-*.tar.gz")
    [wheel] = dist.glob("backchannel-*.whl")
    assert wheel.name == f"backchannel-{__version__}-py3-none-any.whl"

    with tarfile.open(sdist) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "pyproject.toml"} <= in_sdist
    assert {f"src/{f}" for f in _package_files()} <= in_sdist
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    missing = _package_files() - in_wheel
    assert not missing, f"missing from the wheel: {sorted(missing)}"
    assert f"backchannel-{__version__}.dist-info/licenses/LICENSE" in in_wheel

    # A fresh environment holding the wheel alone; the dependencies come from
    # this environment's site-packages as plain path entries (see the docstring).
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=work)
    python = venv / "bin" / "python"
    _run(
        sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
        "--disable-pip-version-check", "--no-deps", "--no-index", wheel,
        cwd=work,
    )  # fmt: skip
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=work)
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(purelib.strip(), "_backchannel_test_deps.pth").write_text("\n".join(deps) + "\n")

    probe = json.loads(_run(python, "-c", _PROBE, cwd=work))
    assert Path(probe["file"]).is_relative_to(venv), probe["file"]
    assert not any(Path(p).is_relative_to(REPO / "src") for p in probe["path"] if p)
    assert probe["version"] == probe["metadata_version"] == __version__
    assert probe["py_typed"]
    sql = {
        d: len(list((PACKAGE / "store" / "migrations" / d).glob("*.sql")))
        for d in probe["migrations"]
    }
    assert probe["migrations"] == sql

    backchannel = venv / "bin" / "backchannel"
    assert _run(backchannel, "--version", cwd=work) == f"backchannel {__version__}\n"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = _env(BACKCHANNEL_KDF="fast", TMPDIR=str(scratch))
    doc = json.loads(_run(backchannel, "demo", "--json", cwd=work, env=env))
    assert {s["name"]: s["outcome"] for s in doc["steps"]} == EXPECTED
    assert list(work.iterdir()) == []  # nothing written where it ran
