"""Offline proofs of relay misbehaviour: real evidence holds, forged evidence is refused."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from backchannel.crypto.signing import SigningKey
from backchannel.errors import DecodeError, SignatureError
from backchannel.protocol.evidence import (
    DIVERGENCE,
    FORK,
    REWIND,
    encode_evidence,
    verify_misbehaviour,
)
from backchannel.protocol.merkle import MemoryLog, ProofError, TreeHead, leaf_hash
from backchannel.protocol.misbehaviour import (
    LogLeaf,
    SignedHead,
    cell_entry,
    open_signed_head,
    sign_head,
    sign_head_compact,
    verify_cell_receipt,
)


def key(tag: bytes) -> SigningKey:
    return SigningKey(hashlib.sha256(b"ed" + tag).digest(), hashlib.sha256(b"ml" + tag).digest())


RELAY = key(b"relay")
OTHER = key(b"other")


def log_of(entries: list[bytes]) -> MemoryLog:
    log = MemoryLog()
    for e in entries:
        log.append(e)
    return log


HONEST = log_of([b"leaf %d" % i for i in range(10)])
FORKED = log_of([b"leaf %d" % i for i in range(5)] + [b"other %d" % i for i in range(5, 10)])


def head(log: MemoryLog, size: int, t: int) -> TreeHead:
    return TreeHead(size, log.root(size), t)


def signed(log: MemoryLog, size: int, t: int, signer: SigningKey = RELAY) -> bytes:
    return sign_head(signer, head(log, size, t))


def test_signed_head_round_trip_and_tamper() -> None:
    raw = signed(HONEST, 7, 120)
    assert open_signed_head(raw, RELAY.verify_key) == head(HONEST, 7, 120)
    assert SignedHead.decode(raw).encode() == raw
    with pytest.raises(SignatureError):
        open_signed_head(raw, OTHER.verify_key)
    flipped = bytearray(raw)
    flipped[5] ^= 1
    with pytest.raises(SignatureError):
        open_signed_head(bytes(flipped), RELAY.verify_key)
    with pytest.raises(DecodeError):
        open_signed_head(raw[:-1], RELAY.verify_key)


def test_fork_is_proved() -> None:
    blob = encode_evidence(FORK, RELAY.verify_key, signed(HONEST, 8, 60), signed(FORKED, 8, 60))
    assert verify_misbehaviour(blob).startswith("fork:")


def test_rewind_is_proved() -> None:
    blob = encode_evidence(REWIND, RELAY.verify_key, signed(HONEST, 9, 60), signed(HONEST, 6, 120))
    assert verify_misbehaviour(blob).startswith("rewind:")


def test_divergence_is_proved() -> None:
    a, b = signed(HONEST, 7, 60), signed(FORKED, 10, 120)
    blob = encode_evidence(
        DIVERGENCE,
        RELAY.verify_key,
        a,
        b,
        index=6,
        leaf_a=leaf_hash(b"leaf 6"),
        proof_a=HONEST.inclusion_proof(6, 7),
        leaf_b=leaf_hash(b"other 6"),
        proof_b=FORKED.inclusion_proof(6, 10),
    )
    assert verify_misbehaviour(blob).startswith("divergence:")


@pytest.mark.parametrize(
    "forged",
    [
        # same size, same root: no fork
        lambda: encode_evidence(
            FORK, RELAY.verify_key, signed(HONEST, 8, 60), signed(HONEST, 8, 120)
        ),
        # different sizes presented as a fork
        lambda: encode_evidence(
            FORK, RELAY.verify_key, signed(HONEST, 8, 60), signed(FORKED, 9, 60)
        ),
        # consistent growth presented as a rewind (larger head is later)
        lambda: encode_evidence(
            REWIND, RELAY.verify_key, signed(HONEST, 9, 120), signed(HONEST, 6, 60)
        ),
        # equal timestamps are not a rewind
        lambda: encode_evidence(
            REWIND, RELAY.verify_key, signed(HONEST, 9, 60), signed(HONEST, 6, 60)
        ),
        # consistent heads presented as divergent: the leaves are equal
        lambda: encode_evidence(
            DIVERGENCE,
            RELAY.verify_key,
            signed(HONEST, 7, 60),
            signed(HONEST, 10, 120),
            index=3,
            leaf_a=leaf_hash(b"leaf 3"),
            proof_a=HONEST.inclusion_proof(3, 7),
            leaf_b=leaf_hash(b"leaf 3"),
            proof_b=HONEST.inclusion_proof(3, 10),
        ),
        # a made-up leaf whose proof does not lead to the signed root
        lambda: encode_evidence(
            DIVERGENCE,
            RELAY.verify_key,
            signed(HONEST, 7, 60),
            signed(HONEST, 10, 120),
            index=3,
            leaf_a=leaf_hash(b"leaf 3"),
            proof_a=HONEST.inclusion_proof(3, 7),
            leaf_b=leaf_hash(b"invented"),
            proof_b=HONEST.inclusion_proof(3, 10),
        ),
    ],
)
def test_evidence_that_does_not_hold_is_refused(forged: object) -> None:
    assert callable(forged)
    with pytest.raises(ProofError):
        verify_misbehaviour(forged())


def test_heads_signed_by_another_key_are_refused() -> None:
    # A real fork, but one head is signed by somebody else: it proves nothing
    # about this relay.
    blob = encode_evidence(
        FORK, RELAY.verify_key, signed(HONEST, 8, 60), signed(FORKED, 8, 60, OTHER)
    )
    with pytest.raises(SignatureError):
        verify_misbehaviour(blob)
    # Swapping in the other key does not help either.
    blob = encode_evidence(
        FORK, OTHER.verify_key, signed(HONEST, 8, 60), signed(FORKED, 8, 60, OTHER)
    )
    with pytest.raises(SignatureError):
        verify_misbehaviour(blob)


def test_malformed_evidence_is_a_decode_error() -> None:
    blob = encode_evidence(FORK, RELAY.verify_key, signed(HONEST, 8, 60), signed(FORKED, 8, 60))
    for bad in (b"", blob[:-1], blob + b"\x00", b"\x02" + blob[1:], blob[:1] + b"\x09" + blob[2:]):
        with pytest.raises(DecodeError):
            verify_misbehaviour(bad)


def test_cell_receipt_checks_every_link() -> None:
    tenant, slot, cell = "mission-a", b"\x11" * 32, b"\x22" * 4096
    entries = [cell_entry(tenant, bytes([i]) * 32, bytes([i]) * 32) for i in range(4)]
    entries.insert(2, cell_entry(tenant, slot, hashlib.sha256(cell).digest()))
    batch = MemoryLog()
    for e in entries:
        batch.append(e)
    leaf = LogLeaf(3, len(entries), batch.root(), 600).encode()
    log = log_of([b"a", b"b", b"c"])
    log.append(leaf)
    log.append(b"later")
    h = head(log, 5, 660)
    args = {
        "tenant_id": tenant,
        "slot": slot,
        "cell": cell,
        "leaf": leaf,
        "batch_position": 2,
        "batch_proof": batch.inclusion_proof(2),
        "inclusion_proof": log.inclusion_proof(3, 5),
        "head": h,
    }
    assert verify_cell_receipt(**args).batch_index == 3  # type: ignore[arg-type]
    for change in (
        {"cell": b"\x23" * 4096},
        {"tenant_id": "mission-b"},
        {"batch_position": 1},
        {"head": head(FORKED, 5, 660)},
    ):
        with pytest.raises(ProofError):
            verify_cell_receipt(**{**args, **change})  # type: ignore[arg-type]


def test_compact_head_is_the_prefix_of_the_full_head() -> None:
    h = head(HONEST, 7, 120)
    full, compact = sign_head(RELAY, h), sign_head_compact(RELAY, h)
    assert len(compact) == 113 and len(full) == 3422
    assert full[:113] == compact  # Ed25519 is deterministic
    assert open_signed_head(compact, RELAY.verify_key) == h
    assert SignedHead.decode(full).compact().encode() == compact
    with pytest.raises(SignatureError):
        open_signed_head(compact, OTHER.verify_key)


def test_fork_is_proved_with_compact_heads() -> None:
    blob = encode_evidence(
        FORK,
        RELAY.verify_key,
        sign_head_compact(RELAY, head(HONEST, 8, 60)),
        signed(FORKED, 8, 60),
    )
    assert verify_misbehaviour(blob).startswith("fork:")


# -- Drops, slot conflicts, statements of absence, gossip --------------------------
# (imports for the tests below; the block above is left as it was)

from backchannel.errors import LocalProtocolError  # noqa: E402
from backchannel.protocol.codec import Reader  # noqa: E402
from backchannel.protocol.constants import MIN_RETENTION_SECONDS  # noqa: E402
from backchannel.protocol.evidence import (  # noqa: E402
    DROP,
    SLOT_CONFLICT,
    drop_evidence,
    evidence_kind,
    slot_conflict_evidence,
)
from backchannel.protocol.merkle import root_from_inclusion  # noqa: E402
from backchannel.protocol.misbehaviour import (  # noqa: E402
    GOSSIP_LEN,
    Absence,
    DepositNote,
    EntryProof,
    Gossip,
)
from backchannel.store.relay_store import BatchTree  # noqa: E402


def h(*parts: bytes) -> bytes:
    return hashlib.sha256(b"|".join(parts)).digest()


T0 = 1_700_000_040
TENANT = "mission-a"
SLOT = h(b"the slot")
OTHER_SLOT = h(b"another slot")
CELL_A = h(b"cell a")
CELL_B = h(b"cell b")
Entry = tuple[str, bytes, bytes]


class ToyLog:
    """A relay log built by hand, as the relay builds it: one leaf per batch of cell entries."""

    def __init__(self) -> None:
        self.tree = MemoryLog()
        self.leaves: list[bytes] = []
        self.entries: list[list[Entry]] = []
        self.batches: list[BatchTree] = []

    def add(self, entries: list[Entry], t: int) -> int:
        batch = BatchTree.of_entries([cell_entry(*e) for e in entries])
        index = self.tree.size
        leaf = LogLeaf(index, len(entries), batch.root(), t).encode()
        self.tree.append(leaf)
        self.leaves.append(leaf)
        self.entries.append(entries)
        self.batches.append(batch)
        return index

    def head(self, size: int) -> TreeHead:
        when = LogLeaf.decode(self.leaves[size - 1]).coarse_time
        return TreeHead(size, self.tree.root(size), when)

    def signed(self, size: int, signer: SigningKey = RELAY, *, full: bool = False) -> bytes:
        return (sign_head if full else sign_head_compact)(signer, self.head(size))

    def entry(self, index: int, position: int, size: int) -> EntryProof:
        return EntryProof(
            self.entries[index][position][2],
            self.leaves[index],
            position,
            tuple(self.batches[index].proof(position)),
            tuple(self.tree.inclusion_proof(index, size)),
        )


def filler(tag: int, n: int) -> list[Entry]:
    return [(TENANT, h(b"slot", bytes([tag, i])), h(b"cell", bytes([tag, i]))) for i in range(n)]


def toy(gap: int = 180) -> ToyLog:
    """Six leaves. Leaf 1 holds CELL_A at SLOT (position 1), leaf 3 holds CELL_B at SLOT
    (position 0) ``gap`` seconds later; leaf 4 holds CELL_B at SLOT of another tenant,
    leaf 5 CELL_B at another slot of the same tenant."""
    log = ToyLog()
    log.add(filler(0, 3), T0)
    log.add([*filler(1, 1), (TENANT, SLOT, CELL_A), *filler(2, 2)], T0 + 60)
    log.add(filler(3, 2), T0 + 120)
    log.add([(TENANT, SLOT, CELL_B), *filler(4, 4)], T0 + 60 + gap)
    log.add([("mission-b", SLOT, CELL_B)], T0 + 60 + gap + 60)
    log.add([(TENANT, OTHER_SLOT, CELL_B)], T0 + 60 + gap + 120)
    return log


LOG = toy()
LEAF_1_TIME = T0 + 60


def absence(
    log: ToyLog = LOG,
    size: int = 3,
    *,
    served_at: int = LEAF_1_TIME + 1800,
    tenant: str = TENANT,
    slots: tuple[bytes, ...] = (OTHER_SLOT, SLOT),
    signer: SigningKey = RELAY,
) -> Absence:
    return Absence.make(signer, log.head(size), served_at, tenant, slots)


def drop_blob(
    *,
    statement: Absence | None = None,
    absence_head: bytes | None = None,
    entry_head: bytes | None = None,
    entry: EntryProof | None = None,
    slot: bytes = SLOT,
) -> bytes:
    """A drop proof: CELL_A at SLOT (leaf 1) in the head of size 6, absence at size 3."""
    return drop_evidence(
        RELAY.verify_key,
        LOG.signed(6) if entry_head is None else entry_head,
        LOG.signed(3) if absence_head is None else absence_head,
        absence() if statement is None else statement,
        slot,
        LOG.entry(1, 1, 6) if entry is None else entry,
    )


def flip_first(proof: tuple[bytes, ...]) -> tuple[bytes, ...]:
    first = bytearray(proof[0])
    first[0] ^= 1
    return (bytes(first), *proof[1:])


def test_drop_is_proved() -> None:
    line = verify_misbehaviour(drop_blob())
    assert line.startswith("drop:")
    assert SLOT.hex()[:16] in line and repr(TENANT) in line
    assert evidence_kind(drop_blob()) == "drop"


def test_drop_is_proved_at_the_edges() -> None:
    # The absence head is the first that holds the cell's leaf.
    blob = drop_blob(statement=absence(size=2), absence_head=LOG.signed(2))
    assert verify_misbehaviour(blob).startswith("drop:")
    # Served one second before the relay could have let the cell expire.
    late = absence(served_at=LEAF_1_TIME + MIN_RETENTION_SECONDS - 1)
    assert verify_misbehaviour(drop_blob(statement=late)).startswith("drop:")
    # The entry proved in the very head of the absence; full signed heads.
    blob = drop_blob(
        entry_head=LOG.signed(3, full=True),
        absence_head=LOG.signed(3, full=True),
        entry=LOG.entry(1, 1, 3),
    )
    assert verify_misbehaviour(blob).startswith("drop:")


DROP_FORGERIES: dict[str, tuple[type[Exception], str, object]] = {
    # The relay key in the blob never signed this statement of absence.
    "absence by another key": (
        SignatureError,
        "absence",
        lambda: drop_blob(statement=absence(signer=OTHER)),
    ),
    # The entry head is somebody else's.
    "entry head by another key": (
        SignatureError,
        "not signed",
        lambda: drop_blob(entry_head=LOG.signed(6, OTHER)),
    ),
    # The relay said other slots were empty, not this one.
    "slot not named": (
        ProofError,
        "does not name",
        lambda: drop_blob(statement=absence(slots=(OTHER_SLOT, h(b"x")))),
    ),
    # The slot was empty at size 1; the cell came in leaf 1, after.
    "cell logged after the absence": (
        ProofError,
        "logged after",
        lambda: drop_blob(statement=absence(size=1), absence_head=LOG.signed(1)),
    ),
    # An hour after the cell's batch the relay may have let it expire.
    "absence served after retention": (
        ProofError,
        "expired",
        lambda: drop_blob(statement=absence(served_at=LEAF_1_TIME + MIN_RETENTION_SECONDS)),
    ),
    # A made-up inclusion path.
    "tampered inclusion proof": (
        ProofError,
        "inclusion proof",
        lambda: drop_blob(
            entry=EntryProof(
                CELL_A,
                LOG.leaves[1],
                1,
                LOG.entry(1, 1, 6).batch_proof,
                flip_first(LOG.entry(1, 1, 6).inclusion_proof),
            )
        ),
    ),
    # A made-up batch path.
    "tampered batch proof": (
        ProofError,
        "inclusion proof",
        lambda: drop_blob(
            entry=EntryProof(
                CELL_A,
                LOG.leaves[1],
                1,
                flip_first(LOG.entry(1, 1, 6).batch_proof),
                LOG.entry(1, 1, 6).inclusion_proof,
            )
        ),
    ),
    # Another cell id for the entry the relay logged.
    "another cell id": (
        ProofError,
        "inclusion proof",
        lambda: drop_blob(entry=EntryProof(CELL_B, *_entry_rest(LOG.entry(1, 1, 6)))),
    ),
    # A real absence of size 3, presented beside the signed head of size 4.
    "absence about another head": (
        ProofError,
        "another head",
        lambda: drop_blob(absence_head=LOG.signed(4)),
    ),
    # The relay said mission-b's slot was empty; the entry is mission-a's.
    "absence of another tenant": (
        ProofError,
        "inclusion proof",
        lambda: drop_blob(statement=absence(tenant="mission-b")),
    ),
    # The entry is at another slot than the one named.
    "entry at another slot": (
        ProofError,
        "inclusion proof",
        lambda: drop_blob(slot=OTHER_SLOT),
    ),
}


def _entry_rest(e: EntryProof) -> tuple[bytes, int, tuple[bytes, ...], tuple[bytes, ...]]:
    return e.leaf, e.batch_position, e.batch_proof, e.inclusion_proof


@pytest.mark.parametrize("name", list(DROP_FORGERIES))
def test_forged_drop_is_refused(name: str) -> None:
    error, words, make = DROP_FORGERIES[name]
    assert callable(make)
    with pytest.raises(error, match=words):
        verify_misbehaviour(make())


def test_malformed_drop_is_a_decode_error() -> None:
    blob = drop_blob()
    for bad in (blob[:-1], blob[:-40], blob + b"\x00", blob[: len(blob) // 2]):
        with pytest.raises(DecodeError):
            verify_misbehaviour(bad)


def test_drop_and_conflict_need_their_own_encoders() -> None:
    for kind in (DROP, SLOT_CONFLICT):
        with pytest.raises(LocalProtocolError):
            encode_evidence(kind, RELAY.verify_key, LOG.signed(3), LOG.signed(6))


def conflict_blob(
    log: ToyLog = LOG,
    *,
    head_a: bytes | None = None,
    head_b: bytes | None = None,
    entry_a: EntryProof | None = None,
    entry_b: EntryProof | None = None,
    tenant: str = TENANT,
) -> bytes:
    """CELL_A at SLOT (leaf 1) in the head of size 2, CELL_B at SLOT (leaf 3) in size 6."""
    return slot_conflict_evidence(
        RELAY.verify_key,
        log.signed(2) if head_a is None else head_a,
        log.signed(6) if head_b is None else head_b,
        tenant,
        SLOT,
        log.entry(1, 1, 2) if entry_a is None else entry_a,
        log.entry(3, 0, 6) if entry_b is None else entry_b,
    )


def test_slot_conflict_is_proved() -> None:
    line = verify_misbehaviour(conflict_blob())
    assert line.startswith("slot conflict:")
    assert "leaves 1 and 3" in line
    assert evidence_kind(conflict_blob()) == "slot conflict"
    # One second under the hour, in one head, in either order, with full heads.
    close = toy(gap=MIN_RETENTION_SECONDS - 1)
    assert verify_misbehaviour(conflict_blob(close)).startswith("slot conflict:")
    blob = slot_conflict_evidence(
        RELAY.verify_key,
        LOG.signed(6, full=True),
        LOG.signed(4, full=True),
        TENANT,
        SLOT,
        LOG.entry(3, 0, 6),
        LOG.entry(1, 1, 4),
    )
    assert verify_misbehaviour(blob).startswith("slot conflict:")


CONFLICT_FORGERIES: dict[str, tuple[type[Exception], str, object]] = {
    # One logged cell, proved twice (in two heads), is not two cells.
    "same cell twice": (
        ProofError,
        "same cell",
        lambda: conflict_blob(entry_b=LOG.entry(1, 1, 6)),
    ),
    # A second cell an hour after the first: the first may have expired.
    "an hour apart": (
        ProofError,
        "expired",
        lambda: conflict_blob(toy(gap=MIN_RETENTION_SECONDS)),
    ),
    "more than an hour apart": (
        ProofError,
        "expired",
        lambda: conflict_blob(toy(gap=5 * MIN_RETENTION_SECONDS)),
    ),
    # CELL_B was logged at another slot of the tenant.
    "second entry at another slot": (
        ProofError,
        "inclusion proof",
        lambda: conflict_blob(entry_b=LOG.entry(5, 0, 6)),
    ),
    # CELL_B was logged at SLOT, but for another tenant.
    "second entry of another tenant": (
        ProofError,
        "inclusion proof",
        lambda: conflict_blob(entry_b=LOG.entry(4, 0, 6)),
    ),
    # Both entries are mission-a's; naming mission-b makes neither verify.
    "named tenant is not the entries'": (
        ProofError,
        "inclusion proof",
        lambda: conflict_blob(tenant="mission-b"),
    ),
    # Entry A proved against a head that is not its own.
    "entry proved in a head it is not in": (
        ProofError,
        "inclusion proof",
        lambda: conflict_blob(head_a=LOG.signed(3)),
    ),
    "head a by another key": (
        SignatureError,
        "not signed",
        lambda: conflict_blob(head_a=LOG.signed(2, OTHER)),
    ),
    "head b by another key": (
        SignatureError,
        "not signed",
        lambda: conflict_blob(head_b=LOG.signed(6, OTHER, full=True)),
    ),
}


@pytest.mark.parametrize("name", list(CONFLICT_FORGERIES))
def test_forged_slot_conflict_is_refused(name: str) -> None:
    error, words, make = CONFLICT_FORGERIES[name]
    assert callable(make)
    with pytest.raises(error, match=words):
        verify_misbehaviour(make())


def test_malformed_slot_conflict_is_a_decode_error() -> None:
    blob = conflict_blob()
    for bad in (blob[:-1], blob + b"\x00", blob[: len(blob) - 200]):
        with pytest.raises(DecodeError):
            verify_misbehaviour(bad)


# -- statements of absence ---------------------------------------------------------


def raw_absence(
    slots: list[bytes],
    *,
    head_: TreeHead | None = None,
    served_at: int = LEAF_1_TIME,
    tenant: bytes = TENANT.encode(),
    retention: int = MIN_RETENTION_SECONDS,
) -> bytes:
    """An absence laid out by hand (any slots, in the order given), zero signature."""
    return (
        (head_ or LOG.head(3)).encode()
        + served_at.to_bytes(8, "big")
        + retention.to_bytes(4, "big")
        + bytes([len(tenant)])
        + tenant
        + len(slots).to_bytes(2, "big")
        + b"".join(slots)
        + bytes(64)
    )


def test_absence_round_trip() -> None:
    slots = [h(b"s", bytes([i])) for i in range(5)]
    made = Absence.make(RELAY, LOG.head(4), 1234, TENANT, [slots[3], *slots, slots[0]])
    assert made.slots == tuple(sorted(slots))  # distinct and ascending
    raw = made.encode()
    assert len(raw) == 49 + 8 + 4 + 1 + len(TENANT) + 2 + 32 * 5 + 64
    back = Absence.decode(raw)
    assert back == made
    assert back.encode() == raw
    back.verify(RELAY.verify_key)
    with pytest.raises(SignatureError):
        back.verify(OTHER.verify_key)
    # The layout by hand matches, up to the signature.
    assert raw[:-64] == raw_absence(sorted(slots), head_=LOG.head(4), served_at=1234)[:-64]


def test_absence_decoding_refuses_malformed_statements() -> None:
    a, b = sorted([h(b"a"), h(b"b")])
    assert Absence.decode(raw_absence([a, b])).slots == (a, b)  # the baseline decodes
    good = raw_absence([a, b])
    for bad in (
        raw_absence([b, a]),  # not ascending
        raw_absence([a, a]),  # duplicate
        raw_absence([a, a, b]),
        raw_absence([]),  # names nothing
        raw_absence([a], tenant=b""),  # no tenant
        raw_absence([a], tenant=b"\xff\xfe"),  # not UTF-8
        raw_absence([a], retention=MIN_RETENTION_SECONDS - 1),  # under the hour
        good + b"\x00",  # trailing bytes
        good[:-1],  # truncated signature
        b"\x02" + good[1:],  # tree head version
    ):
        with pytest.raises(DecodeError):
            Absence.decode(bad)


def test_absence_refuses_too_many_or_no_slots() -> None:
    with pytest.raises(LocalProtocolError):
        Absence.make(RELAY, LOG.head(3), 0, TENANT, [])
    many = [h(b"m", i.to_bytes(2, "big")) for i in range(1025)]
    with pytest.raises(LocalProtocolError):
        Absence.make(RELAY, LOG.head(3), 0, TENANT, many)
    assert len(Absence.make(RELAY, LOG.head(3), 0, TENANT, many[:1024]).slots) == 1024


def test_absence_with_a_flipped_byte_does_not_verify() -> None:
    raw = absence().encode()
    checked = 0
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        try:
            changed = Absence.decode(bytes(flipped))
        except DecodeError:
            continue  # no longer an absence at all
        with pytest.raises(SignatureError):
            changed.verify(RELAY.verify_key)
        checked += 1
    # Head, served_at, tenant, slots and signature bytes all decode after a flip.
    assert checked > len(raw) - 10


# -- gossip --------------------------------------------------------------------------


def read_gossip(raw: bytes) -> Gossip:
    r = Reader(raw)
    g = Gossip.read(r)
    r.end()
    return g


def test_gossip_round_trip_fixed_length() -> None:
    head_ = LOG.signed(6)
    note = DepositNote(round=987_654, cell_id=CELL_A, leaf_index=5, batch_position=3)
    without, with_note = Gossip(head_), Gossip(head_, note)
    assert GOSSIP_LEN == 166
    for g in (without, with_note):
        raw = g.encode()
        assert len(raw) == GOSSIP_LEN
        assert read_gossip(raw) == g
    assert read_gossip(without.encode()).note is None
    assert read_gossip(with_note.encode()).note == note
    # The compact head travels as is: the receiver can check it.
    assert open_signed_head(read_gossip(with_note.encode()).head, RELAY.verify_key) == LOG.head(6)
    # A note with every field at its largest still fits the fixed length.
    big = DepositNote((1 << 64) - 1, b"\xff" * 32, (1 << 64) - 1, (1 << 32) - 1)
    assert len(Gossip(head_, big).encode()) == GOSSIP_LEN
    assert read_gossip(Gossip(head_, big).encode()).note == big


def test_gossip_decoding_refuses_malformed_gossip() -> None:
    raw = Gossip(LOG.signed(6)).encode()
    cell_id_at = 113 + 1 + 8
    forged = bytearray(raw)
    forged[cell_id_at + 7] = 0x42  # no note, yet a cell id
    has_two = bytearray(raw)
    has_two[113] = 2
    bad_head = bytearray(raw)
    bad_head[0] = 9  # tree head version
    for bad in (bytes(forged), bytes(has_two), bytes(bad_head), raw[:-1], raw + b"\x00"):
        with pytest.raises(DecodeError):
            read_gossip(bad)
    with pytest.raises(LocalProtocolError):
        Gossip(LOG.signed(6, full=True)).encode()  # gossip carries compact heads only


# -- root_from_inclusion and evidence_kind -------------------------------------------


def test_root_from_inclusion_of_the_last_leaf_is_the_root() -> None:
    entries = [b"entry %d" % i for i in range(40)]
    log = log_of(entries)
    for size in range(1, 41):
        path = log.inclusion_proof(size - 1, size)
        assert root_from_inclusion(leaf_hash(entries[size - 1]), size - 1, size, path) == (
            log.root(size)
        ), size
        # Another leaf at that place leads to another root.
        assert root_from_inclusion(leaf_hash(b"other"), size - 1, size, path) != log.root(size)
        # Any leaf of the tree leads to the same root.
        i = size // 2
        assert root_from_inclusion(
            leaf_hash(entries[i]), i, size, log.inclusion_proof(i, size)
        ) == log.root(size)
    with pytest.raises(ProofError):
        root_from_inclusion(leaf_hash(entries[4]), 5, 5, log.inclusion_proof(4, 5))
    with pytest.raises(ProofError):  # a path of the wrong length
        root_from_inclusion(leaf_hash(entries[4]), 4, 5, [*log.inclusion_proof(4, 5), bytes(32)])


def test_evidence_kind_names_the_kind_and_refuses_junk() -> None:
    fork = encode_evidence(FORK, RELAY.verify_key, signed(HONEST, 8, 60), signed(FORKED, 8, 60))
    rewind = encode_evidence(REWIND, RELAY.verify_key, signed(HONEST, 9, 1), signed(HONEST, 6, 2))
    divergence = encode_evidence(
        DIVERGENCE,
        RELAY.verify_key,
        signed(HONEST, 7, 1),
        signed(FORKED, 9, 2),
        leaf_a=bytes(32),
        leaf_b=bytes(32),
    )
    assert [evidence_kind(b) for b in (fork, rewind, divergence)] == [
        "fork",
        "rewind",
        "divergence",
    ]
    assert evidence_kind(drop_blob()) == "drop"
    assert evidence_kind(conflict_blob()) == "slot conflict"
    for junk in (b"", b"\x01", b"\x00\x01", b"\x02\x01", b"\x01\x00", b"\x01\x07", b"junk"):
        with pytest.raises(DecodeError):
            evidence_kind(junk)


def test_a_drop_is_provable_for_as_long_as_the_relay_says_it_keeps_cells() -> None:
    """The statement carries the relay's retention: a day-long retention makes a drop
    two hours after the cell's batch provable; the bare hour does not."""
    late = LEAF_1_TIME + 2 * 3600
    for retention, holds in ((86_400, True), (MIN_RETENTION_SECONDS, False)):
        statement = Absence.make(RELAY, LOG.head(3), late, TENANT, (OTHER_SLOT, SLOT), retention)
        blob = drop_blob(statement=statement)
        if holds:
            assert verify_misbehaviour(blob).startswith("drop:")
        else:
            with pytest.raises(ProofError, match="expired"):
                verify_misbehaviour(blob)


