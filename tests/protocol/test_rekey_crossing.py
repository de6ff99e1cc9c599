"""Two missions that remove officers at about the same time (protocol/rekeying.py).

New York (Pak, Kim, Ri; Pak's device sends) removes Ri while Washington
(Smith, Jones, Brown; Smith's device sends) removes Brown. Each removed
officer keeps his copy of the channel's state, and each had the other
mission's new seed sealed to him when the two re-keys crossed (neither
mission knew the other's officer was gone). Kim's and Jones's devices do
not send: they follow the moves from the cells they read.
"""

from __future__ import annotations

import copy
import secrets

import pytest

from backchannel.client.harness import MissionKit, Pair, Side
from backchannel.errors import AuthenticationError
from backchannel.protocol import cells
from backchannel.protocol import rekey as rk
from backchannel.protocol.endpoint import Endpoint
from backchannel.protocol.payload import note
from tests.conftest import DetRng
from tests.protocol.test_channel_rekey import _remove, _round


@pytest.fixture
def pair(rng: DetRng) -> Pair:
    ny = MissionKit.create("New York", ["Pak", "Kim", "Ri"], 2, rng)
    dc = MissionKit.create("Washington", ["Smith", "Jones", "Brown"], 2, rng)
    return Pair(ny, dc, rng=rng, start_round=100)


def _kem(m: MissionKit, officer: int) -> tuple:  # type: ignore[type-arg]
    return tuple(k.private_key for k in reversed(m.officers[officer].epoch_keys))


def _listener(side: Side) -> Endpoint:
    """The device of the mission's second officer: it reads, never sends."""
    ep = copy.deepcopy(side.endpoint)
    ep.sends, ep.officer = False, side.mission.officers[1].officer
    return ep


def _begin(pair: Pair, side: Side) -> tuple[Endpoint, bytes, rk.ChannelRekey, bool]:
    """``side``'s mission removes its third officer and its sending device
    queues the re-key, sealed to the officers of the peer's card it holds
    (less any the peer's own re-key showed removed). Returns the removed
    officer's copy, the seed, the re-key, and whether it started now."""
    m, ep = side.mission, side.endpoint
    kept = copy.deepcopy(ep)
    change = _remove(m, 2, (0, 1))
    cid, v = pair.terms.channel_id, change.roster.version
    seed = rk.seed_for(secrets.token_bytes(32), m.mission_id, v, cid)
    sigs = tuple(
        rk.sign_statement(m.officers[i].officer, cid, m.mission_id, v, seed) for i in (0, 1)
    )
    certs = rk.recipients(
        tuple(pair.peer(side).mission.certs()), ep.peer_roster, ep.peer_rekey_roster
    )
    rekey = rk.make_rekey(cid, m.mission_id, change, ep.next_send_round, seed, certs, sigs)
    ep.own_roster = change.roster
    m.chain.append(change)
    return kept, seed, rekey, ep.start_rekey(rekey, seed)


def _follow(pair: Pair, listener: Endpoint, m: MissionKit, late: bytes = b"") -> None:
    """A device that does not send reads every round its sending colleague read.
    ``late``: the seed of its own mission's re-key, which it adopts only once it
    has followed the peer's."""
    runner = pair.a.endpoint if m is pair.a.mission else pair.b.endpoint
    for r in range(listener.next_recv_round, runner.next_recv_round):
        listener.receive(r, pair.relay.fetch(listener.slot_to_fetch(r)), _kem(m, 1))
        if late and listener.peer_part:
            assert listener.rekeying is None
            listener.expect_rekey(late)
            late = b""
    assert not late


def _settled(pair: Pair, limit: int = 60) -> None:
    for _ in range(limit):
        _round(pair)
        a, b = pair.a.endpoint, pair.b.endpoint
        if not (a.rekeying or b.rekeying or a.rekey_next or b.rekey_next):
            return
    raise AssertionError("the channel did not settle on new keys")


def _texts(side: Side) -> list[str]:
    return [res.rekey for res in side.results if res.rekey]


def _messages_both_ways(pair: Pair) -> None:
    for side in (pair.a, pair.b):
        side.results.clear()
        pair.send(side, pair.cosign(side, pair.compose(side, 0, note("after")), 1))
    for _ in range(12):
        _round(pair)
    for side in (pair.a, pair.b):
        assert len([m for res in side.results for m in res.messages]) == 1


