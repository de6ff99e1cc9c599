"""The batch exchange with a relay: one deposit and one fetch per device per round.

Binary bodies (``docs/spec/relay-api.md``, "Batch exchange"); all integers
big-endian, version byte first, every decoder strict (a truncated, overlong
or padded-wrong body raises :class:`~backchannel.errors.DecodeError`, and
nothing else). A *proof* is ``count u8 | count x hash [32]``.

* :class:`DepositBatch` ``version | known_size u64 | count u16 | count x
  (tenant_len u8 | tenant | slot [32] | cell_len u32 | cell)``;
* :class:`DepositBatchAnswer` ``version | count u16 | count x CellResult |
  LogBundle``, ``CellResult = status u16 | cell_id [32] | has_place u8 |
  (leaf_index u64 | batch_position u32 | batch_size u32 | batch proof)``;
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
  bundle carries): :meth:`FetchBatchAnswer.encode_compact`. A deposit of
  version 2 (the layout of version 1) asks for its compact answer (version 2:
  the layout of version 1). In both, the bundle lists each of its proofs'
  hashes once (:meth:`LogBundle.write`).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from backchannel.crypto.primitives import HASH_LEN
from backchannel.crypto.signing import ED25519_SIG_LEN
from backchannel.errors import DecodeError, LocalProtocolError
from backchannel.protocol.batch_log import (
    MAX_CELL_LEN,
    BatchPlace,
    CellPlace,
    LeafProof,
    LogBundle,
    read_absence,
    read_cell,
)
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
    "MAX_PAD_TO",
    "MAX_QUERIES",
    "QUERY_LEN",
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

VERSION = 1
#: The version byte of a deposit that asks for the compact answer.
DEPOSIT_COMPACT_VERSION = 2
#: The version byte of the compact answers (a deposit's, a fetch's).
COMPACT_ANSWER_VERSION = 2
#: Most queries in one fetch.
MAX_QUERIES = 64
#: Largest ``pad_to`` a fetch may ask for.
MAX_PAD_TO = 65536
#: Every per-cell status a deposit answer may carry.
STATUSES = frozenset({200, 201, 400, 404, 409, 429, 503, 507})
_STORED = (200, 201)
_NO_ID = bytes(HASH_LEN)


def _check_slot(slot: bytes) -> None:
    if len(slot) != SLOT_LEN:
        raise LocalProtocolError("a slot address is 32 bytes")


def _write_cell(w: Writer, cell: bytes) -> None:
    if len(cell) > MAX_CELL_LEN:
        raise LocalProtocolError("a cell is too long")
    w.u32(len(cell)).fixed(cell, len(cell))


# -- deposit ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DepositCell:
    tenant_id: str
    slot: bytes = field(repr=False)
    cell: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class DepositBatch:
    """Cells to deposit, to any tenants; ``known_size`` is the client's verified log size."""

    known_size: int
    cells: tuple[DepositCell, ...]
    #: Ask for the answer whose bundle lists each hash once (version 2).
    compact: bool = False

    def encode(self) -> bytes:
        if len(self.cells) >= 1 << 16:
            raise LocalProtocolError("a batch holds at most 65,535 cells")
        version = DEPOSIT_COMPACT_VERSION if self.compact else VERSION
        w = Writer().u8(version).u64(self.known_size).u16(len(self.cells))
        for c in self.cells:
            if not c.tenant_id.isascii() or len(c.tenant_id) > 255:
                raise LocalProtocolError("a tenant id is at most 255 ASCII characters")
            tenant = c.tenant_id.encode("ascii")
            _check_slot(c.slot)
            w.u8(len(tenant)).fixed(tenant, len(tenant)).fixed(c.slot, SLOT_LEN)
            _write_cell(w, c.cell)
        return w.bytes()

    @classmethod
    def decode(cls, raw: bytes) -> DepositBatch:
        r = Reader(raw)
        version = r.u8()
        if version not in (VERSION, DEPOSIT_COMPACT_VERSION):
            raise DecodeError(f"unknown batch deposit version {version}")
        known_size, count = r.u64(), r.u16()
        cells = []
        for _ in range(count):
            tenant = r.fixed(r.u8())
            if not tenant.isascii():
                raise DecodeError("a tenant id is ASCII")
            cells.append(DepositCell(tenant.decode("ascii"), r.fixed(SLOT_LEN), read_cell(r)))
        r.end()
        return cls(known_size, tuple(cells), version == DEPOSIT_COMPACT_VERSION)


