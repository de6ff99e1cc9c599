"""Pairwise lanes of joint objects (protocol/joint_lane.py): every sixteenth
object of a lane, the first included, carries its chain key sealed with HPKE,
every object is sealed with the next key of the chain; replayed, tampered,
forged, misaddressed and out-of-lane objects are refused and leave the
reader's end where it was; objects that come late still open, once."""

from __future__ import annotations

import pytest

from backchannel.client.harness import MissionKit
from backchannel.crypto import labels
from backchannel.crypto.kem import ENC_LEN
from backchannel.crypto.primitives import aead_open, aead_seal, hmac_sha256
from backchannel.errors import (
    AuthenticationError,
    DecodeError,
    ReplayDetected,
    SignatureError,
)
from backchannel.protocol import joint_lane
from backchannel.protocol.identity import EpochKey
from backchannel.protocol.joint import JointKind, JointObject
from backchannel.protocol.joint_lane import LaneIn, LaneOut
from tests.conftest import DetRng

RNG = DetRng("joint-lane")
KIT = MissionKit.create("Geneva", ["Ada", "Ben", "Cy"], 2, RNG)
OTHER = MissionKit.create("Oslo", ["Dee", "Eve"], 2, RNG)
ADA, BEN, CY = KIT.officers


def obj(body: bytes = b"please co-sign", n: int = 7) -> JointObject:
    return JointObject(
        JointKind.COSIGN_REQUEST,
        bytes([n]) * 16,
        ADA.officer.officer_id,
        BEN.officer.officer_id,
        body,
    )


def ada_lane() -> LaneOut:
    return joint_lane.lane_for(None, BEN.cert, RNG)


def seal_run(count: int, lane: LaneOut | None = None) -> tuple[list[bytes], LaneOut]:
    """``count`` objects from Ada to Ben on one lane: the sealed objects, the lane after."""
    lane = lane or ada_lane()
    out = []
    for i in range(count):
        raw, lane = joint_lane.seal(
            obj(f"object {i}".encode(), i), ADA.officer, BEN.cert, KIT.mission_id, lane, RNG
        )
        out.append(raw)
    return out, lane


def ben_opens(raw: bytes, lane: LaneIn | None) -> tuple[JointObject, LaneIn]:
    return joint_lane.open_lane(raw, BEN.officer, BEN.epoch_keys, KIT.roster, KIT.mission_id, lane)


def read_all(sealed: list[bytes]) -> tuple[list[bytes], LaneIn | None]:
    lane: LaneIn | None = None
    bodies = []
    for raw in sealed:
        o, lane = ben_opens(raw, lane)
        bodies.append(o.body)
    return bodies, lane


def test_a_lane_carries_its_objects_in_order() -> None:
    sealed, after = seal_run(5)
    bodies, lane = read_all(sealed)
    assert bodies == [f"object {i}".encode() for i in range(5)]
    assert lane is not None and lane.n == 5 and after.n == 5
    # Sender and reader end on the same chain key: the next object opens.
    more, _ = seal_run(1, after)
    assert ben_opens(more[0], lane)[0].body == b"object 0"


def test_every_sixteenth_object_carries_the_encapsulation() -> None:
    sealed, _ = seal_run(18)
    opener = 4 + ENC_LEN + 32 + 16
    plain = len(sealed[1]) - len(b"object 1")
    for i, raw in enumerate(sealed):
        body = len(f"object {i}".encode())
        assert len(raw) - body == plain + (opener if i % joint_lane.REOPEN == 0 else 0), i
    # A co-signature-sized body costs a few hundred bytes, not an encapsulation.
    assert len(sealed[1]) < 200


def test_a_replayed_object_is_refused_and_the_reader_stays_put() -> None:
    sealed, _ = seal_run(3)
    _, lane = read_all(sealed[:2])
    assert lane is not None
    for old in sealed[:2]:
        with pytest.raises(ReplayDetected):
            ben_opens(old, lane)
    # The reader's end did not move: the next object still opens.
    assert ben_opens(sealed[2], lane)[0].body == b"object 2"


def test_a_first_object_replayed_on_a_known_lane_is_refused() -> None:
    sealed, _ = seal_run(2)
    _, lane = read_all(sealed)
    with pytest.raises(ReplayDetected):
        ben_opens(sealed[0], lane)


def test_objects_that_come_late_open_once() -> None:
    sealed, _ = seal_run(6)
    o, lane = ben_opens(sealed[0], None)
    o, lane = ben_opens(sealed[4], lane)  # 1 to 3 not here yet
    assert o.body == b"object 4" and lane.n == 5
    assert [p for p, _ in lane.skipped] == [1, 2, 3]
    o, lane = ben_opens(sealed[2], lane)  # late, but its key was kept
    assert o.body == b"object 2" and [p for p, _ in lane.skipped] == [1, 3]
    with pytest.raises(ReplayDetected):  # and only once
        ben_opens(sealed[2], lane)
    with pytest.raises(ReplayDetected):  # nor can one already read come again
        ben_opens(sealed[4], lane)
    assert ben_opens(sealed[5], lane)[0].body == b"object 5"


