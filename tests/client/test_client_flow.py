"""The client library against an in-process relay: failures, attacks, persistence."""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from backchannel.client import demo
from backchannel.client.cards import CardError
from backchannel.client.home import Home
from backchannel.client.relay_client import RelayClient
from backchannel.client.service import Client
from backchannel.errors import ConfigError, NotEnoughShares, NotEnoughSignatures, WrongPassphrase
from backchannel.protocol import joint
from backchannel.protocol.payload import note
from tests.client.conftest import FAST_KDF, RELAY_URL, InProcessRelay

Mission = tuple[Client, Client]


async def two_missions(tmp: Path, relay: InProcessRelay) -> tuple[Mission, Mission]:
    f = relay.factory()
    ny = await demo.found(tmp, "New York", ("Ri", "Han"), RELAY_URL, f, "pw", FAST_KDF)
    dc = await demo.found(tmp, "Washington", ("Smith", "Jones"), RELAY_URL, f, "pw", FAST_KDF)
    await demo.pair(ny, dc)
    return ny, dc


async def cosigned(ny: Mission, text: str) -> bytes:
    ri, han = ny
    draft = ri.compose(ri.channel_for("Washington").channel_id, note(text))
    await ri.settle()
    await han.settle()
    [req] = han.cosign_requests()
    han.approve_cosign(req.request_id)
    await han.settle()
    return draft.draft_id


