"""Attacks on mission rosters and on pairing."""

from __future__ import annotations

import pytest

from backchannel.client.harness import MissionKit, OfficerKit, Pair
from backchannel.errors import RosterError, SignatureError
from backchannel.protocol import channel as ch
from backchannel.protocol import roster as rs
from tests.conftest import DetRng


def _mission(rng: DetRng, n: int = 3, k: int = 2) -> MissionKit:
    return MissionKit.create("New York", [f"officer {i}" for i in range(n)], k, rng)


def test_roster_change_signed_by_fewer_than_k_is_refused(rng: DetRng) -> None:
    m = _mission(rng)
    officers = [o.officer for o in m.officers]
    # A defector tries to drop his two colleagues and rule alone with a crony.
    crony = OfficerKit.create("crony", rng).officer
    new = rs.propose_update(m.roster, [officers[0].public, crony.public], 2)
    sigs = (rs.sign_roster(new, officers[0]), rs.sign_roster(new, crony))
    with pytest.raises(RosterError, match="needs 2 officers of the current roster"):
        rs.verify_update(m.roster, rs.SignedRoster(new, sigs))


def test_roster_change_with_k_signatures_is_accepted_and_chained(rng: DetRng) -> None:
    m = _mission(rng)
    officers = [o.officer for o in m.officers]
    new = rs.propose_update(m.roster, [o.public for o in officers[:2]], 2)
    signed = rs.SignedRoster(
        new, (rs.sign_roster(new, officers[0]), rs.sign_roster(new, officers[2]))
    )
    chain = rs.verify_chain(m.mission_id, [m.chain[0], signed])
    assert chain[-1].version == 1 and chain[-1].n == 2


def test_roster_change_adding_an_officer_without_his_signature_is_refused(rng: DetRng) -> None:
    m = _mission(rng)
    officers = [o.officer for o in m.officers]
    newcomer = OfficerKit.create("newcomer", rng).officer
    new = rs.propose_update(m.roster, [*(o.public for o in officers), newcomer.public], 2)
    sigs = (rs.sign_roster(new, officers[0]), rs.sign_roster(new, officers[1]))
    with pytest.raises(RosterError, match="every officer added"):
        rs.verify_update(m.roster, rs.SignedRoster(new, sigs))


def test_genesis_missing_one_officers_signature_is_refused(rng: DetRng) -> None:
    m = _mission(rng)
    g = m.chain[0]
    with pytest.raises(RosterError, match="every officer's signature"):
        rs.verify_genesis(rs.SignedRoster(g.roster, g.signatures[:2]))


def test_roster_chain_of_another_mission_is_refused_by_the_pin(rng: DetRng) -> None:
    real = _mission(rng)
    impostor = MissionKit.create("New York", ["officer 0", "officer 1", "officer 2"], 2, rng)
    with pytest.raises(RosterError, match="another mission"):
        rs.verify_chain(real.mission_id, impostor.chain)


def test_roster_update_that_skips_a_version_is_refused(rng: DetRng) -> None:
    m = _mission(rng)
    officers = [o.officer for o in m.officers]
    v1 = rs.propose_update(m.roster, [o.public for o in officers], 3)
    v2 = rs.propose_update(v1, [o.public for o in officers], 2)
    sigs = tuple(rs.sign_roster(v2, o) for o in officers)
    with pytest.raises(RosterError, match="does not follow"):
        rs.verify_update(m.roster, rs.SignedRoster(v2, sigs))


def test_roster_with_threshold_one_cannot_exist(rng: DetRng) -> None:
    m = _mission(rng)
    with pytest.raises(RosterError):
        rs.propose_update(m.roster, [o.officer.public for o in m.officers], 1)


def test_forged_hybrid_signature_with_only_ed25519_valid_is_refused(rng: DetRng) -> None:
    """A quantum forger of Ed25519 alone still cannot sign a roster."""
    m = _mission(rng)
    officers = [o.officer for o in m.officers]
    new = rs.propose_update(m.roster, [o.public for o in officers], 3)
    good = [rs.sign_roster(new, o) for o in officers[:2]]
    oid, sig = good[1]
    broken = (oid, sig[:64] + bytes(len(sig) - 64))  # valid Ed25519 half, garbage ML-DSA half
    with pytest.raises(RosterError):
        rs.verify_update(m.roster, rs.SignedRoster(new, (good[0], broken)))


def test_channel_offer_signed_by_one_officer_is_refused(pair: Pair, rng: DetRng) -> None:
    m = pair.a.mission
    offer, _ = ch.make_offer(m.mission_id, pair.terms, 0, m.certs(), rng)
    offer = ch.sign_offer(offer, m.officers[0].officer)
    with pytest.raises(SignatureError, match="needs 2"):
        ch.verify_offer(offer, m.roster, m.mission_id)


def test_forged_epoch_key_certificate_is_refused(pair: Pair, rng: DetRng) -> None:
    from backchannel.protocol.identity import EpochKey

    victim = pair.b.mission.officers[0]
    attacker = OfficerKit.create("relay operator", rng).officer
    cert = EpochKey.generate(2, rng).certify(attacker)
    forged = cert.__class__(victim.officer.officer_id, cert.epoch, cert.public_key, cert.signature)
    with pytest.raises(SignatureError):
        forged.verify(victim.officer.public)
    victim.cert.verify(victim.officer.public)
