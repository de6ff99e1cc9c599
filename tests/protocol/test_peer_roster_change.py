"""A channel across a roster change of the sending mission.

What the sender queued before its change may reach the peer after the peer
took the new roster; what it signs under the new roster may reach a peer that
does not hold it yet. Neither may stop the channel, and neither may let a
removed officer back in.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import pytest

from backchannel.client.harness import MissionKit, Pair, Side
from backchannel.crypto import labels
from backchannel.errors import PeerRosterAhead, SignatureError
from backchannel.protocol import endpoint as endpoint_mod
from backchannel.protocol import roster as rs
from backchannel.protocol.endpoint import Endpoint
from backchannel.protocol.incoming import Incoming
from backchannel.protocol.outgoing import Outgoing
from backchannel.protocol.payload import note
from backchannel.protocol.states import SendState
from tests.conftest import DetRng, make_pair
from tests.helpers import force_queue


def _change(side: Side, keep: Sequence[int], k: int) -> rs.Roster:
    """The sending mission moves to a roster of the officers ``keep``, signed by
    ``k`` of the current one; the runner's endpoint signs under it from now on."""
    kits = side.mission.officers
    new = rs.propose_update(side.mission.roster, [kits[i].officer.public for i in keep], k)
    sigs = tuple(rs.sign_roster(new, kits[i].officer) for i in keep)
    side.mission.chain.append(rs.SignedRoster(new, sigs))
    side.endpoint.own_roster = new
    return new


def _rosters(side: Side) -> list[rs.Roster]:
    return [s.roster for s in side.mission.chain]


def _sealed(pair: Pair, text: str, signers: Sequence[int]) -> Outgoing:
    out = pair.compose(pair.a, signers[0], note(text))
    for i in signers[1:]:
        out = pair.cosign(pair.a, out, i)
    return out


@contextmanager
def _under(side: Side, roster: rs.Roster) -> Iterator[None]:
    """Seal and sign as if the mission still had ``roster`` (what a device that kept
    the old state could still do)."""
    chain, own = list(side.mission.chain), side.endpoint.own_roster
    side.mission.chain[:] = [s for s in chain if s.roster.version <= roster.version]
    side.endpoint.own_roster = roster
    try:
        yield
    finally:
        side.mission.chain[:] = chain
        side.endpoint.own_roster = own


def _texts(pair: Pair, side: Side) -> list[str]:
    return [pair.open(side, i, [0, 1]).open(side.mission.roster).text for i in side.inbox]


def test_an_earlier_roster_behind_a_later_one_in_the_same_cell_is_refused(
    rng: DetRng,
) -> None:
    """The same attack with both messages in one shared cell: the second is
    checked against the roster the first carried, and nothing of the cell is
    taken (not even the first, good message)."""
    pair = make_pair(rng, k=2, n=3)
    old = pair.a.mission.roster
    _change(pair.a, [0, 1], 2)
    pair.b.endpoint.adopt_peer_roster(_rosters(pair.a))
    pair.send(pair.a, _sealed(pair, "under roster 1", [0, 1]))
    with _under(pair.a, old):
        late = _sealed(pair, "under roster 0, behind it", [0, 1])
    assert late.message is not None
    force_queue(pair.a.endpoint, late.message)
    # The first message (it announces a key epoch) takes two fragments: the
    # cell of its last one carries the late message too.
    assert [f.count for f in pair.a.endpoint.outbox] == [2, 2, 1]
    pair.run_round()
    seen_before = pair.b.endpoint.peer_roster_seen
    with pytest.raises(SignatureError, match="earlier roster of the peer"):
        pair.run_round()
    assert pair.a.endpoint.outbox == []  # both went in that cell
    assert pair.b.inbox == []
    assert pair.b.endpoint.peer_roster_seen == seen_before


def test_a_message_queued_before_the_change_arrives_after_the_peer_took_it(
    rng: DetRng,
) -> None:
    pair = make_pair(rng, k=2, n=3)
    pair.send(pair.a, _sealed(pair, "queued under roster 0", [0, 1]))
    _change(pair.a, [0, 1], 2)  # officer 2 leaves
    pair.b.endpoint.adopt_peer_roster(_rosters(pair.a))
    pair.run_until_quiet()
    pair.send(pair.a, _sealed(pair, "under roster 1", [0, 1]))
    pair.run_until_quiet()
    assert _texts(pair, pair.b) == ["queued under roster 0", "under roster 1"]
    assert pair.a.endpoint.delivered_seq == 2


