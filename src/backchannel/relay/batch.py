"""The batch exchange: one deposit and one fetch per device and round.

``POST /v1/batch/deposit`` (no authentication: a slot is its own capability)
stores a device's cells for every tenant it writes to. Each cell is checked
and stored as a single deposit would be, all of them concurrently so that
they join the same group commit, and each is answered on its own: a refusal
never fails the others. ``POST /v1/tenants/{tenant_id}/batch/fetch`` reads a
tenant's slots in one snapshot and answers the log queries that came with
them. Both answers prove every cell against one compact signed head and carry
everything the client's log checks need (leaves, inclusion proofs, the
consistency proof from the client's size, the key on first contact), so the
client never makes another request to check them. Layouts:
:mod:`backchannel.protocol.batch`; ``docs/spec/relay-api.md``, "Batch exchange".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from starlette.requests import Request
from starlette.responses import Response

from backchannel.errors import (
    DecodeError,
    LocalProtocolError,
    QuotaExceeded,
    SlotConflict,
    StoreUnavailable,
    UnknownTenant,
)
from backchannel.protocol.batch import (
    BatchPlace,
    CellResult,
    DepositBatch,
    DepositBatchAnswer,
    FetchBatch,
    FetchBatchAnswer,
    FetchedCell,
    LeafProof,
    LogBundle,
    Query,
    QueryAnswer,
    QueryKind,
    SlotRead,
    encode_consistency,
    encode_entry,
)
from backchannel.protocol.merkle import TREE_HEAD_LEN, TreeHead
from backchannel.protocol.note import Checkpoint
from backchannel.protocol.witnessing import CheckpointAnswer
from backchannel.relay.intake import intake_round
from backchannel.relay.requests import HTTPRefusal, is_tenant_id, read_body
from backchannel.relay.service import MAX_INDEX, RelayService
from backchannel.store.relay_store import CellProof, DepositResult

_OCTETS = "application/octet-stream"
_NO_STORE = {"Cache-Control": "no-store"}
_MALFORMED = "the request body is not a batch of this relay's version; see /openapi.json"
_TOO_LARGE = "indexes and sizes must be below 2**63"


def _place(proof: CellProof | None) -> BatchPlace | None:
    if proof is None:
        return None
    return BatchPlace(
        proof.leaf_index, proof.batch_position, proof.batch_size, tuple(proof.batch_proof)
    )


class BatchEndpoints:
    """The two batch endpoints of one relay app; route labels are the method names."""

    def __init__(self, service: RelayService) -> None:
        self.service = service

    # -- deposit -------------------------------------------------------------------

    async def batch_deposit(self, request: Request) -> Response:
        service = self.service
        s = service.settings
        raw = await read_body(request, s.batch_deposit_limit, _OCTETS)
        try:
            batch = DepositBatch.decode(raw)
        except DecodeError:
            raise HTTPRefusal(400, _MALFORMED) from None
        if len(batch.cells) > s.max_batch:
            raise HTTPRefusal(400, f"send at most {s.max_batch} cells per batch")
        service.metrics.batch_cells.labels("deposit").observe(len(batch.cells))

        # Checks first, as a single deposit makes them; one rate-limit token
        # per tenant the batch writes to (a batch is one request to each).
        outcome: list[int | DepositResult] = [0] * len(batch.cells)
        tenants: dict[str, int] = {}
        for i, c in enumerate(batch.cells):
            if not is_tenant_id(c.tenant_id):
                service.metrics.deposit_outcome("malformed")
                outcome[i] = 400
            elif len(c.cell) != s.cell_size:
                service.metrics.deposit_outcome("wrong_size")
                outcome[i] = 400
            else:
                if c.tenant_id not in tenants:
                    tenants[c.tenant_id] = await self._tenant_status(c.tenant_id)
                outcome[i] = tenants[c.tenant_id]
                if outcome[i] == 404:
                    service.metrics.deposit_outcome("unknown_tenant")

        # Every accepted cell at once: they share the store's next commit.
        todo = [i for i, o in enumerate(outcome) if o == 0]
        now = service.coarse_now()
        done = await service.store.deposit_many(
            [(batch.cells[i].tenant_id, batch.cells[i].slot, batch.cells[i].cell) for i in todo],
            now,
        )
        for i, result in zip(todo, done, strict=True):
            outcome[i] = self._stored(result)

        log_bundle, proofs = await self._deposit_bundle(outcome, batch.known_size)
        results = []
        for o in outcome:
            if isinstance(o, DepositResult):
                place = None
                if o.leaf_index is not None and o.batch_position is not None:
                    place = _place(proofs.get((o.leaf_index, o.batch_position)))
                results.append(CellResult(201 if o.created else 200, o.cell_id, place))
            else:
                results.append(CellResult(o))
        # A version 2 deposit gets its bundle with each hash once; a version 3
        # one, each batch's proof once too.
        body = DepositBatchAnswer(tuple(results), log_bundle).encode(
            compact=batch.compact, shared=batch.shared
        )
        return Response(body, media_type=_OCTETS, headers=_NO_STORE)

    async def _tenant_status(self, tenant_id: str) -> int:
        """0 when cells may go to this tenant now, else the status refusing them."""
        service = self.service
        if await service.tenant(tenant_id) is None:
            return 404
        if service.tenant_limits.take(tenant_id):
            service.metrics.rate_limited.labels("tenant").inc()
            return 429
        return 0

    def _stored(self, result: DepositResult | BaseException) -> int | DepositResult:
        """A store's answer to one deposit, as a result or the status refusing the cell."""
        metrics = self.service.metrics
        if isinstance(result, DepositResult):
            metrics.deposit_outcome("created" if result.created else "duplicate")
            return result
        if isinstance(result, SlotConflict):
            metrics.deposit_outcome("conflict")
            return 409
        if isinstance(result, QuotaExceeded):
            metrics.deposit_outcome("quota")
            return 507
        if isinstance(result, UnknownTenant):
            metrics.deposit_outcome("unknown_tenant")
            return 404
        if isinstance(result, StoreUnavailable):
            self.service.log_store_unavailable(result)
            return 503
        raise result

    async def _deposit_bundle(
        self, outcome: Sequence[int | DepositResult], known_size: int
    ) -> tuple[LogBundle, dict[tuple[int, int], CellProof]]:
        """One head covering every stored cell (taken after they are all durable),
        and each stored cell's proofs against it."""
        positions = sorted(
            {
                (o.leaf_index, o.batch_position)
                for o in outcome
                if isinstance(o, DepositResult)
                and o.leaf_index is not None
                and o.batch_position is not None
            }
        )
        try:
            signed = await self.service.store.compact_head()
        except StoreUnavailable:
            if positions:
                raise  # stored cells need their proofs: 503, and the client retries
            return LogBundle(), {}  # a relay that keeps no log
        head = TreeHead.decode(signed[:TREE_HEAD_LEN])
        proofs = await self._cell_proofs(positions, head.size)
        return await self._bundle(signed, head, proofs.values(), known_size), proofs

    async def _cell_proofs(
        self, positions: list[tuple[int, int]], size: int
    ) -> dict[tuple[int, int], CellProof]:
        store = self.service.store
        if not positions:
            return {}
        try:
            got = await store.cell_proofs(positions, size)
        except LookupError:
            # A batch past retention in this very instant: its cells go unplaced.
            got = []
            for position in positions:
                try:
                    got += await store.cell_proofs([position], size)
                except LookupError:
                    continue
        return {(p.leaf_index, p.batch_position): p for p in got}

    # -- the log data both answers carry ----------------------------------------------

    async def _leaf(self, index: int) -> bytes:
        # Read each time, not cached here: the store is the one place that
        # knows its log (a store restored from a backup has other leaves).
        return await self.service.store.log_leaf(index)

    async def _bundle(
        self, signed: bytes, head: TreeHead, proofs: Iterable[CellProof], known_size: int
    ) -> LogBundle:
        """The head, each proved leaf once with its inclusion proof, the consistency
        proof from ``known_size``, and the relay's key for a first contact."""
        store = self.service.store
        leaves: dict[int, LeafProof] = {}
        for p in proofs:
            if p.leaf_index not in leaves:
                leaves[p.leaf_index] = LeafProof(
                    await self._leaf(p.leaf_index), tuple(p.inclusion_proof)
                )
        consistency: tuple[bytes, ...] = ()
        if 0 < known_size < head.size:
            consistency = tuple(await store.consistency_proof(known_size, head.size))
        key = store.log_public_key() if known_size == 0 else b""
        return LogBundle(signed, leaves, consistency, key)

    # -- fetch ---------------------------------------------------------------------

    async def batch_fetch(self, request: Request) -> Response:
        service = self.service
        s = service.settings
        record = await service.authenticate(request)
        raw = await read_body(request, s.batch_fetch_limit, _OCTETS)
        try:
            batch = FetchBatch.decode(raw)
        except DecodeError:
            raise HTTPRefusal(400, _MALFORMED) from None
        if len(batch.slots) > s.max_batch:
            raise HTTPRefusal(400, f"send at most {s.max_batch} slots per request")
        service.metrics.batch_cells.labels("fetch").observe(len(batch.slots))
        tenant_id = record.tenant_id
        slots = list(dict.fromkeys(batch.slots))
        # The slots of the ABSENCE queries are read in the same snapshot, so
        # every answer is about the one head.
        extra = [q.slot for q in batch.queries if q.kind is QueryKind.ABSENCE]
        every = list(dict.fromkeys([*slots, *extra]))
        signed, found, proofs = await service.store.fetch_proved(tenant_id, every)
        head = TreeHead.decode(signed[:TREE_HEAD_LEN])

        cells = tuple(
            FetchedCell(slot, _place(proofs.get(slot)), cell)
            for slot in slots
            if (cell := found.get(slot))
        )
        spent = tuple(slot for slot in slots if found.get(slot) == b"")
        absent_slots = [slot for slot in slots if slot not in found]
        absent = b""
        if absent_slots or spent:
            # Signed: the slots held nothing (or a cell since acknowledged) in the
            # very read that saw this head.
            absent = service.store.sign_absence(
                head, service.coarse_now(), tenant_id, absent_slots, s.retention_seconds, spent
            )
        service.metrics.cells_fetched.inc(len(cells))
        shown = [proofs[c.slot] for c in cells if c.slot in proofs]
        log_bundle = await self._bundle(signed, head, shown, batch.known_size)
        answers = []
        for q in batch.queries:
            answers.append(await self._answer(q, tenant_id, head, found, proofs))
        rows = None
        if batch.intake is not None:
            # The public intake rides the same request (relay/intake.py).
            ask = batch.intake
            rows = tuple(await intake_round(service, tenant_id, ask.after, ask.limit, ask.is_open))
        answer = FetchBatchAnswer(cells, spent, absent, log_bundle, tuple(answers), rows)
        # A version 3 fetch gets the compact answer: nothing the client already
        # knows; a version 4 one, each batch's proof once too.
        if batch.compact:
            body = answer.encode_compact(slots, batch.pad_to, shared=batch.shared)
        else:
            body = answer.encode(batch.pad_to)
        return Response(body, media_type=_OCTETS, headers=_NO_STORE)

    async def _answer(
        self,
        q: Query,
        tenant_id: str,
        head: TreeHead,
        found: dict[bytes, bytes],
        proofs: dict[bytes, CellProof],
    ) -> QueryAnswer:
        """One query's answer; a refusal is ``ok = 0`` with the reason, never an error status."""
        service = self.service
        store = service.store
        kind = q.kind
        if any(n > MAX_INDEX for n in q.numbers):
            return QueryAnswer.refused(kind, _TOO_LARGE)
        try:
            if kind is QueryKind.NONE:
                payload = b""
            elif kind is QueryKind.CONSISTENCY:
                first, second = q.numbers
                try:
                    payload = encode_consistency(await store.consistency_proof(first, second))
                except LocalProtocolError:
                    raise HTTPRefusal(
                        400, "need 0 < first <= second <= the current log size"
                    ) from None
            elif kind is QueryKind.HEAD_AT:
                payload = await service.compact_head_at(q.numbers[0])
            elif kind is QueryKind.ENTRY:
                payload = encode_entry(*await service.entry_proof(*q.numbers))
            elif kind is QueryKind.LEAF:
                try:
                    payload = await self._leaf(q.numbers[0])
                except LookupError:
                    raise HTTPRefusal(404, "no such leaf yet; ask below the head's size") from None
            elif kind is QueryKind.CHECKPOINT:
                payload = await self._checkpoint(q.numbers[0])
            else:
                payload = await self._slot_read(q.slot, tenant_id, head, found, proofs)
        except HTTPRefusal as refusal:
            return QueryAnswer.refused(kind, refusal.message)
        return QueryAnswer(kind, True, payload)

    async def _checkpoint(self, known_size: int) -> bytes:
        """A CHECKPOINT query: the latest cosigned checkpoint, its key's binding, and
        the consistency proof between its size and ``known_size``."""
        checkpoints = self.service.checkpoints
        note = await checkpoints.served()
        if note is None:
            raise HTTPRefusal(503, "no witness has cosigned a checkpoint yet")
        size = Checkpoint.parse(note.text).size
        proof: list[bytes] = []
        if known_size and size and known_size != size:
            try:
                proof = await self.service.store.consistency_proof(
                    min(size, known_size), max(size, known_size)
                )
            except LocalProtocolError:
                raise HTTPRefusal(400, "that size is beyond the log") from None
        store = self.service.store
        return CheckpointAnswer(
            store.checkpoint_key().public,
            store.bind_checkpoint_key(checkpoints.origin),
            note.encode(),
            tuple(proof),
        ).encode()

    async def _slot_read(
        self,
        slot: bytes,
        tenant_id: str,
        head: TreeHead,
        found: dict[bytes, bytes],
        proofs: dict[bytes, CellProof],
    ) -> bytes:
        """An ABSENCE query: the slot as the answer's read saw it, self-contained."""
        service = self.service
        cell = found.get(slot)
        if cell:
            proof = proofs.get(slot)
            if proof is None:
                return SlotRead(cell).encode()
            leaf = await self._leaf(proof.leaf_index)
            return SlotRead(cell, _place(proof), leaf, tuple(proof.inclusion_proof)).encode()
        spent = [slot] if cell is not None else []  # acknowledged: signed as spent
        statement = service.store.sign_absence(
            head, service.coarse_now(), tenant_id, [] if spent else [slot],
            service.settings.retention_seconds, spent,
        )  # fmt: skip
        return SlotRead(absence=statement).encode()
