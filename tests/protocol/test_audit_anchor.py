"""Anchors of a mission's audit log in the peer's hands (protocol/audit_anchor.py).

New York (Pak, Kim, Ri; Pak's device sends) anchors its audit log in the
channel to Washington; Washington keeps what a New York officer signed, and a
New York record must later open the latest anchor Washington holds.
"""

from __future__ import annotations

import copy

import pytest

from backchannel.client.harness import MissionKit, Pair
from backchannel.crypto.primitives import sha256
from backchannel.errors import DecodeError, LocalProtocolError, SignatureError
from backchannel.protocol import audit_anchor as aa
from backchannel.protocol import channel as ch
from backchannel.protocol.identity import Officer
from backchannel.protocol.payload import note
from tests.conftest import DetRng
from tests.protocol.test_channel_rekey import _inject, _round

KIM, RI = bytes([1]) * 16, bytes([2]) * 16


@pytest.fixture
def pair(rng: DetRng) -> Pair:
    ny = MissionKit.create("New York", ["Pak", "Kim", "Ri"], 2, rng)
    dc = MissionKit.create("Washington", ["Smith", "Jones", "Brown"], 2, rng)
    return Pair(ny, dc, rng=rng, start_round=100)


def _digests(held: dict[tuple[bytes, int], bytes]) -> aa.DigestOf:
    return lambda officer_id, seq: held.get((officer_id, seq))


ENTRIES = {(KIM, n): sha256(b"kim", bytes([n])) for n in range(1, 6)} | {
    (RI, n): sha256(b"ri", bytes([n])) for n in range(1, 3)
}


def test_an_anchor_reaches_the_peer_checked_and_messages_flow_behind_it(pair: Pair) -> None:
    ny = pair.a.mission
    pak = ny.officers[0].officer
    opening = aa.opening_of(ny.mission_id, pair.round, {KIM: range(1, 6), RI: (1, 2)})
    anchor = aa.SignedAnchor.make(ny.mission_id, pair.round, opening.digest(_digests(ENTRIES)), pak)
    pair.a.endpoint.send_anchor(anchor)
    for _ in range(3):
        _round(pair)
    assert [res.anchor for res in pair.b.results if res.anchor] == [anchor.encode()]
    got = aa.SignedAnchor.decode(anchor.encode())
    aa.check_anchor(got, ny.roster.officer(pak.officer_id), [opening], _digests(ENTRIES))
    out = pair.cosign(pair.a, pair.compose(pair.a, 0, note("after the anchor")), 1)
    pair.send(pair.a, out)
    for _ in range(4):
        _round(pair)
    assert len([m for res in pair.b.results for m in res.messages]) == 1


def test_the_opening_names_the_unbroken_run_and_the_digest_changes_every_round() -> None:
    mid = bytes(32)
    opening = aa.opening_of(mid, 7, {RI: (1, 2, 4), KIM: range(1, 6), bytes(16): ()})
    assert opening.heads == ((KIM, 5), (RI, 2))  # sorted; Ri's 3 is missing, so 2
    assert aa.AnchorOpening.decode(opening.encode()) == opening
    d7 = opening.digest(_digests(ENTRIES))
    d8 = aa.AnchorOpening(mid, 8, opening.heads).digest(_digests(ENTRIES))
    # The same entries a round later give another digest: the peer cannot tell
    # a quiet hour from a busy one by comparing anchors.
    assert d7 != d8
    # Another entry under the same number gives another digest.
    changed = ENTRIES | {(KIM, 5): sha256(b"rewritten")}
    assert opening.digest(_digests(changed)) != d7
    # An entry the opening names and the record lacks is named.
    dropped = {k: v for k, v in ENTRIES.items() if k != (RI, 2)}
    with pytest.raises(aa.AnchorProblem, match="entry 2 of officer 0202"):
        opening.digest(_digests(dropped))


