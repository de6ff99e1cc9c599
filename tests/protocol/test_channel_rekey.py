"""Re-keying a channel after a roster change removes an officer (protocol/rekey.py).

New York (Pak, Kim, Ri; 2 of 3; Pak's device sends) removes Ri, who keeps a
copy of the channel's state. Each attack plays Ri with that copy: the old
slot chain, both directions, every key it derives.
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import replace

import pytest

from backchannel.client.harness import MissionKit, Pair
from backchannel.errors import (
    AuthenticationError,
    DecodeError,
    LocalProtocolError,
    RosterError,
    SignatureError,
)
from backchannel.protocol import cells
from backchannel.protocol import rekey as rk
from backchannel.protocol import rekeying as rkg
from backchannel.protocol import roster as rs
from backchannel.protocol.endpoint import Endpoint
from backchannel.protocol.identity import Officer
from backchannel.protocol.payload import note
from tests.conftest import DetRng


@pytest.fixture
def pair(rng: DetRng) -> Pair:
    ny = MissionKit.create("New York", ["Pak", "Kim", "Ri"], 2, rng)
    dc = MissionKit.create("Washington", ["Smith", "Jones", "Brown"], 2, rng)
    return Pair(ny, dc, rng=rng, start_round=100)


def _remove(m: MissionKit, leaver: int, signers: tuple[int, ...]) -> rs.SignedRoster:
    staying = [o.officer.public for i, o in enumerate(m.officers) if i != leaver]
    new = rs.propose_update(m.roster, staying, 2)
    return rs.SignedRoster(new, tuple(rs.sign_roster(new, m.officers[i].officer) for i in signers))


def _keys(side_mission: MissionKit) -> tuple:  # type: ignore[type-arg]
    return tuple(k.private_key for k in reversed(side_mission.officers[0].epoch_keys))


def _round(pair: Pair) -> None:
    """One round: each side deposits, then reads the peer's cell (with its keys)."""
    r = pair.round
    for side in (pair.a, pair.b):
        slot, cell = side.endpoint.cell_for_round(r, pair.rng(12))
        pair.relay.deposit(slot, cell)
    for side in (pair.a, pair.b):
        ep = side.endpoint
        res = ep.receive(r, pair.relay.fetch(ep.slot_to_fetch(r)), _keys(side.mission))
        side.results.append(res)
    pair.round += 1


def _start(pair: Pair) -> tuple[Endpoint, rs.SignedRoster, bytes]:
    """New York removes Ri (officer 2); Pak's device queues the re-key. Returns Ri's copy."""
    ny, a = pair.a.mission, pair.a.endpoint
    ri_copy = copy.deepcopy(a)
    change = _remove(ny, 2, (0, 1))
    rs.verify_update(ny.roster, change)
    fresh = secrets.token_bytes(32)
    cid, v = pair.terms.channel_id, change.roster.version
    seed = rk.seed_for(fresh, ny.mission_id, v, cid)
    sigs = tuple(
        rk.sign_statement(ny.officers[i].officer, cid, ny.mission_id, v, seed) for i in (0, 1)
    )
    rekey = rk.make_rekey(
        cid, ny.mission_id, change, a.next_send_round, seed, tuple(pair.b.mission.certs()), sigs
    )
    a.own_roster = change.roster
    ny.chain.append(change)
    a.start_rekey(rekey, seed)
    return ri_copy, change, seed


def _until_moved(pair: Pair, limit: int = 40) -> None:
    for _ in range(limit):
        _round(pair)
        if pair.a.endpoint.rekeying is None and pair.b.endpoint.rekeying is None:
            return
    raise AssertionError("the channel did not move to its new keys")


