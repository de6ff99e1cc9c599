"""A mission's policy as data: its encoding, what it allows, and the signatures a
change needs (the solo officer, the forged, the tampered, the replayed, another
mission's, a stale roster: each refused)."""

from __future__ import annotations

import pytest

from backchannel.client.harness import MissionKit, system_rng
from backchannel.errors import DecodeError
from backchannel.protocol import policy as mp
from backchannel.protocol import roster as rs
from backchannel.protocol.channel import Policy
from backchannel.protocol.codec import Reader
from backchannel.protocol.constants import MAX_OFFICERS

EITHER = frozenset({Policy.RECORD, Policy.EITHER})


@pytest.fixture(scope="module")
def ny() -> MissionKit:
    return MissionKit.create("New York", ["Ri", "Han", "Pak"], 2, system_rng)


def signed_by(m: MissionKit, who: list[int], policy: mp.MissionPolicy) -> mp.SignedPolicy:
    out = mp.SignedPolicy(m.mission_id, policy)
    for i in who:
        out = mp.sign(out, m.officers[i].officer)
    return out


def test_the_default_is_for_the_record_and_the_rosters_k() -> None:
    d = mp.DEFAULT
    assert d.official == {Policy.RECORD} and not d.official_deniable
    assert d.allows_official(Policy.RECORD) and not d.allows_official(Policy.EITHER)
    roster = MissionKit.create("X", ["A", "B", "C"], 3, system_rng).roster
    assert d.send_threshold(roster, to_contact=True) == 3
    assert d.send_threshold(roster, to_contact=False) == 3


def test_the_track_two_k_applies_to_contacts_only(ny: MissionKit) -> None:
    p = mp.propose(mp.DEFAULT, EITHER, 1, ny.roster)
    assert p.send_threshold(ny.roster, to_contact=True) == 1
    assert p.send_threshold(ny.roster, to_contact=False) == 2
    p3 = mp.propose(mp.DEFAULT, EITHER, 3, ny.roster)
    assert p3.send_threshold(ny.roster, to_contact=True) == 3
    with pytest.raises(mp.PolicyError, match="more than the 3 officers"):
        mp.propose(mp.DEFAULT, EITHER, 4, ny.roster)


def test_encoding_round_trips_and_junk_is_refused(ny: MissionKit) -> None:
    signed = signed_by(ny, [0, 1], mp.propose(mp.DEFAULT, set(Policy), 1, ny.roster))
    again = mp.SignedPolicy.decode(signed.encode())
    assert again == signed and again.policy.hash == signed.policy.hash
    raw = signed.encode()
    for bad in (raw[:-1], raw + b"\x00", b"", b"\x20" + raw[1:]):
        with pytest.raises(DecodeError):
            mp.SignedPolicy.decode(bad)
    body = bytearray(signed.policy.encode())
    body[5] = 0x08  # a kind of channel this version does not know
    with pytest.raises(DecodeError, match="does not know"):
        mp.MissionPolicy.read(Reader(bytes(body)))
    with pytest.raises(DecodeError):
        mp.MissionPolicy(1, frozenset(), 0, bytes(32))


def test_k_officers_change_it_and_fewer_do_not(ny: MissionKit) -> None:
    new = mp.propose(mp.DEFAULT, EITHER, 1, ny.roster)
    assert mp.verify_next(mp.DEFAULT, signed_by(ny, [0, 2], new), ny.roster, ny.mission_id) == new
    for who in ([0], [1], [0, 0], []):
        with pytest.raises(mp.PolicyError, match="needs 2 officers"):
            mp.verify_next(mp.DEFAULT, signed_by(ny, who, new), ny.roster, ny.mission_id)


