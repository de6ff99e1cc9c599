"""The version lives in one place, ``backchannel.__version__``, and ``--version`` prints it."""

from __future__ import annotations

import tomllib

from backchannel import __version__
from tests.e2e.conftest import backchannel, base_env
from tests.relay.procs import REPO


def test_version_prints_the_package_version_and_exits_0() -> None:
    r = backchannel("--version")
    assert r.code == 0, r.err
    assert r.out == f"backchannel {__version__}\n"
    assert r.err == ""


def test_version_needs_no_home_nor_passphrase_and_wins_over_a_command() -> None:
    env = base_env()
    del env["BACKCHANNEL_PASSPHRASE"]
    # Eager: printed before the home is resolved or any command runs.
    r = backchannel("--home", "/nonexistent/home", "--version", "inbox", env=env)
    assert r.code == 0, r.err
    assert r.out == f"backchannel {__version__}\n"


def test_pyproject_reads_the_version_from_the_package() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "backchannel.__version__"