def _nowhere(pair: Pair, chains: list[Endpoint], seeds: list[tuple[bytes, int]]) -> None:
    """For 20 rounds from here, in both directions, no copy and no chain from a
    known seed computes the slot the channel uses."""
    a, cid = pair.a.endpoint, pair.terms.channel_id
    start = max(a.next_send_round, a.next_recv_round)
    for r in range(start, start + 20):
        for out in (True, False):
            d = a.out_direction if out else a.in_direction
            real = a._keys(r, out).slots[d]
            for c in chains:
                assert c._keys(r, out).slots[d] != real
            for seed, base in seeds:
                assert rk.chain_for(seed, cid, base).advance(r).keys().slots[d] != real


# NY's re-key takes this many cells; a start within them crosses it.
_CROSS = 3


@pytest.mark.parametrize("offset", [0, _CROSS, -_CROSS])
def test_crossed_rekeys_end_on_keys_neither_removed_officer_can_derive(
    pair: Pair, offset: int
) -> None:
    ny, dc = pair.a, pair.b
    kim, jones = _listener(ny), _listener(dc)
    # Lee (a fourth device of Washington's, in effect) reads the rounds before
    # his device adopts Washington's removal.
    lee = _listener(dc)
    ny_at, dc_at = (0, offset) if offset >= 0 else (-offset, 0)
    for step in range(max(ny_at, dc_at) + 1):
        if step == ny_at:
            ri_copy, seed_a, rekey_a, started = _begin(pair, ny)
            assert started
            kim.expect_rekey(seed_a)
        if step == dc_at:
            brown_copy, seed_b, rekey_b, started = _begin(pair, dc)
            assert started
            jones.expect_rekey(seed_b)
        _round(pair)
    assert len(rk.control_fragments(rekey_a.encode(), pair.terms.cell_size)) > _CROSS
    _settled(pair)
    for side in (ny, dc):
        assert any("from both re-keys" in t for t in _texts(side)), _texts(side)
    # Each removed officer had the other mission's seed sealed to him.
    ri, brown = ny.mission.officers[2].officer, dc.mission.officers[2].officer
    cid = pair.terms.channel_id
    assert rk.open_rekey(rekey_b, cid, dc.mission.roster, ri.officer_id, _kem(ny.mission, 2)) == (
        seed_b
    )
    assert rk.open_rekey(
        rekey_a, cid, ny.mission.roster, brown.officer_id, _kem(dc.mission, 2)
    ) == (seed_a)
    _nowhere(
        pair,
        [ri_copy, brown_copy],
        [(seed_a, rekey_a.base_round), (seed_b, rekey_b.base_round)],
    )
    # The devices that do not send followed both moves.
    _follow(pair, kim, ny.mission)
    _follow(pair, jones, dc.mission)
    _follow(pair, lee, dc.mission, late=seed_b)
    for listener, side in ((kim, ny), (jones, dc), (lee, dc)):
        assert listener.rekeying is None and not listener.peer_part
        r = side.endpoint.next_recv_round
        assert listener.slot_to_fetch(r) == side.endpoint.slot_to_fetch(r)
    ny.endpoint.adopt_peer_roster([c.roster for c in dc.mission.chain])
    dc.endpoint.adopt_peer_roster([c.roster for c in ny.mission.chain])
    _messages_both_ways(pair)


