"""Pairwise streams of joint objects (protocol/joint_stream.py): every sixteenth
object of a stream, the first included, carries its chain key sealed with HPKE,
every object is sealed with the next key of the chain; replayed, tampered,
forged, misaddressed and out-of-stream objects are refused and leave the
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
from backchannel.protocol import joint_stream
from backchannel.protocol.identity import EpochKey
from backchannel.protocol.joint import JointKind, JointObject
from backchannel.protocol.joint_stream import StreamIn, StreamOut
from tests.conftest import DetRng

RNG = DetRng("joint-stream")
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


def ada_stream() -> StreamOut:
    return joint_stream.stream_for(None, BEN.cert, RNG)


def seal_run(count: int, stream: StreamOut | None = None) -> tuple[list[bytes], StreamOut]:
    """``count`` objects from Ada to Ben on one stream: the sealed objects, the stream after."""
    stream = stream or ada_stream()
    out = []
    for i in range(count):
        raw, stream = joint_stream.seal(
            obj(f"object {i}".encode(), i), ADA.officer, BEN.cert, KIT.mission_id, stream, RNG
        )
        out.append(raw)
    return out, stream


def ben_opens(raw: bytes, stream: StreamIn | None) -> tuple[JointObject, StreamIn]:
    return joint_stream.open_stream(
        raw, BEN.officer, BEN.epoch_keys, KIT.roster, KIT.mission_id, stream
    )


def read_all(sealed: list[bytes]) -> tuple[list[bytes], StreamIn | None]:
    stream: StreamIn | None = None
    bodies = []
    for raw in sealed:
        o, stream = ben_opens(raw, stream)
        bodies.append(o.body)
    return bodies, stream


def test_a_stream_carries_its_objects_in_order() -> None:
    sealed, after = seal_run(5)
    bodies, stream = read_all(sealed)
    assert bodies == [f"object {i}".encode() for i in range(5)]
    assert stream is not None and stream.n == 5 and after.n == 5
    # Sender and reader end on the same chain key: the next object opens.
    more, _ = seal_run(1, after)
    assert ben_opens(more[0], stream)[0].body == b"object 0"


def test_every_sixteenth_object_carries_the_encapsulation() -> None:
    sealed, _ = seal_run(18)
    opener = 4 + ENC_LEN + 32 + 16
    plain = len(sealed[1]) - len(b"object 1")
    for i, raw in enumerate(sealed):
        body = len(f"object {i}".encode())
        assert len(raw) - body == plain + (opener if i % joint_stream.REOPEN == 0 else 0), i
    # A co-signature-sized body costs a few hundred bytes, not an encapsulation.
    assert len(sealed[1]) < 200


def test_a_replayed_object_is_refused_and_the_reader_stays_put() -> None:
    sealed, _ = seal_run(3)
    _, stream = read_all(sealed[:2])
    assert stream is not None
    for old in sealed[:2]:
        with pytest.raises(ReplayDetected):
            ben_opens(old, stream)
    # The reader's end did not move: the next object still opens.
    assert ben_opens(sealed[2], stream)[0].body == b"object 2"


def test_a_first_object_replayed_on_a_known_stream_is_refused() -> None:
    sealed, _ = seal_run(2)
    _, stream = read_all(sealed)
    with pytest.raises(ReplayDetected):
        ben_opens(sealed[0], stream)


def test_objects_that_come_late_open_once() -> None:
    sealed, _ = seal_run(6)
    o, stream = ben_opens(sealed[0], None)
    o, stream = ben_opens(sealed[4], stream)  # 1 to 3 not here yet
    assert o.body == b"object 4" and stream.n == 5
    assert [p for p, _ in stream.skipped] == [1, 2, 3]
    o, stream = ben_opens(sealed[2], stream)  # late, but its key was kept
    assert o.body == b"object 2" and [p for p, _ in stream.skipped] == [1, 3]
    with pytest.raises(ReplayDetected):  # and only once
        ben_opens(sealed[2], stream)
    with pytest.raises(ReplayDetected):  # nor can one already read come again
        ben_opens(sealed[4], stream)
    assert ben_opens(sealed[5], stream)[0].body == b"object 5"


def test_only_so_many_passed_over_keys_are_kept() -> None:
    sealed, stream_out = seal_run(1)
    _, stream = ben_opens(sealed[0], None)
    jump = joint_stream.MAX_KEPT + 10
    far = StreamOut(stream_out.stream_id, stream_out.chain_key, stream_out.n, stream_out.epoch)
    raws = []
    for i in range(jump + 1):
        raw, far = joint_stream.seal(
            obj(n=i % 256), ADA.officer, BEN.cert, KIT.mission_id, far, RNG
        )
        raws.append(raw)
    _, stream = ben_opens(raws[-1], stream)
    assert len(stream.skipped) == joint_stream.MAX_KEPT
    assert ben_opens(raws[-2], stream)[0].body == b"please co-sign"  # a recent one, kept
    with pytest.raises(ReplayDetected):  # the oldest passed over were let go
        ben_opens(raws[0], stream)


def test_a_reader_that_lost_a_streams_beginning_joins_at_its_next_key() -> None:
    sealed, _ = seal_run(18)
    for raw in sealed[1:16]:
        with pytest.raises(AuthenticationError):
            ben_opens(raw, None)
    o, stream = ben_opens(sealed[16], None)
    assert o.body == b"object 16" and stream.n == 17 and stream.skipped == ()
    assert ben_opens(sealed[17], stream)[0].body == b"object 17"
    with pytest.raises(ReplayDetected):  # what came before the join cannot be told from a replay
        ben_opens(sealed[3], stream)


def test_an_object_carrying_a_key_is_not_a_way_back_into_a_stream() -> None:
    """Object 16 replayed once the reader has passed it: refused, though it
    carries the chain key of its position."""
    sealed, _ = seal_run(18)
    _, stream = read_all(sealed)
    assert stream is not None
    with pytest.raises(ReplayDetected):
        ben_opens(sealed[16], stream)


def test_a_jump_past_the_skip_bound_is_refused() -> None:
    sealed, stream_out = seal_run(1)
    _, stream = ben_opens(sealed[0], None)
    far = StreamOut(
        stream_out.stream_id,
        stream_out.chain_key,
        stream_out.n + joint_stream.MAX_SKIP + 1,
        stream_out.epoch,
    )
    raw, _ = joint_stream.seal(obj(), ADA.officer, BEN.cert, KIT.mission_id, far, RNG)
    with pytest.raises(DecodeError):
        ben_opens(raw, stream)


def test_a_later_object_of_a_stream_whose_first_never_arrived_is_refused() -> None:
    sealed, _ = seal_run(2)
    with pytest.raises(AuthenticationError):
        ben_opens(sealed[1], None)


@pytest.mark.parametrize("where", [0, 17, 20, 34, 40, -1])
def test_a_tampered_object_is_refused(where: int) -> None:
    sealed, _ = seal_run(2)
    _, stream = ben_opens(sealed[0], None)
    raw = bytearray(sealed[1])
    raw[where] ^= 0x01
    with pytest.raises((AuthenticationError, SignatureError, ReplayDetected, DecodeError)):
        ben_opens(bytes(raw), stream)
    assert ben_opens(sealed[1], stream)[0].body == b"object 1"


def test_a_tampered_opener_is_refused() -> None:
    sealed, _ = seal_run(1)
    raw = bytearray(sealed[0])
    raw[37 + 4 + 100] ^= 0x01  # inside the encapsulation
    with pytest.raises(AuthenticationError):
        ben_opens(bytes(raw), None)


def test_a_stream_opens_for_its_recipient_only() -> None:
    sealed, _ = seal_run(2)
    with pytest.raises(AuthenticationError):
        joint_stream.open_stream(
            sealed[0], CY.officer, CY.epoch_keys, KIT.roster, KIT.mission_id, None
        )


def test_a_stream_does_not_open_under_another_mission() -> None:
    sealed, _ = seal_run(1)
    with pytest.raises(AuthenticationError):
        joint_stream.open_stream(
            sealed[0], BEN.officer, BEN.epoch_keys, KIT.roster, OTHER.mission_id, None
        )


def test_an_object_moved_to_another_stream_does_not_open() -> None:
    """The stream id and position are authenticated: Ada's second object, relabelled
    as the second of another of her streams to Ben, opens under neither."""
    first, _ = seal_run(2)
    second, _ = seal_run(2)
    _, stream_b = ben_opens(second[0], None)
    moved = first[1][:17] + second[1][17:33] + first[1][33:]
    with pytest.raises(AuthenticationError):
        ben_opens(moved, stream_b)


def test_a_colleague_cannot_pass_a_stream_off_as_anothers() -> None:
    """Cy knows Ben's public key and may seal a chain key to it naming Ada as the
    sender; the object inside must still bear Ada's signature."""
    stream = joint_stream.stream_for(None, BEN.cert, RNG)
    o = JointObject(
        JointKind.COSIGNATURE, bytes(16), ADA.officer.officer_id, BEN.officer.officer_id, b"x"
    )
    raw = o.encode()
    sig = CY.officer.signing_key.sign_ed25519(labels.SIG_JOINT, raw)
    header = ADA.officer.officer_id + bytes([joint_stream.FORM]) + stream.stream_id + bytes(4)
    info = labels.HPKE_JOINT_STREAM + KIT.mission_id + ADA.officer.officer_id
    info += BEN.officer.officer_id + stream.stream_id + bytes(4)
    opener = stream.epoch.to_bytes(4, "big") + BEN.cert.public_key.seal(stream.chain_key, info)
    key = hmac_sha256(stream.chain_key, labels.JOINT_STREAM_KEY)
    nonce = bytes(12)
    aad = labels.JOINT_STREAM_AAD + KIT.mission_id + BEN.officer.officer_id + header + opener
    forged = header + opener + nonce + aead_seal(key, nonce, raw + sig, aad)
    with pytest.raises(SignatureError):
        ben_opens(forged, None)
    # The same bytes signed by Ada open: the forgery failed on the signature alone.
    sig = ADA.officer.signing_key.sign_ed25519(labels.SIG_JOINT, raw)
    genuine = header + opener + nonce + aead_seal(key, nonce, raw + sig, aad)
    assert ben_opens(genuine, None)[0].body == b"x"