def test_after_the_move_the_removed_officers_copy_finds_no_slot_and_jams_nothing(
    pair: Pair,
) -> None:
    a, b = pair.a.endpoint, pair.b.endpoint
    r0 = pair.round
    ri_copy, _, _ = _start(pair)
    # Washington adds New York's new card (its roster chain), as its officers would.
    b.adopt_peer_roster([c.roster for c in pair.a.mission.chain])
    # Before the move his copy computes the very slots the channel uses.
    assert (
        ri_copy._keys(r0, True).slots[a.out_direction] == a._keys(r0, True).slots[a.out_direction]
    )
    _until_moved(pair)
    assert any("moved the channel to new keys" in res.rekey for res in pair.b.results)
    assert any("moved to the channel's new keys" in res.rekey for res in pair.a.results)
    # From now on, in both directions, his copy's slots are not the channel's.
    for r in range(pair.round, pair.round + 20):
        for out in (True, False):
            d = a.out_direction if out else a.in_direction
            theirs = ri_copy._keys(r, out).slots[d]
            assert theirs != a._keys(r, out).slots[d]
    # He fills the slots his copy computes, both directions, with cells it seals:
    # the channel does not notice, and messages go both ways.
    for r in range(pair.round, pair.round + 12):
        for out in (True, False):
            d = a.out_direction if out else a.in_direction
            keys = ri_copy._keys(r, out)
            jam = cells.seal_cell(
                cells.CellContent(), keys, pair.terms.channel_id, d, pair.terms.cell_size,
                secrets.token_bytes(12),
            )  # fmt: skip
            pair.relay.deposit(keys.slots[d], jam)
    out_a = pair.cosign(pair.a, pair.compose(pair.a, 0, note("after the move")), 1)
    out_b = pair.cosign(pair.b, pair.compose(pair.b, 0, note("answer")), 1)
    pair.send(pair.a, out_a)
    pair.send(pair.b, out_b)
    for _ in range(12):
        _round(pair)
    got_b = [m for res in pair.b.results for m in res.messages]
    got_a = [m for res in pair.a.results for m in res.messages]
    assert [m.message_id for m in got_b] == [out_a.message.message_id]  # type: ignore[union-attr]
    assert [m.message_id for m in got_a] == [out_b.message.message_id]  # type: ignore[union-attr]
    assert b.delivered_seq == 1 and a.delivered_seq == 1


def _inject(pair: Pair, ri_copy: Endpoint, raw: bytes, outgoing: bool) -> Endpoint:
    """Ri's copy seals ``raw`` (a control object) into the channel's next rounds of
    a direction, as a device of either side would; the receiving endpoint takes them."""
    frags = rk.control_fragments(raw, pair.terms.cell_size)
    receiver = pair.b if outgoing else pair.a
    ep = receiver.endpoint
    d = ri_copy.out_direction if outgoing else ri_copy.in_direction
    for f in frags[:-1]:
        r = ep.next_recv_round
        keys = ri_copy._keys(r, outgoing)
        cell = cells.seal_cell(
            cells.CellContent(None, f), keys, pair.terms.channel_id, d, pair.terms.cell_size,
            secrets.token_bytes(12),
        )  # fmt: skip
        ep.receive(r, cell, _keys(receiver.mission))
    r = ep.next_recv_round
    keys = ri_copy._keys(r, outgoing)
    last = cells.seal_cell(
        cells.CellContent(None, frags[-1]), keys, pair.terms.channel_id, d,
        pair.terms.cell_size, secrets.token_bytes(12),
    )  # fmt: skip
    before = copy.deepcopy(ep)
    with pytest.raises((RosterError, SignatureError, AuthenticationError)):
        ep.receive(r, last, _keys(receiver.mission))
    # Refused, and the endpoint is as it was.
    assert (ep.next_recv_round, ep.rekeying, ep.rekey_held) == (
        before.next_recv_round, before.rekeying, before.rekey_held
    )  # fmt: skip
    return ep


def _his_rekey(
    pair: Pair,
    ri_copy: Endpoint,
    change: rs.SignedRoster,
    seed: bytes,
    sigs: tuple[tuple[bytes, bytes], ...],
) -> bytes:
    """A re-key Ri builds himself: ``seed`` sealed to Washington's officers."""
    cid = pair.terms.channel_id
    boxes = tuple(
        (c.officer_id, c.public_key.seal(seed, rk._box_info(cid, c.officer_id)))
        for c in pair.b.mission.certs()
    )
    mission = pair.a.mission.mission_id
    return rk.ChannelRekey(mission, change, ri_copy.next_send_round, boxes, sigs).encode()


