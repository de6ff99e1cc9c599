"""The relay's endpoints: tenants, deposit, fetch, get, ack, info and probes.

One :class:`RelayService` per app holds the settings, the store, the rate
limiters, a cache of tenant records and the metrics; it has no module-level
state. The store only ever sees times already coarsened to
``settings.time_granularity_seconds``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from backchannel import __version__
from backchannel.errors import (
    LocalProtocolError,
    QuotaExceeded,
    SlotConflict,
    StoreError,
    StoreUnavailable,
    TenantExists,
    UnknownTenant,
)
from backchannel.protocol.constants import (
    RENDEZVOUS_CREDENTIAL,
    RENDEZVOUS_QUOTA,
    RENDEZVOUS_TENANT,
)
from backchannel.protocol.merkle import TreeHead, leaf_hash, root_from_inclusion
from backchannel.protocol.misbehaviour import (
    RELAY_KEY_LEN,
    LogLeaf,
    relay_key_fingerprint,
    relay_key_from_bytes,
)
from backchannel.relay import api_types as api
from backchannel.relay.checkpoints import Checkpoints
from backchannel.relay.metrics import CONTENT_TYPE_LATEST, RelayMetrics
from backchannel.relay.ratelimit import TokenBuckets, client_keyer
from backchannel.relay.requests import (
    HTTPRefusal,
    bearer_token,
    check_slot,
    decode_credential,
    is_tenant_id,
    read_json_object,
    slot_list,
)
from backchannel.relay.settings import RelaySettings
from backchannel.store.relay_store import DepositResult, RelayStore, TenantRecord

log = logging.getLogger("backchannel.relay")

#: Compared against when the tenant is unknown, so that an unknown tenant and a
#: wrong credential take the same path and the same time.
#: How long a relay process trusts the tenant record it read (its credential).
TENANT_CACHE_SECONDS = 2.0
_NO_TENANT_HASH = hashlib.sha256(b"backchannel relay: no such tenant").digest()
#: An id no tenant can have (underscores are not allowed), used by /readyz.
_PROBE_TENANT = "_readyz_probe_"
_NO_STORE = {"Cache-Control": "no-store"}
_NO_TENANT = "no such tenant on this relay; check the tenant id"
_TAKEN = "that tenant id is taken; choose another"
#: Largest index or size the log endpoints accept (a signed 64-bit integer).
MAX_INDEX = (1 << 63) - 1
_TREE_HEAD_LEN = 49
_COMPACT_HEAD_LEN = 49 + 64
_UNAUTHORIZED = "present this tenant's credential as 'Authorization: Bearer <credential>'"


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body: api.Error = {"error": message}
    return JSONResponse(body, status_code=status, headers=headers)


class RelayService:
    def __init__(
        self, settings: RelaySettings, store: RelayStore, clock: Callable[[], float]
    ) -> None:
        s = settings
        self.settings = s
        self.store = store
        self.clock = clock
        self._time_floor = 0
        self.metrics = RelayMetrics()
        self.ip_limits = TokenBuckets(s.ip_rate, s.ip_burst, s.rate_limit_buckets, clock)
        self.client_key = client_keyer(s.trusted_proxies)  # every per-address limit's key
        #: Cells anyone deposits to a tenant (deposits need no credential) ...
        self.tenant_limits = TokenBuckets(
            s.tenant_rate, s.tenant_burst, s.rate_limit_buckets, clock
        )
        #: ... and the tenant's own requests, apart: strangers depositing to a
        #: tenant must not starve its devices' fetches.
        self.own_limits = TokenBuckets(s.tenant_rate, s.tenant_burst, s.rate_limit_buckets, clock)
        self._tenants: OrderedDict[str, tuple[TenantRecord, float]] = OrderedDict()
        self._operator_hash = (
            hashlib.sha256(s.operator_token.encode()).digest() if s.operator_token else None
        )
        self.checkpoints = Checkpoints(s, store)

    # -- helpers -----------------------------------------------------------

    def coarse_now(self) -> int:
        """The current time rounded down, so the store never holds exact times.

        It never goes backwards, even when the clock does (it starts from the
        log's latest time): what the relay signs as its time (statements of
        absence) is never earlier than an expiry it already ran, so an honest
        relay's statements never prove a drop (relay-log-v1 §3.2).
        """
        g = self.settings.time_granularity_seconds
        self._time_floor = max(self._time_floor, int(self.clock()) // g * g)
        return self._time_floor

    async def start_clock(self) -> None:
        """Start :meth:`coarse_now` from the log's latest time (after a restart)."""
        with contextlib.suppress(StoreUnavailable):
            self._time_floor = max(self._time_floor, (await self.store.log_head()).timestamp)

    async def tenant(self, tenant_id: str) -> TenantRecord | None:
        """The tenant's record; positive answers are cached for
        :data:`TENANT_CACHE_SECONDS` (tenants are never deleted, but a rotation
        in another relay process replaces a credential: a retired one is
        refused everywhere within that time)."""
        cached = self._tenants.get(tenant_id)
        if cached is not None and time.monotonic() - cached[1] < TENANT_CACHE_SECONDS:
            self._tenants.move_to_end(tenant_id)
            return cached[0]
        if not is_tenant_id(tenant_id):
            return None
        record = await self.store.get_tenant(tenant_id)
        if record is not None:
            self._remember(record)
        return record

    def _remember(self, record: TenantRecord) -> None:
        self._tenants[record.tenant_id] = (record, time.monotonic())
        self._tenants.move_to_end(record.tenant_id)
        if len(self._tenants) > self.settings.tenant_cache_size:
            self._tenants.popitem(last=False)

    def forget_tenant(self, tenant_id: str) -> None:
        """Read the tenant's record afresh next time (its credential changed)."""
        self._tenants.pop(tenant_id, None)

    def _limit_tenant(self, tenant_id: str, *, own: bool = False) -> None:
        wait = (self.own_limits if own else self.tenant_limits).take(tenant_id)
        if wait:
            self.metrics.rate_limited.labels("tenant").inc()
            raise HTTPRefusal(
                429,
                "this tenant is sending too many requests; retry after the Retry-After delay",
                {"Retry-After": str(max(1, round(wait)))},
            )

    async def authenticate(self, request: Request) -> TenantRecord:
        return await self.authenticate_header(
            request.path_params["tenant_id"], request.headers.get("authorization")
        )

    async def authenticate_header(self, tenant_id: str, authorization: str | None) -> TenantRecord:
        """The tenant named in the path, if the bearer credential is its own.

        Unknown tenant, missing credential and wrong credential all give the
        same 401, so fetch cannot be used to learn which tenants exist.
        """
        record = await self.tenant(tenant_id)
        token = bearer_token(authorization)
        raw = decode_credential(token) if token is not None else None
        given = hashlib.sha256(raw if raw is not None else b"").digest()
        expected = record.credential_hash if record is not None else _NO_TENANT_HASH
        ok = hmac.compare_digest(given, expected)
        if not ok or record is None or raw is None:
            raise HTTPRefusal(401, _UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
        self._limit_tenant(record.tenant_id, own=True)
        return record

    def log_store_unavailable(self, exc: StoreUnavailable) -> None:
        # Store messages never hold slots or cells (errors.py), so they may be logged.
        log.warning("store unavailable: %s", exc)

    # -- endpoints ---------------------------------------------------------

    async def ensure_rendezvous(self) -> None:
        """Create the public rendezvous tenant (pairing by short code) if it is missing."""
        raw = decode_credential(RENDEZVOUS_CREDENTIAL)
        assert raw is not None
        held = await self.store.get_tenant(RENDEZVOUS_TENANT)
        if held is not None:
            if not hmac.compare_digest(held.credential_hash, hashlib.sha256(raw).digest()):
                # Registered as an ordinary tenant before the id was kept back.
                log.warning(
                    "the tenant %s holds a credential other than the public one: someone "
                    "registered it, and pairing by code cannot work on this relay until "
                    "it is removed from the store",
                    RENDEZVOUS_TENANT,
                )
            return
        # Another relay process on the same database may have created it first.
        with contextlib.suppress(TenantExists):
            await self.store.create_tenant(
                RENDEZVOUS_TENANT,
                hashlib.sha256(raw).digest(),
                RENDEZVOUS_QUOTA,
                self.coarse_now(),
            )

    async def register_tenant(self, request: Request) -> Response:
        s = self.settings
        if not s.open_registration:
            token = bearer_token(request.headers.get("authorization"))
            if self._operator_hash is None:
                raise HTTPRefusal(
                    403,
                    "registration is closed: the relay operator must set an operator token",
                )
            given = hashlib.sha256((token or "").encode()).digest()
            if token is None or not hmac.compare_digest(given, self._operator_hash):
                raise HTTPRefusal(
                    401,
                    "present the operator token as 'Authorization: Bearer <token>'",
                    {"WWW-Authenticate": "Bearer"},
                )
        body = await read_json_object(
            request, s.body_limit, ("tenant_id", "credential"), ("quota_cells",)
        )
        tenant_id, credential = body["tenant_id"], body["credential"]
        quota = body.get("quota_cells", s.default_quota_cells)
        if not isinstance(tenant_id, str) or not is_tenant_id(tenant_id):
            raise HTTPRefusal(400, "tenant_id must be 3 to 64 characters of a-z, 0-9 and '-'")
        raw = decode_credential(credential) if isinstance(credential, str) else None
        if raw is None:
            raise HTTPRefusal(400, "credential must be the base64url encoding of 32 random bytes")
        if isinstance(quota, float) and quota.is_integer() and abs(quota) < 2**53:
            quota = int(quota)  # 150.0 is the integer 150 in JSON (and its schema)
        if isinstance(quota, bool) or not isinstance(quota, int):
            raise HTTPRefusal(400, "quota_cells must be an integer")
        if not 1 <= quota <= s.max_quota_cells:
            raise HTTPRefusal(400, f"quota_cells must be between 1 and {s.max_quota_cells}")
        if tenant_id == RENDEZVOUS_TENANT:
            # The public pairing tenant is the relay's own, with the public
            # credential (ensure_rendezvous), whether or not it exists yet.
            raise HTTPRefusal(409, _TAKEN)
        try:
            record = await self.store.create_tenant(
                tenant_id, hashlib.sha256(raw).digest(), quota, self.coarse_now()
            )
        except TenantExists:
            raise HTTPRefusal(409, _TAKEN) from None
        self._remember(record)
        self.metrics.tenants_registered.inc()
        answer: api.Tenant = {"tenant_id": record.tenant_id, "quota_cells": record.quota_cells}
        return JSONResponse(answer, status_code=201)

    async def deposit(self, tenant_id: str, slot_text: str, body: bytes) -> DepositResult:
        """Store one cell; the caller has read ``body`` within the body limit."""
        s = self.settings
        slot = check_slot(slot_text)
        if len(body) != s.cell_size:
            self.metrics.deposit_outcome("wrong_size")
            raise HTTPRefusal(
                400, f"a cell must be exactly {s.cell_size} bytes; this body had {len(body)}"
            )
        if await self.tenant(tenant_id) is None:
            self.metrics.deposit_outcome("unknown_tenant")
            raise HTTPRefusal(404, _NO_TENANT)
        self._limit_tenant(tenant_id)
        try:
            result = await self.store.deposit(tenant_id, slot, body, self.coarse_now())
        except SlotConflict:
            self.metrics.deposit_outcome("conflict")
            raise HTTPRefusal(
                409, "a different cell already occupies this slot; derive a fresh slot"
            ) from None
        except QuotaExceeded:
            self.metrics.deposit_outcome("quota")
            raise HTTPRefusal(
                507, "the tenant's quota is full; the recipient must fetch and ack first"
            ) from None
        except UnknownTenant:
            self.metrics.deposit_outcome("unknown_tenant")
            raise HTTPRefusal(404, _NO_TENANT) from None
        self.metrics.deposit_outcome("created" if result.created else "duplicate")
        return result

    async def deposit_answer(self, result: DepositResult) -> bytes:
        """The JSON body answering a deposit, with the cell's place in the log.

        Built by hand (every value is an integer, a boolean or hex): this is
        the hot path, and ``json.dumps`` of the same object costs more than
        the rest of the answer.
        """
        created = "true" if result.created else "false"
        head = f'{{"cell_id":"{result.cell_id.hex()}","created":{created}'
        if result.leaf_index is None or result.batch_position is None:
            return (head + "}").encode()  # stored before the log existed
        # A compact signed head covering the cell (one signature per batch)
        # and the proofs against it; for a fresh cell the proofs come from
        # memory, for a retry from the store.
        try:
            signed, proof = await self.store.log_receipt(result.leaf_index, result.batch_position)
        except LookupError:  # the cell expired between its commit and this answer
            return (head + "}").encode()
        batch = '","'.join(h.hex() for h in proof.batch_proof)
        inclusion = '","'.join(h.hex() for h in proof.inclusion_proof)
        return (
            f'{head},"log":{{"leaf_index":{proof.leaf_index},'
            f'"batch_position":{proof.batch_position},"batch_size":{proof.batch_size},'
            f'"batch_proof":[{_quoted(batch)}],"inclusion_proof":[{_quoted(inclusion)}],'
            f'"signed_head":"{signed.hex()}"}}}}'
        ).encode()

    async def get_cell(
        self, tenant_id: str, slot_text: str, authorization: str | None, *, fetched: bool = True
    ) -> bytes:
        """The cell at a slot; ``fetched``: counted as a cell fetched (not for a HEAD)."""
        record = await self.authenticate_header(tenant_id, authorization)
        slot = check_slot(slot_text)
        cell = (await self.store.fetch(record.tenant_id, [slot])).get(slot)
        if cell is None:
            raise HTTPRefusal(404, "no cell at this slot yet; try again next round")
        if fetched:
            self.metrics.cells_fetched.inc()
        return cell

    async def fetch(self, request: Request) -> Response:
        record = await self.authenticate(request)
        body = await read_json_object(request, self.settings.body_limit, ("slots",))
        slots = slot_list(body, self.settings.max_batch)
        signed, found, proofs = await self.store.fetch_proved(record.tenant_id, slots)
        cells = {slot: cell for slot, cell in found.items() if cell}
        spent = sorted(slot for slot, cell in found.items() if not cell)
        self.metrics.cells_fetched.inc(len(cells))
        encoded = {slot.hex(): base64.b64encode(cell).decode() for slot, cell in cells.items()}
        log_cells: dict[str, api.CellLog] = {
            slot.hex(): {
                "leaf_index": p.leaf_index,
                "batch_position": p.batch_position,
                "batch_size": p.batch_size,
                "batch_proof": [h.hex() for h in p.batch_proof],
                "inclusion_proof": [h.hex() for h in p.inclusion_proof],
            }
            for slot, p in proofs.items()
        }
        answer: api.CellsLog = {"signed_head": signed.hex(), "cells": log_cells}
        if spent:
            # Acknowledged by the tenant: no cell, yet not empty (slots are write-once).
            answer["spent"] = [slot.hex() for slot in spent]
        absent = [slot for slot in slots if slot not in found]
        if absent or spent:
            # Signed: the slots held nothing (or a cell since acknowledged) in the
            # very read that saw this head.
            head = TreeHead.decode(signed[:_TREE_HEAD_LEN])
            answer["absent"] = self.store.sign_absence(
                head,
                self.coarse_now(),
                record.tenant_id,
                absent,
                self.settings.retention_seconds,
                spent,
            ).hex()
        cells_answer: api.Cells = {"cells": encoded, "log": answer}
        return JSONResponse(cells_answer, headers=_NO_STORE)

    # -- the transparency log ------------------------------------------------

    async def log_key(self, request: Request) -> Response:
        raw = self.store.log_public_key()
        assert len(raw) == RELAY_KEY_LEN
        key = relay_key_from_bytes(raw)
        cp = self.checkpoints
        answer: api.LogKey = {
            "ed25519": key.ed25519.hex(),
            "mldsa65": key.mldsa65.hex(),
            "fingerprint": relay_key_fingerprint(key).hex(),
            "checkpoint_vkey": cp.verifier().vkey(),
            "checkpoint_binding": self.store.bind_checkpoint_key(cp.origin).hex(),
        }
        return JSONResponse(answer)

    async def log_checkpoint(self, request: Request) -> Response:
        note = await self.checkpoints.served()
        if note is None:
            raise HTTPRefusal(503, "no witness has cosigned a checkpoint yet; try again later")
        return Response(note.encode(), media_type="text/plain; charset=utf-8", headers=_NO_STORE)

    async def log_head(self, request: Request) -> Response:
        if "size" in request.query_params:
            return await self._log_head_at(_query_index(request, "size"))
        signed = await self.store.signed_head()
        head = TreeHead.decode(signed[:_TREE_HEAD_LEN])
        answer: api.LogHead = {
            "size": head.size,
            "root": head.root.hex(),
            "timestamp": head.timestamp,
            "signed_head": signed.hex(),
            "compact_head": signed[:_COMPACT_HEAD_LEN].hex(),
        }
        return JSONResponse(answer, headers=_NO_STORE)

    async def compact_head_at(self, size: int) -> bytes:
        """The compact signed head the log committed at ``size`` (one per size)."""
        if size < 1:
            raise HTTPRefusal(400, "need 0 < size <= the current log size (GET /v1/log/head)")
        current = await self.store.log_head()
        if size > current.size:
            raise HTTPRefusal(404, _NOT_YET)
        leaf = await self.store.log_leaf(size - 1)
        path = await self.store.inclusion_proof(size - 1, size)
        root = root_from_inclusion(leaf_hash(leaf), size - 1, size, path)
        return self.store.compact_signed(TreeHead(size, root, LogLeaf.decode(leaf).coarse_time))

    async def _log_head_at(self, size: int) -> Response:
        signed = await self.compact_head_at(size)
        head = TreeHead.decode(signed[:_TREE_HEAD_LEN])
        answer: api.LogHeadAt = {
            "size": size,
            "root": head.root.hex(),
            "timestamp": head.timestamp,
            "compact_head": signed.hex(),
        }
        return JSONResponse(answer)

    async def entry_proof(
        self, index: int, position: int, size: int
    ) -> tuple[bytes, list[bytes], list[bytes]]:
        """A batch member's leaf, batch proof and the leaf's inclusion proof in ``size``."""
        try:
            path = await self.store.inclusion_proof(index, size)
            leaf = await self.store.log_leaf(index)
            batch = await self.store.batch_proof(index, position)
        except LocalProtocolError:
            raise _no_proof(size, "need leaf_index < tree_size <= the current log size") from None
        except LookupError:
            raise HTTPRefusal(
                404, "no such batch member (never stored, or past retention)"
            ) from None
        return leaf, batch, path

    async def log_entry(self, request: Request) -> Response:
        """A batch member's proofs: its batch's leaf, the batch proof, the leaf's inclusion."""
        index = _query_index(request, "leaf_index")
        position = _query_index(request, "batch_position")
        size = _query_index(request, "tree_size")
        leaf, batch, path = await self.entry_proof(index, position, size)
        answer: api.EntryProof = {
            "leaf_index": index,
            "batch_position": position,
            "tree_size": size,
            "leaf": leaf.hex(),
            "batch_proof": [h.hex() for h in batch],
            "inclusion_proof": [h.hex() for h in path],
        }
        return JSONResponse(answer)

    async def log_leaf(self, request: Request) -> Response:
        index = _index(request.path_params["index"], "index")
        try:
            leaf = await self.store.log_leaf(index)
        except LookupError:
            raise HTTPRefusal(
                404, "no such leaf yet; ask for an index below the head's size"
            ) from None
        answer: api.LogLeaf = {"leaf_index": index, "leaf": leaf.hex()}
        return JSONResponse(answer)

    async def log_inclusion(self, request: Request) -> Response:
        index = _query_index(request, "leaf_index")
        size = _query_index(request, "tree_size")
        try:
            proof = await self.store.inclusion_proof(index, size)
        except LocalProtocolError:
            raise _no_proof(size, "need leaf_index < tree_size <= the current log size") from None
        answer: api.InclusionProof = {
            "leaf_index": index,
            "tree_size": size,
            "proof": [h.hex() for h in proof],
        }
        return JSONResponse(answer)

    async def log_consistency(self, request: Request) -> Response:
        first = _query_index(request, "first")
        second = _query_index(request, "second")
        try:
            proof = await self.store.consistency_proof(first, second)
        except LocalProtocolError:
            raise _no_proof(
                min(first, second), "need 0 < first <= second <= the current log size"
            ) from None
        answer: api.ConsistencyProof = {
            "first": first,
            "second": second,
            "proof": [h.hex() for h in proof],
        }
        return JSONResponse(answer)

    async def ack(self, request: Request) -> Response:
        record = await self.authenticate(request)
        body = await read_json_object(request, self.settings.body_limit, ("slots",))
        slots = slot_list(body, self.settings.max_batch)
        removed = await self.store.ack(record.tenant_id, slots, self.coarse_now()) if slots else 0
        self.metrics.cells_acked.inc(removed)
        answer: api.Removed = {"removed": removed}
        return JSONResponse(answer)

    async def info(self, request: Request) -> Response:
        s = self.settings
        answer: api.Info = {
            "cell_size": s.cell_size,
            "version": __version__,
            "max_batch": s.max_batch,
        }
        return JSONResponse(answer)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse(api.Status(status="ok"))

    async def readyz(self, request: Request) -> Response:
        try:
            await asyncio.wait_for(self.store.get_tenant(_PROBE_TENANT), timeout=5.0)
        except (StoreError, OSError, TimeoutError):
            return error(503, "the store cannot be reached; check the database", {})
        return JSONResponse(api.Status(status="ready"))

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # -- background expiry -------------------------------------------------

    async def expire_once(self) -> int:
        s = self.settings
        # One time step of grace: relay processes sharing a database may differ
        # by that much, and a cell must outlive its leaf by the retention on
        # every process's clock.
        removed = await self.store.expire(
            self.coarse_now(), s.retention_seconds + s.time_granularity_seconds
        )
        self.metrics.cells_expired.inc(removed)
        # The intake's requests and answers keep the same retention.
        await self.store.intake_expire(self.coarse_now(), s.retention_seconds)
        if removed:
            log.info("expired %d cells older than %d seconds", removed, s.retention_seconds)
        self.metrics.cells_stored.set(await self.store.count_cells())
        return removed

    async def expire_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.expire_interval_seconds)
            try:
                await self.expire_once()
            except StoreUnavailable as e:
                log.warning("expiry skipped: the store is unavailable (%s)", e)
            except StoreError as e:
                log.warning("expiry failed: %s", type(e).__name__)


_NOT_YET = "the log has not reached that size yet; see GET /v1/log/head"


def _no_proof(size: int, need: str) -> HTTPRefusal:
    """A proof that cannot exist: 400 for a size the API never allows (0), else
    404 (no such proof in this log, e.g. a size it has not reached yet)."""
    status = 400 if size < 1 else 404
    return HTTPRefusal(status, f"{need} (GET /v1/log/head); no such proof in this log")


def _quoted(joined: str) -> str:
    return f'"{joined}"' if joined else ""


def _index(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > MAX_INDEX:
        raise HTTPRefusal(400, f"{name} must be a non-negative integer below 2**63")
    return int(text)


def _query_index(request: Request, name: str) -> int:
    values = request.query_params.getlist(name)
    if len(values) != 1:
        raise HTTPRefusal(400, f"give the query parameter {name} exactly once")
    return _index(values[0], name)