@dataclass(frozen=True, slots=True)
class CellResult:
    """What became of one cell: ``status`` (201 stored, 200 held already, else refused)."""

    status: int
    cell_id: bytes = _NO_ID
    place: BatchPlace | None = None

    @property
    def stored(self) -> bool:
        return self.status in _STORED

    def write(self, w: Writer) -> None:
        if self.status not in STATUSES or (
            not self.stored and (self.cell_id != _NO_ID or self.place is not None)
        ):
            raise LocalProtocolError("a refused cell has no id and no place")
        w.u16(self.status).fixed(self.cell_id, HASH_LEN)
        if self.place is None:
            w.u8(0)
        else:
            w.u8(1)
            self.place.write(w)

    @classmethod
    def read(cls, r: Reader) -> CellResult:
        status, cell_id, has_place = r.u16(), r.fixed(HASH_LEN), r.u8()
        if status not in STATUSES or has_place not in (0, 1):
            raise DecodeError("malformed cell result")
        if status not in _STORED and (cell_id != _NO_ID or has_place):
            raise DecodeError("a refused cell has no id and no place")
        return cls(status, cell_id, BatchPlace.read(r) if has_place else None)


@dataclass(frozen=True, slots=True)
class DepositBatchAnswer:
    """One result per deposited cell, in order, and the log data proving their places."""

    results: tuple[CellResult, ...]
    log: LogBundle

    def places(self) -> list[CellPlace | None]:
        """Each cell's place against the bundle's head (None if refused or unplaced)."""
        return [None if c.place is None else self.log.place(c.place) for c in self.results]

    def encode(self, *, compact: bool = False) -> bytes:
        """The answer; ``compact`` (to a version 2 deposit): version 2, its bundle
        listing each hash once (:meth:`LogBundle.write`)."""
        w = Writer().u8(COMPACT_ANSWER_VERSION if compact else VERSION).u16(len(self.results))
        for result in self.results:
            result.write(w)
        self.log.write(w, dedup=compact)
        return w.bytes()

    @classmethod
    def decode(cls, raw: bytes) -> DepositBatchAnswer:
        """Either version of the answer (:meth:`encode`)."""
        r = Reader(raw)
        version = r.u8()
        if version not in (VERSION, COMPACT_ANSWER_VERSION):
            raise DecodeError(f"unknown batch deposit answer version {version}")
        results = tuple(CellResult.read(r) for _ in range(r.u16()))
        log = LogBundle.read(r, dedup=version == COMPACT_ANSWER_VERSION)
        r.end()
        return cls(results, log)


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


