"""``PUT`` and ``GET /v1/tenants/{tenant_id}/slots/{slot}`` as a plain ASGI app.

Deposits are the relay's hot path, so this endpoint skips Starlette's
request/response objects and exception middleware: it reads the three headers
it needs straight from the scope and sends pre-built header lists. The rules
are the same as everywhere else (same checks, same messages, same metrics);
the tests drive it through the whole app.
"""

from __future__ import annotations

import logging
import time

from starlette.types import Message, Receive, Scope, Send

from backchannel.errors import StoreUnavailable
from backchannel.relay.requests import HTTPRefusal, receive_body
from backchannel.relay.service import RelayService, error

access_log = logging.getLogger("backchannel.relay.access")

_JSON = (b"content-type", b"application/json")
_OCTET = (b"content-type", b"application/octet-stream")
_NO_STORE = (b"cache-control", b"no-store")


def split_slot_path(path: str) -> tuple[str, str] | None:
    """(tenant_id, slot) of ``/v1/tenants/{tenant_id}/slots/{slot}``, else None."""
    parts = path.split("/")
    if (
        len(parts) == 6
        and parts[1] == "v1"
        and parts[2] == "tenants"
        and parts[4] == "slots"
        and parts[3]
        and parts[5]
    ):
        return parts[3], parts[5]
    return None


class SlotEndpoint:
    """Deposit (PUT, no authentication) and read (GET, tenant credential) one slot.

    Each request is counted in the metrics once: :meth:`counted` is the fast
    path's entry (PUT, GET and HEAD) and counts itself; the routed entry
    (``__call__``, there for the routing table, which answers other methods
    405) is counted by the app's gate around the routing, as every routed
    request is. HEAD reads the slot as GET does and answers the same status
    and headers, without the body.
    """

    def __init__(self, service: RelayService) -> None:
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handle(scope, receive, _answering(scope, send), scope["method"])

    async def counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A PUT, GET or HEAD of the fast path, counted in the metrics and the
        access log (a HEAD as the read it is)."""
        started = time.perf_counter()
        method = scope["method"]
        route = "deposit" if method == "PUT" else "get_cell"
        send = _answering(scope, send)
        try:
            status = await self.handle(scope, receive, send, method)
        except Exception:
            # The app's guard answers the 500; it is counted here, as every answer is.
            self.service.metrics.request_done(route, 500, time.perf_counter() - started)
            raise
        elapsed = time.perf_counter() - started
        self.service.metrics.request_done(route, status, elapsed)
        if access_log.isEnabledFor(logging.DEBUG):
            access_log.debug("%s %s %d %.1fms", method, route, status, elapsed * 1000)

    async def handle(self, scope: Scope, receive: Receive, send: Send, method: str) -> int:
        target = split_slot_path(scope["path"])
        if target is None or method not in ("PUT", "GET", "HEAD"):
            response = error(404, "no such endpoint; see /openapi.json")
            await response(scope, receive, send)
            return 404
        tenant_id, slot = target
        content_type = content_length = authorization = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                content_length = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
        service = self.service
        try:
            if method == "PUT":
                body = await receive_body(
                    receive,
                    content_type,
                    content_length,
                    service.settings.body_limit,
                    "application/octet-stream",
                )
                result = await service.deposit(tenant_id, slot, body)
                status = 201 if result.created else 200
                payload = await service.deposit_answer(result)
                headers = [_JSON, (b"content-length", str(len(payload)).encode())]
            else:
                status = 200
                payload = await service.get_cell(
                    tenant_id, slot, authorization, fetched=method != "HEAD"
                )
                headers = [_OCTET, _NO_STORE, (b"content-length", str(len(payload)).encode())]
        except HTTPRefusal as e:
            await error(e.status, e.message, e.headers)(scope, receive, send)
            return e.status
        except StoreUnavailable as e:
            service.log_store_unavailable(e)
            response = error(
                503, "the relay's store is unavailable; retry shortly", {"Retry-After": "1"}
            )
            await response(scope, receive, send)
            return 503
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        return status


def _answering(scope: Scope, send: Send) -> Send:
    """``send``, or for a HEAD a ``send`` that passes every answer's status and
    headers (its length among them) as GET would have them, and no body,
    refusals included."""
    if scope["method"] != "HEAD":
        return send

    async def headers_only(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return headers_only