def test_a_rekey_forged_by_the_removed_officer_is_refused(pair: Pair) -> None:
    ny = pair.a.mission
    ri_copy = copy.deepcopy(pair.a.endpoint)
    ri = ny.officers[2].officer
    cid = pair.terms.channel_id
    seed = secrets.token_bytes(32)
    # A roster without Pak, signed by Ri alone: the peer needs 2 of the old roster.
    staying = [o.officer.public for i, o in enumerate(ny.officers) if i != 0]
    mine = rs.propose_update(ny.roster, staying, 2)
    forged_change = rs.SignedRoster(mine, (rs.sign_roster(mine, ri),))
    sigs = (rk.sign_statement(ri, cid, ny.mission_id, 1, seed),)
    _inject(pair, ri_copy, _his_rekey(pair, ri_copy, forged_change, seed, sigs), outgoing=True)


def test_the_real_change_and_its_signatures_do_not_vouch_for_a_seed_of_his(pair: Pair) -> None:
    """Ri saw the change and its signatures, but the signatures commit to a seed he
    cannot derive: a re-key carrying them over a seed of his own is refused."""
    ny = pair.a.mission
    ri_copy = copy.deepcopy(pair.a.endpoint)
    change = _remove(ny, 2, (0, 1))
    cid = pair.terms.channel_id
    real_seed = secrets.token_bytes(32)
    real_sigs = tuple(
        rk.sign_statement(ny.officers[i].officer, cid, ny.mission_id, 1, real_seed) for i in (0, 1)
    )
    his_seed = secrets.token_bytes(32)
    with pytest.raises(SignatureError):  # the sending side refuses to build it
        rk.make_rekey(cid, ny.mission_id, change, 0, his_seed, (), real_sigs)
    _inject(pair, ri_copy, _his_rekey(pair, ri_copy, change, his_seed, real_sigs), outgoing=True)


def test_an_acknowledgement_forged_by_the_removed_officer_is_refused(pair: Pair) -> None:
    ri_copy, _, _ = _start(pair)
    # He answers for Washington, in the direction to New York, before the peer does.
    ack = rk.RekeyAck(pair.a.endpoint.next_send_round, secrets.token_bytes(32))
    ep = _inject(pair, ri_copy, ack.encode(), outgoing=False)
    assert ep.rekeying is not None and ep.rekeying.in_switch == 0


def test_a_replayed_acknowledgement_of_an_earlier_rekey_is_refused(pair: Pair) -> None:
    """Once a move is complete, its acknowledgement sent again (in a cell of the new
    chain, as only a device of the peer could) acknowledges nothing."""
    _, _, seed = _start(pair)
    base = pair.a.endpoint.rekeying.base  # type: ignore[union-attr]
    _until_moved(pair)
    ep = pair.a.endpoint
    ack = rk.make_ack(seed, pair.terms.channel_id, base)
    f = rk.control_fragments(ack.encode(), pair.terms.cell_size)[0]
    r = ep.next_recv_round
    keys = ep._keys(r, False)
    cell = cells.seal_cell(
        cells.CellContent(None, f), keys, pair.terms.channel_id, ep.in_direction,
        pair.terms.cell_size, secrets.token_bytes(12),
    )  # fmt: skip
    with pytest.raises(AuthenticationError, match="never sent"):
        ep.receive(r, cell, _keys(pair.a.mission))
    assert ep.rekeying is None and ep.next_recv_round == r


