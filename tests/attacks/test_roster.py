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


def test_channel_offer_with_a_signature_forged_in_a_colleagues_name_is_refused(
    pair: Pair, rng: DetRng
) -> None:
    """One officer signs the offer and adds his colleague's name with made-up bytes,
    or with the colleague's real signature of another offer: one signature counts."""
    m = pair.a.mission
    offer, _ = ch.make_offer(m.mission_id, pair.terms, 0, m.certs(), rng)
    other, _ = ch.make_offer(m.mission_id, pair.terms, 1, m.certs(), rng)
    me, colleague = m.officers[0].officer, m.officers[1].officer
    signed = ch.sign_offer(offer, me)
    theirs = ch.sign_offer(other, colleague).signatures[-1][1]
    for sig in (bytes(len(theirs)), theirs):
        forged = ch.ChannelOffer(
            offer.from_mission,
            offer.terms,
            offer.start_round,
            offer.sealed,
            (*signed.signatures, (colleague.officer_id, sig)),
        )
        with pytest.raises(SignatureError, match="needs 2"):
            ch.verify_offer(forged, m.roster, m.mission_id)
    ch.verify_offer(ch.sign_offer(signed, colleague), m.roster, m.mission_id)


def test_junk_signatures_before_the_good_ones_do_not_hide_them(rng: DetRng) -> None:
    """A relay or a colleague that puts a stranger's and a broken signature first
    cannot make k good signatures count for less (the count goes on past them)."""
    m = _mission(rng)
    officers = [o.officer for o in m.officers]
    new = rs.propose_update(m.roster, [o.public for o in officers], 2)
    stranger = OfficerKit.create("stranger", rng).officer
    good = tuple(rs.sign_roster(new, o) for o in officers[:2])
    junk = (rs.sign_roster(new, stranger), (officers[2].officer_id, bytes(len(good[0][1]))))
    assert rs.verify_update(m.roster, rs.SignedRoster(new, (*junk, *good))) == new


def test_roster_update_wrong_in_one_field_alone_is_refused(rng: DetRng) -> None:
    """The next version with another history, or the right history under a version
    that skips, or another mission's name or nonce: each alone is refused."""
    from dataclasses import replace

    m = _mission(rng)
    officers = [o.officer for o in m.officers]
    good = rs.propose_update(m.roster, [o.public for o in officers], 2)
    variants = (
        replace(good, prev_hash=bytes([7]) * len(good.prev_hash)),
        replace(good, version=good.version + 1),
        replace(good, mission_name="Pyongyang"),
        replace(good, mission_nonce=bytes(len(good.mission_nonce))),
    )
    for bad in variants:
        sigs = tuple(rs.sign_roster(bad, o) for o in officers)
        with pytest.raises(RosterError):
            rs.verify_update(m.roster, rs.SignedRoster(bad, sigs))
    sigs = tuple(rs.sign_roster(good, o) for o in officers)
    assert rs.verify_update(m.roster, rs.SignedRoster(good, sigs)) == good