def test_only_so_many_passed_over_keys_are_kept() -> None:
    sealed, lane_out = seal_run(1)
    _, lane = ben_opens(sealed[0], None)
    jump = joint_lane.MAX_KEPT + 10
    far = LaneOut(lane_out.lane_id, lane_out.chain_key, lane_out.n, lane_out.epoch)
    raws = []
    for i in range(jump + 1):
        raw, far = joint_lane.seal(obj(n=i % 256), ADA.officer, BEN.cert, KIT.mission_id, far, RNG)
        raws.append(raw)
    _, lane = ben_opens(raws[-1], lane)
    assert len(lane.skipped) == joint_lane.MAX_KEPT
    assert ben_opens(raws[-2], lane)[0].body == b"please co-sign"  # a recent one, kept
    with pytest.raises(ReplayDetected):  # the oldest passed over were let go
        ben_opens(raws[0], lane)


def test_a_reader_that_lost_a_lanes_beginning_joins_at_its_next_key() -> None:
    sealed, _ = seal_run(18)
    for raw in sealed[1:16]:
        with pytest.raises(AuthenticationError):
            ben_opens(raw, None)
    o, lane = ben_opens(sealed[16], None)
    assert o.body == b"object 16" and lane.n == 17 and lane.skipped == ()
    assert ben_opens(sealed[17], lane)[0].body == b"object 17"
    with pytest.raises(ReplayDetected):  # what came before the join cannot be told from a replay
        ben_opens(sealed[3], lane)


def test_an_object_carrying_a_key_is_not_a_way_back_into_a_lane() -> None:
    """Object 16 replayed once the reader has passed it: refused, though it
    carries the chain key of its position."""
    sealed, _ = seal_run(18)
    _, lane = read_all(sealed)
    assert lane is not None
    with pytest.raises(ReplayDetected):
        ben_opens(sealed[16], lane)


def test_a_jump_past_the_skip_bound_is_refused() -> None:
    sealed, lane_out = seal_run(1)
    _, lane = ben_opens(sealed[0], None)
    far = LaneOut(
        lane_out.lane_id, lane_out.chain_key, lane_out.n + joint_lane.MAX_SKIP + 1, lane_out.epoch
    )
    raw, _ = joint_lane.seal(obj(), ADA.officer, BEN.cert, KIT.mission_id, far, RNG)
    with pytest.raises(DecodeError):
        ben_opens(raw, lane)


def test_a_later_object_of_a_lane_whose_first_never_arrived_is_refused() -> None:
    sealed, _ = seal_run(2)
    with pytest.raises(AuthenticationError):
        ben_opens(sealed[1], None)


@pytest.mark.parametrize("where", [0, 17, 20, 34, 40, -1])
def test_a_tampered_object_is_refused(where: int) -> None:
    sealed, _ = seal_run(2)
    _, lane = ben_opens(sealed[0], None)
    raw = bytearray(sealed[1])
    raw[where] ^= 0x01
    with pytest.raises((AuthenticationError, SignatureError, ReplayDetected, DecodeError)):
        ben_opens(bytes(raw), lane)
    assert ben_opens(sealed[1], lane)[0].body == b"object 1"


def test_a_tampered_opener_is_refused() -> None:
    sealed, _ = seal_run(1)
    raw = bytearray(sealed[0])
    raw[37 + 4 + 100] ^= 0x01  # inside the encapsulation
    with pytest.raises(AuthenticationError):
        ben_opens(bytes(raw), None)


def test_a_lane_opens_for_its_recipient_only() -> None:
    sealed, _ = seal_run(2)
    with pytest.raises(AuthenticationError):
        joint_lane.open_lane(sealed[0], CY.officer, CY.epoch_keys, KIT.roster, KIT.mission_id, None)


def test_a_lane_does_not_open_under_another_mission() -> None:
    sealed, _ = seal_run(1)
    with pytest.raises(AuthenticationError):
        joint_lane.open_lane(
            sealed[0], BEN.officer, BEN.epoch_keys, KIT.roster, OTHER.mission_id, None
        )


def test_an_object_moved_to_another_lane_does_not_open() -> None:
    """The lane id and position are authenticated: Ada's second object, relabelled
    as the second of another of her lanes to Ben, opens under neither."""
    first, _ = seal_run(2)
    second, _ = seal_run(2)
    _, lane_b = ben_opens(second[0], None)
    moved = first[1][:17] + second[1][17:33] + first[1][33:]
    with pytest.raises(AuthenticationError):
        ben_opens(moved, lane_b)