@dataclass(frozen=True, slots=True)
class IntakeAsk:
    """The public intake's part of a fetch: requests numbered above ``after`` (at
    most ``limit``), and whether the mission wants its intake open (``None``: this
    device states nothing; encoded 0 closed, 1 open, 2 nothing)."""

    after: int
    limit: int
    is_open: bool | None

    def write(self, w: Writer) -> None:
        if not 1 <= self.limit <= MAX_INTAKE_ROWS or self.after < 0:
            raise LocalProtocolError("an intake ask takes 1 to 256 requests after a number >= 0")
        flag = 2 if self.is_open is None else int(self.is_open)
        w.u8(INTAKE_MARK).u64(self.after).u16(self.limit).u8(flag)

    @classmethod
    def read(cls, r: Reader) -> IntakeAsk:
        if r.u8() != INTAKE_MARK:
            raise DecodeError("unknown part after a fetch's queries")
        after, limit, flag = r.u64(), r.u16(), r.u8()
        if not 1 <= limit <= MAX_INTAKE_ROWS or flag > 2:
            raise DecodeError("an intake ask takes 1 to 256 requests, open 0, 1 or 2")
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

    def encode(self) -> bytes:
        if not 0 <= self.pad_to <= MAX_PAD_TO:
            raise LocalProtocolError("pad_to is at most 65,536")
        if len(self.slots) >= 1 << 16 or len(self.queries) > MAX_QUERIES:
            raise LocalProtocolError("too many slots or queries in one fetch")
        version = VERSION if self.intake is None else FETCH_INTAKE_VERSION
        if self.compact:
            version = FETCH_COMPACT_VERSION
        w = Writer().u8(version).u64(self.known_size).u32(self.pad_to).u16(len(self.slots))
        for slot in self.slots:
            _check_slot(slot)
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
        if version not in (VERSION, FETCH_INTAKE_VERSION, FETCH_COMPACT_VERSION):
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
        if version == FETCH_INTAKE_VERSION or (version == FETCH_COMPACT_VERSION and r.remaining()):
            intake = IntakeAsk.read(r)
        r.end()
        return cls(known_size, pad_to, slots, queries, intake, version == FETCH_COMPACT_VERSION)


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
            _check_slot(c.slot)
            w.fixed(c.slot, SLOT_LEN)
            BatchPlace.write_optional(w, c.place)
            _write_cell(w, c.cell)
        w.u16(len(self.spent))
        for slot in self.spent:
            _check_slot(slot)
            w.fixed(slot, SLOT_LEN)
        w.u32(len(self.absent)).fixed(self.absent, len(self.absent))
        return self._tail(w, pad_to)

    def encode_compact(self, asked: Sequence[bytes], pad_to: int = 1) -> bytes:
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
        statement's own (:meth:`decode_compact`)."""
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
        w = Writer().u8(COMPACT_ANSWER_VERSION)
        w.fixed(_pack(statuses), (len(slots) + 3) // 4)
        for slot in slots:
            if slot in found:
                BatchPlace.write_optional(w, found[slot].place)
                _write_cell(w, found[slot].cell)
        if absence is None:
            w.u8(0)
        else:
            w.u8(1).u64(absence.served_at).u32(absence.retention)
            w.fixed(absence.signature, ED25519_SIG_LEN)
        return self._tail(w, pad_to, dedup=True)

    def _tail(self, w: Writer, pad_to: int, *, dedup: bool = False) -> bytes:
        self.log.write(w, dedup=dedup)
        w.u8(len(self.answers))
        for answer in self.answers:
            answer.encode(w)
        if self.intake is not None:
            if len(self.intake) > MAX_INTAKE_ROWS:
                raise LocalProtocolError("too many intake requests in one answer")
            w.u8(INTAKE_MARK).u16(len(self.intake))
            for seq, cell in self.intake:
                w.u64(seq)
                _write_cell(w, cell)
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
        expect_version(r, COMPACT_ANSWER_VERSION, "compact batch fetch answer")
        slots = tuple(dict.fromkeys(asked))
        statuses = _unpack(r.fixed((len(slots) + 3) // 4), len(slots))
        of = {st: tuple(s for s, got in zip(slots, statuses, strict=True) if got == st)
              for st in (SLOT_EMPTY, SLOT_CELL, SLOT_SPENT)}  # fmt: skip
        cells = tuple(
            FetchedCell(s, BatchPlace.read_optional(r), read_cell(r)) for s in of[SLOT_CELL]
        )
        empty, spent = of[SLOT_EMPTY], of[SLOT_SPENT]
        has_absence = r.u8()
        if has_absence != int(bool(empty or spent)):
            raise DecodeError("a compact answer states absence exactly when a slot was empty")
        signed = (r.u64(), r.u32(), r.fixed(ED25519_SIG_LEN)) if has_absence else None
        log = LogBundle.read(r, dedup=True)
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
