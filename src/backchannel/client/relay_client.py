"""The client side of the relay API (``docs/spec/relay-api.md``), over httpx.

Errors from httpx are translated here: a relay that cannot be reached (or keeps
answering 5xx) raises :class:`~backchannel.errors.RelayUnavailable`; a refusal
raises :class:`RelayRefusal`, a :class:`~backchannel.errors.RelayRefused`
carrying the HTTP status. Messages are one line and never hold a slot address,
a credential or cell bytes.

Connection errors, 429 and 5xx answers are retried with exponential backoff and
full jitter, a bounded number of times; a request the relay took and did not
answer, once more at most; and no request outlasts its budget, nor the time the
caller gives it (:meth:`RelayClient.within`). Every call here is safe to retry:
deposits are idempotent (the same cell at the same slot answers
``created=False``), fetch and get only read, and ack of an absent cell is a
no-op.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import random
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from backchannel.client.retry import RetryPolicy as RetryPolicy  # callers import it from here
from backchannel.errors import DecodeError, RelayRefused, RelayUnavailable
from backchannel.protocol.batch import (
    DepositBatch,
    DepositBatchAnswer,
    DepositCell,
    FetchBatch,
    FetchBatchAnswer,
    IntakeAsk,
    Query,
)
from backchannel.protocol.batch_log import CellPlace

if TYPE_CHECKING:  # imported where a request is made: commands that only queue never load it
    import httpx

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Headers httpx sends by default that the relay has no use for. No User-Agent
#: either: it would only tell the relay and the network which software talks
#: (RFC 9110 §10.1.5), and costs bytes every request.
_USELESS_HEADERS = ("Accept", "Accept-Encoding", "Connection", "User-Agent")
_MAX_MESSAGE = 200


class RelayRefusal(RelayRefused):
    """The relay refused a request; ``status`` is the HTTP status code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


#: Where the relay's transparency log holds one cell (``docs/spec/relay-log-v1.md``):
#: the same value the batch answers carry.
CellLog = CellPlace


@dataclass(frozen=True, slots=True)
class DepositReceipt:
    #: SHA-256 of the cell, as the relay computed it (checked by the client).
    cell_id: bytes
    #: False when the relay already held this cell (a retry).
    created: bool
    #: The cell's place in the log and the compact signed head it is proved in.
    log: CellLog | None = None
    signed_head: bytes | None = None


def _cell_log(raw: Mapping[str, Any]) -> CellLog:
    return CellLog(
        int(raw["leaf_index"]),
        int(raw["batch_position"]),
        int(raw["batch_size"]),
        tuple(bytes.fromhex(h) for h in raw["batch_proof"]),
        tuple(bytes.fromhex(h) for h in raw["inclusion_proof"]),
    )


@dataclass(frozen=True, slots=True)
class FetchAnswer:
    """A fetch's cells, and what the relay's log says about them."""

    cells: dict[bytes, bytes] = field(repr=False)  # ciphertext, and slots: not for logs
    #: The compact signed head of the read (None from a relay that keeps no log).
    signed_head: bytes | None = None
    #: Each returned cell's place in the log, against ``signed_head``.
    places: dict[bytes, CellLog] = field(default_factory=dict)
    #: The relay's signed statement that the other slots were empty (encoded
    #: :class:`~backchannel.protocol.misbehaviour.Absence`), if any were.
    absent: bytes | None = None
    #: The slots the fetch asked for.
    asked: tuple[bytes, ...] = field(default=(), repr=False)
    #: Asked slots the relay says were acknowledged (spent): no cell, not empty.
    spent: frozenset[bytes] = frozenset()


