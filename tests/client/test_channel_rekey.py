"""After a removal the channels move to keys the removed officer's copy cannot
derive (protocol/rekey.py), end to end through a relay: New York (Ri, Han,
Kim; 2 of 3) removes Han, who kept a copy of his device's channel state."""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path

import pytest

from backchannel.client import roster_change
from backchannel.client.home import Home
from backchannel.client.service import Client
from backchannel.errors import RosterError
from backchannel.protocol import cells
from backchannel.protocol.audit import AuditKind
from tests.client.conftest import FAST_KDF, RELAY_URL, InProcessRelay, drafted, rounds
from tests.client.test_client_flow import two_missions
from tests.client.test_roster_change import _add_kim, _cosigned_by, _three_and_two


async def test_a_removal_moves_the_channel_where_the_removed_officers_copy_can_neither_find_nor_jam_it(  # noqa: E501
    tmp_path: Path, relay: InProcessRelay
) -> None:
    (ri, han, kim), dc = await _three_and_two(tmp_path, relay)
    smith, jones = dc
    cid = ri.channel_for("Washington").channel_id
    copy = han._endpoint(cid)  # what Han's device holds of the channel, and he keeps
    ep = ri._endpoint(cid)
    out, inn = ep.out_direction, ep.in_direction
    r = ep.next_send_round
    # Today his copy computes the slots the channel uses, both ways.
    assert copy._keys(r, True).slots[out] == ep._keys(r, True).slots[out]
    assert copy._keys(r, False).slots[inn] == ep._keys(r, False).slots[inn]

    change = roster_change.sign(kim, roster_change.propose(ri, [], [han.officer.officer_id], 2))
    assert {c for c, _, _ in change.channel_signatures} == {cid}
    assert roster_change.adopt(han, change) is None
    roster_change.adopt(ri, change)
    roster_change.adopt(kim, change)
    for c in dc:
        c.add_peer(ri.mission_card().encode())
    devices = [ri, kim, smith, jones]
    assert await rounds(devices, 12) == []
    for c in devices:
        assert c._endpoint(cid).rekeying is None, c.officer.name
        kinds = [e.kind for e in c.audit_entries() if e.officer_id == c.officer.officer_id]
        assert AuditKind.CHANNEL_REKEYED in kinds, c.officer.name

    # From here on, neither direction is where his copy looks.
    ep = ri._endpoint(cid)
    peer = smith._endpoint(cid)
    start = max(ep.next_send_round, ep.next_recv_round, peer.next_send_round)
    for r in range(start, start + 30):
        assert copy._keys(r, True).slots[out] != ep._keys(r, True).slots[out]
        assert copy._keys(r, False).slots[inn] != ep._keys(r, False).slots[inn]
        assert peer.slot_to_fetch(r) == ep._keys(r, True).slots[out]
        assert ep.slot_to_fetch(r) == peer._keys(r, True).slots[peer.out_direction]
    # He deposits first into every slot his copy computes for the coming rounds
    # (deposits need no credential): the channel does not notice.
    ny_tenant, dc_tenant = ri.mission().tenant_id, smith.mission().tenant_id
    async with relay.factory()(RELAY_URL, None, None) as rc:
        for r in range(start - 3, start + 30):
            for outgoing, d, tenant in ((True, out, dc_tenant), (False, inn, ny_tenant)):
                keys = copy._keys(r, outgoing)
                jam = cells.seal_cell(
                    cells.CellContent(), keys, cid, d, copy.terms.cell_size,
                    secrets.token_bytes(12),
                )  # fmt: skip
                await rc.deposit(tenant, keys.slots[d], jam)
    await _cosigned_by(ri, kim, "after the move")
    await drafted(smith, jones, "New York", "and back")
    assert await rounds(devices, 30) == []
    assert [i.message_id for i in smith.inbox()] == [i.message_id for i in jones.inbox()]
    assert len(smith.inbox()) == 1 and len(ri.inbox()) == 1 and len(kim.inbox()) == 1
    for c in devices:
        assert not c.status()["channels"][0]["alarms"], c.officer.name