def test_forged_tampered_and_foreign_signatures_do_not_count(ny: MissionKit) -> None:
    new = mp.propose(mp.DEFAULT, EITHER, 1, ny.roster)
    honest = signed_by(ny, [0, 1], new)
    # Tampered after signing: a wider policy under the same signatures.
    wider = mp.MissionPolicy(new.version, frozenset(Policy), 3, new.prev_hash, new.roster_version)
    tampered = mp.SignedPolicy(ny.mission_id, wider, honest.signatures)
    with pytest.raises(mp.PolicyError, match="0 signed"):
        mp.verify_next(mp.DEFAULT, tampered, ny.roster, ny.mission_id)
    # A colleague's signature forged by one officer: only his own counts.
    ri, han = ny.officers[0], ny.officers[1]
    forged = mp.sign(mp.SignedPolicy(ny.mission_id, new), ri.officer).with_signatures(
        [(han.officer.officer_id, honest.signatures[0][1])]
    )
    assert forged.signers(ny.roster) == {ri.officer.officer_id}
    with pytest.raises(mp.PolicyError, match="1 signed"):
        mp.verify_next(mp.DEFAULT, forged, ny.roster, ny.mission_id)
    # Officers of another mission, and another mission's signed policy.
    dc = MissionKit.create("Washington", ["Smith", "Jones"], 2, system_rng)
    theirs = signed_by(dc, [0, 1], new)
    as_ours = mp.SignedPolicy(ny.mission_id, new, theirs.signatures)
    with pytest.raises(mp.PolicyError, match="0 signed"):
        mp.verify_next(mp.DEFAULT, as_ours, ny.roster, ny.mission_id)
    relabelled = mp.SignedPolicy(dc.mission_id, new, honest.signatures)
    with pytest.raises(mp.PolicyError, match="another mission's"):
        mp.verify_next(mp.DEFAULT, relabelled, ny.roster, ny.mission_id)


def test_a_replayed_or_out_of_order_change_is_refused(ny: MissionKit) -> None:
    v1 = mp.propose(mp.DEFAULT, EITHER, 1, ny.roster)
    s1 = signed_by(ny, [0, 1], v1)
    current = mp.verify_next(mp.DEFAULT, s1, ny.roster, ny.mission_id)
    with pytest.raises(mp.PolicyError, match="does not follow"):
        mp.verify_next(current, s1, ny.roster, ny.mission_id)  # the same change again
    v2 = mp.propose(current, {Policy.RECORD}, 0, ny.roster)
    s2 = signed_by(ny, [1, 2], v2)
    with pytest.raises(mp.PolicyError, match="does not follow"):
        mp.verify_next(mp.DEFAULT, s2, ny.roster, ny.mission_id)  # skipping version 1
    # A sibling of version 1 (another version 1) does not follow version 1.
    sibling = signed_by(ny, [0, 2], mp.propose(mp.DEFAULT, set(Policy), 0, ny.roster))
    with pytest.raises(mp.PolicyError, match="does not follow"):
        mp.verify_next(current, sibling, ny.roster, ny.mission_id)
    assert mp.verify_chain(ny.mission_id, [s1, s2], [ny.roster]) == v2


def test_a_change_signed_under_an_earlier_roster_is_stale(ny: MissionKit) -> None:
    new = mp.propose(mp.DEFAULT, EITHER, 1, ny.roster)
    signed = signed_by(ny, [0, 1], new)
    later = rs.propose_update(ny.roster, list(ny.roster.officers[:2]), 2)
    with pytest.raises(mp.PolicyError, match="another roster"):
        mp.verify_next(mp.DEFAULT, signed, later, ny.mission_id)
    # Offline, each change is checked against the roster version it names.
    with pytest.raises(mp.PolicyError, match="lacks"):
        mp.verify_chain(ny.mission_id, [signed], [later])


def test_each_field_is_checked_alone() -> None:
    prev = bytes(range(32))
    edge = mp.MissionPolicy(1, frozenset({Policy.RECORD}), MAX_OFFICERS, prev)
    assert edge.track2_k == MAX_OFFICERS  # the largest k is a k
    with pytest.raises(DecodeError, match="at least one known"):
        mp.MissionPolicy(1, frozenset(), 0, prev)
    for k in (-1, MAX_OFFICERS + 1):
        with pytest.raises(DecodeError, match="Track II k"):
            mp.MissionPolicy(1, frozenset({Policy.RECORD}), k, prev)
    # Every set of kinds comes back as itself, not as more or fewer.
    kinds = sorted(Policy)
    for bits in range(1, 1 << len(kinds)):
        official = frozenset(p for i, p in enumerate(kinds) if bits >> i & 1)
        p = mp.MissionPolicy(3, official, 1, prev, 7)
        assert mp.MissionPolicy.read(Reader(p.encode())) == p


