"""The desk's round engine when the rounds cannot run: the reason in words."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from backchannel.ui.desk import Desk
from tests.client.conftest import InProcessRelay, relay
from tests.client.test_client_flow import two_missions

__all__ = ["held_elsewhere", "relay"]


@contextlib.contextmanager
def held_elsewhere(home: Path) -> Iterator[None]:
    """The home's rounds held as another process holds them: a lock of its own on the
    directory (this process's :meth:`Home.rounds` may be taken again inside itself)."""
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


async def test_rounds_another_process_holds_are_said_in_words(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    (ri, _), _ = await two_missions(tmp_path, relay)
    desk = Desk(ri, round_seconds=0.01)
    with held_elsewhere(ri.home.path):  # as a `backchannel run` beside the desk holds them
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
