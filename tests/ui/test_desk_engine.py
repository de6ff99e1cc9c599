"""The desk's round engine when the rounds cannot run: the reason in words."""

from __future__ import annotations

import asyncio
from pathlib import Path

from backchannel.ui.desk import Desk
from tests.client.conftest import InProcessRelay, relay
from tests.client.test_client_flow import two_missions

__all__ = ["relay"]


async def test_rounds_another_process_holds_are_said_in_words(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    (ri, _), _ = await two_missions(tmp_path, relay)
    desk = Desk(ri, round_seconds=0.01)
    with ri.home.rounds():  # as a `backchannel run` beside the desk holds them
        desk.start()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if desk.events:
                break
        await desk.stop()
    assert desk.events, "the desk said nothing"
    event = desk.events[-1]
    assert "another Backchannel process is running this home's rounds" in event.title
    assert "unexpected" not in event.title and "report it" not in event.advice
