"""What a round reads does not grow with the messages a device has sent: the
runner keeps every draft for the record, and its rounds read only those not
yet delivered or refused."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from backchannel.client import statecodec, transcripts
from backchannel.client.device import ANNOUNCEMENTS, OPEN_DRAFTS, ROSTERS, endpoint_data
from backchannel.client.rewind import KEPT
from backchannel.client.service import Client
from backchannel.client.transcripts import TRANSCRIPT_PARTS, TRANSCRIPTS
from backchannel.errors import CorruptKeystore
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.payload import note
from backchannel.protocol.states import SendState
from tests.client.conftest import InProcessRelay
from tests.client.test_audit import settle
from tests.client.test_client_flow import two_missions


def listings(c: Client, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tables listed whole on ``c``'s vault from now on."""
    seen: list[str] = []
    real: Callable[..., Any] = c.vault.items

    def items(table: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(table)
        return real(table, *args, **kwargs)

    monkeypatch.setattr(c.vault, "items", items)
    return seen


async def send(ri: Client, han: Client, others: tuple[Client, ...], text: str) -> None:
    ri.compose(ri.channel_for("Washington").channel_id, note(text))
    await settle(ri, han)
    [req] = han.cosign_requests()
    han.approve_cosign(req.request_id)
    await settle(han, ri, *others)
    await settle(ri, *others)


async def one_sent(tmp: Path, relay: InProcessRelay) -> tuple[Client, Client, Client, Client]:
    """Ri, Han, Smith and Jones, with one message from New York delivered."""
    (ri, han), (smith, jones) = await two_missions(tmp, relay)
    await send(ri, han, (smith, jones), "Message 0")
    return ri, han, smith, jones


async def test_a_message_goes_out_without_reading_the_ones_before(
    tmp_path: Path, relay: InProcessRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    (ri, han), (smith, jones) = await two_missions(tmp_path, relay)
    for i in range(3):
        await send(ri, han, (smith, jones), f"Message {i}")
    assert [d.outgoing.state for d in ri.drafts()] == [SendState.DELIVERED] * 3
    assert ri.vault.items(OPEN_DRAFTS) == []

    seen = listings(ri, monkeypatch)
    await send(ri, han, (smith, jones), "Message 3")
    monkeypatch.undo()
    # Drafted, co-signed, queued and delivered, and the runner's device never
    # listed the drafts it keeps for the record (only the open ones).
    assert "drafts" not in seen and OPEN_DRAFTS in seen
    assert [d.outgoing.state for d in ri.drafts()] == [SendState.DELIVERED] * 4
    assert ri.vault.items(OPEN_DRAFTS) == []
    assert len(smith.inbox()) == 4


async def test_a_home_from_before_the_index_still_sends_what_awaits(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    (ri, han), (smith, jones) = await two_missions(tmp_path, relay)
    await send(ri, han, (smith, jones), "Delivered before")
    ri.compose(ri.channel_for("Washington").channel_id, note("Awaiting its co-signature"))
    await settle(ri, han)
    # What a home written before the index holds: the drafts, no index.
    [(key, _)] = ri.vault.items(OPEN_DRAFTS)
    ri.vault.delete(OPEN_DRAFTS, key)
    ri.vault.delete("counters", b"drafts-open-indexed")
    [req] = han.cosign_requests()
    han.approve_cosign(req.request_id)
    await settle(han, ri, smith, jones)
    await settle(ri, smith, jones)
    assert [d.outgoing.state for d in ri.drafts()] == [SendState.DELIVERED] * 2
    assert len(smith.inbox()) == 2


async def test_a_round_does_not_write_the_channels_history_again(
    tmp_path: Path, relay: InProcessRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    ri, han, smith, jones = await one_sent(tmp_path, relay)
    channel = ri.channel_for("Washington").channel_id
    sizes = {c: len(c.vault.get("endpoints", channel) or b"") for c in (ri, smith)}
    for i in range(1, 4):
        await send(ri, han, (smith, jones), f"Message {i}")
    # The channel's state record does not grow with its messages: their hashes
    # are in the transcript, kept apart.
    for c in (ri, smith):
        assert len(c.vault.get("endpoints", channel) or b"") == sizes[c]
        assert c._endpoint(channel).transcript.received_seq == (4 if c is smith else 0)
    assert ri._endpoint(channel).transcript.next_seq == 5

    # A round with no message writes the state, not the transcript.
    written: list[str] = []
    for c in (ri, smith):
        real: Callable[..., Any] = c.vault.put

        def put(table: str, *args: Any, _real: Callable[..., Any] = real, **kw: Any) -> Any:
            written.append(table)
            return _real(table, *args, **kw)

        monkeypatch.setattr(c.vault, "put", put)
    await ri.sync(1)
    await smith.sync(1)
    assert "endpoints" in written and ROSTERS not in written
    assert TRANSCRIPTS not in written and TRANSCRIPT_PARTS not in written
    # Nor the rosters: each officer's keys are kept once, apart, by hash.
    for c in (ri, smith):
        ep = c._endpoint(channel)
        record = c.vault.get("endpoints", channel) or b""
        assert len(record) < len(statecodec.dumps(ep.own_roster)) / 2
        assert {k for k, _ in c.vault.items(ROSTERS)} == {
            ep.own_roster.hash,
            ep.peer_roster.hash,
        }


async def test_a_message_writes_the_last_part_of_the_transcript_not_its_history(
    tmp_path: Path, relay: InProcessRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A transcript holds a hash a message either way; kept whole, every
    # message wrote the whole history again. Two hashes a part here.
    monkeypatch.setattr(transcripts, "PART", 2)
    ri, han, smith, jones = await one_sent(tmp_path, relay)
    channel = ri.channel_for("Washington").channel_id
    for i in range(1, 6):
        await send(ri, han, (smith, jones), f"Message {i}")

    def part(direction: bytes, number: int) -> bytes:
        return channel + direction + number.to_bytes(4, "big")

    # Sent T[0] to T[6] on the runner, received on Smith's device: four parts.
    assert {k for k, _ in ri.vault.items(TRANSCRIPT_PARTS) if k.startswith(channel + b"s")} == {
        part(b"s", n) for n in range(4)
    }
    assert {k for k, _ in smith.vault.items(TRANSCRIPT_PARTS) if k.startswith(channel + b"r")} == {
        part(b"r", n) for n in range(4)
    }
    written: dict[Client, list[bytes]] = {ri: [], smith: []}
    for c in written:
        real: Callable[..., Any] = c.vault.put

        def put(table: str, key: bytes, value: bytes, _c: Client = c,
                _real: Callable[..., Any] = real) -> Any:  # fmt: skip
            if table == TRANSCRIPT_PARTS:
                written[_c].append(key)
            return _real(table, key, value)

        monkeypatch.setattr(c.vault, "put", put)
    await send(ri, han, (smith, jones), "Message 6")
    # T[7] joins T[6] in the last part: that part alone is written.
    assert set(written[ri]) == {part(b"s", 3)}
    assert set(written[smith]) == {part(b"r", 3)}
    assert ri._endpoint(channel).transcript.next_seq == 8
    assert smith._endpoint(channel).transcript.received_seq == 7

    # A transcript kept whole (a home from before) is read, and kept in parts
    # at its next move.
    t = ri._endpoint(channel).transcript
    for key, _ in ri.vault.items(TRANSCRIPT_PARTS):
        ri.vault.delete(TRANSCRIPT_PARTS, key)
    ri.vault.put(TRANSCRIPTS, channel, statecodec.dumps(t))
    ri._transcript_read.clear()
    assert ri._endpoint(channel).transcript == t
    await send(ri, han, (smith, jones), "Message 7")
    assert (ri.vault.get(TRANSCRIPTS, channel) or b"")[0] == statecodec.BESIDE
    ri._transcript_read.clear()
    assert ri._endpoint(channel).transcript.next_seq == 9
    assert len(smith.inbox()) == 8

    # A part missing, or cut short, is named, not taken for a shorter history.
    second = part(b"s", 1)
    for damage in (lambda: ri.vault.delete(TRANSCRIPT_PARTS, second),
                   lambda: ri.vault.put(TRANSCRIPT_PARTS, second, b"\x00" * 32)):  # fmt: skip
        held = ri.vault.get(TRANSCRIPT_PARTS, second)
        damage()
        ri._transcript_read.clear()
        with pytest.raises(CorruptKeystore, match="transcript is missing"):
            ri._endpoint(channel)
        if held is not None:
            ri.vault.put(TRANSCRIPT_PARTS, second, held)


async def test_a_cell_waiting_or_kept_takes_about_its_own_size_on_disk(
    tmp_path: Path, relay: InProcessRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every round the runner queues a cell for each lane, then keeps each one
    # the relay stored (for a relay that loses them): as hex in JSON each took
    # twice the cell's 4 KiB.
    ri, *_ = await one_sent(tmp_path, relay)
    cell_size = ri.mission().cell_size
    kept = ri.vault.items(KEPT)
    assert kept and all(len(raw) < cell_size + 512 for _, raw in kept)
    assert ri._kept(ri.mission().relay_url)[-1].out.cell  # read back whole
    queued: list[bytes] = []
    real: Callable[..., Any] = ri.vault.append

    def append(queue: str, value: bytes) -> Any:
        queued.append(value)
        return real(queue, value)

    monkeypatch.setattr(ri.vault, "append", append)
    await settle(ri)
    monkeypatch.undo()
    assert queued and all(len(raw) < cell_size + 512 for raw in queued)


async def test_a_channel_stored_whole_is_read_and_then_kept_apart(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    # What a home written before holds (and a new officer's device writes on
    # joining): the transcript inside the channel's state.
    ri, han, smith, jones = await one_sent(tmp_path, relay)
    channel = ri.channel_for("Washington").channel_id
    for c in (ri, smith):
        ep = c._endpoint(channel)
        whole = endpoint_data(ep)
        c.vault.put("endpoints", channel, statecodec.dumps(whole))
        c.vault.delete(TRANSCRIPTS, channel)
        for key, _ in c.vault.items(ROSTERS):
            c.vault.delete(ROSTERS, key)
        again = c._endpoint(channel)
        assert again.transcript == ep.transcript
        assert (again.own_roster, again.peer_roster) == (ep.own_roster, ep.peer_roster)
    await send(ri, han, (smith, jones), "Message 1")
    assert len(smith.inbox()) == 2
    for c in (ri, smith):
        assert c.vault.get(TRANSCRIPTS, channel) is not None
        ep = c._endpoint(channel)
        assert c.vault.get(ROSTERS, ep.own_roster.hash) is not None
        assert c.vault.get(ROSTERS, ep.peer_roster.hash) is not None


async def test_a_missing_transcript_is_named_not_taken_for_an_empty_history(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, *_ = await one_sent(tmp_path, relay)
    channel = ri.channel_for("Washington").channel_id
    ri.vault.delete(TRANSCRIPTS, channel)
    ri._endpoint_read.clear()
    with pytest.raises(CorruptKeystore, match="transcript is missing"):
        ri._endpoint(channel)


async def test_a_missing_roster_is_named(tmp_path: Path, relay: InProcessRelay) -> None:
    ri, *_ = await one_sent(tmp_path, relay)
    channel = ri.channel_for("Washington").channel_id
    ri.vault.delete(ROSTERS, ri._endpoint(channel).peer_roster.hash)
    ri._endpoint_read.clear()
    with pytest.raises(CorruptKeystore, match="roster a channel names is missing"):
        ri._endpoint(channel)


async def test_the_peers_epoch_announcements_are_kept_apart_once(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    # A channel sees a new epoch of the peer every day or so: kept in the
    # channel's record, their announcements made it grow for ever.
    ri, han, smith, jones = await one_sent(tmp_path, relay)
    await send(ri, han, (smith, jones), "Message 1")
    channel = smith.channel_for("New York").channel_id
    items = {SealedMessage.decode(i.message).announcement != b"": i for i in smith.inbox()}
    first, second = items[True], items[False]  # only the epoch's first message carries it
    assert smith.channel(channel).announcements == ()
    [(epoch_id, ann)] = smith._announcements(channel)
    assert ann == SealedMessage.decode(first.message).announcement

    # A record kept before holds them itself: read there, then moved apart.
    rec = smith.channel(channel)
    smith._put("channels", channel, replace(rec, announcements=((epoch_id, ann),)))
    smith.vault.delete(ANNOUNCEMENTS, channel + epoch_id)
    smith.request_open(second.message_id)  # opens the epoch from the announcement
    await settle(smith, jones)
    [req] = jones.share_requests()
    jones.approve_share(req.request_id)
    await settle(jones, smith)
    assert next(i for i in smith.inbox() if i.message_id == second.message_id).payload
    await send(ri, han, (smith, jones), "Message 2")
    assert smith.channel(channel).announcements == ()
    assert smith._announcements(channel) == ((epoch_id, ann),)
