"""The relay log's signed statements, and offline proofs that the relay lied.

Pure: no clock, no randomness, no I/O. The layouts are specified in
``docs/spec/relay-log-v1.md``; hashing is RFC 9162 (:mod:`.merkle`).

What the relay commits to
-------------------------
* **cell entry** ``len u8 | tenant_id (UTF-8) | slot [32] | cell_id [32]``,
  ``cell_id = SHA-256(cell)``. A batch tree is the RFC 9162 tree over the cell
  entries of the cells one store transaction created, in commit order.
* **log leaf** ``version u8 | batch_index u64 | batch_size u32 | batch_root [32]
  | coarse_time u64``: one per committed batch. ``batch_index`` is the leaf's
  index in the log.
* **signed head** ``TreeHead.encode() | Ed25519 signature [64] | ML-DSA-65
  signature [3309]`` (the hybrid signature) under the relay's key, context
  :data:`~backchannel.crypto.labels.SIG_TREE_HEAD`: 3,422 bytes, the *full*
  form. Its first 113 bytes, the head and the Ed25519 signature alone, are
  the *compact* form of the same statement (the hybrid signature's Ed25519
  half is an ordinary Ed25519 signature of ``label || head``). Deposit and
  fetch answers carry compact heads (a 3.4 KB head neither fits beside a
  message in a 4 KiB cell, where clients gossip heads, nor is it cheap to sign
  for every batch); ``GET /v1/log/head`` carries full ones. Either form is
  evidence. The relay fixes one head per log size when that size is
  committed; its timestamps never decrease as the size grows.

A client checks a cell with :func:`verify_cell_receipt` (entry in batch, batch
root in leaf, leaf in head) and heads over time with
:meth:`~backchannel.protocol.merkle.TreeHead.check_consistent`.

Proofs of misbehaviour
----------------------
``version u8 | kind u8 | relay key (Ed25519 [32] | ML-DSA-65 [1952]) |
len u16 | signed head A | len u16 | signed head B | kind-specific tail`` (each
head compact or full); see :func:`verify_misbehaviour`:

``FORK`` (1)
    A and B have the same size and different roots.
``REWIND`` (2)
    A is larger than B yet carries a strictly earlier timestamp: the relay
    signed a shorter log after a longer one.
``DIVERGENCE`` (3)
    Tail ``index u64 | leaf_a [32] | proof_a | leaf_b [32] | proof_b`` (each
    proof ``count u8 | count x [32]``): two different leaf hashes at the same
    index, each proved included in one of the heads. This is what inconsistent
    heads of different sizes look like as transferable evidence; a consistency
    proof that fails to verify is not evidence by itself (anyone can write a
    wrong proof), but the leaf the relay serves at that index, with its
    inclusion proofs in both heads, is.
``DROP`` (4)
    Tail ``len u16 | absence | slot [32] | entry proof``: the relay logged a
    cell at ``slot`` (the entry, proved in A) and later signed that the slot
    was empty at B (:class:`Absence`), within the retention it signed there.
``SLOT_CONFLICT`` (5)
    Tail ``len u8 | tenant | slot [32] | entry proof A | entry proof B``: two
    different cells logged at one slot (a replay or a reorder), within
    :data:`MIN_RETENTION_SECONDS` of each other. Slots are write-once.

Gossip
------
:class:`Gossip` is what a side puts in its channel cells about the relay the
cell travels through: its pinned compact head and a :class:`DepositNote` of
its latest logged deposit (``docs/spec/relay-log-v1.md`` §5).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from backchannel.crypto.labels import SIG_ABSENCE, SIG_TREE_HEAD
from backchannel.crypto.primitives import HASH_LEN
from backchannel.crypto.signing import (
    ED25519_PUBLIC_LEN,
    ED25519_SIG_LEN,
    HYBRID_SIG_LEN,
    MLDSA65_PUBLIC_LEN,
    SigningKey,
    VerifyKey,
)
from backchannel.errors import DecodeError, LocalProtocolError
from backchannel.protocol.codec import Reader, Writer, expect_version
from backchannel.protocol.constants import MIN_RETENTION_SECONDS, SLOT_LEN
from backchannel.protocol.merkle import (
    MAX_PROOF_LEN,
    TREE_HEAD_LEN,
    TreeHead,
    leaf_hash,
    verify_inclusion,
)

LEAF_VERSION = 1
LEAF_LEN = 1 + 8 + 4 + HASH_LEN + 8
SIGNED_HEAD_LEN = TREE_HEAD_LEN + HYBRID_SIG_LEN
COMPACT_HEAD_LEN = TREE_HEAD_LEN + ED25519_SIG_LEN
RELAY_KEY_LEN = ED25519_PUBLIC_LEN + MLDSA65_PUBLIC_LEN
MAX_TENANT_ID_BYTES = 255

#: Most slots one statement of absence names (a fetch asks for at most this many).
MAX_ABSENT_SLOTS = 1024


# -- Layouts ------------------------------------------------------------------


def cell_entry(tenant_id: str, slot: bytes, cell_id: bytes) -> bytes:
    """The batch-tree entry of one stored cell."""
    raw = tenant_id.encode("utf-8")
    if not 0 < len(raw) <= MAX_TENANT_ID_BYTES:
        raise LocalProtocolError("a tenant id must be 1 to 255 bytes of UTF-8")
    if len(slot) != HASH_LEN or len(cell_id) != HASH_LEN:
        raise LocalProtocolError("slot and cell id must be 32 bytes each")
    return bytes([len(raw)]) + raw + slot + cell_id


@dataclass(frozen=True, slots=True)
class LogLeaf:
    """One committed batch: ``version | batch_index | batch_size | batch_root | coarse_time``."""

    batch_index: int
    batch_size: int
    batch_root: bytes
    coarse_time: int

    def __post_init__(self) -> None:
        if not (
            0 <= self.batch_index < 1 << 64
            and 0 < self.batch_size < 1 << 32
            and 0 <= self.coarse_time < 1 << 64
            and len(self.batch_root) == HASH_LEN
        ):
            raise LocalProtocolError("log leaf fields are out of range")

    def encode(self) -> bytes:
        return (
            Writer()
            .u8(LEAF_VERSION)
            .u64(self.batch_index)
            .u32(self.batch_size)
            .fixed(self.batch_root, HASH_LEN)
            .u64(self.coarse_time)
            .bytes()
        )

    @classmethod
    def decode(cls, raw: bytes) -> LogLeaf:
        r = Reader(raw)
        expect_version(r, LEAF_VERSION, "log leaf")
        index, size, root, when = r.u64(), r.u32(), r.fixed(HASH_LEN), r.u64()
        r.end()
        if size == 0:
            raise DecodeError("a log leaf covers at least one cell")
        return cls(index, size, root, when)


# -- Signed heads -------------------------------------------------------------


def relay_key_bytes(key: VerifyKey) -> bytes:
    return key.ed25519 + key.mldsa65


def relay_key_from_bytes(raw: bytes) -> VerifyKey:
    if len(raw) != RELAY_KEY_LEN:
        raise DecodeError("a relay key is 1,984 bytes (Ed25519 then ML-DSA-65)")
    return VerifyKey(raw[:ED25519_PUBLIC_LEN], raw[ED25519_PUBLIC_LEN:])


def relay_key_fingerprint(key: VerifyKey) -> bytes:
    """SHA-256 of the Ed25519 public key followed by the ML-DSA-65 public key."""
    return hashlib.sha256(relay_key_bytes(key)).digest()


@dataclass(frozen=True, slots=True)
class SignedHead:
    """A tree head and the relay's signature: hybrid (full) or Ed25519 (compact)."""

    head: TreeHead
    signature: bytes

    @property
    def is_full(self) -> bool:
        return len(self.signature) == HYBRID_SIG_LEN

    def encode(self) -> bytes:
        return self.head.encode() + self.signature

    def compact(self) -> SignedHead:
        """The same statement with the Ed25519 signature alone."""
        return SignedHead(self.head, self.signature[:ED25519_SIG_LEN])

    @classmethod
    def decode(cls, raw: bytes) -> SignedHead:
        if len(raw) not in (SIGNED_HEAD_LEN, COMPACT_HEAD_LEN):
            raise DecodeError("a signed tree head is 113 (compact) or 3,422 (full) bytes")
        return cls(TreeHead.decode(raw[:TREE_HEAD_LEN]), raw[TREE_HEAD_LEN:])

    def verify(self, key: VerifyKey) -> None:
        """Raise :class:`SignatureError` unless the signature(s) verify under ``key``."""
        data = self.head.encode()
        if self.is_full:
            key.verify_hybrid(self.signature, SIG_TREE_HEAD, data)
        else:
            key.verify_ed25519(self.signature, SIG_TREE_HEAD, data)


