"""A roster's recovery quorum: headquarters' offline keys, ``r`` of which sign a
change in place of ``k`` officers (``protocol/roster.py``), and the attacks on it."""

from __future__ import annotations

import pytest

from backchannel.errors import DecodeError, RosterError
from backchannel.protocol import roster as rs
from backchannel.protocol.codec import Reader
from backchannel.protocol.constants import MAX_OFFICERS
from backchannel.protocol.identity import Officer
from tests.conftest import DetRng


class Mission:
    """New York, 2 of 2 (Ri, Han), with headquarters' keys 2 of 3."""

    def __init__(self, rng: DetRng) -> None:
        self.ri, self.han, self.kim = (Officer.generate(n, rng) for n in ("Ri", "Han", "Kim"))
        self.hq = [Officer.generate(f"HQ {i}", rng) for i in (1, 2, 3)]
        self.genesis = rs.new_genesis(
            "New York", [self.ri.public, self.han.public], 2, rng(rs.NONCE_LEN),
            [h.public for h in self.hq], 2,
        )  # fmt: skip
        signed = rs.SignedRoster(
            self.genesis, tuple(rs.sign_roster(self.genesis, o) for o in (self.ri, self.han))
        )
        self.chain = [signed]
        rs.verify_chain(rs.mission_id(self.genesis), self.chain)

    def replace_han(self, *signers: Officer) -> rs.SignedRoster:
        """Han is lost: Kim takes his place, 2 of 2."""
        new = rs.propose_update(self.genesis, [self.ri.public, self.kim.public], 2)
        return rs.SignedRoster(new, tuple(rs.sign_roster(new, o) for o in signers))


@pytest.fixture
def ny(rng: DetRng) -> Mission:
    return Mission(rng)


def test_the_recovery_quorum_replaces_a_lost_officer_and_a_peer_verifies_it(ny: Mission) -> None:
    signed = ny.replace_han(ny.ri, ny.kim, ny.hq[0], ny.hq[2])
    new = rs.verify_update(ny.genesis, signed)
    assert [o.name for o in new.officers] == ["Ri", "Kim"]
    assert new.recovery == ny.genesis.recovery and new.recovery_threshold == 2
    # A peer that pinned the mission id checks the whole chain the same way.
    rosters = rs.verify_chain(rs.mission_id(ny.genesis), [*ny.chain, signed])
    assert rosters[-1] == new
    # Without the officer who stays, too: headquarters and the newcomer.
    rs.verify_update(ny.genesis, ny.replace_han(ny.kim, ny.hq[1], ny.hq[2]))


def test_one_recovery_key_short_is_refused(ny: Mission) -> None:
    with pytest.raises(RosterError, match=r"needs 2 officers .*or 2 recovery keys; 1 signed"):
        rs.verify_update(ny.genesis, ny.replace_han(ny.ri, ny.kim, ny.hq[0]))


def test_one_officer_and_one_recovery_key_do_not_add_up(ny: Mission) -> None:
    """k officers or r recovery keys, never a mix: one of each is two people, but
    neither the mission nor headquarters decided."""
    with pytest.raises(RosterError, match="needs 2 officers"):
        rs.verify_update(ny.genesis, ny.replace_han(ny.ri, ny.kim, ny.hq[1]))


def test_a_signature_repeated_or_by_an_outsider_does_not_count(ny: Mission, rng: DetRng) -> None:
    signed = ny.replace_han(ny.ri, ny.kim, ny.hq[0])
    repeated = rs.SignedRoster(signed.roster, (*signed.signatures, signed.signatures[-1]))
    with pytest.raises(RosterError, match="1 signed"):
        rs.verify_update(ny.genesis, repeated)
    stranger = Officer.generate("HQ of another mission", rng)
    outsider = rs.SignedRoster(
        signed.roster, (*signed.signatures, rs.sign_roster(signed.roster, stranger))
    )
    with pytest.raises(RosterError, match="1 signed"):
        rs.verify_update(ny.genesis, outsider)


def test_the_recovery_quorum_still_needs_every_added_officer(ny: Mission) -> None:
    with pytest.raises(RosterError, match="every officer added"):
        rs.verify_update(ny.genesis, ny.replace_han(ny.ri, ny.hq[0], ny.hq[1]))


