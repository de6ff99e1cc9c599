"""A relay that fails in every way a network and a server can, met through ``sync`` and ``run``.

Dead, 5xx, garbage, a body cut short, a connection closed, a refusal (409,
413), a lost answer to a deposit it did take, an answer that never comes: the
rounds go on, ``sync`` says why in its report and exits 3, no traceback reaches
the officer, and the cells wait on the device (never more than one per lane)
until the relay is back. Then the message goes out, is delivered once and its
receipt comes back once, and no device raised an alarm.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchannel.cli.rounds import EXIT_RELAY_DOWN
from tests.e2e.conftest import (
    FULL_SWEEP,
    OPEN_REGISTRATION,
    PASSPHRASE,
    Missions,
    Officer,
    base_env,
    set_up_missions,
)
from tests.e2e.faulty_relay import FaultyRelay
from tests.relay.procs import REPO, RelayProcess

#: The cells a desk device keeps waiting while the relay fails: one per lane (the
#: channel's, the mailbox's to the colleague, the public intake's answers).
LANES = 3
#: Long trials through the CLI: `make faults` runs them (BACKCHANNEL_FULL_SWEEP=1).
pytestmark = pytest.mark.skipif(
    not FULL_SWEEP,
    reason="a long trial through the CLI, run by `make faults`; its short form in "
    "`make test` is tests/client/test_round_faults.py and test_engine_faults.py",
)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[FaultyRelay]:
    with (
        RelayProcess(f"sqlite:///{tmp_path / 'relay.db'}", OPEN_REGISTRATION) as real,
        FaultyRelay(real.base_url) as faulty,
    ):
        yield faulty


@pytest.fixture
def missions(tmp_path: Path, relay: FaultyRelay) -> Missions:
    m = set_up_missions(tmp_path / "homes", relay.url, relay.url)
    m.ri.ok("compose", "Washington", "--text", "across a failing relay")
    return m


def _failing_sync(officer: Officer) -> dict[str, object]:
    r = officer.run("--json", "sync", "--rounds", "1")
    assert r.code == EXIT_RELAY_DOWN, r.err
    assert r.err == ""  # the report says it; nothing on stderr, no traceback
    report: dict[str, object] = r.json
    error = report["relay_error"]
    assert isinstance(error, str) and error.startswith("cannot ")
    assert PASSPHRASE not in r.out
    return report


def _settled_and_delivered(m: Missions) -> None:
    ri, han, smith, jones = m.ri, m.han, m.smith, m.jones
    for _ in range(3):
        for o in (ri, han):
            o.settle()
        for request in han.json("cosign", "list")["requests"]:
            han.ok("cosign", "approve", request["request_id"][:8])
    for _ in range(3):
        for o in (ri, han, smith, jones):
            o.settle()
    assert [d["state"] for d in ri.json("drafts")["drafts"]] == ["delivered"]
    for o in (smith, jones):
        assert len(o.json("inbox")["messages"]) == 1, o.name
    for o in (ri, han, smith, jones):
        status = o.json("status")
        alarms = [a for c in status["channels"] for a in c["alarms"]]
        assert (status["relay_alarms"], alarms, status["waiting_cells"]) == ([], [], 0), o.name


FAULTS = [
    ("500", None),
    ("503", "/batch/deposit"),
    ("garbage", None),
    ("garbage", "/batch/fetch"),
    ("truncated", None),
    ("close", None),
    ("409", None),
    ("413", "/batch/deposit"),
    ("lost", "/batch/deposit"),
]


@pytest.mark.slow
def test_the_cells_wait_through_every_failure_of_the_relay(
    missions: Missions, relay: FaultyRelay
) -> None:
    ri, han = missions.ri, missions.han
    for mode, only in FAULTS:
        relay.mode, relay.only = mode, only
        deposits_fail = only in (None, "/batch/deposit")
        for officer in (ri, han):
            struck = relay.struck
            report = _failing_sync(officer)
            assert relay.struck > struck, (mode, only)
            waiting = report["waiting"]
            lanes = LANES if officer is ri else 1  # Han's: the mailbox's to Ri
            assert waiting == (lanes if deposits_fail else 0), (mode, only, report)
            assert officer.json("status")["waiting_cells"] == waiting
        # Another round on the failing relay adds nothing to what waits.
        assert _failing_sync(ri)["waiting"] == (LANES if deposits_fail else 0), (mode, only)
        relay.mode = "ok"
        assert ri.sync(1)["waiting"] == 0 and han.sync(1)["waiting"] == 0
    _settled_and_delivered(missions)


def test_the_rounds_stop_cleanly_while_the_relay_hangs(
    missions: Missions, relay: FaultyRelay
) -> None:
    """An answer that never comes: Ctrl-C stops ``sync`` (130) and ``run`` (0) at once."""
    ri = missions.ri
    relay.mode = "hang"
    for args, code in ((("--json", "sync", "--rounds", "1"), 130), (("run", "--interval", "1"), 0)):
        p = subprocess.Popen(
            [sys.executable, "-m", "backchannel.cli.main", "--home", str(ri.home), *args],
            cwd=REPO, env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while relay.struck == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert relay.struck > 0, "the command never reached the relay"
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
        assert p.returncode == code, (args, err)
        assert "Traceback" not in err and err == "", err
        relay.struck = 0
    relay.mode = "ok"
    assert ri.json("status")["waiting_cells"] == LANES  # made before the hang, still there
    report = json.loads(ri.run("--json", "sync", "--rounds", "1").out)
    assert report["relay_error"] is None and report["waiting"] == 0
    _settled_and_delivered(missions)
