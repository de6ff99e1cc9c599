"""Joint objects between officers of one mission: sealing, addressing, and the
mailbox cells that carry them (protocol/joint.py on its own, without a client)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from backchannel.client.harness import MissionKit
from backchannel.crypto import labels
from backchannel.crypto.primitives import NONCE_LEN, TAG_LEN
from backchannel.errors import AuthenticationError, DecodeError, SignatureError
from backchannel.protocol import joint
from backchannel.protocol.identity import EpochKey
from backchannel.protocol.joint import JointKind, JointObject
from tests.conftest import DetRng

RNG = DetRng("joint")
KIT = MissionKit.create("Geneva", ["Ada", "Ben", "Cy"], 2, RNG)
OTHER = MissionKit.create("Oslo", ["Dee", "Eve"], 2, RNG)
ADA, BEN, CY = KIT.officers
SECRET = bytes(range(32))
CELL = 512


def obj(body: bytes = b"please co-sign", kind: JointKind = JointKind.COSIGN_REQUEST) -> JointObject:
    return JointObject(kind, bytes([7]) * 16, ADA.officer.officer_id, BEN.officer.officer_id, body)


def sealed(o: JointObject | None = None) -> bytes:
    return joint.seal_object(o or obj(), ADA.officer, BEN.cert, KIT.mission_id)


def open_as_ben(raw: bytes, keys: list[EpochKey] | None = None) -> JointObject:
    return joint.open_object(raw, BEN.officer, keys or BEN.epoch_keys, KIT.roster, KIT.mission_id)


# -- the object ----------------------------------------------------------------------


def test_object_layout_and_round_trip() -> None:
    o = obj()
    raw = o.encode()
    assert raw[:2] == bytes([1, JointKind.COSIGN_REQUEST])
    assert raw[2:18] == o.object_id
    assert raw[18:34] == o.sender_id and raw[34:50] == o.recipient_id
    assert raw[50:54] == len(o.body).to_bytes(4, "big") and raw[54:] == o.body
    assert JointObject.decode(raw) == o
    assert repr(o) == f"JointObject(COSIGN_REQUEST, {len(o.body)} bytes)"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda raw: b"\x02" + raw[1:],  # version
        lambda raw: raw[:1] + b"\x00" + raw[2:],  # kind 0
        lambda raw: raw[:1] + b"\xff" + raw[2:],  # unknown kind
        lambda raw: raw + b"\x00",  # trailing byte
        lambda raw: raw[:-1],  # truncated body
        lambda raw: raw[:40],  # truncated ids
    ],
)
def test_malformed_objects_are_decode_errors(mutate) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DecodeError):
        JointObject.decode(mutate(obj().encode()))


def test_a_body_over_the_limit_is_refused() -> None:
    big = JointObject(JointKind.NOTICE, bytes(16), bytes(16), bytes(16), bytes(joint.MAX_BODY + 1))
    with pytest.raises(DecodeError, match="too long"):
        JointObject.decode(big.encode())
    at_limit = JointObject(JointKind.NOTICE, bytes(16), bytes(16), bytes(16), bytes(joint.MAX_BODY))
    assert JointObject.decode(at_limit.encode()) == at_limit


# -- sealing and opening -----------------------------------------------------------------


def test_sealed_object_opens_for_its_recipient_only() -> None:
    raw = sealed()
    assert raw[:16] == ADA.officer.officer_id  # the sender travels in clear, for the key lookup
    assert open_as_ben(raw) == obj()
    with pytest.raises(AuthenticationError, match="decryption failed"):
        joint.open_object(raw, CY.officer, CY.epoch_keys, KIT.roster, KIT.mission_id)


def test_opening_under_another_mission_id_fails() -> None:
    with pytest.raises(AuthenticationError):
        joint.open_object(sealed(), BEN.officer, BEN.epoch_keys, KIT.roster, OTHER.mission_id)


def test_seal_refuses_an_object_naming_other_officers() -> None:
    with pytest.raises(DecodeError, match=r"^joint object names other officers$"):
        joint.seal_object(obj(), CY.officer, BEN.cert, KIT.mission_id)  # sender is not Ada
    with pytest.raises(DecodeError, match=r"^joint object names other officers$"):
        joint.seal_object(obj(), ADA.officer, CY.cert, KIT.mission_id)  # recipient is not Ben


def test_a_sender_off_the_roster_is_refused_before_decrypting() -> None:
    outsider = OTHER.officers[0]
    o = JointObject(
        JointKind.NOTICE, bytes(16), outsider.officer.officer_id, BEN.officer.officer_id, b"x"
    )
    raw = joint.seal_object(o, outsider.officer, BEN.cert, KIT.mission_id)
    with pytest.raises(SignatureError, match=r"^joint object from an officer not on our roster$"):
        open_as_ben(raw)


def test_a_claimed_sender_must_have_signed() -> None:
    """Cy seals an object in Ada's name: the box opens, Ada's signature does not verify."""
    o = obj()
    raw = o.encode()
    from backchannel.crypto import labels

    sig = CY.officer.signing_key.sign_ed25519(labels.SIG_JOINT, raw)
    info = labels.HPKE_JOINT + KIT.mission_id + ADA.officer.officer_id + BEN.officer.officer_id
    forged = ADA.officer.officer_id + BEN.cert.public_key.seal(raw + sig, info)
    with pytest.raises(SignatureError):
        open_as_ben(forged)


def test_an_object_signed_for_someone_else_is_refused() -> None:
    """Ada's signed object addressed to Cy, re-sealed to Ben, is not Ben's."""
    from backchannel.crypto import labels

    o = JointObject(
        JointKind.NOTICE, bytes(16), ADA.officer.officer_id, CY.officer.officer_id, b"x"
    )
    raw = o.encode()
    sig = ADA.officer.signing_key.sign_ed25519(labels.SIG_JOINT, raw)
    info = labels.HPKE_JOINT + KIT.mission_id + ADA.officer.officer_id + BEN.officer.officer_id
    box = ADA.officer.officer_id + BEN.cert.public_key.seal(raw + sig, info)
    with pytest.raises(SignatureError, match=r"^joint object was addressed to someone else$"):
        open_as_ben(box)


def test_short_or_tampered_boxes_are_refused() -> None:
    raw = sealed()
    with pytest.raises(DecodeError, match=r"^joint object too short$"):
        open_as_ben(raw[:15])
    flipped = bytearray(raw)
    flipped[-1] ^= 1
    with pytest.raises(AuthenticationError):
        open_as_ben(bytes(flipped))
    with pytest.raises(AuthenticationError):
        open_as_ben(raw[:16])


def test_an_older_epoch_key_still_opens_and_the_newest_is_tried_first() -> None:
    newer = EpochKey.generate(2, RNG)
    keys = [*BEN.epoch_keys, newer]
    assert open_as_ben(sealed(), keys) == obj()  # sealed to epoch 1: found after the newest failed
    with pytest.raises(AuthenticationError):
        open_as_ben(sealed(), [newer])


# -- mailbox cells ----------------------------------------------------------------------


def test_mailbox_slots_depend_on_every_input() -> None:
    a, b = ADA.officer.officer_id, BEN.officer.officer_id
    base = joint.mailbox_slot(SECRET, a, b, 5)
    assert len(base) == 32
    assert base == joint.mailbox_slot(SECRET, a, b, 5)
    others = {
        joint.mailbox_slot(SECRET, a, b, 6),
        joint.mailbox_slot(SECRET, b, a, 5),
        joint.mailbox_slot(bytes(32), a, b, 5),
    }
    assert base not in others and len(others) == 3


def test_capacity_and_cells_needed() -> None:
    cap = joint.chunk_capacity(CELL)
    assert cap == CELL - NONCE_LEN - TAG_LEN - (1 + 16 + 6)
    assert joint.cells_needed(0, CELL) == 1
    assert joint.cells_needed(1, CELL) == 1
    assert joint.cells_needed(cap, CELL) == 1
    assert joint.cells_needed(cap + 1, CELL) == 2
    assert joint.cells_needed(3 * cap, CELL) == 3


def test_split_object_pieces() -> None:
    cap = joint.chunk_capacity(CELL)
    assert joint.split_object(b"", CELL) == [b""]
    data = bytes(range(256)) * 4
    pieces = joint.split_object(data, CELL)
    assert b"".join(pieces) == data
    assert [len(p) for p in pieces] == [cap] * (len(data) // cap) + [len(data) % cap]
    with pytest.raises(DecodeError, match=r"^joint object too large$"):
        joint.split_object(bytes(0x10000), joint._CHUNK_HEADER + NONCE_LEN + TAG_LEN + 1)


def _slots(n: int) -> list[bytes]:
    a, b = ADA.officer.officer_id, BEN.officer.officer_id
    return [joint.mailbox_slot(SECRET, a, b, i) for i in range(n)]


def test_an_object_travels_in_cells_and_joins_back() -> None:
    raw = sealed(obj(b"x" * 1500))
    n = joint.cells_needed(len(raw), CELL)
    assert n > 2
    slots = _slots(n)
    oid = bytes([9]) * 16
    cells = joint.to_cells(raw, oid, slots, SECRET, CELL, RNG)
    assert [len(c) for c in cells] == [CELL] * n
    chunks = [joint.open_cell(c, s, SECRET, CELL) for c, s in zip(cells, slots, strict=True)]
    assert [(c.object_id, c.index, c.count) for c in chunks] == [(oid, i, n) for i in range(n)]
    assert not any(c.is_cover for c in chunks)
    assert joint.join_chunks(chunks) == raw
    assert open_as_ben(joint.join_chunks(chunks)).body == b"x" * 1500


def test_slot_count_must_match_the_object() -> None:
    raw = sealed()
    n = joint.cells_needed(len(raw), CELL)
    with pytest.raises(DecodeError, match=r"^slot count does not match the object size$"):
        joint.to_cells(raw, bytes(16), _slots(n + 1), SECRET, CELL, RNG)


def test_a_cell_opens_only_in_its_own_slot_and_under_the_mission_secret() -> None:
    slot, other = _slots(2)
    cell = joint.chunk_cell(slot, bytes([1]) * 16, 0, 1, b"data", SECRET, CELL, RNG)
    assert joint.open_cell(cell, slot, SECRET, CELL).data == b"data"
    with pytest.raises(AuthenticationError):
        joint.open_cell(cell, other, SECRET, CELL)
    with pytest.raises(AuthenticationError):
        joint.open_cell(cell, slot, bytes(32), CELL)
    with pytest.raises(DecodeError, match="exactly"):
        joint.open_cell(cell[:-1], slot, SECRET, CELL)


def test_cover_cells_are_sealed_empty_pieces() -> None:
    slot = _slots(1)[0]
    cover = joint.cover_cell(slot, SECRET, CELL, RNG)
    assert len(cover) == CELL
    chunk = joint.open_cell(cover, slot, SECRET, CELL)
    assert chunk.is_cover and (chunk.index, chunk.count, chunk.data) == (0, 1, b"")
    assert joint.cover_cell(slot, SECRET, CELL, RNG) != cover  # a fresh nonce each time


def _sealed_body(slot: bytes, body: bytes) -> bytes:
    """A cell whose plaintext is ``body`` (padded), sealed under the right key."""
    from backchannel.crypto.primitives import aead_seal

    inner = body + bytes(CELL - NONCE_LEN - TAG_LEN - len(body))
    nonce = bytes(NONCE_LEN)
    # The cell key as the format says: HMAC(mission_secret, label || slot), computed here.
    key = hmac.new(SECRET, labels.JOINT_CELL + slot, hashlib.sha256).digest()
    return nonce + aead_seal(key, nonce, inner, slot)


def test_malformed_cell_plaintexts_are_decode_errors() -> None:
    slot = _slots(1)[0]
    good = bytes([1]) + bytes(16) + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    assert (
        joint.open_cell(_sealed_body(slot, good + b"\x00\x02ab"), slot, SECRET, CELL).data == b"ab"
    )
    with pytest.raises(DecodeError, match=r"^unsupported joint cell version 2; expected 1$"):
        joint.open_cell(_sealed_body(slot, b"\x02" + good[1:] + b"\x00\x00"), slot, SECRET, CELL)
    index_at_count = bytes([1]) + bytes(16) + (1).to_bytes(2, "big") + (1).to_bytes(2, "big")
    with pytest.raises(DecodeError, match=r"^joint cell numbering out of range$"):
        joint.open_cell(_sealed_body(slot, index_at_count + b"\x00\x00"), slot, SECRET, CELL)
    with pytest.raises(DecodeError, match=r"^joint cell padding is not zero$"):
        joint.open_cell(_sealed_body(slot, good + b"\x00\x02ab\x00\x01"), slot, SECRET, CELL)
    with pytest.raises(DecodeError, match="truncated"):
        joint.open_cell(_sealed_body(slot, good + b"\xff\xff"), slot, SECRET, CELL)


def test_join_refuses_missing_or_inconsistent_pieces() -> None:
    a, b = bytes([1]) * 16, bytes([2]) * 16
    pieces = [joint.Chunk(a, 0, 2, b"he"), joint.Chunk(a, 1, 2, b"llo")]
    assert joint.join_chunks(pieces) == b"hello"
    with pytest.raises(DecodeError, match=r"^joint object is incomplete$"):
        joint.join_chunks([])
    with pytest.raises(DecodeError, match=r"^joint object is incomplete$"):
        joint.join_chunks(pieces[:1])
    with pytest.raises(DecodeError, match=r"^joint object chunks are inconsistent$"):
        joint.join_chunks(pieces[::-1])
    with pytest.raises(DecodeError, match=r"^joint object chunks are inconsistent$"):
        joint.join_chunks([pieces[0], joint.Chunk(b, 1, 2, b"llo")])


def test_the_object_decoder_names_what_is_wrong() -> None:
    raw = obj().encode()
    with pytest.raises(DecodeError, match=r"^unsupported joint object version 2; expected 1$"):
        JointObject.decode(b"\x02" + raw[1:])
    with pytest.raises(DecodeError, match=r"^unknown joint object kind$"):
        JointObject.decode(raw[:1] + b"\xff" + raw[2:])


def test_a_plaintext_of_a_signature_alone_is_not_an_object() -> None:
    """64 bytes open to an empty object under a signature that cannot verify; 63 are too short."""
    info = labels.HPKE_JOINT + KIT.mission_id + ADA.officer.officer_id + BEN.officer.officer_id
    for size, error in ((64, SignatureError), (63, AuthenticationError)):
        box = ADA.officer.officer_id + BEN.cert.public_key.seal(bytes(size), info)
        with pytest.raises(error):
            open_as_ben(box)


def test_a_slot_is_the_hmac_the_format_names() -> None:
    a, b = ADA.officer.officer_id, BEN.officer.officer_id
    data = labels.JOINT_SLOT + a + b + (5).to_bytes(8, "big")
    assert joint.mailbox_slot(SECRET, a, b, 5) == hmac.new(SECRET, data, hashlib.sha256).digest()


def test_an_object_of_one_piece_joins() -> None:
    assert joint.join_chunks([joint.Chunk(bytes([3]) * 16, 0, 1, b"whole")]) == b"whole"


def test_an_object_of_exactly_65535_pieces_is_allowed() -> None:
    tiny = joint._CHUNK_HEADER + NONCE_LEN + TAG_LEN + 1  # one byte per piece
    assert len(joint.split_object(bytes(0xFFFF), tiny)) == 0xFFFF
    with pytest.raises(DecodeError, match=r"^joint object too large$"):
        joint.split_object(bytes(0x10000), tiny)


# -- whole objects behind a last piece (several in one cell) ---------------------------


def _ids(n: int) -> list[bytes]:
    return [bytes([i + 1]) * 16 for i in range(n)]


def test_whole_objects_ride_behind_a_last_piece_in_order() -> None:
    slot = _slots(1)[0]
    a, b, c = _ids(3)
    chunks = [
        joint.Chunk(a, 2, 3, b"tail of a"),
        joint.Chunk(b, 0, 1, b"all of b"),
        joint.Chunk(c, 0, 1, b"all of c"),
    ]
    cell = joint.pack_cell(slot, chunks, SECRET, CELL, RNG)
    assert len(cell) == CELL
    assert joint.open_chunks(cell, slot, SECRET, CELL) == chunks
    # The one-piece reader (pairing) refuses a cell that carries more.
    with pytest.raises(DecodeError, match="padding is not zero"):
        joint.open_cell(cell, slot, SECRET, CELL)


def test_room_after_is_exactly_what_still_fits() -> None:
    slot = _slots(1)[0]
    first = [joint.Chunk(_ids(1)[0], 0, 1, b"x" * 100)]
    room = joint.room_after(first, CELL)
    fits = [*first, joint.Chunk(_ids(2)[1], 0, 1, b"y" * room)]
    assert (
        len(joint.open_chunks(joint.pack_cell(slot, fits, SECRET, CELL, RNG), slot, SECRET, CELL))
        == 2
    )
    over = [*first, joint.Chunk(_ids(2)[1], 0, 1, b"y" * (room + 1))]
    with pytest.raises(ValueError, match="larger than the cell"):
        joint.pack_cell(slot, over, SECRET, CELL, RNG)


def test_a_cover_piece_travels_alone() -> None:
    slot = _slots(1)[0]
    cover = joint.Chunk(joint.COVER_ID, 0, 1, b"")
    with pytest.raises(ValueError, match="cover piece only alone"):
        joint.pack_cell(slot, [joint.Chunk(_ids(1)[0], 0, 1, b"a"), cover], SECRET, CELL, RNG)


def test_what_follows_a_piece_that_is_not_an_objects_last_is_refused() -> None:
    slot = _slots(1)[0]
    a, b = _ids(2)

    def piece(oid: bytes, index: int, count: int, data: bytes) -> bytes:
        return (
            oid
            + index.to_bytes(2, "big")
            + count.to_bytes(2, "big")
            + len(data).to_bytes(2, "big")
            + data
        )

    # Behind a middle piece nothing may follow (the bytes are not padding).
    body = b"\x01" + piece(a, 0, 2, b"head") + piece(b, 0, 1, b"smuggled")
    with pytest.raises(DecodeError, match="padding is not zero"):
        joint.open_chunks(_sealed_body(slot, body), slot, SECRET, CELL)
    # Behind a last piece, only pieces that begin their object.
    body = b"\x01" + piece(a, 1, 2, b"tail") + piece(b, 1, 2, b"middle")
    with pytest.raises(DecodeError, match="must begin its object"):
        joint.open_chunks(_sealed_body(slot, body), slot, SECRET, CELL)
    # The first piece of an object of several ends the cell: nothing may follow it.
    body = b"\x01" + piece(a, 0, 1, b"whole") + piece(b, 0, 2, b"head") + piece(a, 0, 1, b"x")
    with pytest.raises(DecodeError, match="padding is not zero"):
        joint.open_chunks(_sealed_body(slot, body), slot, SECRET, CELL)
    # A truncated piece behind another.
    body = b"\x01" + piece(a, 0, 1, b"one") + b + b"\x00\x00\x00\x01\xff\xff"
    with pytest.raises(DecodeError):
        joint.open_chunks(_sealed_body(slot, body), slot, SECRET, CELL)


def test_an_object_begun_behind_others_joins_from_a_head_of_any_size() -> None:
    data = bytes(range(256)) * 9  # 2,304 bytes
    for head in (1, 100, joint.chunk_capacity(CELL)):
        pieces = joint.split_object(data, CELL, head)
        assert len(pieces[0]) == head
        assert all(len(p) <= joint.chunk_capacity(CELL) for p in pieces)
        chunks = [joint.Chunk(bytes([9]) * 16, i, len(pieces), p) for i, p in enumerate(pieces)]
        assert joint.join_chunks(chunks) == data
    # A head the object does not need (or cannot take) is the plain split.
    assert joint.split_object(data, CELL, len(data)) == joint.split_object(data, CELL)


def test_a_head_piece_rides_last_behind_whole_objects() -> None:
    slot = _slots(1)[0]
    a, b, c = _ids(3)
    first = [joint.Chunk(a, 0, 1, b"whole a"), joint.Chunk(b, 0, 1, b"whole b")]
    room = joint.room_after(first, CELL)
    head = joint.Chunk(c, 0, 3, b"h" * room)
    cell = joint.pack_cell(slot, [*first, head], SECRET, CELL, RNG)
    assert joint.open_chunks(cell, slot, SECRET, CELL) == [*first, head]