def sign_head(key: SigningKey, head: TreeHead) -> bytes:
    """The full signed head: ``head.encode() || Ed25519 || ML-DSA-65``."""
    data = head.encode()
    return data + key.sign_hybrid(SIG_TREE_HEAD, data)


def sign_head_compact(key: SigningKey, head: TreeHead) -> bytes:
    """The compact signed head: ``head.encode() || Ed25519`` (a prefix of the full one)."""
    data = head.encode()
    return data + key.sign_ed25519(SIG_TREE_HEAD, data)


def open_signed_head(raw: bytes, key: VerifyKey) -> TreeHead:
    """Decode a signed head (either form) and check it; the head, or an exception."""
    signed = SignedHead.decode(raw)
    signed.verify(key)
    return signed.head


# -- Client-side check of one cell ------------------------------------------------


def verify_cell_receipt(
    *,
    tenant_id: str,
    slot: bytes,
    cell: bytes,
    leaf: bytes,
    batch_position: int,
    batch_proof: Sequence[bytes],
    inclusion_proof: Sequence[bytes],
    head: TreeHead,
) -> LogLeaf:
    """Check that ``cell`` at ``slot`` is in the log under ``head`` (already verified).

    ``leaf`` is the log leaf's bytes (``GET /v1/log/leaves/{index}``). Raises
    :class:`ProofError` or :class:`DecodeError`; returns the decoded leaf.
    """
    decoded = LogLeaf.decode(leaf)
    entry = leaf_hash(cell_entry(tenant_id, slot, hashlib.sha256(cell).digest()))
    verify_inclusion(entry, batch_position, decoded.batch_size, batch_proof, decoded.batch_root)
    verify_inclusion(leaf_hash(leaf), decoded.batch_index, head.size, inclusion_proof, head.root)
    return decoded


