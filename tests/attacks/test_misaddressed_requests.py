"""One officer names the wrong peer on what he asks a colleague to approve.

New York is paired with Washington and with Moscow. The two-person rule holds
only if the co-signer approves where a message goes as well as what it says:
a co-sign request whose label names one channel while its message is sealed
to another, or a share request naming another channel than its message came
by, must be refused, with an alarm, and nothing must reach the other peer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from backchannel.client import demo, sending
from backchannel.client.service import Client
from backchannel.errors import ConfigError
from backchannel.protocol import joint
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.payload import note
from tests.client.conftest import FAST_KDF, RELAY_URL, InProcessRelay, drafted

Mission = tuple[Client, Client]


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[InProcessRelay]:
    r = InProcessRelay(tmp_path / "relay")
    async with r.app.router.lifespan_context(r.app):
        yield r


async def _three(tmp: Path, relay: InProcessRelay) -> tuple[Mission, Mission, Mission]:
    f = relay.factory()
    ny = await demo.found(tmp, "New York", ("Ri", "Han"), RELAY_URL, f, "pw", FAST_KDF)
    dc = await demo.found(tmp, "Washington", ("Smith", "Jones"), RELAY_URL, f, "pw", FAST_KDF)
    mo = await demo.found(tmp, "Moscow", ("Ivanov", "Petrov"), RELAY_URL, f, "pw", FAST_KDF)
    await demo.pair(ny, dc)
    await demo.pair(ny, mo)
    return ny, dc, mo


async def test_a_cosign_request_labelled_for_another_peer_is_refused(
    tmp_path: Path, relay: InProcessRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    ny, dc, mo = await _three(tmp_path, relay)
    ri, han = ny
    washington = ri.channel_for("Washington").channel_id
    moscow = ri.channel_for("Moscow").channel_id
    honest = sending.cosign_body

    def lying(channel_id: bytes, draft_id: bytes, key: bytes, message: SealedMessage) -> bytes:
        return honest(washington, draft_id, key, message)  # Ri's modified device

    monkeypatch.setattr(sending, "cosign_body", lying)
    ri.compose(moscow, note("for Moscow's eyes, labelled Washington"))
    monkeypatch.setattr(sending, "cosign_body", honest)
    await ri.settle()
    report = await han.settle()
    assert han.cosign_requests() == []
    assert any("named another channel" in a for a in report.alarms), report.alarms
    for _ in range(3):
        for c in (*ny, *mo, *dc):
            await c.settle()
    assert mo[0].inbox() == [] and dc[0].inbox() == []


async def test_a_stored_misaddressed_cosign_request_cannot_be_approved(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    # One kept by a device before it checked: showing or approving it is refused.
    ny, _, _ = await _three(tmp_path, relay)
    ri, han = ny
    ri.compose(ri.channel_for("Moscow").channel_id, note("to Moscow"))
    await ri.settle()
    await han.settle()
    [req] = han.cosign_requests()
    relabelled = replace(req, channel_id=han.channel_for("Washington").channel_id)
    with han._tx():
        han._put("cosign_in", req.request_id, relabelled)
    for act in (han.show_cosign, han.approve_cosign):
        with pytest.raises(ConfigError, match="named another channel"):
            act(req.request_id)


async def test_a_share_request_labelled_for_another_peer_is_refused(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, _, mo = await _three(tmp_path, relay)
    ri, han = ny
    await drafted(mo[0], mo[1], "New York", "from Moscow")
    for _ in range(3):
        for c in (*mo, *ny):
            await c.settle()
    [item] = han.inbox()
    washington = han.channel_for("Washington").channel_id
    assert item.channel_id != washington
    # Han's modified device asks Ri for his share, naming the Washington channel.
    han.mailbox.send(
        joint.JointKind.SHARE_REQUEST, ri.officer.officer_id, washington + item.message_id
    )
    await han.settle()
    report = await ri.settle()
    assert ri.share_requests() == []
    assert any("named another channel" in a for a in report.alarms), report.alarms
