"""The batch deposit and its answer (``docs/spec/relay-api.md``, "Batch exchange").

* :class:`DepositBatch` ``version | known_size u64 | count u16 | count x
  (tenant_len u8 | tenant | slot [32] | cell_len u32 | cell)``;
* :class:`DepositBatchAnswer` ``version | count u16 | count x CellResult |
  LogBundle``, ``CellResult = status u16 | cell_id [32] | has_place u8 |
  (leaf_index u64 | batch_position u32 | batch_size u32 | batch proof)``.

A deposit of version 2 (the layout of version 1) asks for the compact answer
(version 2, the layout of version 1, its bundle listing each hash once:
:meth:`LogBundle.write`). A deposit of version 3 asks for the *shared* answer
(version 3): what the depositor knows is not sent again. Each result is
``status u16 | leaf_index u64 | batch_position u32 | batch_size u32`` (zeros
for a cell refused or stored without a log), with no cell id (the cell's
SHA-256, which the depositor computes) and no per-cell proof; then each
batch's shared proof (:mod:`.batch_proofs`), then the compact bundle.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from backchannel.crypto.primitives import HASH_LEN
from backchannel.errors import DecodeError, LocalProtocolError
from backchannel.protocol.batch_log import (
    BatchPlace,
    CellPlace,
    LogBundle,
    check_slot,
    read_cell,
    write_cell,
)
from backchannel.protocol.batch_proofs import read_place, read_shared, write_place, write_shared
from backchannel.protocol.codec import Reader, Writer
from backchannel.protocol.constants import SLOT_LEN

VERSION = 1
#: The version byte of a deposit that asks for the compact answer.
DEPOSIT_COMPACT_VERSION = 2
#: The version byte of the compact answers (a deposit's, a fetch's).
COMPACT_ANSWER_VERSION = 2
#: The version byte of a deposit that asks for the shared answer, and of the
#: shared answers (a deposit's, a fetch's): each batch's proofs once.
SHARED_VERSION = 3
#: Every per-cell status a deposit answer may carry.
STATUSES = frozenset({200, 201, 400, 404, 409, 429, 503, 507})
_STORED = (200, 201)
_NO_ID = bytes(HASH_LEN)


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
    #: Ask for the answer that sends each batch's proofs once (version 3; compact too).
    shared: bool = False

    @property
    def version(self) -> int:
        return (
            SHARED_VERSION if self.shared else DEPOSIT_COMPACT_VERSION if self.compact else VERSION
        )

    def encode(self) -> bytes:
        if len(self.cells) >= 1 << 16:
            raise LocalProtocolError("a batch holds at most 65,535 cells")
        w = Writer().u8(self.version).u64(self.known_size).u16(len(self.cells))
        for c in self.cells:
            if not c.tenant_id.isascii() or len(c.tenant_id) > 255:
                raise LocalProtocolError("a tenant id is at most 255 ASCII characters")
            tenant = c.tenant_id.encode("ascii")
            check_slot(c.slot)
            w.u8(len(tenant)).fixed(tenant, len(tenant)).fixed(c.slot, SLOT_LEN)
            write_cell(w, c.cell)
        return w.bytes()

    @classmethod
    def decode(cls, raw: bytes) -> DepositBatch:
        r = Reader(raw)
        version = r.u8()
        if version not in (VERSION, DEPOSIT_COMPACT_VERSION, SHARED_VERSION):
            raise DecodeError(f"unknown batch deposit version {version}")
        known_size, count = r.u64(), r.u16()
        cells = []
        for _ in range(count):
            tenant = r.fixed(r.u8())
            if not tenant.isascii():
                raise DecodeError("a tenant id is ASCII")
            cells.append(DepositCell(tenant.decode("ascii"), r.fixed(SLOT_LEN), read_cell(r)))
        r.end()
        return cls(known_size, tuple(cells), version != VERSION, version == SHARED_VERSION)


@dataclass(frozen=True, slots=True)
class CellResult:
    """What became of one cell: ``status`` (201 stored, 200 held already, else refused)."""

    status: int
    cell_id: bytes = _NO_ID
    place: BatchPlace | None = None

    @property
    def stored(self) -> bool:
        return self.status in _STORED

    def check(self) -> None:
        if self.status not in STATUSES or (
            not self.stored and (self.cell_id != _NO_ID or self.place is not None)
        ):
            raise LocalProtocolError("a refused cell has no id and no place")

    def write(self, w: Writer) -> None:
        self.check()
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

    def encode(self, *, compact: bool = False, shared: bool = False) -> bytes:
        """The answer; ``compact`` (to a version 2 deposit): version 2, its bundle
        listing each hash once (:meth:`LogBundle.write`); ``shared`` (to a version 3
        deposit): version 3, each batch's proof once, no cell ids, and the leaves of
        the batches named as their times alone."""
        if not shared:
            w = Writer().u8(COMPACT_ANSWER_VERSION if compact else VERSION)
            w.u16(len(self.results))
            for result in self.results:
                result.write(w)
            self.log.write(w, dedup=compact)
            return w.bytes()
        w = Writer().u8(SHARED_VERSION).u16(len(self.results))
        for result in self.results:
            result.check()
            w.u16(result.status)
            write_place(w, result.place)
        places = [c.place for c in self.results]
        write_shared(w, places)
        self.log.write(w, dedup=True, rebuilt={p.leaf_index for p in places if p is not None})
        return w.bytes()

    @classmethod
    def decode(cls, raw: bytes, batch: DepositBatch | None = None) -> DepositBatchAnswer:
        """Any version of the answer (:meth:`encode`); the shared one (version 3)
        only with the ``batch`` it answers, whose cells it does not repeat."""
        r = Reader(raw)
        version = r.u8()
        if version not in (VERSION, COMPACT_ANSWER_VERSION, SHARED_VERSION):
            raise DecodeError(f"unknown batch deposit answer version {version}")
        rebuilt: dict[int, tuple[int, bytes]] = {}
        if version == SHARED_VERSION:
            results, rebuilt = cls._read_shared(r, batch)
        else:
            results = tuple(CellResult.read(r) for _ in range(r.u16()))
        log = LogBundle.read(r, dedup=version != VERSION, rebuilt=rebuilt)
        r.end()
        return cls(results, log)

    @staticmethod
    def _read_shared(
        r: Reader, batch: DepositBatch | None
    ) -> tuple[tuple[CellResult, ...], dict[int, tuple[int, bytes]]]:
        if batch is None:
            raise DecodeError("a shared deposit answer reads only beside its deposit")
        count = r.u16()
        if count != len(batch.cells):
            raise DecodeError("a deposit answer has one result per cell deposited")
        statuses, places = [], []
        for _ in range(count):
            status, place = r.u16(), read_place(r)
            if status not in STATUSES or (status not in _STORED and place is not None):
                raise DecodeError("malformed cell result")
            statuses.append(status)
            places.append(place)
        held = [(c.tenant_id, c.slot, c.cell) for c in batch.cells]
        proved, rebuilt = read_shared(r, places, held)
        results = tuple(
            CellResult(status, hashlib.sha256(c.cell).digest(), place)
            if status in _STORED
            else CellResult(status)
            for status, c, place in zip(statuses, batch.cells, proved, strict=True)
        )
        return results, rebuilt