# -- Proof lists -----------------------------------------------------------------


def write_proof(w: Writer, proof: Sequence[bytes]) -> None:
    if len(proof) > MAX_PROOF_LEN:
        raise LocalProtocolError("proof is longer than any tree allows")
    w.u8(len(proof))
    for h in proof:
        w.fixed(h, HASH_LEN)


def read_proof(r: Reader) -> list[bytes]:
    n = r.u8()
    if n > MAX_PROOF_LEN:
        raise DecodeError("proof is longer than any tree allows")
    return [r.fixed(HASH_LEN) for _ in range(n)]


# -- One cell entry proved in a head ------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryProof:
    """A cell entry's place in the log: ``cell_id`` in its batch, the batch's leaf in a head.

    Layout ``cell_id [32] | leaf [53] | batch_position u32 | batch_proof |
    inclusion_proof`` (each proof ``count u8 | count x [32]``).
    """

    cell_id: bytes
    leaf: bytes
    batch_position: int
    batch_proof: tuple[bytes, ...]
    inclusion_proof: tuple[bytes, ...]

    def verify(self, tenant_id: str, slot: bytes, head: TreeHead) -> LogLeaf:
        """Check that ``(tenant_id, slot, cell_id)`` is in the log under ``head``."""
        decoded = LogLeaf.decode(self.leaf)
        entry = leaf_hash(cell_entry(tenant_id, slot, self.cell_id))
        verify_inclusion(
            entry, self.batch_position, decoded.batch_size, self.batch_proof, decoded.batch_root
        )
        verify_inclusion(
            leaf_hash(self.leaf), decoded.batch_index, head.size, self.inclusion_proof, head.root
        )
        return decoded

    def write(self, w: Writer) -> None:
        w.fixed(self.cell_id, HASH_LEN).fixed(self.leaf, LEAF_LEN).u32(self.batch_position)
        write_proof(w, self.batch_proof)
        write_proof(w, self.inclusion_proof)

    @classmethod
    def read(cls, r: Reader) -> EntryProof:
        cell_id, leaf, position = r.fixed(HASH_LEN), r.fixed(LEAF_LEN), r.u32()
        return cls(cell_id, leaf, position, tuple(read_proof(r)), tuple(read_proof(r)))


