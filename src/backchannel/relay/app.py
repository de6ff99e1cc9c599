"""The relay as an ASGI application: :func:`create_app`.

Nothing happens at import time. ``create_app`` builds a Starlette app around
one :class:`~backchannel.relay.service.RelayService`; its lifespan opens the
store, runs the expiry task, and on shutdown (after the server has let
in-flight requests finish) stops the task and closes the store, which drains
any pending group commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backchannel.errors import StoreUnavailable
from backchannel.relay import rotation
from backchannel.relay.batch import BatchEndpoints
from backchannel.relay.intake import IntakeEndpoints
from backchannel.relay.openapi import openapi_document
from backchannel.relay.requests import HTTPRefusal
from backchannel.relay.service import RelayService, error
from backchannel.relay.settings import RelaySettings
from backchannel.relay.slots import SlotEndpoint, split_slot_path
from backchannel.store.relay_store import RelayStore

log = logging.getLogger("backchannel.relay")
access_log = logging.getLogger("backchannel.relay.access")

_HTTP_MESSAGES = {
    404: "no such endpoint; see /openapi.json",
    405: "this endpoint does not accept that method; see /openapi.json",
}


def _ip_refusal(service: RelayService, scope: Scope) -> Response | None:
    """The 429 for a client address over its rate, else None (takes a token)."""
    wait = service.ip_limits.take(service.client_key(scope))
    if not wait:
        return None
    service.metrics.rate_limited.labels("ip").inc()
    return error(
        429,
        "too many requests from this address; retry after the Retry-After delay",
        {"Retry-After": str(max(1, round(wait)))},
    )


_SERVER_ERROR = "the relay failed to answer; retry, and tell its operator if it persists"


class _Gate:
    """Per-client-address rate limit, metrics and a path-free access log.

    It sits outside routing so that requests to unknown paths are limited too.
    The access log names the route, never the path (which holds the slot).
    """

    def __init__(self, app: ASGIApp, service: RelayService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        service = self.service
        started = time.perf_counter()
        refusal = _ip_refusal(service, scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            service.metrics.request_done("rate_limited", 429, time.perf_counter() - started)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            endpoint = scope.get("endpoint")
            route = getattr(endpoint, "__name__", "unmatched")
            elapsed = time.perf_counter() - started
            service.metrics.request_done(route, status, elapsed)
            if access_log.isEnabledFor(logging.DEBUG):
                access_log.debug("%s %s %d %.1fms", scope["method"], route, status, elapsed * 1000)


class _RelayApp(Starlette):
    """Starlette, with the hot endpoints taken before its middleware stack.

    A deposit (``PUT .../slots/{slot}``), a slot read, a batch deposit and a
    batch fetch go straight to their endpoint after the address rate limit:
    no routing table, no per-request middleware. Their refusals are answered
    by the endpoints themselves, as the handlers below would; anything
    unexpected is the same JSON 500. Everything else goes through Starlette.
    """

    lean: tuple[RelayService, SlotEndpoint, BatchEndpoints] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lean = self.lean
        if scope["type"] == "http" and lean is not None:
            method, path = scope["method"], scope["path"]
            service, slots, batch = lean
            if (method == "PUT" or method == "GET" or method == "HEAD") and split_slot_path(path):
                started = time.perf_counter()
                refusal = _ip_refusal(service, scope)
                if refusal is not None:
                    await _answer(service, scope, receive, send, refusal, "rate_limited", started)
                    return
                # Not through the gate: the slot endpoint counts itself.
                await _guarded(service, scope, receive, send, slots.counted)
                return
            if method == "POST":
                endpoint = None
                if path == "/v1/batch/deposit":
                    endpoint = batch.batch_deposit
                else:
                    tenant_id = _batch_fetch_tenant(path)
                    if tenant_id is not None:
                        scope["path_params"] = {"tenant_id": tenant_id}
                        endpoint = batch.batch_fetch
                if endpoint is not None:
                    scope["app"] = self
                    await _lean(service, scope, receive, send, endpoint)
                    return
        await super().__call__(scope, receive, send)


def _batch_fetch_tenant(path: str) -> str | None:
    """The tenant id of ``/v1/tenants/{tenant_id}/batch/fetch``, else None."""
    parts = path.split("/")
    if (
        len(parts) == 6
        and parts[1] == "v1"
        and parts[2] == "tenants"
        and parts[3]
        and parts[4] == "batch"
        and parts[5] == "fetch"
    ):
        return parts[3]
    return None


async def _guarded(
    service: RelayService,
    scope: Scope,
    receive: Receive,
    send: Send,
    app: Callable[[Scope, Receive, Send], Awaitable[None]],
) -> None:
    """``app``, with the JSON 500 if it fails before answering."""
    started = False

    async def watch(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, receive, watch)
    except Exception:
        log.exception("the relay failed to answer a request")
        if not started:
            await error(500, _SERVER_ERROR)(scope, receive, send)


async def _answer(
    service: RelayService,
    scope: Scope,
    receive: Receive,
    send: Send,
    response: Response,
    route: str,
    started: float,
) -> None:
    await response(scope, receive, send)
    elapsed = time.perf_counter() - started
    service.metrics.request_done(route, response.status_code, elapsed)
    if access_log.isEnabledFor(logging.DEBUG):
        access_log.debug(
            "%s %s %d %.1fms", scope["method"], route, response.status_code, elapsed * 1000
        )


async def _lean(
    service: RelayService,
    scope: Scope,
    receive: Receive,
    send: Send,
    endpoint: Callable[[Request], Awaitable[Response]],
) -> None:
    """One batch request after the address limit, without Starlette routing."""
    started = time.perf_counter()
    refusal = _ip_refusal(service, scope)
    if refusal is not None:
        await _answer(service, scope, receive, send, refusal, "rate_limited", started)
        return
    try:
        response = await endpoint(Request(scope, receive))
    except HTTPRefusal as exc:
        response = error(exc.status, exc.message, exc.headers)
    except StoreUnavailable as exc:
        service.log_store_unavailable(exc)
        response = error(
            503, "the relay's store is unavailable; retry shortly", {"Retry-After": "1"}
        )
    except Exception:
        log.exception("the relay failed to answer a %s request", endpoint.__name__)
        response = error(500, _SERVER_ERROR)
    await _answer(service, scope, receive, send, response, endpoint.__name__, started)


async def _refusal(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPRefusal)
    return error(exc.status, exc.message, exc.headers)


def store_for(settings: RelaySettings) -> RelayStore:
    """The store ``settings`` name, not yet open (:class:`ConfigError` for a bad URL)."""
    from backchannel.store.factory import relay_store_from_url

    # The embedded database keeps the relay key in <data_dir>/relay-key;
    # with --db, beside the database file; PostgreSQL keeps it in the database.
    key_path = None if settings.db_url else settings.data_dir.expanduser() / "relay-key"
    return relay_store_from_url(
        settings.store_url,
        cell_size=settings.cell_size,
        key_path=key_path,
        log_interval=settings.log_interval_ms / 1000,
    )


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreUnavailable)
    request.app.state.service.log_store_unavailable(exc)
    return error(503, "the relay's store is unavailable; retry shortly", {"Retry-After": "1"})


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = _HTTP_MESSAGES.get(exc.status_code, "the request was refused")
    return error(exc.status_code, message, dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:
    return error(500, _SERVER_ERROR)


def create_app(
    settings: RelaySettings,
    store: RelayStore | None = None,
    *,
    clock: Callable[[], float] = time.time,
    background: bool = True,
) -> Starlette:
    """Build the relay app. Without ``store``, one is made from ``settings.store_url``.

    The store is opened and closed by the app's lifespan. ``background`` runs
    the expiry task (one worker of several runs it).
    """
    if store is None:
        store = store_for(settings)
    service = RelayService(settings, store, clock)
    slots = SlotEndpoint(service)
    batch = BatchEndpoints(service)
    intake = IntakeEndpoints(service)
    document = openapi_document(settings)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def rotate_credential(request: Request) -> Response:
        return await rotation.rotate_credential(service, request)

    # Endpoint names are the route labels in metrics and the access log.
    routes = [
        Route("/v1/tenants", service.register_tenant, methods=["POST"], name="register_tenant"),
        # PUT and GET are taken by _RelayApp's fast path; listed so that other
        # methods get 405 and the OpenAPI test sees the route. HEAD (which
        # Starlette adds to GET) reaches the endpoint here, counted by _Gate.
        Route("/v1/tenants/{tenant_id}/slots/{slot}", slots, methods=["PUT", "GET"]),
        Route("/v1/tenants/{tenant_id}/fetch", service.fetch, methods=["POST"]),
        Route("/v1/tenants/{tenant_id}/ack", service.ack, methods=["POST"]),
        Route("/v1/tenants/{tenant_id}/credential", rotate_credential, methods=["POST"]),
        Route("/v1/batch/deposit", batch.batch_deposit, methods=["POST"]),
        Route("/v1/tenants/{tenant_id}/batch/fetch", batch.batch_fetch, methods=["POST"]),
        Route("/v1/intake/{tenant_id}/pow", intake.intake_pow, methods=["GET"]),
        Route("/v1/intake/{tenant_id}/requests", intake.intake_submit, methods=["POST"]),
        Route("/v1/intake/{tenant_id}/answers/{reply_id}", intake.intake_answer, methods=["GET"]),
        Route("/v1/tenants/{tenant_id}/intake/fetch", intake.intake_fetch, methods=["POST"]),
        Route("/intake/", intake.intake_page, methods=["GET"]),
        Route("/intake/{name}", intake.intake_page, methods=["GET"]),
        Route("/v1/info", service.info, methods=["GET"]),
        Route("/v1/log/key", service.log_key, methods=["GET"]),
        Route("/v1/log/head", service.log_head, methods=["GET"]),
        Route("/v1/log/checkpoint", service.log_checkpoint, methods=["GET"]),
        Route("/v1/log/leaves/{index}", service.log_leaf, methods=["GET"]),
        Route("/v1/log/proof/inclusion", service.log_inclusion, methods=["GET"]),
        Route("/v1/log/proof/consistency", service.log_consistency, methods=["GET"]),
        Route("/v1/log/proof/entry", service.log_entry, methods=["GET"]),
        Route("/healthz", service.healthz, methods=["GET"]),
        Route("/readyz", service.readyz, methods=["GET"]),
        Route("/metrics", service.metrics_endpoint, methods=["GET"], name="metrics"),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.store.open()
        await service.start_clock()
        if settings.rendezvous:
            await service.ensure_rendezvous()
        # Every process pushes to the witnesses: each serves the checkpoint it
        # had cosigned (a witness answers concurrent pushes one at a time).
        tasks = [asyncio.create_task(service.checkpoints.run(), name="relay-witnesses")]
        if background:
            tasks.append(asyncio.create_task(service.expire_forever(), name="relay-expiry"))
        log.info("relay ready: cell size %d bytes", settings.cell_size)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # The server has finished in-flight requests by now; close() drains
            # the store's pending commits before returning.
            await service.store.close()
            log.info("relay stopped")

    app = _RelayApp(
        routes=routes,
        middleware=[Middleware(_Gate, service=service)],
        exception_handlers={
            HTTPRefusal: _refusal,
            StoreUnavailable: _store_unavailable,
            HTTPException: _http_exception,
            500: _server_error,
        },
        lifespan=lifespan,
    )
    # A path is an endpoint or a 404: never a redirect, whose Location would
    # repeat the path (a slot) under a Host of the client's choosing.
    app.router.redirect_slashes = False
    app.state.service = service
    app.lean = (service, slots, batch)
    return app