def test_a_mission_id_longer_than_any_is_refused(ny: MissionKit) -> None:
    policy = mp.propose(mp.DEFAULT, EITHER, 1, ny.roster)
    for length, ok in ((64, True), (65, False)):
        raw = mp.SignedPolicy(bytes(length), policy).encode()
        if ok:
            assert mp.SignedPolicy.decode(raw).mission_id == bytes(length)
        else:
            with pytest.raises(DecodeError, match="too long"):
                mp.SignedPolicy.decode(raw)


def test_one_signature_per_officer_even_given_twice_at_once(ny: MissionKit) -> None:
    signed = mp.SignedPolicy(ny.mission_id, mp.propose(mp.DEFAULT, EITHER, 1, ny.roster))
    ri = ny.officers[0].officer.officer_id
    twice = signed.with_signatures([(ri, b"first"), (ri, b"second")])
    assert twice.signatures == ((ri, b"first"),)


def test_a_change_must_follow_by_version_and_by_hash_each(ny: MissionKit) -> None:
    current = mp.verify_next(
        mp.DEFAULT,
        signed_by(ny, [0, 1], mp.propose(mp.DEFAULT, EITHER, 1, ny.roster)),
        ny.roster,
        ny.mission_id,
    )
    v = ny.roster.version
    wrong_hash = mp.MissionPolicy(current.version + 1, EITHER, 0, bytes(range(32)), v)
    skipped = mp.MissionPolicy(current.version + 2, EITHER, 0, current.hash, v)
    right = mp.MissionPolicy(current.version + 1, EITHER, 0, current.hash, v)
    for bad in (wrong_hash, skipped):
        with pytest.raises(mp.PolicyError, match="does not follow"):
            mp.verify_next(current, signed_by(ny, [0, 1], bad), ny.roster, ny.mission_id)
    assert mp.verify_next(current, signed_by(ny, [0, 1], right), ny.roster, ny.mission_id)


def test_a_proposal_names_the_roster_it_is_signed_under(ny: MissionKit) -> None:
    later = rs.propose_update(ny.roster, list(ny.roster.officers[:2]), 2)
    assert later.version != ny.roster.version
    assert mp.propose(mp.DEFAULT, EITHER, 1, later).roster_version == later.version
    assert mp.propose(mp.DEFAULT, EITHER, 1, ny.roster).roster_version == ny.roster.version


def _read(raw: bytes) -> mp.MissionPolicy:
    r = Reader(raw)
    out = mp.MissionPolicy.read(r)
    r.end()
    return out


def test_the_send_epoch_period_is_a_policy_of_an_hour_to_a_week(ny: MissionKit) -> None:
    # The default keeps the layout (and so the hash) policies always had.
    assert mp.DEFAULT.epoch_seconds == 86_400 and mp.DEFAULT.encode()[0] == 1
    hourly = mp.propose(mp.DEFAULT, {Policy.RECORD}, 0, ny.roster, 3600)
    assert hourly.encode()[0] == 2 and _read(hourly.encode()) == hourly
    assert "send keys renew every hour" in hourly.describe()
    assert "every 6 hours" in mp.MissionPolicy(epoch_seconds=6 * 3600).describe()
    assert "renew" not in mp.DEFAULT.describe()
    # A later change keeps the period unless it names one.
    after = mp.propose(hourly, {Policy.RECORD, Policy.EITHER}, 0, ny.roster)
    assert after.epoch_seconds == 3600
    back = mp.propose(after, {Policy.RECORD}, 0, ny.roster, 86_400)
    assert back.encode()[0] == 1
    for seconds in (3600, 7 * 86_400):
        mp.MissionPolicy(epoch_seconds=seconds)
    for seconds in (3599, 7 * 86_400 + 1, 0):
        with pytest.raises(DecodeError, match="an hour to a week"):
            mp.MissionPolicy(epoch_seconds=seconds)
    # Layout 2 carrying the defaults is not the policy's one encoding: refused.
    raw = mp.MissionPolicy(epoch_seconds=7200).encode()
    with pytest.raises(DecodeError, match="layout 1"):
        _read(raw[:-8] + (86_400).to_bytes(4, "big") * 2)
    with pytest.raises(DecodeError, match="expected 1 to 4"):
        _read(b"\x05" + raw[1:])


