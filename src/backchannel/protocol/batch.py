"""The batch exchange with a relay: one deposit and one fetch per device per round.

Binary bodies (``docs/spec/relay-api.md``, "Batch exchange"); all integers
big-endian, version byte first, every decoder strict (a truncated, overlong
or padded-wrong body raises :class:`~backchannel.errors.DecodeError`, and
nothing else). A *proof* is ``count u8 | count x hash [32]``.

* :class:`DepositBatch` and :class:`DepositBatchAnswer`: :mod:`.batch_deposit`;
* :class:`LogBundle` ``head_len u16 | compact signed head | nleaves u16 |
  nleaves x (leaf_index u64 | leaf_len u16 | leaf | inclusion proof) |
  consistency proof | key_len u16 | relay key``: one head, every leaf the
  answer's places need (each once, ascending), proved against it;
* :class:`FetchBatch` ``version | known_size u64 | pad_to u32 | nslots u16 |
  slots | nqueries u8 | queries [| 0x49 | after u64 | limit u16 | open u8 (0, 1, 2: unstated)]``
  (queries and their answers: :mod:`.batch_query`; places and the bundle:
  :mod:`.batch_log`; the tail, present exactly when the version is 2, asks for
  the tenant's public intake, :class:`IntakeAsk`);
* :class:`FetchBatchAnswer` ``version | ncells u16 | ncells x (slot [32] |
  place | cell_len u32 | cell) | nspent u16 | slots | absent_len u32 |
  statement of absence | LogBundle | nanswers u8 | answers [| 0x49 | nrows u16
  | nrows x (seq u64 | cell_len u32 | cell)] | zero padding`` (the intake rows
  exactly when the fetch asked for them).
  A fetched cell's ``place`` is ``leaf_index u64 | batch_position u32 |
  batch_size u32 | batch proof``, all zeros (batch size 0) for a cell stored
  without a log. The padding makes the length a multiple of ``pad_to``.
* A fetch of version 3 (the layout of version 1, then the intake ask or
  nothing) asks for the *compact* answer (version 2): the same content without
  what the client already knows (the slots it asked, its tenant, the head the
  bundle carries): :meth:`FetchBatchAnswer.encode_compact`; its bundle lists
  each of its proofs' hashes once (:meth:`LogBundle.write`). A fetch of
  version 4 (the layout of version 3) asks for the *shared* answer (version
  3): the compact one whose cells' batch proofs come once per batch, after the
  cells (:mod:`.batch_proofs`), rebuilt by the client from the cells it got.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from backchannel.crypto.signing import ED25519_SIG_LEN
from backchannel.errors import DecodeError, LocalProtocolError
from backchannel.protocol.batch_deposit import (
    COMPACT_ANSWER_VERSION,
    DEPOSIT_COMPACT_VERSION,
    SHARED_VERSION,
    STATUSES,
    VERSION,
    CellResult,
    DepositBatch,
    DepositBatchAnswer,
    DepositCell,
)
from backchannel.protocol.batch_log import (
    BatchPlace,
    CellPlace,
    LeafProof,
    LogBundle,
    check_slot,
    read_absence,
    read_cell,
    write_cell,
)
from backchannel.protocol.batch_proofs import read_place, read_shared, write_place, write_shared
from backchannel.protocol.batch_query import (
    QUERY_LEN,
    Query,
    QueryAnswer,
    QueryKind,
    SlotRead,
    decode_consistency,
    decode_entry,
    decode_slot_read,
    encode_consistency,
    encode_entry,
)
from backchannel.protocol.codec import Reader, Writer, expect_version
from backchannel.protocol.constants import SLOT_LEN
from backchannel.protocol.misbehaviour import Absence

__all__ = [
    "COMPACT_ANSWER_VERSION",
    "DEPOSIT_COMPACT_VERSION",
    "FETCH_COMPACT_VERSION",
    "FETCH_SHARED_VERSION",
    "MAX_PAD_TO",
    "MAX_QUERIES",
    "QUERY_LEN",
    "SHARED_VERSION",
    "STATUSES",
    "BatchPlace",
    "CellPlace",
    "CellResult",
    "DepositBatch",
    "DepositBatchAnswer",
    "DepositCell",
    "FetchBatch",
    "FetchBatchAnswer",
    "FetchedCell",
    "LeafProof",
    "LogBundle",
    "Query",
    "QueryAnswer",
    "QueryKind",
    "SlotRead",
    "decode_consistency",
    "decode_entry",
    "decode_slot_read",
    "encode_consistency",
    "encode_entry",
]

#: The version byte of a fetch that asks for the shared answer (compact, and each
#: batch's proofs once; the intake ask optional).
FETCH_SHARED_VERSION = 4
#: Most queries in one fetch.
MAX_QUERIES = 64
#: Largest ``pad_to`` a fetch may ask for.
MAX_PAD_TO = 65536


# -- fetch -----------------------------------------------------------------------------


#: Marks the intake part of a fetch and of its answer.
INTAKE_MARK = 0x49
#: The version byte of a fetch that asks for the intake (it then must).
FETCH_INTAKE_VERSION = 2
#: The version byte of a fetch that asks for the compact answer (the intake ask optional).
FETCH_COMPACT_VERSION = 3
#: What the compact answer says of each asked slot (two bits each).
SLOT_EMPTY, SLOT_CELL, SLOT_SPENT = 0, 1, 2
#: Most intake requests one fetch may ask for.
MAX_INTAKE_ROWS = 256
#: Intake requests are numbered from 1 in a signed 64-bit column (SQLite's
#: INTEGER, PostgreSQL's bigint): an ask after a larger number is malformed.
MAX_INTAKE_NUMBER = 2**63 - 1
#: An intake ask's bytes on the wire: mark u8 | after u64 | limit u16 | open u8.
INTAKE_ASK_LEN = 1 + 8 + 2 + 1


@dataclass(frozen=True, slots=True)
class IntakeAsk:
    """The public intake's part of a fetch: requests numbered above ``after`` (at
    most ``limit``), and whether the mission wants its intake open (``None``: this
    device states nothing; encoded 0 closed, 1 open, 2 nothing)."""

    after: int
    limit: int
    is_open: bool | None

    def write(self, w: Writer) -> None:
        if not 1 <= self.limit <= MAX_INTAKE_ROWS or not 0 <= self.after <= MAX_INTAKE_NUMBER:
            raise LocalProtocolError(
                "an intake ask takes 1 to 256 requests after a number from 0 to 2^63 - 1"
            )
        flag = 2 if self.is_open is None else int(self.is_open)
        w.u8(INTAKE_MARK).u64(self.after).u16(self.limit).u8(flag)

    @classmethod
    def read(cls, r: Reader) -> IntakeAsk:
        if r.u8() != INTAKE_MARK:
            raise DecodeError("unknown part after a fetch's queries")
        after, limit, flag = r.u64(), r.u16(), r.u8()
        if not 1 <= limit <= MAX_INTAKE_ROWS or flag > 2:
            raise DecodeError("an intake ask takes 1 to 256 requests, open 0, 1 or 2")
        if after > MAX_INTAKE_NUMBER:
            raise DecodeError("an intake ask's number must be below 2^63")
        return cls(after, limit, None if flag == 2 else flag == 1)


@dataclass(frozen=True, slots=True)
class FetchBatch:
    """Slots to read from one's own tenant, and log queries; the answer pads to ``pad_to``."""

    known_size: int
    pad_to: int
    slots: tuple[bytes, ...] = field(repr=False)
    queries: tuple[Query, ...] = ()
    intake: IntakeAsk | None = None
    #: Ask for the compact answer (:meth:`FetchBatchAnswer.encode_compact`).
    compact: bool = False
    #: Ask for the shared answer (compact too, each batch's proofs once).
    shared: bool = False

    def encode(self) -> bytes:
        if not 0 <= self.pad_to <= MAX_PAD_TO:
            raise LocalProtocolError("pad_to is at most 65,536")
        if len(self.slots) >= 1 << 16 or len(self.queries) > MAX_QUERIES:
            raise LocalProtocolError("too many slots or queries in one fetch")
        version = VERSION if self.intake is None else FETCH_INTAKE_VERSION
        if self.compact or self.shared:
            version = FETCH_SHARED_VERSION if self.shared else FETCH_COMPACT_VERSION
        w = Writer().u8(version).u64(self.known_size).u32(self.pad_to).u16(len(self.slots))
        for slot in self.slots:
            check_slot(slot)
            w.fixed(slot, SLOT_LEN)
        w.u8(len(self.queries))
        for q in self.queries:
            w.fixed(q.encode(), QUERY_LEN)
        if self.intake is not None:
            self.intake.write(w)
        return w.bytes()

    @classmethod
    def decode(cls, raw: bytes) -> FetchBatch:
        r = Reader(raw)
        version = r.u8()
        if version not in (
            VERSION,
            FETCH_INTAKE_VERSION,
            FETCH_COMPACT_VERSION,
            FETCH_SHARED_VERSION,
        ):
            raise DecodeError(f"unknown batch fetch version {version}")
        known_size, pad_to = r.u64(), r.u32()
        if pad_to > MAX_PAD_TO:
            raise DecodeError("pad_to is at most 65,536")
        slots = tuple(r.fixed(SLOT_LEN) for _ in range(r.u16()))
        count = r.u8()
        if count > MAX_QUERIES:
            raise DecodeError(f"a fetch carries at most {MAX_QUERIES} log queries")
        queries = tuple(Query.read(r) for _ in range(count))
        intake = None
        compact = version in (FETCH_COMPACT_VERSION, FETCH_SHARED_VERSION)
        if version == FETCH_INTAKE_VERSION or (compact and r.remaining()):
            intake = IntakeAsk.read(r)
        r.end()
        return cls(
            known_size, pad_to, slots, queries, intake, compact, version == FETCH_SHARED_VERSION
        )