async def test_relay_down_during_send_delivers_exactly_once(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    ri = ny[0]
    await cosigned(ny, "while the relay was down")
    await ri.settle()  # the co-signature arrives: the message is queued for the rounds
    relay.down = True
    report = await ri.sync(3)
    assert report.relay_error is not None and report.waiting > 0
    assert ri.status()["waiting_cells"] == report.waiting
    report = await ri.sync(1)  # still down: nothing lost, nothing sent
    assert report.relay_error is not None
    relay.down = False
    report = await ri.settle()
    assert report.relay_error is None and report.waiting == 0 and report.deposited > 0
    smith = dc[0]
    await smith.settle()
    assert len(smith.inbox()) == 1
    await ri.settle()
    delivered = [d for d in ri.drafts() if d.outgoing.state.value == "delivered"]
    assert len(delivered) == 1


async def test_solo_send_is_refused_and_nothing_leaves(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    ri = ny[0]
    draft = ri.compose(ri.channel_for("Washington").channel_id, note("alone"))
    with pytest.raises(NotEnoughSignatures):
        ri.send_now(draft.draft_id)
    await ri.sync(3)
    await dc[0].sync(3)
    assert dc[0].inbox() == []
    assert ri.status()["channels"][0]["pending_cells"] == 0


async def test_only_the_runner_drafts(tmp_path: Path, relay: InProcessRelay) -> None:
    ny, _ = await two_missions(tmp_path, relay)
    han = ny[1]
    with pytest.raises(ConfigError, match="desk"):
        han.compose(han.channel_for("Washington").channel_id, note("from the other desk"))


async def test_tampering_relay_raises_an_alarm_and_delivers_nothing_forged(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    await cosigned(ny, "tamper with me")
    await ny[0].sync(2)
    honest = relay.factory()

    def tampering(url: str, tenant: str | None, credential: str | None) -> RelayClient:
        client = honest(url, tenant, credential)
        original = client.batch_fetch

        async def batch_fetch(*args, **kwargs):  # type: ignore[no-untyped-def]
            answer = await original(*args, **kwargs)
            flipped = tuple(
                replace(c, cell=bytes([c.cell[0] ^ 1]) + c.cell[1:]) for c in answer.cells
            )
            return replace(answer, cells=flipped)

        client.batch_fetch = batch_fetch  # type: ignore[method-assign]
        return client

    smith = dc[0]
    smith._relay = tampering  # type: ignore[assignment]
    report = await smith.sync(2)
    # Caught twice: the cells do not open, and they are not what the relay's log holds.
    assert any("decryption failed" in a for a in report.alarms)
    assert any(a.startswith("relay log") for a in report.alarms)
    assert smith.inbox() == []
    assert smith.status()["channels"][0]["alarms"]


async def test_wrong_passphrase_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    home = Home.create(tmp_path / "h", "Officer", "right", FAST_KDF)
    home.close()
    before = {p: p.read_bytes() for p in (tmp_path / "h").iterdir()}
    with pytest.raises(WrongPassphrase):
        Home.unlock(tmp_path / "h", "wrong")
    assert {p: p.read_bytes() for p in (tmp_path / "h").iterdir()} == before


async def test_tampered_mission_card_is_refused(tmp_path: Path, relay: InProcessRelay) -> None:
    f = relay.factory()
    ny = await demo.found(tmp_path, "New York", ("Ri", "Han"), RELAY_URL, f, "pw", FAST_KDF)
    dc = await demo.found(tmp_path, "Washington", ("Smith", "Jones"), RELAY_URL, f, "pw", FAST_KDF)
    card = dc[0].mission_card().encode()
    i = len(card) // 2
    tampered = card[:i] + ("A" if card[i] != "A" else "B") + card[i + 1 :]
    with pytest.raises(CardError):
        ny[0].add_peer(tampered)
    assert ny[0].peers() == []
    with pytest.raises(ConfigError, match="unknown peer"):
        ny[0].peer(dc[0].mission().mission_id)


async def test_wrong_safety_number_is_refused(tmp_path: Path, relay: InProcessRelay) -> None:
    f = relay.factory()
    ny = await demo.found(tmp_path, "New York", ("Ri", "Han"), RELAY_URL, f, "pw", FAST_KDF)
    dc = await demo.found(tmp_path, "Washington", ("Smith", "Jones"), RELAY_URL, f, "pw", FAST_KDF)
    rec = ny[0].add_peer(dc[0].mission_card().encode())
    with pytest.raises(ConfigError, match="does not match"):
        ny[0].confirm_peer(rec.mission_id, "00000 " * 12)
    with pytest.raises(ConfigError, match="not confirmed"):
        ny[0].make_offer(rec.mission_id)


async def test_no_plaintext_at_rest_in_any_home(tmp_path: Path, relay: InProcessRelay) -> None:
    marker = "MARKER-7c1f0e9a-plaintext"
    await demo.run(
        tmp_path / "homes",
        RELAY_URL,
        marker,
        factory=relay.factory(),
        passphrase="pw",
        params=FAST_KDF,
    )
    files = [p for p in (tmp_path / "homes").rglob("*") if p.is_file()]
    assert len(files) >= 8
    for p in files:
        data = p.read_bytes()
        assert marker.encode() not in data, p
        assert marker.encode("utf-16-le") not in data, p


async def test_relay_stores_only_fixed_size_cells(tmp_path: Path, relay: InProcessRelay) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    await cosigned(ny, "size")
    await ny[0].sync(3)
    await dc[0].sync(3)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=relay.app), base_url=RELAY_URL
    ) as http:
        info = (await http.get("/v1/info")).json()
    assert info["cell_size"] == 4096
    stored = [c.cell for t in relay.store._cells.values() for c in t.values()]
    assert len(stored) >= 8
    sizes = {len(c) for c in stored}
    assert sizes == {4096}


async def test_forget_erases_a_message_from_the_device(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    await cosigned(ny, "read and forget")
    await ny[0].settle()
    await dc[0].settle()
    [item] = dc[0].inbox()
    dc[0].forget(item.message_id)
    assert dc[0].inbox() == []
    with pytest.raises(NotEnoughShares):
        dc[0].read(item.message_id)
    with pytest.raises(ConfigError):
        dc[0].forget(item.message_id)


async def test_long_message_spans_many_mailbox_and_channel_cells(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    text = "Annex: " + "terms of the working-level talks. " * 2500  # ~85 KB: 20+ cells
    await cosigned(ny, text)
    await ny[0].sync(40)
    for c in dc:
        await c.sync(40)
    [item] = dc[0].inbox()
    dc[0].request_open(item.message_id)
    await dc[0].settle()
    await dc[1].settle()
    [req] = dc[1].share_requests()
    dc[1].approve_share(req.request_id)
    await dc[1].settle()
    await dc[0].settle()
    assert dc[0].read(item.message_id).text == text


async def test_catching_up_more_rounds_than_one_fetch_holds(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    # 300 rounds of cover on the channel and in New York's mailbox, while
    # Washington's devices are away.
    await demo.lockstep(ny, lambda: False, limit=300)
    await cosigned(ny, "after a long quiet")
    await ny[0].sync(2)
    report = await dc[0].sync(320)
    assert report.relay_error is None and report.rounds_received >= 301
    assert len(dc[0].inbox()) == 1


async def test_asking_twice_to_open_sends_one_share_request(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    ri = ny[0]
    smith, jones = dc
    await cosigned(ny, "asked for once")
    for d in (ri, smith, jones):
        await d.settle()
    [item] = smith.inbox()
    smith.request_open(item.message_id)
    with pytest.raises(ConfigError, match="already asked"):
        smith.request_open(item.message_id)
    await smith.settle()
    await jones.settle()
    [req] = jones.share_requests()
    # A request again from an older device (or a replayed object) is not a second one.
    again = joint.JointObject(
        joint.JointKind.SHARE_REQUEST,
        secrets.token_bytes(16),
        req.from_officer,
        jones.officer.officer_id,
        req.channel_id + req.message_id,
    )
    jones._on_joint(again)
    assert [r.request_id for r in jones.share_requests()] == [req.request_id]
    jones.approve_share(req.request_id)
    await jones.settle()
    await smith.settle()
    assert smith.read(item.message_id).text == "asked for once"