@dataclass(frozen=True, slots=True)
class EntryPlace:
    """A batch member's proofs against one tree size (``GET /v1/log/proof/entry``)."""

    leaf: bytes
    batch_proof: tuple[bytes, ...]
    inclusion_proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RelayInfo:
    cell_size: int
    version: str
    max_batch: int


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: loading the CA store costs ~10 ms."""
    return ssl.create_default_context()


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"


class RelayClient:
    """An async client for one relay, optionally bound to one tenant.

    Use as an async context manager, or call :meth:`aclose`. ``transport``
    lets tests talk to an app in-process (``httpx.ASGITransport(app)``).
    """

    def __init__(
        self,
        base_url: str,
        tenant_id: str | None = None,
        credential: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import httpx

        self.tenant_id = tenant_id
        self._credential = credential
        self._retry = retry or RetryPolicy()
        self._rng = rng or random.SystemRandom()
        self._sleep, self._clock, self._timeout = sleep, clock, timeout
        #: Seconds left to the requests made now (:meth:`within`), on the caller's clock.
        self._due: Callable[[], float] | None = None
        self._http = httpx.AsyncClient(
            base_url=base_url, transport=transport, timeout=timeout, verify=_tls_context()
        )
        # Only what the relay needs: the relay answers uncompressed, HTTP/1.1
        # keeps the connection open anyway, and a User-Agent names the software.
        for name in _USELESS_HEADERS:
            del self._http.headers[name]
        self._host = httpx.URL(base_url).host or "the relay"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @contextlib.contextmanager
    def within(self, left: Callable[[], float]) -> Iterator[None]:
        """The requests made inside give up, whatever their budget, once ``left()``
        (seconds, on the caller's clock) reaches 0: the round driver's schedule."""
        before, self._due = self._due, left
        try:
            yield
        finally:
            self._due = before

    # -- transport ---------------------------------------------------------

    async def _request(
        self,
        what: str,
        method: str,
        path: str,
        *,
        ok: Iterable[int] = (200,),
        auth: str | None = None,
        json: Any = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        import httpx

        headers: dict[str, str] = {}
        if auth is not None:
            headers["Authorization"] = f"Bearer {auth}"
        if content is not None:
            headers["Content-Type"] = "application/octet-stream"
        ok = frozenset(ok)
        attempts = max(1, self._retry.attempts)
        unanswered = max(1, min(self._retry.timeout_attempts, attempts))
        left = self._retry.time_left(self._clock, self._due)
        failure: Exception = RelayUnavailable(
            f"cannot {what}: no time was left to ask {self._host}; retry later"
        )
        attempt = timed_out = 0
        while (remaining := left()) > 0:
            # The time left, shared among the tries that may still go unanswered.
            patience = min(self._timeout, remaining / (unanswered - timed_out))
            attempt += 1
            retry_after = ""
            try:
                async with asyncio.timeout(patience):  # httpx's timeouts bound each read
                    response = await self._http.request(
                        method, path, headers=headers, json=json, content=content,
                        timeout=patience,
                    )  # fmt: skip
            except (httpx.TimeoutException, TimeoutError) as e:
                timed_out += 1
                failure = self._unavailable(what, "did not answer", e)
            except httpx.TransportError as e:
                failure = self._unavailable(what, "is unreachable", e)
            else:
                if response.status_code in ok:
                    return response
                failure = self._refusal(what, response)
                if response.status_code not in _RETRY_STATUSES:
                    raise failure
                retry_after = response.headers.get("retry-after", "")
            if attempt >= attempts or timed_out >= unanswered:
                break
            wait = self._retry.wait(attempt - 1, self._rng, retry_after)
            await self._sleep(max(0.0, min(wait, left())))
        raise failure

    def _unavailable(self, what: str, how: str, e: Exception) -> RelayUnavailable:
        return RelayUnavailable(
            f"cannot {what}: {self._host} {how} ({type(e).__name__}); retry later"
        )

    def _refusal(self, what: str, response: httpx.Response) -> RelayRefused | RelayUnavailable:
        status = response.status_code
        try:
            body = response.json()
            reason = body["error"] if isinstance(body, dict) else None
        except ValueError:
            reason = None
        detail = _one_line(reason) if isinstance(reason, str) else "no reason given"
        message = f"cannot {what}: {self._host} answered HTTP {status}: {detail}"
        if status in _RETRY_STATUSES:
            return RelayUnavailable(message + "; retry later")
        return RelayRefusal(message, status)

    def _tenant(self, tenant_id: str | None = None) -> tuple[str, str]:
        tenant = tenant_id or self.tenant_id
        if tenant is None or self._credential is None:
            raise RelayRefusal(
                "this client has no tenant credential; pass tenant_id and "
                "credential to RelayClient",
                0,
            )
        return tenant, self._credential

    def _malformed(self, what: str, status: int) -> RelayRefusal:
        return RelayRefusal(
            f"cannot {what}: {self._host} answered with a malformed body; "
            "check that the URL points to a Backchannel relay",
            status,
        )

    async def _json(self, what: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        response = await self._request(what, method, path, **kw)
        try:
            return response.status_code, response.json()
        except ValueError:
            raise self._malformed(what, response.status_code) from None

    # -- API ---------------------------------------------------------------

    async def info(self) -> RelayInfo:
        what = "read the relay's info"
        status, body = await self._json(what, "GET", "/v1/info")
        try:
            return RelayInfo(int(body["cell_size"]), str(body["version"]), int(body["max_batch"]))
        except (KeyError, TypeError, ValueError):
            raise self._malformed(what, status) from None

    async def register_tenant(
        self,
        tenant_id: str,
        credential: str,
        *,
        quota_cells: int | None = None,
        operator_token: str | None = None,
    ) -> int:
        """Register a tenant; return its quota in cells.

        A retry after a lost answer can meet 409 (the first attempt did register).
        """
        what = "register the tenant"
        payload: dict[str, Any] = {"tenant_id": tenant_id, "credential": credential}
        if quota_cells is not None:
            payload["quota_cells"] = quota_cells
        status, body = await self._json(
            what, "POST", "/v1/tenants", ok=(201,), auth=operator_token, json=payload
        )
        try:
            return int(body["quota_cells"])
        except (KeyError, TypeError, ValueError):
            raise self._malformed(what, status) from None

    async def rotate_credential(self, tenant_id: str, rotation: dict[str, Any]) -> bool:
        """Hand the relay a signed credential rotation (``protocol/tenant_credential.py``).

        True once it is in force (now or already); False when a later one is
        (409: nothing left to do). A refusal of its signatures (403) raises.
        """
        what = "rotate the mission's relay credential"
        try:
            await self._json(
                what, "POST", f"/v1/tenants/{tenant_id}/credential", ok=(200,), json=rotation
            )
        except RelayRefusal as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def deposit(self, tenant_id: str, slot: bytes, cell: bytes) -> DepositReceipt:
        """Deposit ``cell`` at ``slot`` of ``tenant_id``; return once the relay holds it durably."""
        what = "deposit a cell"
        status, body = await self._json(
            what,
            "PUT",
            f"/v1/tenants/{tenant_id}/slots/{slot.hex()}",
            ok=(200, 201),
            content=cell,
        )
        try:
            cell_id, created = bytes.fromhex(body["cell_id"]), body["created"]
        except (KeyError, TypeError, ValueError):
            raise self._malformed(what, status) from None
        if cell_id != hashlib.sha256(cell).digest() or not isinstance(created, bool):
            raise RelayRefusal(
                f"cannot {what}: {self._host} acknowledged a different cell; "
                "do not trust this relay's acknowledgements",
                status,
            )
        log = body.get("log") if isinstance(body, Mapping) else None
        if log is None:
            return DepositReceipt(cell_id, created)
        try:
            return DepositReceipt(
                cell_id, created, _cell_log(log), bytes.fromhex(log["signed_head"])
            )
        except (KeyError, TypeError, ValueError):
            raise self._malformed(what, status) from None

    async def get(self, slot: bytes) -> bytes | None:
        """The cell at ``slot`` of this client's tenant, or None if there is none yet."""
        tenant, credential = self._tenant()
        response = await self._request(
            "read a cell",
            "GET",
            f"/v1/tenants/{tenant}/slots/{slot.hex()}",
            ok=(200, 404),
            auth=credential,
        )
        if response.status_code == 404:
            return None
        return response.content

    async def fetch(self, slots: Iterable[bytes]) -> dict[bytes, bytes]:
        """The cells present at ``slots`` (absent ones are left out)."""
        return (await self.fetch_logged(slots)).cells

    async def fetch_logged(self, slots: Iterable[bytes]) -> FetchAnswer:
        """Like :meth:`fetch`, with the signed head, the cells' places and the absence."""
        what = "fetch cells"
        tenant, credential = self._tenant()
        asked = tuple(slots)
        status, body = await self._json(
            what,
            "POST",
            f"/v1/tenants/{tenant}/fetch",
            auth=credential,
            json={"slots": [s.hex() for s in asked]},
        )
        try:
            cells: Mapping[str, str] = body["cells"]
            got = {bytes.fromhex(k): base64.b64decode(v, validate=True) for k, v in cells.items()}
            log = body.get("log")
            if log is None:
                return FetchAnswer(got, asked=asked)
            places = {bytes.fromhex(k): _cell_log(v) for k, v in log["cells"].items()}
            absent = log.get("absent")
            return FetchAnswer(
                got,
                bytes.fromhex(log["signed_head"]),
                places,
                bytes.fromhex(absent) if absent is not None else None,
                asked,
                frozenset(bytes.fromhex(h) for h in log.get("spent", [])),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise self._malformed(what, status) from None

    async def batch_deposit(
        self, cells: Sequence[tuple[str, bytes, bytes]], known_size: int
    ) -> DepositBatchAnswer:
        """Deposit ``(tenant_id, slot, cell)`` cells in one request; each is answered
        on its own (``results[i].status``: 201 stored, 200 already held, else refused).

        ``known_size`` is the log size of the head this client has verified (0
        for none): the answer proves its head consistent with that size, and on
        a first contact carries the relay's key. A retry is safe (the same batch
        again answers 200 per stored cell, with its original place).
        """
        what = "deposit a batch of cells"
        batch = DepositBatch(
            known_size, tuple(DepositCell(*c) for c in cells), compact=True, shared=True
        )
        response = await self._request(what, "POST", "/v1/batch/deposit", content=batch.encode())
        try:
            answer = DepositBatchAnswer.decode(response.content, batch)
        except DecodeError:
            raise self._malformed(what, response.status_code) from None
        if len(answer.results) != len(cells):
            raise self._malformed(what, response.status_code)
        for (_, _, cell), result in zip(cells, answer.results, strict=True):
            if result.stored and result.cell_id != hashlib.sha256(cell).digest():
                raise RelayRefusal(
                    f"cannot {what}: {self._host} acknowledged a different cell; "
                    "do not trust this relay's acknowledgements",
                    response.status_code,
                )
        return answer

    async def batch_fetch(
        self,
        slots: Sequence[bytes],
        known_size: int,
        queries: Sequence[Query],
        pad_to: int,
        intake: IntakeAsk | None = None,
    ) -> FetchBatchAnswer:
        """Read ``slots`` of this client's tenant and ask ``queries`` of the log, in
        one request; the answer is padded to a multiple of ``pad_to`` bytes.

        Cells and absence are read in one snapshot and proved against one head;
        ``answers[i]`` answers ``queries[i]``. ``intake``: also the tenant's public
        intake requests (:attr:`FetchBatchAnswer.intake`), stating its open state.
        """
        what = "fetch a batch of cells"
        tenant, credential = self._tenant()
        wanted = tuple(slots)
        body = FetchBatch(
            known_size, pad_to, wanted, tuple(queries), intake, compact=True, shared=True
        ).encode()
        response = await self._request(
            what, "POST", f"/v1/tenants/{tenant}/batch/fetch", auth=credential, content=body
        )
        try:
            answer = FetchBatchAnswer.decode_compact(
                response.content, wanted, tenant, pad_to, intake is not None
            )
        except DecodeError:
            raise self._malformed(what, response.status_code) from None
        # The cells and spent slots are the asked ones by construction (the
        # compact answer names them by their place among the slots asked).
        if not answer.answers_match(queries) or (
            intake is not None
            and answer.intake is not None
            and (
                len(answer.intake) > intake.limit
                or any(seq <= intake.after for seq, _ in answer.intake)
            )
        ):
            raise self._malformed(what, response.status_code)
        return answer

    async def intake_fetch(self, after: int, limit: int, is_open: bool) -> list[tuple[int, bytes]]:
        """The tenant's intake requests numbered above ``after`` (at most ``limit``),
        stating whether its intake is to be open (the relay follows the last word)."""
        what = "fetch the intake"
        tenant_id, credential = self._tenant()
        status, body = await self._json(
            what, "POST", f"/v1/tenants/{tenant_id}/intake/fetch", auth=credential,
            json={"after": after, "limit": limit, "open": is_open},
        )  # fmt: skip
        try:
            rows = [(int(r["seq"]), base64.b64decode(r["cell"], validate=True))
                    for r in body["requests"]]  # fmt: skip
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise self._malformed(what, status) from None
        if any(seq <= after for seq, _ in rows) or len(rows) > limit:
            raise self._malformed(what, status)
        return rows

    async def log_key(self) -> bytes:
        """The relay's log key: Ed25519 public key (32) || ML-DSA-65 public key (1,952)."""
        status, body = await self._json("read the relay's log key", "GET", "/v1/log/key")
        try:
            key = bytes.fromhex(body["ed25519"]) + bytes.fromhex(body["mldsa65"])
        except (KeyError, TypeError, ValueError):
            raise self._malformed("read the relay's log key", status) from None
        if len(key) != 32 + 1952:
            raise self._malformed("read the relay's log key", status)
        return key

    async def log_leaf(self, index: int) -> bytes:
        status, body = await self._json("read a log leaf", "GET", f"/v1/log/leaves/{index}")
        try:
            return bytes.fromhex(body["leaf"])
        except (KeyError, TypeError, ValueError):
            raise self._malformed("read a log leaf", status) from None

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        what = "read a consistency proof"
        status, body = await self._json(
            what, "GET", f"/v1/log/proof/consistency?first={first}&second={second}"
        )
        try:
            return [bytes.fromhex(h) for h in body["proof"]]
        except (KeyError, TypeError, ValueError):
            raise self._malformed(what, status) from None

    async def head_at(self, size: int) -> bytes:
        """The compact signed head the relay committed at log size ``size``."""
        what = "read a past tree head"
        status, body = await self._json(what, "GET", f"/v1/log/head?size={size}")
        try:
            return bytes.fromhex(body["compact_head"])
        except (KeyError, TypeError, ValueError):
            raise self._malformed(what, status) from None

    async def entry_proof(self, leaf_index: int, position: int, tree_size: int) -> EntryPlace:
        """The proofs of batch member ``position`` of leaf ``leaf_index`` in ``tree_size``."""
        what = "read a log entry's proofs"
        status, body = await self._json(
            what,
            "GET",
            f"/v1/log/proof/entry?leaf_index={leaf_index}&batch_position={position}"
            f"&tree_size={tree_size}",
        )
        try:
            return EntryPlace(
                bytes.fromhex(body["leaf"]),
                tuple(bytes.fromhex(h) for h in body["batch_proof"]),
                tuple(bytes.fromhex(h) for h in body["inclusion_proof"]),
            )
        except (KeyError, TypeError, ValueError):
            raise self._malformed(what, status) from None

    async def ack(self, slots: Iterable[bytes]) -> int:
        """Delete the cells at ``slots``; return how many the relay removed."""
        what = "acknowledge cells"
        tenant, credential = self._tenant()
        status, body = await self._json(
            what,
            "POST",
            f"/v1/tenants/{tenant}/ack",
            auth=credential,
            json={"slots": [s.hex() for s in slots]},
        )
        try:
            return int(body["removed"])
        except (KeyError, TypeError, ValueError):
            raise self._malformed(what, status) from None


def new_credential() -> str:
    """A fresh tenant credential: base64url of 32 random bytes, unpadded."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