def test_a_message_under_a_roster_the_peer_lacks_waits_and_the_ones_behind_it(
    rng: DetRng,
) -> None:
    pair = make_pair(rng)
    _change(pair.a, [0, 1], 2)
    pair.send(pair.a, _sealed(pair, "first", [0, 1]))
    pair.send(pair.a, _sealed(pair, "second", [1, 0]))
    pair.run_until_quiet()
    held = [r.held for r in pair.b.results if r.held is not None]
    assert [m.header.seq for m in held] == [1]  # the first, once; the second waits behind it
    assert pair.b.inbox == [] and len(pair.b.endpoint.held) == 2
    assert pair.a.endpoint.delivered_seq == 0  # no receipt for what waits
    released = pair.b.endpoint.adopt_peer_roster(_rosters(pair.a))
    assert released.refused == ()
    assert [m.header.seq for m in released.messages] == [1, 2]
    assert pair.b.endpoint.held == []
    pair.run_round()  # the receipt for both goes out
    assert pair.a.endpoint.delivered_seq == 2
    pair.send(pair.a, _sealed(pair, "third", [1, 0]))
    pair.run_until_quiet()
    assert [i.message.header.seq for i in pair.b.inbox] == [3]


def test_what_waits_is_checked_when_the_roster_comes(rng: DetRng) -> None:
    """A forged message that claims a newer roster is refused once the roster is
    known, and each one behind it is checked in turn."""
    pair = make_pair(rng)
    old = pair.a.mission.roster
    _change(pair.a, [0, 1], 2)
    forged = _sealed(pair, "forged", [0]).message  # one signature where two are needed
    assert forged is not None
    force_queue(pair.a.endpoint, forged)
    pair.send(pair.a, _sealed(pair, "honest, after it", [0, 1]))
    pair.run_until_quiet()
    assert len(pair.b.endpoint.held) == 2
    released = pair.b.endpoint.adopt_peer_roster([old, pair.a.mission.roster])
    assert released.messages == ()
    # Each is tried: the forgery fails its signatures, and the one behind it
    # (chained to the forgery by its sender) fails the order.
    assert len(released.refused) == 2
    assert released.refused[0] == "message needs 2 officers' signatures; 1 verify"
    assert "are missing" in released.refused[1]
    assert pair.b.endpoint.held == []


def test_an_earlier_roster_is_refused_once_the_channel_carried_a_later_one(
    rng: DetRng,
) -> None:
    pair = make_pair(rng, k=2, n=3)
    old = pair.a.mission.roster
    _change(pair.a, [0, 1], 2)
    pair.b.endpoint.adopt_peer_roster(_rosters(pair.a))
    pair.send(pair.a, _sealed(pair, "under roster 1", [0, 1]))
    pair.run_until_quiet()
    with _under(pair.a, old):
        late = _sealed(pair, "under roster 0, afterwards", [0, 1])
    assert late.state is SendState.COSIGNED and late.message is not None
    force_queue(pair.a.endpoint, late.message)
    with pytest.raises(SignatureError, match="earlier roster of the peer"):
        pair.run_until_quiet()
    assert len(pair.b.inbox) == 1


def test_officers_the_change_removed_cannot_send_under_the_old_roster(rng: DetRng) -> None:
    """2 of 4, officers 2 and 3 removed: together they were a quorum of the old
    roster, and stay one no longer. A message the officers who stay took part in
    before the change still arrives."""
    pair = make_pair(rng, k=2, n=4)
    old = pair.a.mission.roster
    _change(pair.a, [0, 1], 2)
    pair.b.endpoint.adopt_peer_roster(_rosters(pair.a))
    with _under(pair.a, old):
        legit = _sealed(pair, "signed by 0 and 3 before the change", [0, 3])
        assert legit.message is not None
        force_queue(pair.a.endpoint, legit.message)
        leavers = _sealed(pair, "signed by the two who left", [2, 3])
    assert leavers.message is not None
    pair.run_until_quiet()
    assert len(pair.b.inbox) == 1
    force_queue(pair.a.endpoint, leavers.message)
    with pytest.raises(SignatureError, match="only by officers the change removed"):
        pair.run_until_quiet()
    assert len(pair.b.inbox) == 1


def test_the_peer_roster_never_goes_back(rng: DetRng) -> None:
    pair = make_pair(rng)
    old = pair.a.mission.roster
    _change(pair.a, [0, 1], 2)
    pair.b.endpoint.adopt_peer_roster(_rosters(pair.a))
    with pytest.raises(Exception, match="cannot go back"):
        pair.b.endpoint.adopt_peer_roster([old])


