"""Every channel cell names the deposit of the cell before it on that channel.

A cell's gossip note names one logged deposit of its sender, so that a relay
which drops a cell is proved to have dropped it by the next cell's note
(docs/spec/relay-log-v1.md §5). The round engine keeps one cell in flight per
lane and seals the next only once the last one's deposit is answered, so no
two cells of a channel share a note: the cell of round r names round r - 1,
whatever else the device sends meanwhile (mailbox cells to colleagues, a
message, other channels).
"""

from __future__ import annotations

from pathlib import Path

from backchannel.client import statecodec
from backchannel.client.receiving import GossipDue
from backchannel.protocol.payload import note
from tests.client.evil_relay import Clock, LyingRelay
from tests.client.test_engine_faults import _missions, _rounds


async def test_each_cell_names_the_deposit_before_it(tmp_path: Path) -> None:
    clock = Clock()
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(relay, tmp_path, clock)
        smith = dc[0]
        received: list[int] = []
        #: (round a cell came in, round its note names)
        named: list[tuple[int, int | None]] = []
        receive_round = smith._receive_round
        append = smith.vault.append

        def spy_receive(
            channel_id: bytes, r: int, cell: bytes | None, report: object, gossip: bool = True
        ) -> None:
            received.append(r)
            receive_round(channel_id, r, cell, report, gossip)  # type: ignore[arg-type]

        def spy_append(queue: str, value: bytes) -> int:
            if queue == "gossip_due":
                due = statecodec.loads(GossipDue, value)
                n = due.gossip.note
                named.append((received[-1], None if n is None else n.round))
            return append(queue, value)

        smith._receive_round = spy_receive  # type: ignore[method-assign]
        smith.vault.append = spy_append  # type: ignore[method-assign]
        ri, han = ny
        assert await _rounds((*ny, *dc), clock, 3) == []
        # A message on the way (co-sign request, co-signature, delivery) changes nothing.
        ri.compose(ri.channel_for("Washington").channel_id, note("with traffic"))
        for _ in range(10):
            await _rounds((*ny, *dc), clock, 1)
            if han.cosign_requests():
                break
        [req] = han.cosign_requests()
        han.approve_cosign(req.request_id)
        # Enough rounds after it for twelve cells whatever the rounds before took.
        assert await _rounds((*ny, *dc), clock, 9) == []
        assert smith.inbox()
        # Only the first cell (sealed before any receipt) names nothing; every
        # other cell names the deposit of the round before it, so no two share one.
        assert len(named) >= 12
        assert named[0][1] is None or named[0][1] == named[0][0] - 1
        assert [n for _, n in named[1:]] == [r - 1 for r, _ in named[1:]]
