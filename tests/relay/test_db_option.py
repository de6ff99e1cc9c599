"""``relay serve --db``: a plain file path means SQLite; URLs work as before.

``--db relay.db`` and ``--db /var/lib/backchannel/relay.db`` mean
``sqlite:///<absolute path>`` in every settings source (flag, environment,
TOML); a database whose directory is missing is refused in one line that says
what to do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backchannel.errors import ConfigError
from backchannel.relay.settings import resolve_settings
from backchannel.store.factory import sqlite_path

from .procs import REPO, RelayProcess, free_port


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env["BACKCHANNEL_RELAY_LOG_LEVEL"] = "warning"
    return env


def _serve(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "backchannel.relay", "serve", "--host", "127.0.0.1", *args]
    return subprocess.Popen(
        cmd, env=_env(), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _refusal(*args: str, cwd: Path) -> tuple[int, str]:
    """Exit status and stderr of a ``serve`` that must stop at start-up."""
    proc = _serve("--port", str(free_port()), *args, cwd=cwd)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err.decode()


# --- the forms, as settings -------------------------------------------------------


def test_relative_path_is_sqlite_under_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = resolve_settings({"db_url": "relay.db"}, env={})
    assert s.store_url == f"sqlite://{tmp_path / 'relay.db'}"  # sqlite:///<absolute path>
    assert sqlite_path(s.store_url) == str(tmp_path / "relay.db")
    nested = resolve_settings({"db_url": "data/../relay.db"}, env={})
    assert nested.store_url == s.store_url


def test_absolute_path_is_sqlite_at_that_path(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "backchannel" / "relay.db"
    s = resolve_settings({"db_url": str(path)}, env={})
    assert s.store_url == f"sqlite://{path}"


def test_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    s = resolve_settings({"db_url": "~/relay.db"}, env={})
    assert s.store_url == f"sqlite://{tmp_path / 'relay.db'}"


def test_a_path_with_url_characters_names_that_file(tmp_path: Path) -> None:
    path = tmp_path / "odd name?#%41.db"
    s = resolve_settings({"db_url": str(path)}, env={})
    assert sqlite_path(s.store_url) == str(path)


def test_plain_paths_work_from_the_environment_and_the_toml_file(tmp_path: Path) -> None:
    from_env = resolve_settings(env={"BACKCHANNEL_RELAY_DB_URL": str(tmp_path / "env.db")})
    assert from_env.store_url == f"sqlite://{tmp_path / 'env.db'}"
    toml = tmp_path / "relay.toml"
    toml.write_text(f'[relay]\ndb_url = "{tmp_path / "toml.db"}"\n')
    from_toml = resolve_settings(config_file=toml, env={})
    assert from_toml.store_url == f"sqlite://{tmp_path / 'toml.db'}"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///var/lib/backchannel/relay.db",
        "sqlite://relative/relay.db",
        "postgresql://relay@127.0.0.1:5432/relay?options=-csearch_path%3Drelay",
        "postgres://relay@127.0.0.1/relay",
        "memory://",
    ],
)
def test_urls_are_kept_as_given(url: str) -> None:
    assert resolve_settings({"db_url": url}, env={}).store_url == url


def test_no_db_is_the_embedded_database_in_the_data_directory(tmp_path: Path) -> None:
    s = resolve_settings({"data_dir": tmp_path}, env={})
    assert s.db_url == ""
    assert s.store_url == f"sqlite://{tmp_path / 'relay.db'}"


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("sqlite:relay.db", "sqlite:///"),
        ("postgresql:relay", "postgresql://"),
        ("/var/lib/backchannel/", "/var/lib/backchannel/relay.db"),
    ],
)
def test_slips_are_refused_with_what_to_write(value: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=hint):
        resolve_settings({"db_url": value}, env={})


# --- the forms, served ------------------------------------------------------------


def test_serve_with_a_relative_path_creates_the_database_in_the_current_directory(
    tmp_path: Path,
) -> None:
    port = free_port()
    proc = _serve("--db", "relay.db", "--port", str(port), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "relay did not become ready"
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stderr:
            proc.stderr.close()
    assert (tmp_path / "relay.db").is_file()
    assert (tmp_path / "relay-key").is_file()  # the log key beside the database


def test_serve_with_an_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "state" / "relay.db"
    path.parent.mkdir()
    with RelayProcess(str(path)) as relay:
        assert httpx.get(relay.base_url + "/v1/info").json()["cell_size"] == 4096
    assert path.is_file()


def test_serve_with_a_sqlite_url_as_before(tmp_path: Path) -> None:
    with RelayProcess(f"sqlite:///{tmp_path / 'url.db'}") as relay:
        assert httpx.get(relay.base_url + "/readyz").status_code == 200
    assert (tmp_path / "url.db").is_file()


@pytest.mark.parametrize("form", ["plain", "url"])
def test_a_missing_directory_is_refused_with_what_to_do(tmp_path: Path, form: str) -> None:
    missing = tmp_path / "no" / "such dir"
    db = str(missing / "relay.db")
    code, err = _refusal("--db", db if form == "plain" else f"sqlite://{db}", cwd=tmp_path)
    assert code == 2
    assert err.splitlines() == [
        f"error: the directory of the relay database, {missing}, does not exist; "
        f"create it (mkdir -p '{missing}') or give --db a file in an existing directory"
    ]
    assert not (tmp_path / "no").exists()  # nothing was created


def test_a_directory_given_as_the_database_is_refused(tmp_path: Path) -> None:
    code, err = _refusal("--db", str(tmp_path), cwd=tmp_path)
    assert code == 2
    assert err.splitlines() == [
        f"error: the relay database {tmp_path} is a directory; "
        f"give a file in it, e.g. --db {tmp_path / 'relay.db'}"
    ]


def test_an_unknown_scheme_is_one_line_without_the_url(tmp_path: Path) -> None:
    code, err = _refusal("--db", "mysql://relay:hunter2@127.0.0.1/relay", cwd=tmp_path)
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: unknown store URL scheme")
    assert "hunter2" not in err