def _raw_with_spent(slots: list[bytes], spent: list[bytes], *, flag: bool = True) -> bytes:
    """A statement laid out by hand with a spent list (bit 15 of the count), zero signature."""
    raw = raw_absence(slots)
    at = len(raw) - 64 - 32 * len(slots) - 2
    count = len(slots) | (0x8000 if flag else 0)
    body = raw[:at] + count.to_bytes(2, "big") + b"".join(slots)
    return body + len(spent).to_bytes(2, "big") + b"".join(spent) + bytes(64)


def test_a_statement_signs_the_spent_slots_and_keeps_its_layout_without_them() -> None:
    a, b, c = sorted([h(b"a"), h(b"b"), h(b"c")])
    plain = Absence.make(RELAY, LOG.head(4), 1234, TENANT, [a])
    # Without spent slots, byte for byte the statement it always was.
    assert plain.encode()[:-64] == raw_absence([a], head_=LOG.head(4), served_at=1234)[:-64]
    both = Absence.make(RELAY, LOG.head(4), 1234, TENANT, [a], spent=[c, b])
    assert both.spent == (b, c)
    back = Absence.decode(both.encode())
    assert back == both
    back.verify(RELAY.verify_key)
    only = Absence.make(RELAY, LOG.head(4), 1234, TENANT, [], spent=[b])
    assert Absence.decode(only.encode()).slots == ()
    # The signature covers the spent list: one moved out of it no longer verifies.
    moved = replace(both, slots=(a, b), spent=(c,))
    with pytest.raises(SignatureError):
        moved.verify(RELAY.verify_key)
    with pytest.raises(LocalProtocolError, match="either empty or spent"):
        Absence.make(RELAY, LOG.head(4), 1234, TENANT, [a], spent=[a])
    with pytest.raises(LocalProtocolError, match="1 to 1,024"):
        Absence.make(RELAY, LOG.head(4), 1234, TENANT, [], spent=[])
    many = [h(b"s", i.to_bytes(2, "big")) for i in range(1025)]
    with pytest.raises(LocalProtocolError, match="1 to 1,024"):
        Absence.make(RELAY, LOG.head(4), 1234, TENANT, many[:600], spent=many[600:])
    Absence.make(RELAY, LOG.head(4), 1234, TENANT, many[:600], spent=many[600:1024])


def test_a_spent_list_is_decoded_only_well_formed() -> None:
    a, b, c = sorted([h(b"a"), h(b"b"), h(b"c")])
    assert Absence.decode(_raw_with_spent([a], [b, c])).spent == (b, c)
    assert Absence.decode(_raw_with_spent([], [b])).slots == ()
    for bad in (
        _raw_with_spent([a], []),  # the flag with no spent slot
        _raw_with_spent([a], [c, b]),  # not ascending
        _raw_with_spent([a], [b, b]),  # duplicate
        _raw_with_spent([a], [a]),  # empty and spent at once
        _raw_with_spent([], [b])[:-65],  # truncated
    ):
        with pytest.raises(DecodeError):
            Absence.decode(bad)
