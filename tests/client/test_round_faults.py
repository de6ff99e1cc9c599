"""A round engine facing a relay that never answers, and a cell in its window that is no cell.

* A relay that takes the connection and never answers: each request times out,
  the round reports the relay's trouble, and the round's cells wait in the
  outbox (one per lane) until the relay answers again; then they go out once.
* A cell at one of the peer's channel slots that does not decrypt (someone who
  learnt the slot filled it first): the receiving devices raise an alarm for
  that round and read on; the peer's device, refused that slot, raises its own
  alarm and its lane goes on; a message sent after it arrives.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from backchannel.client.relay_client import RelayClient, RetryPolicy
from backchannel.protocol.payload import note
from tests.client.evil_relay import Clock, LyingRelay
from tests.client.test_engine_faults import _missions, _rounds, _rounds_until


@asynccontextmanager
async def _silent_relay() -> AsyncIterator[str]:
    """A server that accepts every connection, reads, and never answers; its URL."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read(1 << 20)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for w in held:
            w.close()


async def test_a_relay_that_never_answers_times_out_and_the_cells_wait(tmp_path: Path) -> None:
    clock = Clock()
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(relay, tmp_path, clock)
        ri, han = ny
        ri.compose(ri.channel_for("Washington").channel_id, note("after the silence"))
        honest = ri._relay
        async with _silent_relay() as url:

            def silent(base: str, tenant: str | None, credential: str | None) -> RelayClient:
                retry = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0)
                return RelayClient(url, tenant, credential, retry=retry, timeout=0.2)

            ri._relay = silent
            for _ in range(3):
                report = await ri.sync(1)
                assert report.relay_error is not None and "Timeout" in report.relay_error
                assert report.deposited == 0 and report.alarms == []
                # One cell per lane waits: the channel's, the mailbox's, the intake's.
                assert report.waiting == len(ri.vault.pending("net_out")) == 3
        ri._relay = honest
        report = await ri.sync(1)
        assert (report.relay_error, report.deposited, report.waiting) == (None, 3, 0)
        alarms = await _rounds_until((*ny, *dc), clock, han.cosign_requests)
        assert alarms == []
        [request] = han.cosign_requests()
        assert han.show_cosign(request.request_id)[1].text == "after the silence"


async def test_a_cell_that_does_not_decrypt_in_the_window_is_an_alarm_and_reading_goes_on(
    tmp_path: Path,
) -> None:
    clock = Clock()
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(relay, tmp_path, clock)
        ri, han = ny
        smith, jones = dc
        devices = (*ny, *dc)
        assert await _rounds(devices, clock, 2) == []
        # The slot of the next round Washington deposits for New York, filled first.
        to_ny = smith.channel_for("New York").channel_id
        to_dc = ri.channel_for("Washington").channel_id
        r = smith._endpoint(to_ny).next_send_round
        slot = ri._endpoint(to_dc).slot_to_fetch(r)
        size = ri.channel(to_dc).terms.cell_size
        await relay.store.deposit(ri.mission().tenant_id, slot, secrets.token_bytes(size), 0)
        smith.compose(to_ny, note("sent after the false cell"))
        alarms = await _rounds(devices, clock, 2)
        assert alarms.count(f"round {r}: decryption failed") == 2, alarms  # Ri's and Han's
        assert any("different cell already holds one of our slots" in a for a in alarms), alarms
        await _rounds_until(devices, clock, jones.cosign_requests)
        [request] = jones.cosign_requests()
        jones.approve_cosign(request.request_id)
        await _rounds_until(devices, clock, lambda: ri.inbox() and han.inbox())
        assert len(ri.inbox()) == len(han.inbox()) == 1
        assert [a for c in (ri, han) for a in c.status()["channels"][0]["alarms"]] == [
            f"round {r}: decryption failed"
        ] * 2