def test_a_sender_off_the_roster_is_refused() -> None:
    outsider = OTHER.officers[0]
    stream = joint_stream.stream_for(None, BEN.cert, RNG)
    o = JointObject(
        JointKind.NOTICE, bytes(16), outsider.officer.officer_id, BEN.officer.officer_id, b"hi"
    )
    raw, _ = joint_stream.seal(o, outsider.officer, BEN.cert, KIT.mission_id, stream, RNG)
    with pytest.raises(SignatureError):
        ben_opens(raw, None)


def test_seal_refuses_an_object_naming_other_officers_or_another_key() -> None:
    stream = ada_stream()
    with pytest.raises(DecodeError):
        joint_stream.seal(obj(), CY.officer, BEN.cert, KIT.mission_id, stream, RNG)
    with pytest.raises(DecodeError):
        joint_stream.seal(obj(), ADA.officer, CY.cert, KIT.mission_id, stream, RNG)
    newer = EpochKey.generate(BEN.cert.epoch + 1, RNG).certify(BEN.officer)
    with pytest.raises(DecodeError):
        joint_stream.seal(obj(), ADA.officer, newer, KIT.mission_id, stream, RNG)


def test_a_new_stream_begins_at_a_new_key_epoch_and_after_its_last_object() -> None:
    stream = ada_stream()
    assert joint_stream.stream_for(stream, BEN.cert, RNG) is stream
    newer_key = EpochKey.generate(BEN.cert.epoch + 1, RNG)
    newer = newer_key.certify(BEN.officer)
    moved = joint_stream.stream_for(stream, newer, RNG)
    assert moved.stream_id != stream.stream_id and moved.n == 0 and moved.epoch == newer.epoch
    full = StreamOut(stream.stream_id, stream.chain_key, joint_stream.STREAM_OBJECTS, stream.epoch)
    assert joint_stream.stream_for(full, BEN.cert, RNG).stream_id != stream.stream_id
    # The reader picks the key by the epoch the opener names.
    raw, _ = joint_stream.seal(obj(), ADA.officer, newer, KIT.mission_id, moved, RNG)
    keys = [*BEN.epoch_keys, newer_key]
    o, _ = joint_stream.open_stream(raw, BEN.officer, keys, KIT.roster, KIT.mission_id, None)
    assert o.body == b"please co-sign"
    with pytest.raises(AuthenticationError):  # a device that no longer holds it
        ben_opens(raw, None)


