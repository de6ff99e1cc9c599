"""A home that is not as it should be, met through the CLI: one clear line, nothing lost.

* a wrong passphrase for the rounds (``sync``, ``run``);
* a home or vault whose permissions forbid the work (the commands run without
  root's power to ignore permissions, as an officer's would);
* a vault that is half written, not a vault at all, or left with its
  write-ahead log by a process killed in a commit;
* the keystore that cannot be written when the officer is made;
* two processes running one home's rounds.

Each refused command leaves every byte of the home as it was.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from backchannel.cli.main import main
from tests.e2e.conftest import (
    PASSPHRASE,
    Missions,
    Result,
    assert_one_line_error,
    base_env,
    set_up_missions,
    snapshot,
)
from tests.relay.procs import REPO

DEAD_RELAY = "http://127.0.0.1:9"  # nothing listens there
RESTORE = "restore the home directory from a backup"
#: Linux capabilities that let root ignore file permissions (capability(7)).
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER = 1, 2, 3
_PR_CAPBSET_DROP = 24


def _without_root_power() -> None:
    """In the child: drop what lets root ignore permissions (a no-op for others)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def bc(home: Path, *args: str | Path, env: dict[str, str] | None = None) -> Result:
    """``backchannel --home HOME ...`` as an officer runs it (permissions apply)."""
    cmd = [sys.executable, "-m", "backchannel.cli.main", "--home", str(home), *map(str, args)]
    p = subprocess.run(
        cmd, env=env or base_env(), cwd=REPO, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL, preexec_fn=_without_root_power,
    )  # fmt: skip
    return Result(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def missions(tmp_path: Path) -> Missions:
    return set_up_missions(tmp_path / "homes", DEAD_RELAY, DEAD_RELAY, register=False)


def _refused_and_unchanged(
    home: Path, commands: Sequence[tuple[str | Path, ...]], *hints: str
) -> None:
    before = snapshot(home)
    for args in commands:
        r = bc(home, *args)
        assert r.code == 1, (args, r)
        assert_one_line_error(r, *hints)
    assert snapshot(home) == before


# --- the passphrase -------------------------------------------------------------------


def test_a_wrong_passphrase_stops_the_rounds_before_they_start(missions: Missions) -> None:
    home = missions.ri.home
    before = snapshot(home)
    wrong = base_env(BACKCHANNEL_PASSPHRASE="not the passphrase")
    for args in (("sync", "--rounds", "1"), ("--json", "sync"), ("run", "--interval", "0.2")):
        r = bc(home, *args, env=wrong)
        assert r.code == 1, (args, r)
        assert_one_line_error(r, "try again")
        assert "not the passphrase" not in r.err + r.out and PASSPHRASE not in r.err + r.out
    assert snapshot(home) == before


# --- permissions ------------------------------------------------------------------------


def test_a_home_that_cannot_be_written_is_refused_and_left_as_it_was(missions: Missions) -> None:
    home = missions.ri.home
    text = home.parent / "text"
    text.write_text("written while the home could not be")
    home.chmod(0o500)
    try:
        _refused_and_unchanged(
            home,
            [("sync", "--rounds", "1"), ("run",), ("compose", "Washington", "--file", text)],
            "permissions",
        )
    finally:
        home.chmod(0o700)
    assert bc(home, "--json", "sync", "--rounds", "1").code == 3  # works again (no relay)


def test_a_home_that_cannot_be_read_is_named(missions: Missions) -> None:
    home = missions.ri.home
    home.chmod(0o300)
    try:
        r = bc(home, "status")
    finally:
        home.chmod(0o700)
    assert r.code == 2  # a usage error, shown by the argument parser
    assert "not readable" in r.err and "Traceback" not in r.err


def test_a_read_only_vault_is_refused_and_leaves_nothing_behind(missions: Missions) -> None:
    home = missions.ri.home
    vault = home / "vault.db"
    vault.chmod(0o400)
    try:
        _refused_and_unchanged(
            home, [("status",), ("inbox",), ("sync", "--rounds", "1")], "permissions"
        )
    finally:
        vault.chmod(0o600)
    # Its permissions mended, the home works as before.
    r = bc(home, "--json", "compose", "Washington", "--text", "after the repair")
    assert r.code == 0, r.err
    assert bc(home, "--json", "status").code == 0


def test_a_vault_file_left_read_only_beside_the_vault_is_named(missions: Missions) -> None:
    home = missions.ri.home
    shm = home / "vault.db-shm"  # as a process that could only read the vault leaves it
    shm.write_bytes(bytes(32768))
    shm.chmod(0o400)
    try:
        _refused_and_unchanged(home, [("status",), ("sync", "--rounds", "1")], "vault.db-shm")
    finally:
        shm.chmod(0o600)
    assert bc(home, "--json", "status").code == 0


# --- vaults that are not whole ---------------------------------------------------------


def _page_overwritten(original: bytes) -> bytes:
    """``original`` with a b-tree page past its middle overwritten: a file that opens."""
    page = 4096
    pages = len(original) // page
    for n in range(pages // 2, pages):
        if original[n * page] in (0x02, 0x05, 0x0A, 0x0D):  # a b-tree page's type
            noise = random.Random(n).randbytes(page)
            return original[: n * page] + noise + original[(n + 1) * page :]
    raise AssertionError("no b-tree page in the second half of the vault")


def _vault_cases(original: bytes) -> Iterator[tuple[str, bytes | None]]:
    yield "half of it", original[: len(original) // 2]
    yield "a page of it overwritten", _page_overwritten(original) if original else b""
    yield "its first page", original[:4096]
    yield "a hundred bytes", original[:100]
    yield "an empty file", b""
    yield "a text file", b"not a vault\n" * 400
    yield "another program's database", None


@pytest.mark.parametrize("case", [name for name, _ in _vault_cases(b"")])
def test_a_vault_that_is_not_whole_is_refused_and_left_as_it_was(
    missions: Missions, case: str
) -> None:
    home = missions.han.home
    vault = home / "vault.db"
    original = vault.read_bytes()
    data = dict(_vault_cases(original))[case]
    if data is None:
        vault.unlink()
        with sqlite3.connect(vault) as db:
            db.execute("CREATE TABLE notes (body TEXT)")
            db.execute("INSERT INTO notes VALUES ('kept as it was')")
        db.close()
    else:
        vault.write_bytes(data)
    commands = [("status",), ("sync", "--rounds", "1"), ("cosign", "list")]
    _refused_and_unchanged(home, commands, RESTORE)
    vault.write_bytes(original)
    assert bc(home, "--json", "status").code == 0


# --- the keystore when the officer is made ---------------------------------------------------


def test_a_full_disk_while_the_officer_is_made_can_be_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in base_env().items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "home"
    argv = ["--home", str(home), "--json", "officer", "create", "--name", "Officer Ri"]

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(os, "write", full)  # the keystore's writes
        with pytest.raises(SystemExit) as failed:
            main(argv)
    assert failed.value.code == 1
    err = capsys.readouterr().err
    assert "disk is full" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as retried:  # space freed: the same command again
        main(argv)
    out, err = capsys.readouterr()
    assert retried.value.code == 0, err
    assert json.loads(out)["officer"] == "Officer Ri"


# --- two processes on one home --------------------------------------------------------------


def test_a_second_process_running_the_rounds_is_refused(missions: Missions) -> None:
    home = missions.ri.home
    env = base_env()
    first = subprocess.Popen(
        [sys.executable, "-m", "backchannel.cli.main", "--home", str(home), "--json",
         "run", "--interval", "0.2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert first.stdout is not None
        assert json.loads(first.stdout.readline())["rounds"] == 1  # it keeps the schedule
        for args in (("sync", "--rounds", "1"), ("run", "--interval", "0.2")):
            r = bc(home, *args)
            assert r.code == 1, (args, r)
            assert_one_line_error(r, "another Backchannel process is running this home's rounds")
        # Commands that only queue work go on beside it.
        assert bc(home, "compose", "Washington", "--text", "while it runs").code == 0
        assert json.loads(first.stdout.readline())["rounds"] == 1
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=30)
    assert first.returncode == 0, err
    assert err == ""
    # Once it stopped, the rounds may run here (the relay is down: exit 3).
    assert bc(home, "--json", "sync", "--rounds", "1").code == 3
