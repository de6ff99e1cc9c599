"""Drafts that chain on drafts still awaiting their co-signatures.

The runner may draft the next message before the last one is co-signed: each
draft chains on the one before it (the next ``seq`` of the channel), they go
out in that order whatever the order of the approvals, and a draft that never
goes out (rejected, withdrawn) takes the drafts chained on it back to the
co-signers, drafted again, so that the peer never sees a gap or a fork.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from backchannel.client.records import DraftRecord
from backchannel.client.service import Client
from backchannel.errors import ConfigError, ForkDetected, LocalProtocolError
from backchannel.protocol.audit import AuditKind
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.payload import note
from tests.client.conftest import InProcessRelay
from tests.client.test_client_flow import two_missions
from tests.client.test_roster_change import _add_kim


async def _settle(*devices: Client) -> None:
    for d in devices:
        await d.settle()


async def _opened(receiver: Client, colleague: Client) -> list[tuple[int, str]]:
    """Open every message in ``receiver``'s inbox jointly: (seq, text), by seq."""
    for item in receiver.inbox():
        if not item.payload:
            receiver.request_open(item.message_id)
    await _settle(receiver, colleague)
    for req in colleague.share_requests():
        colleague.approve_share(req.request_id)
    await _settle(colleague, receiver)
    out = []
    for item in receiver.inbox():
        seq = SealedMessage.decode(item.message).header.seq
        out.append((seq, receiver.read(item.message_id).text))
    return sorted(out)


async def _all_approved_and_opened(
    cosigner: Client, runner: Client, receiver: Client, colleague: Client
) -> list[tuple[int, str]]:
    """The co-signer approves all he holds; what the receiver then opens (seq,
    text), checked to have raised no alarm on the channel."""
    for r in cosigner.cosign_requests():
        cosigner.approve_cosign(r.request_id)
    await _settle(cosigner, runner, receiver, colleague)
    got = await _opened(receiver, colleague)
    assert not receiver.status()["channels"][0]["alarms"]
    return got


def _states(runner: Client, drafts: list[DraftRecord]) -> list[str]:
    now = {d.draft_id: d.outgoing.state.value for d in runner.drafts()}
    return [now[d.draft_id] for d in drafts]