def test_how_long_a_device_may_be_silent_is_a_policy_of_an_hour_to_thirty_days(
    ny: MissionKit,
) -> None:
    assert mp.DEFAULT.unseen_seconds == 86_400
    quiet = mp.propose(mp.DEFAULT, {Policy.RECORD}, 0, ny.roster, None, 6 * 3600)
    assert quiet.encode()[0] == 2 and _read(quiet.encode()) == quiet
    assert quiet.epoch_seconds == 86_400
    assert "silent for 6 hours raises an alarm" in quiet.describe()
    both = mp.propose(quiet, {Policy.RECORD}, 0, ny.roster, 3600)
    assert (both.epoch_seconds, both.unseen_seconds) == (3600, 6 * 3600)
    assert _read(both.encode()) == both
    for seconds in (3600, 30 * 86_400):
        mp.MissionPolicy(unseen_seconds=seconds)
    for seconds in (3599, 30 * 86_400 + 1):
        with pytest.raises(DecodeError, match="thirty days"):
            mp.MissionPolicy(unseen_seconds=seconds)


FP = bytes(range(32))


def test_a_fallback_relay_is_a_policy_with_its_key(ny: MissionKit) -> None:
    fb = mp.FallbackRelay("https://relay-two.example", FP)
    moved = mp.propose(mp.DEFAULT, {Policy.RECORD}, 0, ny.roster, fallback=fb)
    raw = moved.encode()
    assert raw[0] == 4 and _read(raw) == moved and moved.fallback == fb
    assert "moves to https://relay-two.example (key 000102030405060" in moved.describe()
    assert not moved.same_rules(mp.DEFAULT)
    # A later change keeps it unless it names another, or none.
    later = mp.propose(moved, {Policy.RECORD, Policy.EITHER}, 0, ny.roster)
    assert later.fallback == fb and _read(later.encode()) == later
    dropped = mp.propose(later, {Policy.RECORD}, 0, ny.roster, fallback=mp.NO_FALLBACK)
    assert dropped.encode()[0] == 1 and not dropped.fallback.named
    # With periods and witnesses too: every field survives the layout.
    w = mp.MissionPolicy(
        version=3, prev_hash=FP, epoch_seconds=7200, unseen_seconds=3600, fallback=fb
    )
    assert _read(w.encode()) == w


def test_a_fallback_relay_is_refused_unless_whole() -> None:
    for url, fp, why in (
        ("", FP, "needs the relay's address"),
        ("ftp://relay.example", FP, "http"),
        ("relay.example", FP, "http"),
        ("https://" + "a" * 600, FP, "http"),
        ("https://relay.example", FP[:31], "32 bytes"),
        ("https://relay.example", b"", "32 bytes"),
    ):
        with pytest.raises(DecodeError, match=why):
            mp.FallbackRelay(url, fp)
    raw = mp.MissionPolicy(fallback=mp.FallbackRelay("https://r.example", FP)).encode()
    # Layout 4 naming no fallback is not the policy's one encoding.
    empty = raw[: -(len("https://r.example") + 32 + 4)] + bytes(4)
    with pytest.raises(DecodeError, match="names a fallback relay"):
        _read(empty)
    with pytest.raises(DecodeError):
        _read(raw[:-1])


def test_a_policy_says_in_one_line_all_it_asks(ny: MissionKit) -> None:
    assert mp.DEFAULT.describe() == (
        "version 0: official channels for the record; Track II k = the roster's k"
    )
    full = mp.MissionPolicy(
        version=4, official=frozenset({Policy.RECORD, Policy.EITHER}), track2_k=1,
        prev_hash=FP, epoch_seconds=2 * 3600, unseen_seconds=3600,
        fallback=mp.FallbackRelay("https://r2.example", FP),
    )  # fmt: skip
    assert full.describe() == (
        "version 4: official channels for the record, either, message by message; "
        "Track II k = 1; send keys renew every 2 hours; a device silent for an hour raises "
        "an alarm; if the relay is proven to lie, the mission moves to https://r2.example "
        "(key 0001020304050607)"
    )


def test_a_fallback_address_may_be_as_long_as_the_limit() -> None:
    url = "https://" + "a" * (mp.MAX_URL_LEN - len("https://"))
    fb = mp.FallbackRelay(url, FP)
    assert _read(mp.MissionPolicy(fallback=fb).encode()).fallback == fb
    with pytest.raises(DecodeError):
        mp.FallbackRelay(url + "a", FP)
