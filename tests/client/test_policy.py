"""The mission policy on officers' devices, through a relay: a change goes out on
the rounds, every colleague is told, and it takes effect on every device only
with k signatures; what it allows is what the devices do (official channels,
deniable messages, the k of a message to a Track II contact)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backchannel.client import demo
from backchannel.client.home import Home
from backchannel.client.officer_alarms import AlarmKind
from backchannel.client.policy import POLICY_NOTICE
from backchannel.client.service import Client
from backchannel.errors import ConfigError, NotEnoughShares, NotEnoughSignatures
from backchannel.protocol import channel as ch
from backchannel.protocol import policy as mp
from backchannel.protocol.audit import AuditKind
from backchannel.protocol.payload import note
from backchannel.protocol.states import SendState
from tests.client.conftest import FAST_KDF, RELAY_URL, InProcessRelay, adopt_policy
from tests.client.test_deniable_channel import contact, pair_with_contact


async def three_officers(tmp: Path, relay: InProcessRelay) -> tuple[Client, Client, Client]:
    """A 2-of-3 mission."""
    f = relay.factory()
    ri, han, pak = (
        Client(Home.create(tmp / n.lower(), n, "pw", FAST_KDF), f) for n in ("Ri", "Han", "Pak")
    )
    proposal = ri.propose_mission("New York", 2, [han.officer_card(), pak.officer_card()],
                                  RELAY_URL)  # fmt: skip
    proposal = pak.sign_proposal(han.sign_proposal(proposal))
    for c in (ri, han, pak):
        c.adopt_mission(proposal)
    await ri.register_tenant()
    return ri, han, pak


async def rounds(*devices: Client, n: int = 3) -> None:
    for _ in range(n):
        for c in devices:
            await c.settle()


def kinds(c: Client, officer: Client) -> list[AuditKind]:
    return [e.kind for e in c.audit_entries() if e.officer_id == officer.officer.officer_id]


async def test_a_change_takes_k_signatures_and_every_device_adopts_it(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, han, pak = await three_officers(tmp_path, relay)
    assert all(c.mission_policy() == mp.DEFAULT for c in (ri, han, pak))
    proposed = ri.policy_propose({ch.Policy.RECORD, ch.Policy.EITHER}, 1)
    assert proposed.signed_by == ("Ri",) and not proposed.adopted
    await rounds(ri, han, pak)
    # Proposed by one officer: every colleague is told and sees it, nobody adopts it.
    for c in (han, pak):
        [alarm] = [a for a in c.officer_alarms() if a.kind is AlarmKind.POLICY_PROPOSED]
        assert alarm.officer == "Ri" and "Track II k = 1" in alarm.text
        [pending] = c.policy_pending()
        assert pending.signed_by == ("Ri",) and pending.needed == 2
    assert all(c.mission_policy() == mp.DEFAULT for c in (ri, han, pak))
    signed = pak.policy_sign(proposed.ref)
    assert signed.adopted and pak.mission_policy() == proposed.policy
    await rounds(ri, han, pak)
    for c in (ri, han, pak):
        assert c.mission_policy() == proposed.policy and c.policy_pending() == []
        assert c.mission_policy().track2_k == 1 and c.mission_policy().official_deniable
    await rounds(ri, han, pak)
    # The record: who proposed, who signed, that each device adopted it.
    for c in (ri, han, pak):
        assert AuditKind.POLICY_PROPOSED in kinds(c, ri)
        assert AuditKind.POLICY_SIGNED in kinds(c, pak)
        assert AuditKind.POLICY_ADOPTED in kinds(c, han)
        assert c.audit_verify() == []
    # A newer change supersedes; the adopted one handed in again changes nothing.
    raw = POLICY_NOTICE + mp.SignedPolicy.decode(ri.mission().policies[-1]).encode()
    assert han._on_policy_notice(pak.officer.officer_id, raw) is None
    assert han.mission_policy().version == 1 and han.policy_pending() == []


async def test_one_officer_alone_changes_nothing(tmp_path: Path, relay: InProcessRelay) -> None:
    ri, han, pak = await three_officers(tmp_path, relay)
    proposed = ri.policy_propose(set(ch.Policy), 1)
    # He cannot sign twice to make two.
    with pytest.raises(ConfigError, match="signed this change already"):
        ri.policy_sign(proposed.ref)
    assert ri.policy_pending()[0].signed_by == ("Ri",)
    assert ri.mission_policy() == mp.DEFAULT
    # Nor by forging a colleague's signature on his proposal, sent as from himself.
    signed = mp.SignedPolicy.decode(ri.vault.get("policy_pending", proposed.policy.hash) or b"")
    forged = signed.with_signatures(
        [(han.officer.officer_id, b"\x00" * len(signed.signatures[0][1]))]
    )
    assert pak._on_policy_notice(ri.officer.officer_id, POLICY_NOTICE + forged.encode()) is None
    assert pak.mission_policy() == mp.DEFAULT
    assert pak.policy_pending()[0].signed_by == ("Ri",)
    # Nor by signing it as another mission's officer would (the mission id is signed).
    other = mp.sign(mp.SignedPolicy(bytes(32), proposed.policy), ri.officer)
    said = pak._on_policy_notice(ri.officer.officer_id, POLICY_NOTICE + other.encode())
    assert said is not None and "another mission" in said
    # Nor by altering what his colleagues sign after they signed.
    han_signed = mp.sign(signed, han.officer)
    altered = mp.SignedPolicy(
        han_signed.mission_id,
        mp.MissionPolicy(1, frozenset(ch.Policy), 3, mp.DEFAULT.hash),
        han_signed.signatures,
    )
    said = pak._on_policy_notice(ri.officer.officer_id, POLICY_NOTICE + altered.encode())
    assert said is not None and "lacks his own signature" in said
    assert pak.mission_policy() == mp.DEFAULT
    # A damaged notice is set aside with a line, not an exception.
    said = pak._on_policy_notice(ri.officer.officer_id, POLICY_NOTICE + b"\x01junk")
    assert said is not None and "could not be read" in said
    assert pak.mission_policy() == mp.DEFAULT and ri.mission_policy() == mp.DEFAULT


async def _either_channel(
    tmp_path: Path, relay: InProcessRelay
) -> tuple[tuple[Client, Client], tuple[Client, Client], bytes]:
    """New York and Washington, each mission's policy widened to let the official
    channel between them carry both deniable messages and messages for the record."""
    f = relay.factory()
    ny = await demo.found(tmp_path, "New York", ("Ri", "Han"), RELAY_URL, f, "pw", FAST_KDF)
    dc = await demo.found(tmp_path, "Washington", ("Smith", "Jones"), RELAY_URL, f, "pw", FAST_KDF)
    ri, han = ny
    smith, _ = dc
    for mine, theirs in ((ny, dc), (dc, ny)):
        for officer in mine:
            rec = officer.add_peer(theirs[0].mission_card().encode())
            officer.confirm_peer(rec.mission_id, rec.safety_number)
    peer = smith.mission().mission_id
    # By default official channels are for the record only.
    for policy in (ch.Policy.DENIABLE, ch.Policy.EITHER):
        with pytest.raises(ConfigError, match="does not allow official channels"):
            ri.make_offer(peer, policy=policy)
    # k of n widen it, on each side.
    await adopt_policy(ny, {ch.Policy.RECORD, ch.Policy.EITHER})
    ours = han.sign_offer(ri.make_offer(peer, policy=ch.Policy.EITHER))
    with pytest.raises(ConfigError, match="does not allow official channels that are deniable"):
        ri.make_offer(peer, policy=ch.Policy.DENIABLE)
    with pytest.raises(ConfigError, match="does not allow official channels that are either"):
        smith.make_offer(ri.mission().mission_id, policy=ch.Policy.EITHER)
    await adopt_policy(dc, {ch.Policy.EITHER})
    theirs = dc[1].sign_offer(smith.make_offer(ri.mission().mission_id, policy=ch.Policy.EITHER))
    for officer in (*ny, *dc):
        officer.accept_channel(ours, theirs)
    return ny, dc, ri.channel_for("Washington").channel_id


async def test_official_channels_follow_the_policy(tmp_path: Path, relay: InProcessRelay) -> None:
    ny, dc, channel = await _either_channel(tmp_path, relay)
    ri, han = ny
    draft = ri.compose(channel, note("off the record"), deniable=True)
    assert draft.outgoing.message is not None and draft.outgoing.message.header.deniable
    # Narrowed again, k of n, while the deniable draft waits for its co-signature.
    await adopt_policy(ny, {ch.Policy.RECORD})
    [req] = han.cosign_requests()
    han.approve_cosign(req.request_id)
    await rounds(*ny, *dc, n=4)
    [withdrawn] = ri.drafts()
    assert withdrawn.outgoing.state is SendState.REJECTED  # it never went out
    assert withdrawn.withdrawn == "the mission's policy no longer allows deniable messages here"
    assert dc[0].inbox() == []
    assert (
        "policy no longer allows deniable"
        in [e.note for e in ri.audit_entries() if e.kind is AuditKind.REJECTED][-1]
    )
    # The open channel now carries messages for the record only.
    with pytest.raises(ConfigError, match="allows only messages for the record"):
        ri.compose(channel, note("off the record, again"), deniable=True)
    ri.compose(channel, note("for the record"))


async def test_a_draft_chained_on_one_the_policy_withdraws_is_drafted_again(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """A deniable draft, then one for the record chained on it; the policy is
    narrowed before the first goes out: it is withdrawn, and the second, which
    cannot go without it, is drafted again (for the record, as its author
    chose), co-signed again, and arrives without a gap."""
    ny, dc, channel = await _either_channel(tmp_path, relay)
    ri, han = ny
    first = ri.compose(channel, note("off the record"), deniable=True)
    second = ri.compose(channel, note("for the record"), deniable=False)
    assert second.seq == first.seq + 1
    await adopt_policy(ny, {ch.Policy.RECORD})
    await rounds(*ny, n=2)
    for req in han.cosign_requests():
        han.approve_cosign(req.request_id)
    await rounds(*ny, *dc, n=4)
    states = {d.draft_id: d.outgoing.state for d in ri.drafts()}
    assert states[first.draft_id] is SendState.REJECTED
    assert states[second.draft_id] is SendState.REJECTED
    [again] = [d for d in ri.drafts() if d.draft_id not in {first.draft_id, second.draft_id}]
    assert again.seq == first.seq and again.outgoing.message is not None
    assert not again.outgoing.message.header.deniable
    notes = [e.note for e in ri.audit_entries() if e.kind is AuditKind.REJECTED]
    assert "withdrawn: chained on a draft that was withdrawn" in notes
    for req in han.cosign_requests():
        han.approve_cosign(req.request_id)
    await rounds(*ny, *dc, n=4)
    [item] = dc[0].inbox()
    assert not item.deniable
    assert not dc[0].status()["channels"][0]["alarms"]


async def track_two(tmp: Path, relay: InProcessRelay) -> tuple[Client, Client, Client]:
    f = relay.factory()
    ri, han = await demo.found(tmp, "New York", ("Ri", "Han"), RELAY_URL, f, "pw", FAST_KDF)
    kim = await contact(tmp, relay, "Kim")
    pair_with_contact((ri, han), kim)
    return ri, han, kim


async def test_one_officer_speaks_to_a_contact_only_where_the_policy_says_so(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, han, kim = await track_two(tmp_path, relay)
    channel = ri.channel_for("Kim").channel_id
    # By default a message to a contact takes the roster's k, as any other.
    draft = ri.compose(channel, note("first, under two signatures"))
    assert draft.outgoing.state is SendState.SEALED
    with pytest.raises(NotEnoughSignatures, match="1 of the 2 officers"):
        ri.send_now(draft.draft_id)
    await rounds(ri, han, kim)
    [req] = han.cosign_requests()
    assert req.deniable
    han.approve_cosign(req.request_id)
    await rounds(ri, han, kim, n=4)
    [first] = kim.inbox()
    kim.request_open(first.message_id)
    assert kim.read(first.message_id).text == "first, under two signatures"
    # The mission decides, k of n, that one officer may speak to a contact alone.
    await adopt_policy((ri, han), {ch.Policy.RECORD}, track2_k=1)
    waiting = ri.mailbox.waiting()
    draft = ri.compose(channel, note("second, on my word alone"))
    assert draft.outgoing.state is SendState.QUEUED
    # Nobody is asked to co-sign it, so nobody is told the request is withdrawn.
    assert ri.mailbox.waiting() == waiting
    await rounds(ri, han, kim, n=4)
    assert han.cosign_requests() == []  # nobody was asked
    [_, second] = kim.inbox()
    kim.request_open(second.message_id)
    assert kim.read(second.message_id).text == "second, on my word alone"
    # Still two to read what the contact writes (reading is the roster's k).
    kim.compose(kim.channel_for("New York").channel_id, note("Received."))
    await rounds(ri, han, kim, n=4)
    [back] = ri.inbox()
    ri.request_open(back.message_id)
    with pytest.raises(NotEnoughShares, match="1 of the 2 officers needed"):
        ri.read(back.message_id)
    # Official channels keep the roster's k whatever the Track II k.
    assert ri.mission_policy().send_threshold(ri.mission().roster, False) == 2


async def test_an_officer_who_joins_later_holds_the_policy_and_its_signatures(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    from backchannel.client import roster_change

    ri, han, pak = await three_officers(tmp_path, relay)
    await adopt_policy((ri, han, pak), {ch.Policy.RECORD, ch.Policy.EITHER}, track2_k=1)
    kang = Client(Home.create(tmp_path / "kang", "Kang", "pw", FAST_KDF), relay.factory())
    change = roster_change.propose(ri, [kang.officer_card()], [], 2)
    change = roster_change.sign(kang, roster_change.sign(han, change))
    for c in (ri, han, pak, kang):
        roster_change.adopt(c, change)
    assert kang.mission_policy() == ri.mission_policy() and kang.mission_policy().track2_k == 1
    # The record he can export verifies the policy from the roster chain, offline.
    from backchannel.client.audit import verify_record

    problems = verify_record(kang.export_record()).problems
    assert problems == []
    # A record whose policy change lost a signature says so.
    import json

    record = json.loads(kang.export_record())
    signed = mp.SignedPolicy.decode(bytes.fromhex(record["policy_chain"][0]))
    record["policy_chain"][0] = (
        mp.SignedPolicy(signed.mission_id, signed.policy, signed.signatures[:1]).encode().hex()
    )
    problems = verify_record(json.dumps(record)).problems
    assert any("the mission policy's changes" in p and "1 signed" in p for p in problems)