def test_a_colleague_cannot_pass_a_lane_off_as_anothers() -> None:
    """Cy knows Ben's public key and may seal a chain key to it naming Ada as the
    sender; the object inside must still bear Ada's signature."""
    lane = joint_lane.lane_for(None, BEN.cert, RNG)
    o = JointObject(
        JointKind.COSIGNATURE, bytes(16), ADA.officer.officer_id, BEN.officer.officer_id, b"x"
    )
    raw = o.encode()
    sig = CY.officer.signing_key.sign_ed25519(labels.SIG_JOINT, raw)
    header = ADA.officer.officer_id + bytes([joint_lane.FORM]) + lane.lane_id + bytes(4)
    info = labels.HPKE_JOINT_LANE + KIT.mission_id + ADA.officer.officer_id
    info += BEN.officer.officer_id + lane.lane_id + bytes(4)
    opener = lane.epoch.to_bytes(4, "big") + BEN.cert.public_key.seal(lane.chain_key, info)
    key = hmac_sha256(lane.chain_key, labels.JOINT_LANE_KEY)
    nonce = bytes(12)
    aad = labels.JOINT_LANE_AAD + KIT.mission_id + BEN.officer.officer_id + header + opener
    forged = header + opener + nonce + aead_seal(key, nonce, raw + sig, aad)
    with pytest.raises(SignatureError):
        ben_opens(forged, None)
    # The same bytes signed by Ada open: the forgery failed on the signature alone.
    sig = ADA.officer.signing_key.sign_ed25519(labels.SIG_JOINT, raw)
    genuine = header + opener + nonce + aead_seal(key, nonce, raw + sig, aad)
    assert ben_opens(genuine, None)[0].body == b"x"


def test_a_sender_off_the_roster_is_refused() -> None:
    outsider = OTHER.officers[0]
    lane = joint_lane.lane_for(None, BEN.cert, RNG)
    o = JointObject(
        JointKind.NOTICE, bytes(16), outsider.officer.officer_id, BEN.officer.officer_id, b"hi"
    )
    raw, _ = joint_lane.seal(o, outsider.officer, BEN.cert, KIT.mission_id, lane, RNG)
    with pytest.raises(SignatureError):
        ben_opens(raw, None)


def test_seal_refuses_an_object_naming_other_officers_or_another_key() -> None:
    lane = ada_lane()
    with pytest.raises(DecodeError):
        joint_lane.seal(obj(), CY.officer, BEN.cert, KIT.mission_id, lane, RNG)
    with pytest.raises(DecodeError):
        joint_lane.seal(obj(), ADA.officer, CY.cert, KIT.mission_id, lane, RNG)
    newer = EpochKey.generate(BEN.cert.epoch + 1, RNG).certify(BEN.officer)
    with pytest.raises(DecodeError):
        joint_lane.seal(obj(), ADA.officer, newer, KIT.mission_id, lane, RNG)


def test_a_new_lane_begins_at_a_new_key_epoch_and_after_its_last_object() -> None:
    lane = ada_lane()
    assert joint_lane.lane_for(lane, BEN.cert, RNG) is lane
    newer_key = EpochKey.generate(BEN.cert.epoch + 1, RNG)
    newer = newer_key.certify(BEN.officer)
    moved = joint_lane.lane_for(lane, newer, RNG)
    assert moved.lane_id != lane.lane_id and moved.n == 0 and moved.epoch == newer.epoch
    full = LaneOut(lane.lane_id, lane.chain_key, joint_lane.LANE_OBJECTS, lane.epoch)
    assert joint_lane.lane_for(full, BEN.cert, RNG).lane_id != lane.lane_id
    # The reader picks the key by the epoch the opener names.
    raw, _ = joint_lane.seal(obj(), ADA.officer, newer, KIT.mission_id, moved, RNG)
    keys = [*BEN.epoch_keys, newer_key]
    o, _ = joint_lane.open_lane(raw, BEN.officer, keys, KIT.roster, KIT.mission_id, None)
    assert o.body == b"please co-sign"
    with pytest.raises(AuthenticationError):  # a device that no longer holds it
        ben_opens(raw, None)


def test_truncated_objects_are_decode_errors() -> None:
    sealed, _ = seal_run(2)
    _, lane = ben_opens(sealed[0], None)
    for cut in (36, 40, 37 + 100):
        with pytest.raises((DecodeError, AuthenticationError)):
            ben_opens(sealed[0][:cut], None)
    for cut in (37, 37 + 12 + 16):
        with pytest.raises((DecodeError, AuthenticationError)):
            ben_opens(sealed[1][:cut], lane)
    assert joint_lane.lane_of(sealed[0][:20]) is None
    with pytest.raises(DecodeError):
        ben_opens(sealed[0][:20], None)


def test_the_chain_is_the_hmacs_the_format_names() -> None:
    lane = ada_lane()
    key = hmac_sha256(lane.chain_key, labels.JOINT_LANE_KEY)
    nxt = hmac_sha256(lane.chain_key, labels.JOINT_LANE_CHAIN)
    raw, after = joint_lane.seal(obj(), ADA.officer, BEN.cert, KIT.mission_id, lane, RNG)
    assert after.chain_key == nxt and after.n == 1
    header, opener = raw[:37], raw[37 : 37 + 4 + ENC_LEN + 48]
    body = raw[37 + 4 + ENC_LEN + 48 :]
    aad = labels.JOINT_LANE_AAD + KIT.mission_id + BEN.officer.officer_id + header + opener
    plain = aead_open(key, body[:12], body[12:], aad)
    assert JointObject.decode(plain[:-64]) == obj()
