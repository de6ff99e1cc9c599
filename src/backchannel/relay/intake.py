"""The public intake's endpoints (``docs/intake.md``, ``docs/spec/relay-api.md``).

Anyone may post a sealed request to a tenant that opened its intake, if it
carries a proof of work bound to that tenant, the current time bucket and the
cell, and if neither the sender's address nor the tenant is over its intake
rate. The relay learns nothing of the content: it checks a size, a hash and
its own counters. The mission fetches the requests with its credential and
deposits its answers as ordinary cells of its tenant, at slots named by the
reply codes; a submitter reads the answer his code names, and an unanswered
code gets the same 404 whether the request is pending, ignored or blocked.
While the intake is closed, every answer is withheld, with the 404 of a closed
intake, whose error a submitter's page tells apart from "no answer".

The intake's rows live apart from the tenant's slots (``store/_intake.py``):
a flood fills the intake's own cap, never a channel's quota, and the cap
counts only requests the mission has not fetched: each of the mission's
fetches frees the places of the requests it passes.
"""

from __future__ import annotations

import base64
import binascii
import re
from importlib import resources

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from backchannel.errors import IntakeClosed, QuotaExceeded, UnknownTenant
from backchannel.protocol import intake as proto
from backchannel.relay import api_types as api
from backchannel.relay.ratelimit import TokenBuckets
from backchannel.relay.requests import HTTPRefusal, is_tenant_id, read_json_object
from backchannel.relay.service import RelayService