def test_truncated_objects_are_decode_errors() -> None:
    sealed, _ = seal_run(2)
    _, stream = ben_opens(sealed[0], None)
    for cut in (36, 40, 37 + 100):
        with pytest.raises((DecodeError, AuthenticationError)):
            ben_opens(sealed[0][:cut], None)
    for cut in (37, 37 + 12 + 16):
        with pytest.raises((DecodeError, AuthenticationError)):
            ben_opens(sealed[1][:cut], stream)
    assert joint_stream.stream_of(sealed[0][:20]) is None
    with pytest.raises(DecodeError):
        ben_opens(sealed[0][:20], None)


def test_the_chain_is_the_hmacs_the_format_names() -> None:
    stream = ada_stream()
    key = hmac_sha256(stream.chain_key, labels.JOINT_STREAM_KEY)
    nxt = hmac_sha256(stream.chain_key, labels.JOINT_STREAM_CHAIN)
    raw, after = joint_stream.seal(obj(), ADA.officer, BEN.cert, KIT.mission_id, stream, RNG)
    assert after.chain_key == nxt and after.n == 1
    header, opener = raw[:37], raw[37 : 37 + 4 + ENC_LEN + 48]
    body = raw[37 + 4 + ENC_LEN + 48 :]
    aad = labels.JOINT_STREAM_AAD + KIT.mission_id + BEN.officer.officer_id + header + opener
    plain = aead_open(key, body[:12], body[12:], aad)
    assert JointObject.decode(plain[:-64]) == obj()