def test_a_removal_while_the_peers_move_is_under_way_waits_and_then_cuts_its_officer_off(
    pair: Pair,
) -> None:
    """Washington removes Brown while it is still answering New York's re-key:
    its own re-key waits for that move to end, then starts from the round it
    does, sealed to none of the officers New York's re-key showed removed
    (even though it was made from New York's old card, Ri included)."""
    ny, dc = pair.a, pair.b
    ri_copy, seed_a, rekey_a, _ = _begin(pair, ny)
    for _ in range(30):
        _round(pair)
        if dc.endpoint.rekeying is not None:
            break
    assert dc.endpoint.rekeying is not None and not dc.endpoint.rekeying.awaiting
    dc_ep = dc.endpoint
    m = dc.mission
    change = _remove(m, 2, (0, 1))
    cid, v = pair.terms.channel_id, change.roster.version
    seed_b = rk.seed_for(secrets.token_bytes(32), m.mission_id, v, cid)
    sigs = tuple(
        rk.sign_statement(m.officers[i].officer, cid, m.mission_id, v, seed_b) for i in (0, 1)
    )
    old_card = tuple(ny.mission.certs())  # Pak, Kim and Ri
    queued_at = dc_ep.next_send_round
    rekey_b = rk.make_rekey(cid, m.mission_id, change, queued_at, seed_b, old_card, sigs)
    brown_copy = copy.deepcopy(dc_ep)
    dc_ep.own_roster = change.roster
    m.chain.append(change)
    assert dc_ep.start_rekey(rekey_b, seed_b) is False
    assert dc_ep.rekey_next and dc_ep.rekeying is not None
    for _ in range(30):
        _round(pair)
        if not dc_ep.rekey_next:
            break
    # It started: its pieces are queued behind the answer to New York's.
    queued = [f for f in dc_ep.outbox if f.control]
    sent_rekey = rk.ChannelRekey.decode(cells.reassemble(queued))
    _settled(pair)
    ri = ny.mission.officers[2].officer
    assert sent_rekey.base_round > queued_at
    assert ri.officer_id not in [o for o, _ in sent_rekey.boxes]
    assert [o for o, _ in sent_rekey.boxes] == [
        o.officer.officer_id for o in ny.mission.officers[:2]
    ]
    with pytest.raises(AuthenticationError, match="no seed for this officer"):
        rk.open_rekey(sent_rekey, cid, m.roster, ri.officer_id, _kem(ny.mission, 2))
    assert not any("both re-keys" in t for t in _texts(ny) + _texts(dc))
    _nowhere(pair, [ri_copy, brown_copy], [(seed_a, rekey_a.base_round)])
    ny.endpoint.adopt_peer_roster([c.roster for c in dc.mission.chain])
    dc.endpoint.adopt_peer_roster([c.roster for c in ny.mission.chain])
    _messages_both_ways(pair)


def _crossing(pair: Pair) -> tuple[bytes, rk.ChannelRekey]:
    """Both re-keys started in the same round, run until New York has read
    Washington's and waits for its answer. Returns Washington's seed (Ri
    opens it) and re-key."""
    _begin(pair, pair.a)
    _, seed_b, rekey_b, _ = _begin(pair, pair.b)
    for _ in range(30):
        _round(pair)
        k = pair.a.endpoint.rekeying
        if k is not None and k.both:
            return seed_b, rekey_b
    raise AssertionError("the re-keys never crossed")


def _in_cell(pair: Pair, raw: bytes, seed: bytes, base: int) -> tuple[int, bytes]:
    """``raw`` in New York's next incoming round, sealed on the chain of ``seed``."""
    ep, cid = pair.a.endpoint, pair.terms.channel_id
    r = ep.next_recv_round
    keys = rk.chain_for(seed, cid, base).advance(r).keys()
    frag = rk.control_fragments(raw, pair.terms.cell_size)[0]
    cell = cells.seal_cell(
        cells.CellContent(None, frag), keys, cid, ep.in_direction, pair.terms.cell_size,
        secrets.token_bytes(12),
    )  # fmt: skip
    return r, cell


def test_an_answer_to_crossed_rekeys_forged_by_a_removed_officer_is_refused(pair: Pair) -> None:
    """Ri knows Washington's seed (sealed to him) and so the chain New York now
    reads on; he answers for Washington, before it does. Neither a "both"
    answer under a combination he can make nor a plain one under the seed he
    holds moves New York."""
    seed_b, rekey_b = _crossing(pair)
    ep, cid = pair.a.endpoint, pair.terms.channel_id
    ri = pair.a.mission.officers[2].officer
    assert (
        rk.open_rekey(rekey_b, cid, pair.b.mission.roster, ri.officer_id, _kem(pair.a.mission, 2))
        == seed_b
    )
    part_b = rk.seed_part(seed_b, cid)
    guess = rk.combined_seed(secrets.token_bytes(32), part_b, ep.out_direction, cid)
    base = ep.rekeying.base  # type: ignore[union-attr]
    forged = [
        rk.make_ack(guess, cid, base, both=True),
        rk.make_ack(seed_b, cid, base, both=True),
        rk.make_ack(rk.combined_seed(part_b, part_b, ep.out_direction, cid), cid, base, both=True),
        rk.make_ack(seed_b, cid, rekey_b.base_round),
    ]
    for ack in forged:
        r, cell = _in_cell(pair, ack.encode(), seed_b, rekey_b.base_round)
        before = copy.deepcopy(ep.rekeying)
        with pytest.raises(AuthenticationError):
            ep.receive(r, cell, _kem(pair.a.mission, 0))
        assert ep.rekeying == before and ep.next_recv_round == r