@dataclass(frozen=True, slots=True)
class FetchedCell:
    slot: bytes = field(repr=False)
    #: None for a cell stored without a log.
    place: BatchPlace | None
    cell: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class FetchBatchAnswer:
    """The cells found, the spent slots, the signed absence of the rest, the log
    data proving the cells (against one head), and one answer per query, in order."""

    cells: tuple[FetchedCell, ...]
    spent: tuple[bytes, ...] = field(default=(), repr=False)
    #: The encoded signed statement of absence of every asked slot that held
    #: nothing (empty when every slot held something).
    absent: bytes = field(default=b"", repr=False)
    log: LogBundle = field(default_factory=LogBundle)
    answers: tuple[QueryAnswer, ...] = ()
    #: The intake requests (number, sealed cell), when the fetch asked for them.
    intake: tuple[tuple[int, bytes], ...] | None = field(default=None, repr=False)

    def cell_map(self) -> dict[bytes, bytes]:
        return {c.slot: c.cell for c in self.cells}

    def places(self) -> dict[bytes, CellPlace]:
        """Each proved cell's place against the bundle's head, by slot."""
        out: dict[bytes, CellPlace] = {}
        for c in self.cells:
            place = None if c.place is None else self.log.place(c.place)
            if place is not None:
                out[c.slot] = place
        return out

    def absence(self) -> Absence | None:
        return Absence.decode(self.absent) if self.absent else None

    def answers_match(self, queries: Sequence[Query]) -> bool:
        """True when :attr:`answers` answer ``queries`` one for one, kind for kind."""
        return len(queries) == len(self.answers) and all(
            q.kind is a.kind for q, a in zip(queries, self.answers, strict=True)
        )

    def slot_reads(self, queries: Sequence[Query]) -> dict[bytes, SlotRead]:
        """The answered ABSENCE queries among ``queries`` (the ones sent), by slot."""
        return {
            q.slot: decode_slot_read(a.payload)
            for q, a in zip(queries, self.answers, strict=False)
            if q.kind is QueryKind.ABSENCE and a.kind is QueryKind.ABSENCE and a.ok
        }

    def encode(self, pad_to: int = 1) -> bytes:
        if not 0 <= pad_to <= MAX_PAD_TO:
            raise LocalProtocolError("pad_to is at most 65,536")
        if len(self.answers) > MAX_QUERIES:
            raise LocalProtocolError("too many query answers")
        w = Writer().u8(VERSION).u16(len(self.cells))
        for c in self.cells:
            check_slot(c.slot)
            w.fixed(c.slot, SLOT_LEN)
            BatchPlace.write_optional(w, c.place)
            write_cell(w, c.cell)
        w.u16(len(self.spent))
        for slot in self.spent:
            check_slot(slot)
            w.fixed(slot, SLOT_LEN)
        w.u32(len(self.absent)).fixed(self.absent, len(self.absent))
        return self._tail(w, pad_to)

    def encode_compact(
        self, asked: Sequence[bytes], pad_to: int = 1, *, shared: bool = False
    ) -> bytes:
        """The answer to a compact fetch (version 3) of ``asked``: what the client
        knows is not sent again.

        ``version 2 | status of each distinct asked slot, in order, two bits each
        (first slot in the high bits; 0 empty, 1 a cell, 2 spent), zero bits up to
        a byte | each cell, in order: place | cell_len u32 | cell | absence``, then
        the bundle (each hash once, :meth:`LogBundle.write`), answers, intake and
        padding as :meth:`encode`. ``absence`` is
        ``0`` when no slot was empty or spent, else ``1 | served_at u64 |
        retention u32 | signature [64]``: the client rebuilds the signed
        statement from the slots' statuses, its tenant and the bundle's head, the
        statement's own (:meth:`decode_compact`).

        ``shared`` (to a version 4 fetch): version 3, each place without its
        proof and, after the cells, each batch's shared proof
        (:mod:`.batch_proofs`); the client computes the cells' entries."""
        if not 0 <= pad_to <= MAX_PAD_TO:
            raise LocalProtocolError("pad_to is at most 65,536")
        slots = tuple(dict.fromkeys(asked))
        found = {c.slot: c for c in self.cells}
        spent = set(self.spent)
        if found.keys() & spent or not found.keys() | spent <= set(slots):
            raise LocalProtocolError(
                "an answer's cells and spent slots must be distinct slots asked"
            )
        empty = set(slots) - found.keys() - spent
        absence = self.absence()
        if (
            (absence is None and (empty or spent))
            or (absence is not None and (set(absence.slots), set(absence.spent)) != (empty, spent))
        ):  # fmt: skip
            raise LocalProtocolError("the statement of absence must name the empty and spent slots")
        statuses = [
            SLOT_CELL if slot in found else SLOT_SPENT if slot in spent else SLOT_EMPTY
            for slot in slots
        ]
        w = Writer().u8(SHARED_VERSION if shared else COMPACT_ANSWER_VERSION)
        w.fixed(_pack(statuses), (len(slots) + 3) // 4)
        named = [found[slot] for slot in slots if slot in found]
        for c in named:
            if shared:
                write_place(w, c.place)
            else:
                BatchPlace.write_optional(w, c.place)
            write_cell(w, c.cell)
        if shared:
            write_shared(w, [c.place for c in named])
        if absence is None:
            w.u8(0)
        else:
            w.u8(1).u64(absence.served_at).u32(absence.retention)
            w.fixed(absence.signature, ED25519_SIG_LEN)
        rebuilt = {c.place.leaf_index for c in named if shared and c.place is not None}
        return self._tail(w, pad_to, dedup=True, rebuilt=rebuilt)

    def _tail(
        self,
        w: Writer,
        pad_to: int,
        *,
        dedup: bool = False,
        rebuilt: Collection[int] = frozenset(),
    ) -> bytes:
        self.log.write(w, dedup=dedup, rebuilt=rebuilt)
        w.u8(len(self.answers))
        for answer in self.answers:
            answer.encode(w)
        if self.intake is not None:
            if len(self.intake) > MAX_INTAKE_ROWS:
                raise LocalProtocolError("too many intake requests in one answer")
            w.u8(INTAKE_MARK).u16(len(self.intake))
            for seq, cell in self.intake:
                w.u64(seq)
                write_cell(w, cell)
        raw = w.bytes()
        return raw + bytes(_padding(len(raw), pad_to))

    @classmethod
    def decode(cls, raw: bytes, pad_to: int = 1, intake: bool = False) -> FetchBatchAnswer:
        """Decode an answer padded to ``pad_to`` (the value the fetch sent); ``intake``:
        whether the fetch asked for intake requests (the answer then carries them)."""
        r = Reader(raw)
        expect_version(r, VERSION, "batch fetch answer")
        cells = tuple(
            FetchedCell(r.fixed(SLOT_LEN), BatchPlace.read_optional(r), read_cell(r))
            for _ in range(r.u16())
        )
        spent = tuple(r.fixed(SLOT_LEN) for _ in range(r.u16()))
        absent = read_absence(r, empty=True)
        return cls._read_tail(r, raw, pad_to, intake, cells, spent, absent, LogBundle.read(r))

    @classmethod
    def decode_compact(
        cls,
        raw: bytes,
        asked: Sequence[bytes],
        tenant_id: str,
        pad_to: int = 1,
        intake: bool = False,
    ) -> FetchBatchAnswer:
        """Decode a compact answer (:meth:`encode_compact`) to a fetch of ``asked``
        from ``tenant_id``, into the answer it stands for: the cells with their
        slots, the spent slots, and the whole statement of absence (not verified
        here; a relay that signed another one fails its verification)."""
        r = Reader(raw)
        version = r.u8()
        if version not in (COMPACT_ANSWER_VERSION, SHARED_VERSION):
            raise DecodeError(f"unknown compact batch fetch answer version {version}")
        slots = tuple(dict.fromkeys(asked))
        statuses = _unpack(r.fixed((len(slots) + 3) // 4), len(slots))
        of = {st: tuple(s for s, got in zip(slots, statuses, strict=True) if got == st)
              for st in (SLOT_EMPTY, SLOT_CELL, SLOT_SPENT)}  # fmt: skip
        rebuilt: dict[int, tuple[int, bytes]] = {}
        if version == SHARED_VERSION:
            cells, rebuilt = _read_shared_cells(r, of[SLOT_CELL], tenant_id)
        else:
            cells = tuple(
                FetchedCell(s, BatchPlace.read_optional(r), read_cell(r)) for s in of[SLOT_CELL]
            )
        empty, spent = of[SLOT_EMPTY], of[SLOT_SPENT]
        has_absence = r.u8()
        if has_absence != int(bool(empty or spent)):
            raise DecodeError("a compact answer states absence exactly when a slot was empty")
        signed = (r.u64(), r.u32(), r.fixed(ED25519_SIG_LEN)) if has_absence else None
        log = LogBundle.read(r, dedup=True, rebuilt=rebuilt)
        absent = b""
        if signed is not None:
            head = log.head()
            if head is None:
                raise DecodeError("a statement of absence needs the answer's head")
            served_at, retention, signature = signed
            try:
                absent = Absence(
                    head, served_at, tenant_id, tuple(sorted(empty)), signature, retention,
                    tuple(sorted(spent)),
                ).encode()  # fmt: skip
            except LocalProtocolError as exc:
                raise DecodeError(f"a compact statement of absence cannot stand: {exc}") from None
        return cls._read_tail(r, raw, pad_to, intake, cells, spent, absent, log)

    @classmethod
    def _read_tail(
        cls,
        r: Reader,
        raw: bytes,
        pad_to: int,
        intake: bool,
        cells: tuple[FetchedCell, ...],
        spent: tuple[bytes, ...],
        absent: bytes,
        log: LogBundle,
    ) -> FetchBatchAnswer:
        count = r.u8()
        if count > MAX_QUERIES:
            raise DecodeError(f"an answer carries at most {MAX_QUERIES} query answers")
        answers = tuple(QueryAnswer.read(r) for _ in range(count))
        rows = None
        if intake:
            if r.u8() != INTAKE_MARK:
                raise DecodeError("the answer lacks the intake requests asked for")
            n = r.u16()
            if n > MAX_INTAKE_ROWS:
                raise DecodeError("too many intake requests in one answer")
            rows = tuple((r.u64(), read_cell(r)) for _ in range(n))
        body = len(raw) - r.remaining()
        padding = r.rest()
        if not 0 <= pad_to <= MAX_PAD_TO or len(padding) != _padding(body, pad_to) or any(padding):
            raise DecodeError("the answer's padding is wrong")
        return cls(cells, spent, absent, log, answers, rows)


def _read_shared_cells(
    r: Reader, slots: Sequence[bytes], tenant_id: str
) -> tuple[tuple[FetchedCell, ...], dict[int, tuple[int, bytes]]]:
    """The cells of a shared answer (version 3), their proofs rebuilt from each
    batch's shared proof and the cells' entries (the tenant fetched from, each
    slot and the hash of the cell found there); and each batch's size and root
    by leaf index (:func:`.batch_proofs.read_shared`)."""
    got = [(read_place(r), read_cell(r)) for _ in slots]
    held = [(tenant_id, slot, cell) for slot, (_, cell) in zip(slots, got, strict=True)]
    places, rebuilt = read_shared(r, [p for p, _ in got], held)
    cells = tuple(
        FetchedCell(slot, place, cell)
        for slot, place, (_, cell) in zip(slots, places, got, strict=True)
    )
    return cells, rebuilt


def _pack(statuses: Sequence[int]) -> bytes:
    """Two bits a status, the first in the high bits, zero bits up to a byte."""
    packed = bytearray((len(statuses) + 3) // 4)
    for i, st in enumerate(statuses):
        packed[i // 4] |= st << (6 - 2 * (i % 4))
    return bytes(packed)


def _unpack(packed: bytes, count: int) -> list[int]:
    """``count`` statuses from :func:`_pack`'s bytes; refused unless canonical."""
    statuses = [(packed[i // 4] >> (6 - 2 * (i % 4))) & 3 for i in range(count)]
    if _pack(statuses) != packed or SLOT_SPENT + 1 in statuses:
        raise DecodeError("a compact answer's slot statuses are malformed")
    return statuses


def _padding(length: int, pad_to: int) -> int:
    return (-length) % pad_to if pad_to > 1 else 0