def test_past_a_bound_what_would_wait_is_refused(
    rng: DetRng, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(endpoint_mod, "MAX_HELD", 2)
    pair = make_pair(rng)
    _change(pair.a, [0, 1], 2)
    ep: Endpoint = pair.b.endpoint
    # One at a time, so that each travels in a cell of its own.
    for i in range(2):
        pair.send(pair.a, _sealed(pair, f"m{i}", [0, 1]))
        pair.run_until_quiet()
    assert len(ep.held) == 2
    pair.send(pair.a, _sealed(pair, "m2", [0, 1]))
    with pytest.raises(PeerRosterAhead, match="2 messages already wait"):
        pair.run_until_quiet()
    assert len(ep.held) == 2


def test_a_shared_cell_that_would_wait_past_the_bound_is_refused_whole(
    rng: DetRng, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three short messages share a cell: the third passes the bound, so none of
    the cell is taken (the round is read again once the card is added)."""
    monkeypatch.setattr(endpoint_mod, "MAX_HELD", 2)
    pair = make_pair(rng)
    _change(pair.a, [0, 1], 2)
    for i in range(3):
        pair.send(pair.a, _sealed(pair, f"m{i}", [0, 1]))
    assert len(pair.a.endpoint.outbox) == 3
    with pytest.raises(PeerRosterAhead, match="2 messages already wait"):
        pair.run_until_quiet()
    assert pair.a.endpoint.outbox == []  # all three went in one cell
    ep: Endpoint = pair.b.endpoint
    assert ep.held == []


def test_a_card_between_keeps_waiting_what_comes_under_a_later_roster(rng: DetRng) -> None:
    pair = make_pair(rng)
    _change(pair.a, [0, 1], 2)
    between = _rosters(pair.a)
    _change(pair.a, [0, 1], 2)
    pair.send(pair.a, _sealed(pair, "under roster 2", [0, 1]))
    pair.run_until_quiet()
    released = pair.b.endpoint.adopt_peer_roster(between)
    assert released.messages == () and released.refused == ()
    assert len(pair.b.endpoint.held) == 1
    # The same card again changes nothing; the latest lets it through.
    assert pair.b.endpoint.adopt_peer_roster(between).messages == ()
    assert len(pair.b.endpoint.adopt_peer_roster(_rosters(pair.a)).messages) == 1


def test_a_roster_the_chain_given_lacks_is_refused(rng: DetRng) -> None:
    pair = make_pair(rng)
    old = pair.a.mission.roster
    _change(pair.a, [0, 1], 2)
    pair.b.endpoint.adopt_peer_roster([pair.a.mission.roster])  # a chain without version 0
    with _under(pair.a, old):
        out = _sealed(pair, "under roster 0", [0, 1])
    assert out.message is not None
    force_queue(pair.a.endpoint, out.message)
    with pytest.raises(SignatureError, match="another roster version"):
        pair.run_until_quiet()


def test_a_newer_roster_claimed_by_no_known_officer_is_refused_not_waited_for(
    rng: DetRng,
) -> None:
    """Whoever holds the channel's keys but is no officer of the peer's known
    roster cannot make the channel wait for a roster that never comes."""
    pair = make_pair(rng)
    stranger = MissionKit.create("elsewhere", ["x"], 1, rng).officers[0].officer
    _change(pair.a, [0, 1], 2)
    out = _sealed(pair, "claims roster 1", [0])
    assert out.message is not None
    msg = replace(out.message, signatures=()).with_signature(
        stranger.officer_id,
        stranger.signing_key.sign_ed25519(labels.SIG_MESSAGE, out.message.digest),
    )
    force_queue(pair.a.endpoint, msg)
    with pytest.raises(SignatureError, match="none of the peer's officers"):
        pair.run_until_quiet()
    assert pair.b.endpoint.held == []


def test_a_removed_officers_claim_of_a_later_roster_stops_nothing_once_the_peer_knows(
    rng: DetRng,
) -> None:
    """Officer 2, removed (2 of 3 to 2 of 2), still holds the channel's keys and
    signs alone a message that claims a roster of his mission to come. The peer,
    still on the roster that names him, keeps it waiting, and everything behind
    it. Once the peer adds the card that removes him, his claim no longer names
    an officer it knows: the message is refused, and what waited behind it goes
    through."""
    pair = make_pair(rng, k=2, n=3)
    old = pair.a.mission.roster
    _change(pair.a, [0, 1], 2)
    with _under(pair.a, old):
        pair.a.endpoint.own_roster = replace(old, version=7, prev_hash=bytes([7]) * 32)
        claim = _sealed(pair, "under a roster that never comes", [2])
    assert claim.message is not None and claim.message.header.sender_roster == 7
    # Deposited in the runner's place: the runner's own history does not hold it.
    force_queue(pair.a.endpoint, claim.message, record=False)
    pair.a.send_epoch = None
    pair.send(pair.a, _sealed(pair, "honest, under roster 1", [0, 1]))
    pair.run_until_quiet()
    assert len(pair.b.endpoint.held) == 2 and pair.b.inbox == []
    released = pair.b.endpoint.adopt_peer_roster(_rosters(pair.a))
    assert [m.header.seq for m in released.messages] == [1]
    assert len(released.refused) == 1 and "removed" in released.refused[0]
    assert pair.b.endpoint.held == []
    opened = pair.open(pair.b, Incoming.received(released.messages[0]), [0, 1])
    assert opened.open(pair.b.mission.roster).text == "honest, under roster 1"
