"""Pairing by a short code through the CLI: two processes meet on the relay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, RelayProcess, base_env, set_up_missions


@pytest.mark.parametrize("relay", ["sqlite"], indirect=True)
def test_invite_and_join_confirm_each_other(tmp_path: Path, relay: RelayProcess) -> None:
    m = set_up_missions(tmp_path, relay.base_url, relay.base_url, pair=False)
    # The inviting officer reads the code off his screen (the first line printed).
    invite = subprocess.Popen(
        [sys.executable, "-m", "backchannel.cli.main", "--home", str(m.ri.home),
         "peer", "invite", "--timeout", "30"],
        env=base_env(), cwd=REPO, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert invite.stdout is not None
    first = invite.stdout.readline()
    assert first.startswith("pairing code: "), first
    code = first.split(": ", 1)[1].strip()
    joined = m.smith.json("peer", "join", code, "--timeout", "30")
    _, err = invite.communicate(timeout=60)
    assert invite.returncode == 0, err
    assert joined["confirmed"] is True and joined["peer"] == "New York"
    [ri_view] = m.ri.json("peer", "list")["peers"]
    assert ri_view["peer"] == "Washington" and ri_view["confirmed"] is True
    assert ri_view["safety_number"] == joined["safety_number"]


@pytest.mark.parametrize("relay", ["sqlite"], indirect=True)
def test_nobody_at_the_other_end_pairs_nothing(tmp_path: Path, relay: RelayProcess) -> None:
    m = set_up_missions(tmp_path, relay.base_url, relay.base_url, pair=False)
    # The code typed at the prompt (stdin), as an officer gives it.
    r = subprocess.run(
        [sys.executable, "-m", "backchannel.cli.main", "--home", str(m.smith.home),
         "peer", "join", "--timeout", "1"],
        env=base_env(), cwd=REPO, input="1111-2222-3333\n", capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode != 0 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "did not show up" in r.stderr
    assert m.smith.json("peer", "list")["peers"] == []