def test_the_officers_alone_cannot_drop_or_swap_headquarters(ny: Mission, rng: DetRng) -> None:
    keep = [ny.ri.public, ny.han.public]
    dropped = rs.propose_update(ny.genesis, keep, 2, ([], 0))
    with pytest.raises(RosterError, match="changing the recovery quorum needs 2"):
        rs.verify_update(
            ny.genesis,
            rs.SignedRoster(
                dropped, (rs.sign_roster(dropped, ny.ri), rs.sign_roster(dropped, ny.han))
            ),
        )
    theirs = [Officer.generate(f"crony {i}", rng) for i in (1, 2)]
    swapped = rs.propose_update(ny.genesis, keep, 2, ([c.public for c in theirs], 2))
    sigs = tuple(rs.sign_roster(swapped, o) for o in (ny.ri, ny.han, *theirs))
    with pytest.raises(RosterError, match="changing the recovery quorum needs 2"):
        rs.verify_update(ny.genesis, rs.SignedRoster(swapped, sigs))
    # Headquarters may replace a key of its own.
    rotated = rs.propose_update(
        ny.genesis, keep, 2, ([ny.hq[0].public, ny.hq[1].public, theirs[0].public], 2)
    )
    hq_sigs = tuple(rs.sign_roster(rotated, o) for o in ny.hq[:2])
    assert rs.verify_update(ny.genesis, rs.SignedRoster(rotated, hq_sigs)).recovery[2] == (
        theirs[0].public
    )


def test_officers_may_give_a_mission_without_one_a_recovery_quorum(rng: DetRng) -> None:
    ri, han = Officer.generate("Ri", rng), Officer.generate("Han", rng)
    hq = [Officer.generate(f"HQ {i}", rng) for i in (1, 2)]
    genesis = rs.new_genesis("New York", [ri.public, han.public], 2, rng(rs.NONCE_LEN))
    # A roster without one keeps the layout (and so the mission id) it always had.
    assert genesis.encode()[0] == 1
    new = rs.propose_update(genesis, [ri.public, han.public], 2, ([h.public for h in hq], 2))
    assert new.encode()[0] == 2
    signed = rs.SignedRoster(new, (rs.sign_roster(new, ri), rs.sign_roster(new, han)))
    assert rs.verify_update(genesis, signed).recovery_threshold == 2


def test_a_recovery_quorum_is_checked_for_shape(ny: Mission, rng: DetRng) -> None:
    officers = [ny.ri.public, ny.han.public]
    hq = [h.public for h in ny.hq]
    with pytest.raises(RosterError, match="2 <= r <= m"):  # one key alone is one person
        rs.new_genesis("NY", officers, 2, rng(rs.NONCE_LEN), hq, 1)
    with pytest.raises(RosterError, match="2 <= r <= m"):
        rs.new_genesis("NY", officers, 2, rng(rs.NONCE_LEN), hq[:1], 2)
    with pytest.raises(RosterError, match="also an officer"):
        rs.new_genesis("NY", officers, 2, rng(rs.NONCE_LEN), [*hq[:2], ny.ri.public], 2)
    with pytest.raises(RosterError, match="needs recovery keys"):
        rs.new_genesis("NY", officers, 2, rng(rs.NONCE_LEN), [], 2)
    # Round trip, and a layout-2 roster that names no key is malformed.
    raw = ny.genesis.encode()
    r = Reader(raw)
    assert rs.Roster.read(r) == ny.genesis
    r.end()
    body = raw[: len(raw) - sum(4 + len(h.encode()) for h in hq) - 2]
    with pytest.raises(DecodeError, match="no keys"):
        rs.Roster.read(Reader(body + bytes([2, 0])))


def test_recovery_quorums_and_rosters_at_their_limits(rng: DetRng) -> None:
    """Seven keys (the most) and seven officers are taken; a wrong-length
    predecessor alone is refused; a name of 64 bytes is the longest."""
    officers = [Officer.generate(f"O{i}", rng).public for i in range(MAX_OFFICERS)]
    hq = [Officer.generate(f"HQ {i}", rng).public for i in range(MAX_OFFICERS)]
    big = rs.new_genesis("N" * 64, officers, 2, rng(rs.NONCE_LEN), hq, MAX_OFFICERS)
    r = Reader(big.encode())
    assert rs.Roster.read(r) == big
    r.end()
    with pytest.raises(RosterError):
        rs.new_genesis("N" * 65, officers, 2, rng(rs.NONCE_LEN))
    with pytest.raises(RosterError):
        rs.new_genesis("", officers, 2, rng(rs.NONCE_LEN))
    with pytest.raises(DecodeError, match="wrong length"):
        rs.Roster(1, "NY", rng(rs.NONCE_LEN), 2, tuple(officers[:2]), bytes(31))