async def test_a_removal_without_k_signatures_on_each_channels_new_keys_is_refused(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """A removal that leaves a channel on keys the removed officer holds is not
    adopted: the devices say which signatures are missing, and change nothing."""
    ny, _ = await two_missions(tmp_path, relay)
    ri, han = ny
    kim, _ = await _add_kim(tmp_path, relay, ny)
    change = roster_change.sign(kim, roster_change.propose(ri, [], [han.officer.officer_id], 2))
    cid = ri.channels()[0].channel_id
    only_ri = tuple(s for s in change.channel_signatures if s[1] == ri.officer.officer_id)
    for partial in ((), only_ri):
        bad = replace(change, channel_signatures=partial)
        for c in (ri, kim):
            with pytest.raises(RosterError, match="new keys of a channel"):
                roster_change.adopt(c, bad)
            assert c.mission().roster.version == 1
            assert c._endpoint(cid).rekeying is None
    # Signatures over another channel's seed do not count for this one.
    moved = tuple((bytes(16), o, g) for _, o, g in change.channel_signatures)
    with pytest.raises(RosterError, match="new keys of a channel"):
        roster_change.adopt(ri, replace(change, channel_signatures=moved))
    roster_change.adopt(ri, change)
    assert ri._endpoint(cid).rekeying is not None and ri.mission().roster.version == 2


async def test_a_lost_device_replaced_in_one_change_and_the_newcomer_follows_the_move(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Han's device is lost: one change removes it and adds Lee's. Lee's device,
    welcomed with the channel's state from before the move, follows it when
    Washington answers, and reads what Washington sends after."""
    ny, dc = await two_missions(tmp_path, relay)
    ri, han = ny
    smith, jones = dc
    kim, _ = await _add_kim(tmp_path, relay, ny)
    lee = Client(Home.create(tmp_path / "ny-lee", "Lee", "pw", FAST_KDF), relay.factory())
    change = roster_change.propose(ri, [lee.officer_card()], [han.officer.officer_id], 2)
    change = roster_change.sign(kim, change)
    change = roster_change.sign(lee, change)
    for c in (ri, kim, lee):
        roster_change.adopt(c, change)
    assert [o.name for o in lee.mission().roster.officers] == [
        o.name for o in ri.mission().roster.officers
    ]
    cid = ri.channels()[0].channel_id
    assert lee._endpoint(cid).rekeying is not None
    for c in dc:
        c.add_peer(ri.mission_card().encode())
    devices = [ri, kim, lee, smith, jones]
    assert await rounds(devices, 12) == []
    for c in devices:
        assert c._endpoint(cid).rekeying is None, c.officer.name
    assert lee._endpoint(cid).slot_to_fetch(lee._endpoint(cid).next_recv_round) == (
        ri._endpoint(cid).slot_to_fetch(lee._endpoint(cid).next_recv_round)
    )
    await drafted(smith, jones, "New York", "to the new three")
    assert await rounds(devices, 30) == []
    assert len(lee.inbox()) == 1 and len(ri.inbox()) == 1


async def test_two_missions_that_remove_an_officer_at_once_both_move_the_channel(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """New York removes Han and Washington removes Jones before either has
    seen the other's re-key: the two cross, and the channel settles on keys
    from both (Han had Washington's new seed sealed to him, and Jones New
    York's), with no alarm, and messages go both ways among those who stay."""
    ny, dc = await two_missions(tmp_path, relay)
    ri, han = ny
    smith, jones = dc
    kim, _ = await _add_kim(tmp_path, relay, ny)
    lee = Client(Home.create(tmp_path / "dc-lee", "Lee", "pw", FAST_KDF), relay.factory())
    grow = roster_change.sign(jones, roster_change.propose(smith, [lee.officer_card()], [], 2))
    grow = roster_change.sign(lee, grow)
    for c in (smith, jones, lee):
        roster_change.adopt(c, grow)
    for c in (ri, kim):
        c.add_peer(smith.mission_card().encode())
    for c in (smith, lee):
        c.add_peer(ri.mission_card().encode())
    cid = ri.channel_for("Washington").channel_id
    han_copy, jones_copy = han._endpoint(cid), jones._endpoint(cid)
    cut_han = roster_change.sign(kim, roster_change.propose(ri, [], [han.officer.officer_id], 2))
    cut_jones = roster_change.sign(
        lee, roster_change.propose(smith, [], [jones.officer.officer_id], 2)
    )
    for c in (ri, kim):
        roster_change.adopt(c, cut_han)
    for c in (smith, lee):
        roster_change.adopt(c, cut_jones)
    devices = [ri, kim, smith, lee]
    assert await rounds(devices, 16) == []
    for c in devices:
        assert c._endpoint(cid).rekeying is None, c.officer.name
        texts = [
            e.note
            for e in c.audit_entries()
            if e.kind == AuditKind.CHANNEL_REKEYED and e.officer_id == c.officer.officer_id
        ]
        assert any("both re-keys" in t for t in texts), (c.officer.name, texts)
    ep, peer = ri._endpoint(cid), smith._endpoint(cid)
    out, inn = ep.out_direction, ep.in_direction
    start = max(ep.next_send_round, ep.next_recv_round, peer.next_send_round)
    for r in range(start, start + 30):
        for kept in (han_copy, jones_copy):
            assert kept._keys(r, True).slots[out] != ep._keys(r, True).slots[out]
            assert kept._keys(r, False).slots[inn] != ep._keys(r, False).slots[inn]
        assert peer.slot_to_fetch(r) == ep._keys(r, True).slots[out]
    for c in (ri, kim):
        c.add_peer(smith.mission_card().encode())
    for c in (smith, lee):
        c.add_peer(ri.mission_card().encode())
    await _cosigned_by(ri, kim, "after both moves")
    await drafted(smith, lee, "New York", "and back")
    assert await rounds(devices, 30) == []
    assert len(smith.inbox()) == 1 and len(lee.inbox()) == 1
    assert len(ri.inbox()) == 1 and len(kim.inbox()) == 1
    for c in devices:
        assert not c.status()["channels"][0]["alarms"], c.officer.name