# -- Statements of absence ----------------------------------------------------------


def write_tenant(w: Writer, tenant_id: str) -> None:
    raw = tenant_id.encode("utf-8")
    if not 0 < len(raw) <= MAX_TENANT_ID_BYTES:
        raise LocalProtocolError("a tenant id must be 1 to 255 bytes of UTF-8")
    w.u8(len(raw)).fixed(raw, len(raw))


def read_tenant(r: Reader) -> str:
    n = r.u8()
    try:
        text = r.fixed(n).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("a tenant id must be UTF-8") from None
    if not text:
        raise DecodeError("a tenant id must not be empty")
    return text


#: Bit 15 of a statement of absence's count: a list of spent slots follows.
_SPENT_FOLLOWS = 0x8000


@dataclass(frozen=True, slots=True)
class Absence:
    """The relay's signed word that ``slots`` of ``tenant_id`` held no cell,
    and that ``spent`` held one its tenant acknowledged (deleted).

    ``head`` is the log's head in the same read that found the slots empty,
    ``served_at`` the relay's clock (seconds) when it answered. Layout
    ``tree_head [49] | served_at u64 | retention u32 | len u8 | tenant_id |
    count u16 | slots [32] each, ascending | [spent_count u16 | spent [32] each,
    ascending] | Ed25519 signature [64]``; bit 15 of ``count`` says whether the
    spent list follows (a statement without one is as it always was); the
    signature covers everything before it under
    :data:`~backchannel.crypto.labels.SIG_ABSENCE`. ``retention`` is how long
    (seconds, at least :data:`MIN_RETENTION_SECONDS`) the relay says it keeps
    every cell after its batch: the window in which this statement can prove a
    drop.
    """

    head: TreeHead
    served_at: int
    tenant_id: str
    slots: tuple[bytes, ...]
    signature: bytes = b""
    retention: int = MIN_RETENTION_SECONDS
    #: Slots that held a cell the tenant has since acknowledged: not empty (a
    #: slot is written once), and signed so that the relay answers for it.
    spent: tuple[bytes, ...] = ()

    def statement(self) -> bytes:
        if not 0 < len(self.slots) + len(self.spent) <= MAX_ABSENT_SLOTS:
            raise LocalProtocolError("a statement of absence names 1 to 1,024 slots")
        for group in (self.slots, self.spent):
            if any(len(s) != SLOT_LEN for s in group) or list(group) != sorted(set(group)):
                raise LocalProtocolError(
                    "absent and spent slots must be distinct, ascending, 32 bytes each"
                )
        if set(self.slots) & set(self.spent):
            raise LocalProtocolError("a slot is either empty or spent")
        if not MIN_RETENTION_SECONDS <= self.retention < 1 << 32:
            raise LocalProtocolError("a relay keeps cells at least an hour")
        w = Writer().fixed(self.head.encode(), TREE_HEAD_LEN).u64(self.served_at)
        w.u32(self.retention)
        write_tenant(w, self.tenant_id)
        w.u16(len(self.slots) | (_SPENT_FOLLOWS if self.spent else 0))
        for slot in self.slots:
            w.fixed(slot, SLOT_LEN)
        if self.spent:
            w.u16(len(self.spent))
            for slot in self.spent:
                w.fixed(slot, SLOT_LEN)
        return w.bytes()

    @classmethod
    def make(
        cls,
        key: SigningKey,
        head: TreeHead,
        served_at: int,
        tenant_id: str,
        slots: Sequence[bytes],
        retention: int = MIN_RETENTION_SECONDS,
        spent: Sequence[bytes] = (),
    ) -> Absence:
        unsigned = cls(
            head, served_at, tenant_id, tuple(sorted(set(slots))), b"", retention,
            tuple(sorted(set(spent))),
        )  # fmt: skip
        signature = key.sign_ed25519(SIG_ABSENCE, unsigned.statement())
        return replace(unsigned, signature=signature)

    def encode(self) -> bytes:
        return self.statement() + self.signature

    @classmethod
    def decode(cls, raw: bytes) -> Absence:
        r = Reader(raw)
        absence = cls.read(r)
        r.end()
        return absence

    @classmethod
    def read(cls, r: Reader) -> Absence:
        head = TreeHead.decode(r.fixed(TREE_HEAD_LEN))
        served_at, retention = r.u64(), r.u32()
        if retention < MIN_RETENTION_SECONDS:
            raise DecodeError("a relay keeps cells at least an hour")
        tenant_id, field = read_tenant(r), r.u16()
        follows, count = bool(field & _SPENT_FOLLOWS), field & ~_SPENT_FOLLOWS
        if not (0 if follows else 1) <= count <= MAX_ABSENT_SLOTS:
            raise DecodeError("a statement of absence names 1 to 1,024 slots")
        slots = tuple(r.fixed(SLOT_LEN) for _ in range(count))
        spent: tuple[bytes, ...] = ()
        if follows:
            n = r.u16()
            if not 0 < n <= MAX_ABSENT_SLOTS - count:
                raise DecodeError("a statement of absence names 1 to 1,024 slots")
            spent = tuple(r.fixed(SLOT_LEN) for _ in range(n))
        for group in (slots, spent):
            if list(group) != sorted(set(group)):
                raise DecodeError("absent and spent slots must be distinct and ascending")
        if set(slots) & set(spent):
            raise DecodeError("a slot is either empty or spent")
        sig = r.fixed(ED25519_SIG_LEN)
        return cls(head, served_at, tenant_id, slots, sig, retention, spent)

    def verify(self, key: VerifyKey) -> None:
        key.verify_ed25519(self.signature, SIG_ABSENCE, self.statement())