#: Seconds in one proof-of-work time bucket; the current and the previous
#: bucket are accepted, so a proof is good for 10 to 20 minutes.
POW_BUCKET_SECONDS = 600
_REPLY_RE = re.compile(r"[0-9a-f]{64}")
_NO_STORE = {"Cache-Control": "no-store"}
#: The same for a closed intake and for a tenant this relay does not hold; a reader of
#: answers tells it from ``proto.NO_ANSWER_ERROR`` (closing withholds sent answers).
_CLOSED = proto.CLOSED_ERROR
#: A request's body: its cell in base64 with its proof.
_REQUEST_LIMIT = 8 * 1024
#: The intake page's files: name -> media type. Nothing else is served.
PAGE_FILES = {
    "index.html": "text/html; charset=utf-8",
    "intake.js": "text/javascript; charset=utf-8",
    "intake.css": "text/css; charset=utf-8",
    "hpke.min.js": "text/javascript; charset=utf-8",
}
#: The page loads nothing from elsewhere and runs no inline script.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _b64(value: object, size: int, what: str) -> bytes:
    if not isinstance(value, str):
        raise HTTPRefusal(400, f"'{what}' must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPRefusal(400, f"'{what}' is not valid base64") from None
    if len(raw) != size:
        raise HTTPRefusal(400, f"'{what}' must hold exactly {size} bytes")
    return raw


def _int(value: object, what: str, high: int = (1 << 63) - 1, low: int = 0) -> int:
    if isinstance(value, float) and value.is_integer() and 0 <= value < 2**53:
        value = int(value)  # 806.0 is the integer 806 in JSON (and its schema)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise HTTPRefusal(400, f"'{what}' must be an integer from {low} to {high}")
    return value


def _reply_id(request: Request) -> bytes:
    text = request.path_params["reply_id"]
    if _REPLY_RE.fullmatch(text) is None:
        raise HTTPRefusal(400, "a reply id is 64 lowercase hexadecimal digits")
    return bytes.fromhex(text)


class IntakeEndpoints:
    """The intake's routes of one relay app; route labels are the method names."""

    def __init__(self, service: RelayService) -> None:
        self.service = service
        s = service.settings
        self.ip_limits = TokenBuckets(
            s.intake_ip_rate, s.intake_ip_burst, s.rate_limit_buckets, service.clock
        )
        self.tenant_limits = TokenBuckets(
            s.intake_tenant_rate, s.intake_tenant_burst, s.rate_limit_buckets, service.clock
        )
        self.relay_limit = TokenBuckets(s.intake_rate, s.intake_burst, 1, service.clock)
        folder = resources.files("backchannel.relay").joinpath("static", "intake")
        self._files = {name: folder.joinpath(name).read_bytes() for name in PAGE_FILES}

    def bucket(self) -> int:
        return int(self.service.clock()) // POW_BUCKET_SECONDS

    def _limit(self, buckets: TokenBuckets, key: str, scope: str, spend: bool = True) -> None:
        wait = buckets.take(key) if spend else buckets.wait(key)
        if wait:
            self.service.metrics.rate_limited.labels(scope).inc()
            self.service.metrics.intake_outcome("rate_limited")
            raise HTTPRefusal(
                429,
                "too many intake requests; retry after the Retry-After delay",
                {"Retry-After": str(max(1, round(wait)))},
            )

    async def _open_tenant(self, tenant_id: str) -> str:
        if not is_tenant_id(tenant_id) or await self.service.tenant(tenant_id) is None:
            raise HTTPRefusal(404, _CLOSED)
        return tenant_id

    # -- public ---------------------------------------------------------------------

    async def intake_pow(self, request: Request) -> Response:
        """What a proof of work must meet right now."""
        tenant_id = await self._open_tenant(request.path_params["tenant_id"])
        if not await self.service.store.intake_is_open(tenant_id):
            raise HTTPRefusal(404, _CLOSED)
        answer: api.IntakePow = {
            "bits": self.service.settings.intake_pow_bits,
            "bucket": self.bucket(),
            "bucket_seconds": POW_BUCKET_SECONDS,
        }
        return JSONResponse(answer, headers=_NO_STORE)

    async def intake_submit(self, request: Request) -> Response:
        service = self.service
        s = service.settings
        self._limit(self.ip_limits, service.client_key(request.scope), "intake_ip")
        # At the relay's intake rate, a flood is refused before its body is read.
        self._limit(self.relay_limit, "", "intake_relay", spend=False)
        tenant_id = await self._open_tenant(request.path_params["tenant_id"])
        body = await read_json_object(request, _REQUEST_LIMIT, ("cell", "bucket", "nonce"))
        cell = _b64(body["cell"], proto.REQUEST_CELL_SIZE, "cell")
        bucket = _int(body["bucket"], "bucket")
        nonce = _int(body["nonce"], "nonce", (1 << 64) - 1)
        now = self.bucket()
        prefix = proto.pow_prefix(tenant_id, bucket, cell)
        if bucket not in (now, now - 1) or not proto.pow_ok(prefix, nonce, s.intake_pow_bits):
            service.metrics.intake_outcome("bad_pow")
            raise HTTPRefusal(
                400,
                f"the proof of work does not hold: it needs {s.intake_pow_bits} leading zero "
                f"bits for the current bucket (GET /v1/intake/{{tenant_id}}/pow)",
            )
        self._limit(self.tenant_limits, tenant_id, "intake_tenant")
        self._limit(self.relay_limit, "", "intake_relay")
        try:
            stored = await service.store.intake_put(
                tenant_id, cell, s.intake_queue_cap, service.coarse_now()
            )
        except IntakeClosed:
            service.metrics.intake_outcome("closed")
            raise HTTPRefusal(404, _CLOSED) from None
        except QuotaExceeded:
            service.metrics.intake_outcome("full")
            raise HTTPRefusal(507, "this mission's intake is full; try again later") from None
        service.metrics.intake_outcome("stored" if stored.created else "duplicate")
        # The number is the mission's business: the sender learns only that it is stored.
        answer: api.IntakeStored = {"stored": True}
        return JSONResponse(answer, status_code=201 if stored.created else 200)

    async def intake_answer(self, request: Request) -> Response:
        """The cell at the slot a reply code names, for a tenant whose intake is open.

        The mission deposits answers as ordinary cells on its round schedule;
        only the holder of a reply code can name (and open) its answer. The
        slot read is the name's hash (``answer_slot``), never the name itself:
        naming a slot of the tenant's channels reads nothing.
        """
        tenant_id = await self._open_tenant(request.path_params["tenant_id"])
        slot = proto.answer_slot(_reply_id(request))
        if not await self.service.store.intake_is_open(tenant_id):
            raise HTTPRefusal(404, _CLOSED)
        cell = (await self.service.store.fetch(tenant_id, [slot])).get(slot)
        if not cell:  # absent, or a spent slot
            raise HTTPRefusal(404, proto.NO_ANSWER_ERROR)
        found: api.IntakeAnswer = {"cell": base64.b64encode(cell).decode()}
        return JSONResponse(found, headers=_NO_STORE)

    async def intake_page(self, request: Request) -> Response:
        name = request.path_params.get("name") or "index.html"
        media = PAGE_FILES.get(name)
        if media is None:
            raise HTTPRefusal(404, "no such file in the intake page")
        return Response(self._files[name], media_type=media, headers=_PAGE_HEADERS)

    # -- the mission's ----------------------------------------------------------------

    async def intake_fetch(self, request: Request) -> Response:
        """The mission's round request: what arrived since ``after``.

        ``open`` (when given) is the state the mission wants its intake in; a
        device states it every round, so opening or closing is the same
        request as any other round's.
        """
        record = await self.service.authenticate(request)
        body = await read_json_object(request, 1024, ("after",), ("limit", "open"))
        after = _int(body["after"], "after")
        limit = _int(body.get("limit", 64), "limit", 256, low=1)
        is_open = body.get("open")
        if is_open is not None and not isinstance(is_open, bool):
            raise HTTPRefusal(400, "'open' must be true or false")
        rows = await intake_round(self.service, record.tenant_id, after, limit, is_open)
        answer: api.IntakeRequests = {
            "requests": [{"seq": seq, "cell": base64.b64encode(c).decode()} for seq, c in rows]
        }
        return JSONResponse(answer, headers=_NO_STORE)


async def intake_round(
    service: RelayService, tenant_id: str, after: int, limit: int, is_open: bool | None
) -> list[tuple[int, bytes]]:
    """A device's intake request of a round: the open state it states (if any), and the
    requests numbered above ``after`` (at most ``limit``). Asked by the batch fetch
    (``relay/batch.py``) and by the older JSON endpoint alike.

    The store takes ``after`` as the device's word that it holds every request
    up to it: those stop counting against ``intake_queue_cap``."""
    store = service.store
    if is_open is not None and await store.intake_is_open(tenant_id) != is_open:
        try:
            await store.intake_set_open(tenant_id, is_open, service.coarse_now())
        except UnknownTenant:
            raise HTTPRefusal(404, "no such tenant on this relay") from None
    return await store.intake_fetch(tenant_id, after, max(1, limit))