def test_a_rekey_under_a_roster_the_peer_lacks_waits_for_its_card(pair: Pair) -> None:
    """Washington holds New York's roster version 0; the removal is version 2 (after
    version 1 made it 3 of 3): the re-key waits, nothing after it is read, and the
    card's roster chain lets it through."""
    ny, a, b = pair.a.mission, pair.a.endpoint, pair.b.endpoint
    officers = [o.officer for o in ny.officers]
    v1 = rs.propose_update(ny.roster, [o.public for o in officers], 3)
    s1 = rs.SignedRoster(v1, tuple(rs.sign_roster(v1, o) for o in officers))
    v2 = rs.propose_update(v1, [officers[0].public, officers[1].public], 2)
    s2 = rs.SignedRoster(v2, tuple(rs.sign_roster(v2, o) for o in officers))
    rs.verify_update(rs.verify_update(ny.roster, s1), s2)
    cid = pair.terms.channel_id
    seed = secrets.token_bytes(32)
    sigs = tuple(rk.sign_statement(o, cid, ny.mission_id, 2, seed) for o in officers[:2])
    rekey = rk.make_rekey(
        cid, ny.mission_id, s2, a.next_send_round, seed, tuple(pair.b.mission.certs()), sigs
    )
    a.own_roster = v2
    a.start_rekey(rekey, seed)
    for _ in range(30):
        _round(pair)
        if b.rekey_held:
            break
    assert b.rekey_held and "does not hold" in pair.b.results[-1].rekey
    with pytest.raises(LocalProtocolError, match="new card"):
        b.receive(b.next_recv_round, None, _keys(pair.b.mission))
    waited_at = b.next_recv_round
    b.adopt_peer_roster([ny.roster, v1, v2])
    assert "moved the channel to new keys" in b.release_rekey(_keys(pair.b.mission))
    assert b.rekeying is not None and b.rekeying.in_switch == waited_at
    assert not b.rekey_held


def test_control_cells_are_checked_like_any_cell() -> None:
    frag = cells.Fragment(b"\x01" * 16, 0, 1, b"x", control=True)
    raw = cells.CellContent(None, frag).encode(1024)
    assert cells.CellContent.decode(raw).fragment == frag
    # The control flag on a cell without a fragment is refused.
    bad = bytearray(cells.CellContent().encode(1024))
    bad[1] |= cells.FLAG_CONTROL
    with pytest.raises(DecodeError, match="control"):
        cells.CellContent.decode(bytes(bad))
    # A message's fragments and a control object's never join into one.
    mixed = [
        cells.Fragment(b"\x02" * 16, 0, 2, b"a", control=True),
        cells.Fragment(b"\x02" * 16, 1, 2, b"b", control=False),
    ]
    with pytest.raises(DecodeError):
        cells.reassemble(mixed)
    with pytest.raises(DecodeError, match="unknown control"):
        rk.tag_of(b"\x07")


def test_a_device_that_does_not_send_follows_the_latest_removal(pair: Pair) -> None:
    """Kim's device expects the peer's answer to a re-key the sending device never
    started; the next removal's expectation replaces it, and the answer to that
    one moves the channel."""
    ny = pair.a.mission
    kim = copy.deepcopy(pair.a.endpoint)
    kim.sends = False
    kim.expect_rekey(secrets.token_bytes(32))  # never answered
    _, _, seed = _start(pair)
    kim.expect_rekey(seed)
    _until_moved(pair)
    acked = next(
        res.round for res in pair.a.results if "moved to the channel's new keys" in res.rekey
    )
    # Kim's device reads the same rounds the sending device read, from the relay.
    for r in range(kim.next_recv_round, acked + 1):
        kim.receive(r, pair.relay.fetch(kim.slot_to_fetch(r)), _keys(ny))
    assert kim.rekeying is None
    r = pair.a.endpoint.next_recv_round
    assert kim.slot_to_fetch(r) == pair.a.endpoint.slot_to_fetch(r)
    # The sending device never starts a second re-key over one under way.
    again = copy.deepcopy(pair.a.endpoint)
    again.rekeying = rkg.Rekeying(seed)
    with pytest.raises(LocalProtocolError, match="under way"):
        again.expect_rekey(seed)