# -- Gossip inside a channel's cells ------------------------------------------------


@dataclass(frozen=True, slots=True)
class DepositNote:
    """Where the sender's latest acknowledged cell to the peer sits in the log."""

    round: int
    cell_id: bytes
    leaf_index: int
    batch_position: int


#: ``head [113] | has_note u8 | round u64 | cell_id [32] | leaf_index u64 | batch_position u32``
GOSSIP_LEN = COMPACT_HEAD_LEN + 1 + 8 + HASH_LEN + 8 + 4


@dataclass(frozen=True, slots=True)
class Gossip:
    """What a side tells its peer, inside an encrypted cell, about the relay's log.

    ``head`` is the largest compact signed head the sender has verified for
    the relay the cell travels through; ``note`` names the sender's latest
    cell that relay acknowledged with a place in its log (``None`` before the
    first). Fixed length (:data:`GOSSIP_LEN`) so that it shows in no cell's size.
    """

    head: bytes
    note: DepositNote | None = None

    def encode(self) -> bytes:
        if len(self.head) != COMPACT_HEAD_LEN:
            raise LocalProtocolError("gossip carries a compact signed head (113 bytes)")
        w = Writer().fixed(self.head, COMPACT_HEAD_LEN)
        n = self.note
        if n is None:
            w.u8(0).u64(0).fixed(bytes(HASH_LEN), HASH_LEN).u64(0).u32(0)
        else:
            w.u8(1).u64(n.round).fixed(n.cell_id, HASH_LEN).u64(n.leaf_index)
            w.u32(n.batch_position)
        return w.bytes()

    @classmethod
    def read(cls, r: Reader) -> Gossip:
        head = r.fixed(COMPACT_HEAD_LEN)
        TreeHead.decode(head[:TREE_HEAD_LEN])
        has = r.u8()
        note = DepositNote(r.u64(), r.fixed(HASH_LEN), r.u64(), r.u32())
        empty = DepositNote(0, bytes(HASH_LEN), 0, 0)
        if has not in (0, 1) or (has == 0 and note != empty):
            raise DecodeError("malformed gossip")
        return cls(head, note if has else None)
