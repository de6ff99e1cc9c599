"""Proofs of relay misbehaviour: two signed statements of the relay that contradict
each other, encoded so that anyone can check them offline (relay-log-v1 section 6).

A *checkpoint fork* sets a head signed by the log key against a checkpoint (a
signed note, relay-log-v1 §8) of the same size and another root, signed by the
checkpoint key that the log key bound to the log's origin: the relay showed
its witnesses another log than the one it showed its clients.

The statements themselves (signed heads, statements of absence, entry proofs)
are in :mod:`backchannel.protocol.misbehaviour`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence

from backchannel.crypto import labels
from backchannel.crypto.primitives import HASH_LEN
from backchannel.crypto.signing import (
    VerifyKey,
)
from backchannel.errors import DecodeError, LocalProtocolError, SignatureError
from backchannel.protocol.codec import Reader, Writer, expect_version
from backchannel.protocol.constants import MIN_RETENTION_SECONDS, SLOT_LEN
from backchannel.protocol.merkle import (
    ProofError,
    TreeHead,
    verify_inclusion,
)
from backchannel.protocol.misbehaviour import (
    COMPACT_HEAD_LEN,
    RELAY_KEY_LEN,
    SIGNED_HEAD_LEN,
    Absence,
    EntryProof,
    open_signed_head,
    read_proof,
    read_tenant,
    relay_key_bytes,
    relay_key_fingerprint,
    relay_key_from_bytes,
    write_proof,
    write_tenant,
)
from backchannel.protocol.note import MAX_NOTE_LEN, TYPE_ED25519, Verifier, open_checkpoint

EVIDENCE_VERSION = 1
FORK, REWIND, DIVERGENCE, DROP, SLOT_CONFLICT, CHECKPOINT_FORK = 1, 2, 3, 4, 5, 6
KINDS = (FORK, REWIND, DIVERGENCE, DROP, SLOT_CONFLICT, CHECKPOINT_FORK)
KIND_NAMES = {
    FORK: "fork",
    REWIND: "rewind",
    DIVERGENCE: "divergence",
    DROP: "drop",
    SLOT_CONFLICT: "slot conflict",
    CHECKPOINT_FORK: "checkpoint fork",
}


# -- Proofs of misbehaviour ---------------------------------------------------------


def encode_evidence(
    kind: int,
    key: VerifyKey,
    head_a: bytes,
    head_b: bytes,
    *,
    index: int = 0,
    leaf_a: bytes = b"",
    proof_a: Sequence[bytes] = (),
    leaf_b: bytes = b"",
    proof_b: Sequence[bytes] = (),
) -> bytes:
    """Encode a proof of misbehaviour (nothing is checked here)."""
    if kind not in KINDS:
        raise LocalProtocolError("unknown kind of misbehaviour")
    if kind in (DROP, SLOT_CONFLICT, CHECKPOINT_FORK):
        raise LocalProtocolError("use the function for that kind of proof")
    w = _evidence_start(kind, key, head_a, head_b)
    if kind == DIVERGENCE:
        w.u64(index).fixed(leaf_a, HASH_LEN)
        write_proof(w, proof_a)
        w.fixed(leaf_b, HASH_LEN)
        write_proof(w, proof_b)
    return w.bytes()


def _evidence_start(kind: int, key: VerifyKey, head_a: bytes, head_b: bytes) -> Writer:
    w = Writer().u8(EVIDENCE_VERSION).u8(kind).fixed(relay_key_bytes(key), RELAY_KEY_LEN)
    for raw in (head_a, head_b):
        if len(raw) not in (SIGNED_HEAD_LEN, COMPACT_HEAD_LEN):
            raise LocalProtocolError("a signed head is 113 or 3,422 bytes")
        w.u16(len(raw)).fixed(raw, len(raw))
    return w


def drop_evidence(
    key: VerifyKey,
    entry_head: bytes,
    absence_head: bytes,
    absence: Absence,
    slot: bytes,
    entry: EntryProof,
) -> bytes:
    """The relay logged a cell at ``slot`` (``entry`` in ``entry_head``), then said it was empty.

    ``absence_head`` is the signed head of ``absence.head`` (the fetch answer's).
    """
    w = _evidence_start(DROP, key, entry_head, absence_head)
    raw = absence.encode()
    w.u16(len(raw)).fixed(raw, len(raw)).fixed(slot, SLOT_LEN)
    entry.write(w)
    return w.bytes()


def slot_conflict_evidence(
    key: VerifyKey,
    head_a: bytes,
    head_b: bytes,
    tenant_id: str,
    slot: bytes,
    entry_a: EntryProof,
    entry_b: EntryProof,
) -> bytes:
    """Two different cells logged at one slot: ``entry_a`` under ``head_a``, ``entry_b``
    under ``head_b``."""
    w = _evidence_start(SLOT_CONFLICT, key, head_a, head_b)
    write_tenant(w, tenant_id)
    w.fixed(slot, SLOT_LEN)
    entry_a.write(w)
    entry_b.write(w)
    return w.bytes()


def checkpoint_fork_evidence(
    key: VerifyKey, head: bytes, checkpoint_key: bytes, binding: bytes, note: bytes
) -> bytes:
    """The log key signed ``head``; the checkpoint key it bound (``binding``) signed
    ``note``, a checkpoint of the same size with another root."""
    if len(head) not in (SIGNED_HEAD_LEN, COMPACT_HEAD_LEN):
        raise LocalProtocolError("a signed head is 113 or 3,422 bytes")
    w = Writer().u8(EVIDENCE_VERSION).u8(CHECKPOINT_FORK).fixed(relay_key_bytes(key), RELAY_KEY_LEN)
    w.u16(len(head)).fixed(head, len(head))
    return w.fixed(checkpoint_key, 32).fixed(binding, 64).var(note).bytes()


def _verify_checkpoint_fork(r: Reader, key: VerifyKey) -> str:
    raw = r.fixed(r.u16())
    checkpoint_key, binding, note = r.fixed(32), r.fixed(64), r.var(MAX_NOTE_LEN)
    r.end()
    try:
        head = open_signed_head(raw, key)
    except SignatureError:
        raise SignatureError(
            "the tree head in the evidence is not signed by that relay key"
        ) from None
    origin = note.partition(b"\n")[0].decode("utf-8", "replace")
    try:
        key.verify_ed25519(binding, labels.SIG_CHECKPOINT_KEY, checkpoint_key + origin.encode())
    except SignatureError:
        raise SignatureError("the relay key did not bind that checkpoint key") from None
    cp, _ = open_checkpoint(note, Verifier(origin, TYPE_ED25519, checkpoint_key))
    if cp.size != head.size or cp.root == head.root:
        raise ProofError("no fork: the checkpoint and the head differ in size or agree")
    fp = relay_key_fingerprint(key).hex()[:16]
    return (
        f"checkpoint fork: relay {fp} signed one root for log size {head.size} in its "
        f"log and another in the checkpoint {origin!r} it gave its witnesses"
    )


def evidence_kind(blob: bytes) -> str:
    """The kind a proof of misbehaviour claims (not checked), or raise DecodeError."""
    if len(blob) < 2 or blob[0] != EVIDENCE_VERSION or blob[1] not in KIND_NAMES:
        raise DecodeError("not a proof of misbehaviour")
    return KIND_NAMES[blob[1]]


def evidence_relay(blob: bytes) -> bytes:
    """The fingerprint of the relay key a proof of misbehaviour names (not checked:
    :func:`verify_misbehaviour` says whether the proof holds), or raise DecodeError."""
    evidence_kind(blob)
    if len(blob) < 2 + RELAY_KEY_LEN:
        raise DecodeError("not a proof of misbehaviour")
    return hashlib.sha256(blob[2 : 2 + RELAY_KEY_LEN]).digest()


def verify_misbehaviour(blob: bytes) -> str:
    """What ``blob`` proves about the relay holding the key inside it, in one line.

    Raises :class:`DecodeError` for a malformed blob, :class:`SignatureError`
    when a head is not signed by that key, and :class:`ProofError` when the
    signed statements are not contradictory (the evidence does not hold).
    """
    r = Reader(blob)
    expect_version(r, EVIDENCE_VERSION, "proof of misbehaviour")
    kind = r.u8()
    if kind not in KINDS:
        raise DecodeError("unknown kind of misbehaviour")
    key = relay_key_from_bytes(r.fixed(RELAY_KEY_LEN))
    if kind == CHECKPOINT_FORK:
        return _verify_checkpoint_fork(r, key)
    raw_a, raw_b = r.fixed(r.u16()), r.fixed(r.u16())
    tail: tuple[int, bytes, list[bytes], bytes, list[bytes]] | None = None
    absence: Absence | None = None
    conflict: tuple[str, bytes, EntryProof, EntryProof] | None = None
    if kind == DIVERGENCE:
        index, leaf_a, proof_a = r.u64(), r.fixed(HASH_LEN), read_proof(r)
        leaf_b, proof_b = r.fixed(HASH_LEN), read_proof(r)
        tail = (index, leaf_a, proof_a, leaf_b, proof_b)
    elif kind == DROP:
        absence = Absence.decode(r.fixed(r.u16()))
        dropped_slot, entry = r.fixed(SLOT_LEN), EntryProof.read(r)
    elif kind == SLOT_CONFLICT:
        tenant, slot = read_tenant(r), r.fixed(SLOT_LEN)
        conflict = (tenant, slot, EntryProof.read(r), EntryProof.read(r))
    r.end()
    try:
        a, b = open_signed_head(raw_a, key), open_signed_head(raw_b, key)
    except SignatureError:
        raise SignatureError(
            "a tree head in the evidence is not signed by that relay key"
        ) from None
    fp = relay_key_fingerprint(key).hex()[:16]
    if absence is not None:
        return _verify_drop(fp, key, a, b, absence, dropped_slot, entry)
    if conflict is not None:
        return _verify_conflict(fp, a, b, *conflict)
    if kind == FORK:
        if a.size != b.size or a.root == b.root:
            raise ProofError("the two heads do not fork: sizes differ or the roots are equal")
        return (
            f"fork: relay {fp} signed two different roots for log size {a.size} "
            f"(timestamps {a.timestamp} and {b.timestamp})"
        )
    if kind == REWIND:
        if not (a.size > b.size and a.timestamp < b.timestamp):
            raise ProofError("no rewind: the larger head must carry a strictly earlier timestamp")
        return (
            f"rewind: relay {fp} signed size {a.size} at {a.timestamp}, "
            f"then the smaller size {b.size} at {b.timestamp}"
        )
    assert tail is not None
    index, leaf_a, proof_a, leaf_b, proof_b = tail
    if leaf_a == leaf_b:
        raise ProofError("the two leaves are equal: the heads agree at that index")
    verify_inclusion(leaf_a, index, a.size, proof_a, a.root)
    verify_inclusion(leaf_b, index, b.size, proof_b, b.root)
    return (
        f"divergence: relay {fp} signed heads of sizes {a.size} and {b.size} "
        f"that hold different entries at index {index}"
    )


def _verify_drop(
    fp: str,
    key: VerifyKey,
    entry_head: TreeHead,
    absence_head: TreeHead,
    absence: Absence,
    slot: bytes,
    entry: EntryProof,
) -> str:
    try:
        absence.verify(key)
    except SignatureError:
        raise SignatureError("the statement of absence is not signed by that relay key") from None
    if absence.head != absence_head:
        raise ProofError("the statement of absence is about another head")
    if slot not in absence.slots:
        raise ProofError("the statement of absence does not name that slot")
    leaf = entry.verify(absence.tenant_id, slot, entry_head)
    if leaf.batch_index >= absence.head.size:
        raise ProofError("no drop: the cell was logged after the relay said the slot was empty")
    if absence.served_at >= leaf.coarse_time + max(absence.retention, MIN_RETENTION_SECONDS):
        raise ProofError("no drop: the cell may have expired before the relay said it was empty")
    return (
        f"drop: relay {fp} logged a cell in slot {slot.hex()[:16]} of tenant "
        f"{absence.tenant_id!r} (leaf {leaf.batch_index}), then said at log size "
        f"{absence.head.size} that the slot was empty"
    )


def _verify_conflict(
    fp: str, a: TreeHead, b: TreeHead, tenant: str, slot: bytes, ea: EntryProof, eb: EntryProof
) -> str:
    if ea.cell_id == eb.cell_id:
        raise ProofError("no conflict: both entries name the same cell")
    leaf_a, leaf_b = ea.verify(tenant, slot, a), eb.verify(tenant, slot, b)
    if abs(leaf_a.coarse_time - leaf_b.coarse_time) >= MIN_RETENTION_SECONDS:
        raise ProofError("no conflict: the first cell may have expired before the second came")
    return (
        f"slot conflict: relay {fp} logged two different cells in slot {slot.hex()[:16]} "
        f"of tenant {tenant!r} (leaves {leaf_a.batch_index} and {leaf_b.batch_index})"
    )


#: How a proof of misbehaviour travels as text (mail, chat, paper): prefix + base64url.
EVIDENCE_PREFIX = "BACKCHANNEL-RELAY-MISBEHAVIOUR-1:"


def evidence_text(blob: bytes) -> str:
    """A proof of misbehaviour as one line of text."""
    return EVIDENCE_PREFIX + base64.urlsafe_b64encode(blob).decode().rstrip("=") + "\n"


def evidence_from_text(text: str) -> bytes:
    """The bytes of a proof written by :func:`evidence_text`; DecodeError if it is not one."""
    text = text.strip()
    if not text.startswith(EVIDENCE_PREFIX):
        raise DecodeError("this is not a proof of relay misbehaviour (wrong first line)")
    body = text[len(EVIDENCE_PREFIX) :]
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise DecodeError("the proof of relay misbehaviour is damaged") from None