async def test_drafts_go_out_in_the_order_drafted_whatever_the_order_of_approval(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    (ri, han), (smith, jones) = await two_missions(tmp_path, relay)
    channel = ri.channel_for("Washington").channel_id
    drafts = [ri.compose(channel, note(f"message {i}")) for i in range(3)]
    first = drafts[0].seq
    assert [d.seq for d in drafts] == [first, first + 1, first + 2]
    await _settle(ri, han)
    requests = {r.draft_id: r for r in han.cosign_requests()}
    assert set(requests) == {d.draft_id for d in drafts}
    # The third and the second approved first: signed, and held behind the first.
    for d in (drafts[2], drafts[1]):
        han.approve_cosign(requests[d.draft_id].request_id)
    await _settle(han, ri)
    assert _states(ri, drafts) == ["sealed", "cosigned", "cosigned"]
    with pytest.raises(ConfigError, match="goes out after the draft before it"):
        ri.send_now(drafts[2].draft_id)
    await _settle(ri, smith, jones)
    assert smith.inbox() == []
    # The first approved: all three go, in order, and arrive without an alarm.
    han.approve_cosign(requests[drafts[0].draft_id].request_id)
    await _settle(han, ri, smith, jones)
    assert _states(ri, drafts) == ["queued"] * 3 or _states(ri, drafts) == ["delivered"] * 3
    assert await _opened(smith, jones) == [(first + i, f"message {i}") for i in range(3)]
    assert not smith.status()["channels"][0]["alarms"]
    await _settle(ri)
    assert _states(ri, drafts) == ["delivered"] * 3


async def test_a_rejected_draft_takes_the_drafts_chained_on_it_back_to_the_cosigner(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Han rejects the second of three drafts, having approved the third: the
    third cannot go without the second (it chains on it), so it is drafted again
    after the first and Han is asked again; the peer gets the first and the
    third, numbered without a gap."""
    (ri, han), (smith, jones) = await two_missions(tmp_path, relay)
    channel = ri.channel_for("Washington").channel_id
    a, b, c = (ri.compose(channel, note(t)) for t in ("first", "second", "third"))
    await _settle(ri, han)
    requests = {r.draft_id: r for r in han.cosign_requests()}
    han.approve_cosign(requests[c.draft_id].request_id)
    han.reject_cosign(requests[b.draft_id].request_id)
    await _settle(han, ri, han)
    assert _states(ri, [a, b, c]) == ["sealed", "rejected", "rejected"]
    [again] = [d for d in ri.drafts() if d.draft_id not in {a.draft_id, b.draft_id, c.draft_id}]
    assert again.outgoing.state.value == "sealed" and again.seq == b.seq
    assert again.outgoing.payload == c.outgoing.payload
    # Han's desk holds the first and the third drafted again, nothing else.
    assert {r.draft_id for r in han.cosign_requests()} == {a.draft_id, again.draft_id}
    reasons = [e.note for e in ri.audit_entries() if e.kind is AuditKind.REJECTED]
    assert "withdrawn: chained on a draft a colleague rejected" in reasons
    # The desk tells the refused draft from the one the device withdrew.
    withdrawn = {d.draft_id: d.withdrawn for d in ri.drafts()}
    assert withdrawn[b.draft_id] == ""
    assert withdrawn[c.draft_id] == (
        "chained on a draft a colleague rejected; drafted again with the same text"
    )
    got = await _all_approved_and_opened(han, ri, smith, jones)
    assert got == [(a.seq, "first"), (a.seq + 1, "third")]


async def test_a_roster_change_drafts_the_whole_chain_again_in_order(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Two drafts awaiting co-signatures (the second already signed) when Kim
    joins: both were signed under the old roster, so both are drafted again
    under the new one, still chained in the order first drafted."""
    ny, (smith, jones) = await two_missions(tmp_path, relay)
    ri, han = ny
    channel = ri.channel_for("Washington").channel_id
    a, b = (ri.compose(channel, note(t)) for t in ("one", "two"))
    await _settle(ri, han)
    [req_b] = [r for r in han.cosign_requests() if r.draft_id == b.draft_id]
    han.approve_cosign(req_b.request_id)
    await _settle(han, ri)
    assert _states(ri, [a, b]) == ["sealed", "cosigned"]
    kim, _ = await _add_kim(tmp_path, relay, ny)
    for d in (smith, jones):
        d.add_peer(ri.mission_card().encode())
    assert _states(ri, [a, b]) == ["rejected", "rejected"]
    new = sorted(
        (d for d in ri.drafts() if d.outgoing.state.value == "sealed"), key=lambda d: d.seq
    )
    assert [d.outgoing.payload for d in new] == [a.outgoing.payload, b.outgoing.payload]
    assert [d.seq for d in new] == [a.seq, a.seq + 1]
    for d in new:
        assert d.outgoing.message is not None
        assert d.outgoing.message.header.sender_roster == 1
    await _settle(ri, kim)
    got = await _all_approved_and_opened(kim, ri, smith, jones)
    assert got == [(a.seq, "one"), (a.seq + 1, "two")]


async def test_a_draft_cannot_be_queued_before_the_one_it_chains_on(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Below the desk: the channel's endpoint refuses to send a chained draft
    ahead of the draft it chains on, and a chain on another channel's draft or
    on a message already sent."""
    (ri, han), _ = await two_missions(tmp_path, relay)
    channel = ri.channel_for("Washington").channel_id
    a, b = (ri.compose(channel, note(t)) for t in ("one", "two"))
    assert a.outgoing.message is not None and b.outgoing.message is not None
    ep = ri._endpoint(channel)
    with pytest.raises(ForkDetected):
        ep.queue(b.outgoing.message.with_signature(*_sig(han, b)))
    epoch = ri.channel(channel).send_epoch
    assert epoch is not None
    kind = a.outgoing.payload.kind
    other = b.outgoing.message
    foreign = replace(other, header=replace(other.header, direction=1 - other.header.direction))
    with pytest.raises(LocalProtocolError, match="same channel"):
        ep.new_header(kind, epoch, 0, None, foreign)
    # a and b signed by Han, queued in order: a chain on a sent one is refused.
    for d in (a, b):
        assert d.outgoing.message is not None
        ep.queue(d.outgoing.message.with_signature(*_sig(han, d)))
    with pytest.raises(LocalProtocolError, match="not sent yet"):
        ep.new_header(kind, epoch, 0, None, a.outgoing.message)


def _sig(officer: Client, draft: DraftRecord) -> tuple[bytes, bytes]:
    from backchannel.protocol.sealing import sign

    assert draft.outgoing.message is not None
    msg = sign(draft.outgoing.message, officer.officer, officer.mission().roster)
    return next(s for s in msg.signatures if s[0] == officer.officer.officer_id)


async def test_only_the_first_draft_of_a_chain_carries_the_epochs_announcement(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Three drafts in a new key epoch: the first carries the announcement, the
    ones chained on it do not (they cannot go out before it). Han rejects the
    first: the other two are drafted again and the first of them carries it,
    so the peer still opens both, numbered without a gap."""
    (ri, han), (smith, jones) = await two_missions(tmp_path, relay)
    channel = ri.channel_for("Washington").channel_id
    a, b, c = (ri.compose(channel, note(t)) for t in ("first", "second", "third"))
    carries = [bool(d.outgoing.message and d.outgoing.message.announcement) for d in (a, b, c)]
    assert carries == [True, False, False]
    await _settle(ri, han)
    requests = {r.draft_id: r for r in han.cosign_requests()}
    han.reject_cosign(requests[a.draft_id].request_id)
    await _settle(han, ri, han)
    again = sorted(
        (d for d in ri.drafts() if d.draft_id not in {a.draft_id, b.draft_id, c.draft_id}),
        key=lambda d: d.seq,
    )
    assert [d.outgoing.payload.text for d in again] == ["second", "third"]
    assert [bool(d.outgoing.message and d.outgoing.message.announcement) for d in again] == [
        True,
        False,
    ]
    got = await _all_approved_and_opened(han, ri, smith, jones)
    assert got == [(a.seq, "second"), (a.seq + 1, "third")]
