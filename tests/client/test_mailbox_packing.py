"""Several joint objects in one mailbox cell: what fits behind an object's last
piece rides with it, in order, and nothing overtakes what was queued before it."""

from __future__ import annotations

from pathlib import Path

from backchannel.client import demo, statecodec
from backchannel.client.mailbox import JOINT_OUT, JointOut
from backchannel.client.service import Client
from backchannel.protocol import joint
from backchannel.protocol.payload import note
from tests.client.conftest import InProcessRelay
from tests.client.test_client_flow import two_missions


def _carry(sender: Client, recipient: Client, cells: int) -> list[bytes]:
    """Produce ``cells`` of ``sender``'s lane to ``recipient`` and hand them over:
    the bodies of the notices ``recipient`` took, in order."""
    taken: list[bytes] = []

    def record(obj: joint.JointObject) -> None:
        if obj.kind is joint.JointKind.NOTICE and obj.body.startswith(b"test:"):
            taken.append(obj.body)

    recipient.mailbox.handler = record
    out = [sender.mailbox.produce(recipient.officer.officer_id)[1] for _ in range(cells)]
    alarms: list[str] = []
    recipient.mailbox.take(sender.officer.officer_id, out, alarms)
    assert alarms == []
    return taken


def _drain(sender: Client, recipient: Client) -> None:
    """Carry what the founding queued (cards, audit entries) out of the way."""
    while sender.mailbox.waiting() or sender.mailbox.waiting_audit():
        _carry(sender, recipient, 1)


async def _quiet_lane(tmp_path: Path, relay: InProcessRelay) -> tuple[Client, Client]:
    """Ri and Han of New York, Ri's lane to Han emptied of what the founding queued."""
    (ri, han), _ = await two_missions(tmp_path, relay)
    _drain(ri, han)
    return ri, han


async def test_small_objects_share_a_cell_and_keep_their_order(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, han = await _quiet_lane(tmp_path, relay)
    to_han = han.officer.officer_id
    bodies = [b"test: first", b"test: second", b"test: third"]
    for body in bodies:
        ri.mailbox.send(joint.JointKind.NOTICE, to_han, body)
    assert _carry(ri, han, 1) == bodies  # one cell carried all three
    assert ri.mailbox.waiting() == 0


async def test_a_small_object_never_overtakes_a_large_one_queued_before_it(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, han = await _quiet_lane(tmp_path, relay)
    to_han = han.officer.officer_id
    big = b"test:" + b"B" * 4500  # more than a cell holds
    for body in (b"test: small one", big, b"test: small two"):
        ri.mailbox.send(joint.JointKind.NOTICE, to_han, body)
    # Cell 1: the first small object and the large one's first piece, cut to
    # the room left (the second small one may not pass it); cell 2: the rest of
    # the large one, the second small one riding behind its last piece.
    assert _carry(ri, han, 1) == [b"test: small one"]
    assert _carry(ri, han, 1) == [big, b"test: small two"]
    assert ri.mailbox.waiting() == 0


async def test_a_burst_of_approvals_reaches_the_runner_in_fewer_rounds_than_approvals(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Three co-signatures given at once: they share cells, so the runner has
    them all in fewer rounds than one a round would take."""
    (ri, han), _ = await two_missions(tmp_path, relay)
    channel = ri.channel_for("Washington").channel_id
    drafts = [ri.compose(channel, note(f"draft {i}")) for i in range(3)]
    await demo.lockstep((ri, han), lambda: len(han.cosign_requests()) == 3, limit=12)
    assert len(han.cosign_requests()) == 3
    while han.mailbox.waiting_audit():  # Han's audit entries out of the way first
        await demo.lockstep((ri, han), lambda: True, limit=1)
    for req in han.cosign_requests():
        han.approve_cosign(req.request_id)
    await demo.lockstep((ri, han), lambda: True, limit=1)
    states = {d.draft_id: d.outgoing.state.value for d in ri.drafts()}
    signed = [states[d.draft_id] for d in drafts if states[d.draft_id] != "sealed"]
    assert len(signed) >= 2, states


async def test_objects_larger_than_a_cell_follow_each_other_without_gaps(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Six co-sign requests drafted at once, each over a cell (a text of 3.7 KB):
    each begins in the room the one
    before it left, so they fill the cells of Ri's lane to Han end to end
    instead of taking two cells each."""
    (ri, han), _ = await two_missions(tmp_path, relay)
    _drain(ri, han)
    channel = ri.channel_for("Washington").channel_id
    text = "Proposal: working-level talks in Geneva next month. " * 70
    for i in range(6):
        ri.compose(channel, note(f"{i}: {text}"))
    queued = [
        out.sealed for _, out in ri.vault.pending_decoded(JOINT_OUT, JointOut, statecodec.loads)
    ]
    cap = joint.chunk_capacity(ri.mission().cell_size)
    assert len(queued) == 6 and all(cap < len(q) < 2 * cap for q in queued)
    requests: list[bytes] = []

    def record(obj: joint.JointObject) -> None:
        if obj.kind is joint.JointKind.COSIGN_REQUEST:
            requests.append(obj.object_id)

    han.mailbox.handler = record
    cells = 0
    while ri.mailbox.waiting():
        alarms: list[str] = []
        cell = ri.mailbox.produce(han.officer.officer_id)[1]
        han.mailbox.take(ri.officer.officer_id, [cell], alarms)
        assert alarms == []
        cells += 1
    assert len(requests) == 6
    # Their bytes end to end (a piece header each aside), not two cells each.
    assert cells <= sum(len(q) for q in queued) // cap + 2 < 12, cells
