"""One desk per home: a second one is refused at start, in one line, with no link."""

from __future__ import annotations

from pathlib import Path

import pytest

from backchannel.client.home import Home
from backchannel.client.service import Client
from backchannel.errors import StoreUnavailable
from backchannel.ui.app import serve
from tests.e2e.conftest import FAST_KDF, PASSPHRASE
from tests.ui.conftest import DeskProcess
from tests.ui.test_desk_engine import held_elsewhere

REFUSAL = "another Backchannel process is running this home's rounds"


def test_a_desk_is_refused_before_its_link_while_another_process_runs_the_rounds(
    tmp_path: Path,
) -> None:
    client = Client(Home.create(tmp_path / "home", "Officer Ri", PASSPHRASE, FAST_KDF))

    def echo(line: str) -> None:  # a desk that got as far as its first line: stop it there
        raise AssertionError(f"the desk started and said: {line}")

    try:
        with held_elsewhere(client.home.path), pytest.raises(StoreUnavailable, match=REFUSAL):
            serve(client, echo=echo)  # refused before its first line (the login link)
    finally:
        client.home.close()


def test_a_second_desk_for_the_same_home_stops_at_once_and_says_why(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Home.create(home, "Officer Ri", PASSPHRASE, FAST_KDF).close()
    with DeskProcess(home) as first:
        second = DeskProcess(home).launch()
        assert second.proc is not None
        try:
            out, err = second.proc.communicate(timeout=30)
        finally:
            second.stop()  # (a desk that did start: stopped, not left behind)
        assert second.proc.returncode != 0
        assert "/login/" not in out, out
        lines = err.strip().splitlines()
        assert len(lines) == 1 and REFUSAL in lines[0], err
        assert "Working" not in out
        # The first desk serves on, and a desk starts again once it has stopped.
        with first.http() as http:
            assert http.get(first.link.removeprefix(first.origin)).status_code == 303
    with DeskProcess(home) as again:
        assert "/login/" in again.link
