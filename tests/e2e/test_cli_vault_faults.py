"""The vault failing in the middle of a round, met through the CLI: nothing queued is lost.

* The disk fills at some statement of ``sync --rounds N`` or ``run``: the
  command stops with one line ("free space and retry", exit 1); the message
  composed just before is still there, and once space is freed the next runs
  carry everything on.
* The process dies (SIGKILL) just before or just after any commit of its
  vault, in the middle of a round: the next command finds the vault whole
  (its write-ahead log left over is taken in), and the rounds carry on.

In the end the message is delivered once, its receipt comes back once, and no
device raised an alarm.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchannel.cli.main import main
from tests.client.faulty_vault import FaultyConnection, patch_open
from tests.e2e.conftest import (
    FULL_SWEEP,
    OPEN_REGISTRATION,
    Missions,
    Officer,
    base_env,
    set_up_missions,
)
from tests.relay.procs import REPO, RelayProcess

TEXT = "composed just before the trouble"
#: Long trials through the CLI: `make faults` runs them (BACKCHANNEL_FULL_SWEEP=1).
pytestmark = pytest.mark.skipif(
    not FULL_SWEEP,
    reason="a long trial through the CLI, run by `make faults`; its short form in "
    "`make test` is tests/client/test_vault_faults.py",
)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    with RelayProcess(f"sqlite:///{tmp_path / 'relay.db'}", OPEN_REGISTRATION) as r:
        yield r


def _approve(han: Officer) -> None:
    """Han co-signs what he was asked to: the message composed before the trouble."""
    for request in han.json("cosign", "list")["requests"]:
        ref = request["request_id"][:8]
        assert han.json("cosign", "show", ref)["text"] == TEXT
        han.ok("cosign", "approve", ref)


def _delivered_once(m: Missions) -> None:
    """Everything carried on: co-signed, delivered once, receipted; no alarm anywhere."""
    ri, han, smith, jones = m.ri, m.han, m.smith, m.jones
    for _ in range(3):
        for o in (ri, han):
            o.settle()
        _approve(han)
    for _ in range(3):
        for o in (ri, han, smith, jones):
            o.settle()
    [draft] = ri.json("drafts")["drafts"]
    assert draft["state"] == "delivered"
    for o in (smith, jones):
        assert len(o.json("inbox")["messages"]) == 1, o.name
    for o in (ri, han, smith, jones):
        status = o.json("status")
        alarms = [a for c in status["channels"] for a in c["alarms"]]
        assert (status["relay_alarms"], alarms, status["officer_alarms"]) == ([], [], []), o.name
        assert status["waiting_cells"] == 0, o.name


def test_a_full_disk_in_a_round_stops_it_in_one_line_and_the_next_run_carries_on(
    tmp_path: Path,
    relay: RelayProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    m = set_up_missions(tmp_path / "homes", relay.base_url, relay.base_url)
    for name, value in base_env().items():
        monkeypatch.setenv(name, value)
    m.ri.ok("compose", "Washington", "--text", TEXT)
    runs = (("--json", "sync", "--rounds", "5"), ("run", "--interval", "0.2"))
    for officer in (m.ri, m.han):
        for at in (2, 25, 50, 75, 100):  # the statement at which the disk is full
            for args in runs:

                def full_at(faulty: FaultyConnection, at: int = at) -> None:
                    faulty.fail_at = at

                with patch_open(full_at) as disks, pytest.raises(SystemExit) as done:
                    main(["--home", str(officer.home), *args])
                err = capsys.readouterr().err
                assert [d.failures for d in disks] == [1], (args, at)
                assert done.value.code == 1, err
                assert err.splitlines() == [
                    "error: the disk holding the vault is full; free space and retry "
                    "(this step was not saved; earlier records are intact)"
                ]
        [draft] = m.ri.json("drafts")["drafts"]  # still there
        assert draft["state"] in ("sealed", "cosigned", "queued")
    _delivered_once(m)


def _killed(officer: Officer, commit: int, when: str) -> int:
    """``sync --rounds 1`` on ``officer``'s home, killed at its ``commit``-th commit."""
    cmd = [sys.executable, "-m", "tests.e2e.faulty_cli", str(commit), when,
           "--home", str(officer.home), "--json", "sync", "--rounds", "1"]  # fmt: skip
    p = subprocess.run(cmd, env=base_env(), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode


@pytest.mark.slow
def test_a_device_killed_at_any_commit_of_a_round_loses_nothing(
    tmp_path: Path, relay: RelayProcess
) -> None:
    m = set_up_missions(tmp_path / "homes", relay.base_url, relay.base_url)
    m.ri.ok("compose", "Washington", "--text", TEXT)
    left_a_log = 0
    for officer in (m.ri, m.han, m.smith):
        for commit in range(1, 8):
            codes = []
            for when in ("before", "after"):
                code = _killed(officer, commit, when)
                codes.append(code)
                if code == -9:
                    left_a_log += (officer.home / "vault.db-wal").exists()
                    # The next command finds the vault whole and carries on.
                    assert officer.run("--json", "status").code == 0
            if -9 not in codes:
                break  # the round made fewer commits than that
        _approve(m.han)
    assert left_a_log > 0, "no process died with its write-ahead log on disk"
    _delivered_once(m)