def test_a_rekey_of_ours_seals_to_none_of_the_officers_the_peers_rekey_removed(
    pair: Pair,
) -> None:
    """New York removes Ri and re-keys; Washington has not yet added New York's
    new card. When Washington re-keys in turn, its seed goes to Pak and Kim only:
    Ri's kept copy would otherwise learn the channel's next keys."""
    ny = pair.a.mission
    _start(pair)
    _until_moved(pair)
    b = pair.b.endpoint
    assert b.peer_roster.version == 0 and b.peer_rekey_roster is not None
    assert b.peer_rekey_roster.version == 1
    card_certs = tuple(ny.certs())  # the card Washington holds: Pak, Kim and Ri
    sealed_to = rk.recipients(card_certs, b.peer_roster, b.peer_rekey_roster)
    assert [c.officer_id for c in sealed_to] == [o.officer.officer_id for o in ny.officers[:2]]
    # Once the card is as new as the re-key's roster, the card's roster decides: a
    # key it lists for no officer of it (Ri's, here) gets nothing either.
    assert rk.recipients(card_certs, b.peer_rekey_roster, b.peer_rekey_roster) == sealed_to
    assert rk.recipients(card_certs, b.peer_roster, None) == card_certs


def _claim(pair: Pair, ri_copy: Endpoint, signer: Officer) -> bytes:
    """A re-key in New York's name under a roster version 5 of New York's that
    never comes (Washington holds version 0), its change signed by ``signer``."""
    ny = pair.a.mission
    five = replace(ny.roster, version=5, prev_hash=bytes([5]) * 32)
    change = rs.SignedRoster(five, (rs.sign_roster(five, signer),))
    seed = secrets.token_bytes(32)
    sigs = (rk.sign_statement(signer, pair.terms.channel_id, ny.mission_id, 5, seed),)
    return _his_rekey(pair, ri_copy, change, seed, sigs)


def test_a_rekey_claiming_a_roster_no_known_officer_signed_stops_nothing(pair: Pair) -> None:
    """Whoever holds the channel's keys but signs for no officer Washington knows
    (Washington's own removed officer, say, in New York's direction) cannot make
    it stop reading New York for a roster that never comes."""
    ri_copy = copy.deepcopy(pair.a.endpoint)
    brown = pair.b.mission.officers[2].officer  # Washington's: no officer of New York
    _inject(pair, ri_copy, _claim(pair, ri_copy, brown), outgoing=True)
    assert not pair.b.endpoint.rekey_held


def test_a_removed_officers_rekey_that_waits_is_dropped_once_the_card_removes_him(
    pair: Pair,
) -> None:
    """Ri, still an officer of the roster Washington holds, makes it wait for a
    roster of his own invention. New York's card, which removes him, ends the
    wait: his claim is dropped and Washington reads New York again."""
    a_ep, b = pair.a.endpoint, pair.b.endpoint
    ri_copy = copy.deepcopy(a_ep)
    raw = _claim(pair, ri_copy, pair.a.mission.officers[2].officer)
    for f in rk.control_fragments(raw, pair.terms.cell_size):
        r = b.next_recv_round
        keys = ri_copy._keys(r, True)
        cell = cells.seal_cell(
            cells.CellContent(None, f), keys, pair.terms.channel_id, ri_copy.out_direction,
            pair.terms.cell_size, secrets.token_bytes(12),
        )  # fmt: skip
        b.receive(r, cell, _keys(pair.b.mission))
    assert b.rekey_held
    with pytest.raises(LocalProtocolError, match="new card"):
        b.receive(b.next_recv_round, None, _keys(pair.b.mission))
    ny = pair.a.mission
    b.adopt_peer_roster([ny.roster, _remove(ny, 2, (0, 1)).roster])
    with pytest.raises(SignatureError, match="removed its signers"):
        b.release_rekey(_keys(pair.b.mission))
    assert not b.rekey_held and b.rekeying is None
    r = b.next_recv_round
    assert b.receive(r, None, _keys(pair.b.mission)).empty


def test_a_rekey_seals_its_seed_to_no_key_beside_the_peers_officers(pair: Pair) -> None:
    """A mission card is signed by one officer of its mission, and of the epoch keys
    it lists only those of the officers its roster names are checked. Washington
    removed Brown; a card of Washington's that still lists his key beside theirs
    gets him no box of New York's re-keys: the seed would give him the channel's
    new slots."""
    dc = pair.b.mission
    without_brown = _remove(dc, 2, (0, 1)).roster
    listed = tuple(dc.certs())  # Smith's, Jones's, and Brown's
    for newest in (None, without_brown):
        got = rk.recipients(listed, without_brown, newest)
        assert got == listed[:2]