@pytest.mark.parametrize(
    "raw",
    [
        aa.AnchorOpening(bytes(32), 1, ((KIM, 1),)).encode() + b"\0",
        bytes([2]) + aa.AnchorOpening(bytes(32), 1, ((KIM, 1),)).encode()[1:],
        aa.AnchorOpening(bytes(32), 1, ((KIM, 1),)).encode()[:-1],
    ],
)
def test_a_malformed_opening_is_refused(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        aa.AnchorOpening.decode(raw)


def test_an_opening_names_each_officer_once_in_order_from_entry_one() -> None:
    for heads in (((RI, 1), (KIM, 1)), ((KIM, 1), (KIM, 2)), ((KIM, 0),)):
        with pytest.raises(DecodeError):
            aa.AnchorOpening(bytes(32), 1, heads)


def test_a_record_opens_the_anchor_only_with_the_entries_it_named(pair: Pair) -> None:
    ny = pair.a.mission
    pak, kim = ny.officers[0].officer, ny.officers[1].officer
    opening = aa.opening_of(ny.mission_id, 120, {KIM: range(1, 6), RI: (1, 2)})
    anchor = aa.SignedAnchor.make(ny.mission_id, 120, opening.digest(_digests(ENTRIES)), pak)
    key = ny.roster.officer(pak.officer_id)
    aa.check_anchor(anchor, key, [opening], _digests(ENTRIES))
    # Kim's latest entry dropped from the record: named.
    dropped = {k: v for k, v in ENTRIES.items() if k != (KIM, 5)}
    with pytest.raises(aa.AnchorProblem, match=r"entry 5 of officer 0101.*round 120"):
        aa.check_anchor(anchor, key, [opening], _digests(dropped))
    # An opening made up to fit what is left (Kim's chain ending at 4) does not open it.
    made_up = aa.AnchorOpening(ny.mission_id, 120, ((KIM, 4), (RI, 2)))
    with pytest.raises(aa.AnchorProblem, match="not opened by the record"):
        aa.check_anchor(anchor, key, [made_up], _digests(dropped))
    # No opening of that round at all.
    with pytest.raises(aa.AnchorProblem, match="not opened"):
        aa.check_anchor(anchor, key, [], _digests(ENTRIES))
    # The digest changed after signing, or the anchor checked against Kim's key.
    forged = aa.SignedAnchor(ny.mission_id, 120, bytes(32), pak.officer_id, anchor.signature)
    with pytest.raises(SignatureError):
        aa.check_anchor(forged, key, [opening], _digests(ENTRIES))
    with pytest.raises(SignatureError):
        aa.check_anchor(anchor, ny.roster.officer(kim.officer_id), [opening], _digests(ENTRIES))
    with pytest.raises(SignatureError):
        aa.check_anchor(anchor, None, [opening], _digests(ENTRIES))


def _anchor_in(pair: Pair, raw: bytes) -> None:
    """``raw`` sealed into New York's direction by a copy of its sending device;
    Washington refuses it and is unchanged."""
    _inject(pair, copy.deepcopy(pair.a.endpoint), raw, outgoing=True)


def test_an_anchor_one_officer_signed_in_anothers_name_is_refused(pair: Pair) -> None:
    ny = pair.a.mission
    kim, ri = ny.officers[1].officer, ny.officers[2].officer
    real = aa.SignedAnchor.make(ny.mission_id, pair.round, bytes(32), ri)
    named = aa.SignedAnchor(ny.mission_id, pair.round, bytes(32), kim.officer_id, real.signature)
    _anchor_in(pair, named.encode())


def test_an_anchor_of_another_mission_or_a_stranger_or_the_future_is_refused(pair: Pair) -> None:
    ny, dc = pair.a.mission, pair.b.mission
    pak = ny.officers[0].officer
    stranger = Officer.generate("Lee", DetRng(b"stranger"))
    smith = dc.officers[0].officer
    for raw in (
        aa.SignedAnchor.make(dc.mission_id, pair.round, bytes(32), smith).encode(),
        aa.SignedAnchor.make(ny.mission_id, pair.round, bytes(32), stranger).encode(),
        aa.SignedAnchor.make(ny.mission_id, pair.round + 50, bytes(32), pak).encode(),
    ):
        _anchor_in(pair, raw)


def test_no_anchor_on_a_deniable_channel(rng: DetRng) -> None:
    """A signed statement has no place where messages carry only MACs."""
    ny = MissionKit.create("New York", ["Pak", "Kim"], 2, rng)
    dc = MissionKit.create("Washington", ["Smith", "Jones"], 2, rng)
    pair = Pair(ny, dc, rng=rng, start_round=100, policy=ch.Policy.DENIABLE)
    pak = ny.officers[0].officer
    anchor = aa.SignedAnchor.make(ny.mission_id, pair.round, bytes(32), pak)
    with pytest.raises(LocalProtocolError):
        pair.a.endpoint.send_anchor(anchor)
    _anchor_in(pair, anchor.encode())


def test_only_the_sending_device_sends_an_anchor_and_only_its_missions(pair: Pair) -> None:
    ny, dc = pair.a.mission, pair.b.mission
    ep = copy.deepcopy(pair.a.endpoint)
    other = aa.SignedAnchor.make(dc.mission_id, pair.round, bytes(32), dc.officers[0].officer)
    with pytest.raises(LocalProtocolError):
        ep.send_anchor(other)
    ep.sends = False
    with pytest.raises(LocalProtocolError):
        ep.send_anchor(aa.SignedAnchor.make(ny.mission_id, 1, bytes(32), ny.officers[0].officer))


def test_a_signed_anchor_round_trips_and_a_damaged_one_is_refused(pair: Pair) -> None:
    ny = pair.a.mission
    a = aa.SignedAnchor.make(ny.mission_id, 5, bytes(32), ny.officers[0].officer)
    assert aa.SignedAnchor.decode(a.encode()) == a
    for raw in (a.encode()[:-1], a.encode() + b"\0", bytes([4]) + a.encode()[1:]):
        with pytest.raises(DecodeError):
            aa.SignedAnchor.decode(raw)


def test_the_digest_is_the_one_the_spec_gives() -> None:
    """audit-v1 §6, recomputed with hashlib: SHA-256 of the label, mission id, round,
    count and (officer, number, entry digest) of each officer."""
    import hashlib

    from backchannel.crypto import labels

    mid = bytes(range(32))
    opening = aa.AnchorOpening(mid, 300, ((KIM, 5), (RI, 2)))
    body = mid + (300).to_bytes(8, "big") + bytes([2])
    for officer_id, seq in opening.heads:
        body += officer_id + seq.to_bytes(8, "big") + ENTRIES[(officer_id, seq)]
    want = hashlib.sha256(labels.AUDIT_ANCHOR + body).digest()
    assert opening.digest(_digests(ENTRIES)) == want
    assert labels.AUDIT_ANCHOR == b"backchannel/v1/audit/anchor"


def test_an_opening_holds_up_to_255_officers_and_one_mission_id() -> None:
    many = tuple((i.to_bytes(16, "big"), 1) for i in range(255))
    assert len(aa.AnchorOpening(bytes(32), 1, many).heads) == 255
    with pytest.raises(DecodeError, match="malformed anchor opening"):
        aa.AnchorOpening(bytes(32), 1, (*many, (bytes([0xFF]) * 16, 1)))
    with pytest.raises(DecodeError, match="malformed anchor opening"):
        aa.AnchorOpening(bytes(31), 1, ((KIM, 1),))
    with pytest.raises(DecodeError, match="each officer once"):
        aa.AnchorOpening(bytes(32), 1, ((KIM, 0),))


def test_only_an_opening_of_the_anchors_round_and_mission_is_tried(pair: Pair) -> None:
    """Openings of other rounds, or of another mission at that round, are not the
    anchor's: it is "not opened", whatever entries they name."""
    ny = pair.a.mission
    pak = ny.officers[0].officer
    key = ny.roster.officer(pak.officer_id)
    opening = aa.AnchorOpening(ny.mission_id, 120, ((KIM, 5), (RI, 2)))
    anchor = aa.SignedAnchor.make(ny.mission_id, 120, opening.digest(_digests(ENTRIES)), pak)
    missing = ((KIM, 9),)  # an entry the record lacks: trying it would name it
    others = [
        aa.AnchorOpening(ny.mission_id, 60, missing),
        aa.AnchorOpening(bytes(32), 120, missing),
    ]
    with pytest.raises(aa.AnchorProblem, match=r"^the anchor of round 120 is not opened"):
        aa.check_anchor(anchor, key, others, _digests(ENTRIES))
    aa.check_anchor(anchor, key, [*others, opening], _digests(ENTRIES))
    with pytest.raises(SignatureError, match="signed by no officer of the mission's roster"):
        aa.check_anchor(anchor, None, [opening], _digests(ENTRIES))
    with pytest.raises(DecodeError, match="not an anchor of an audit log"):
        aa.SignedAnchor.decode(bytes([4]) + anchor.encode()[1:])
    with pytest.raises(DecodeError, match="anchor opening"):
        aa.AnchorOpening.decode(bytes([9]) + opening.encode()[1:])
