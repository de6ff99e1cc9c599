"""The officers' desk: a local web app over one officer's device, and how it is served.

``backchannel ui`` unlocks the officer's home (as every command does), then
:func:`serve` takes the home's rounds (refused if another process runs them),
binds 127.0.0.1, prints a one-time login link and serves the desk until
Ctrl-C, with the round engine running in the background. The link
names the desk by a host name of this run's own, ``<random>.localhost``, which
browsers resolve to 127.0.0.1 themselves. Every answer carries a strict
Content-Security-Policy and no page is cached; every request must name that
host and port exactly (no DNS rebinding, no other local program's address),
and every page needs the session the login link opened
(:mod:`backchannel.ui.security`).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backchannel.client.service import Client
from backchannel.errors import BackchannelError
from backchannel.ui import views_intake, views_mail, views_mission, views_offers, views_record
from backchannel.ui.desk import Desk
from backchannel.ui.opener import LinkFile, open_link
from backchannel.ui.security import Gate, Refusal, Session, private_host
from backchannel.ui.web import HERE, gate_of, page, render, session_of

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class Guard:
    """Adds the security headers to every answer; refuses a Host that is not the desk's.

    The desk's host name is a secret of this run (:func:`private_host`): it is
    compared in constant time.
    """

    def __init__(self, app: ASGIApp, host: str) -> None:
        self.app = app
        self.host = host.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message["headers"] = kept + HEADERS
            await send(message)

        if host is None or not hmac.compare_digest(host, self.host):
            response = Response("wrong host", status_code=421, media_type="text/plain")
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


async def login(request: Request) -> Response:
    """Spend the login link; the cookie is host-only (no Domain): the desk's own name alone."""
    gate = gate_of(request)
    session = gate.login(request.path_params["token"])
    response = RedirectResponse("/inbox", status_code=303)
    response.set_cookie(
        gate.cookie, session.token, httponly=True, samesite="strict", path="/", secure=False
    )
    return response


@page
async def index(request: Request, session: Any) -> Response:
    return RedirectResponse("/inbox", status_code=303)


def _session_or_none(request: Request) -> Session | None:
    """The request's session if it has the live one; else None."""
    with contextlib.suppress(Refusal):
        return session_of(request)
    return None


async def refused(request: Request, exc: Exception) -> Response:
    """The gate's refusal; without the session it names no officer, mission or device."""
    assert isinstance(exc, Refusal)
    session = _session_or_none(request)
    return render(request, session, "refused.html", exc.status, title=exc.title, advice=exc.advice)


async def failed(request: Request, exc: Exception) -> Response:
    """A GET that the client refuses (an unknown id, no mission): say so in one line."""
    session = _session_or_none(request)
    return render(request, session, "refused.html", 404, title=str(exc), advice="")


def create_app(desk: Desk, gate: Gate) -> ASGIApp:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        desk.start()
        try:
            yield
        finally:
            await desk.stop()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/login/{token:str}", login),
            *views_mail.routes,
            *views_mission.routes,
            *views_offers.routes,
            *views_intake.routes,
            *views_record.routes,
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={Refusal: refused, BackchannelError: failed},
        lifespan=lifespan,
    )
    app.state.desk = desk
    app.state.gate = gate
    return Guard(app, gate.origin.removeprefix("http://"))


def bind(port: int | None) -> socket.socket:
    """A listening socket on 127.0.0.1 (a free port unless ``port``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port or 0))
    except OSError as exc:
        sock.close()
        raise BackchannelError(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror}; choose another --port"
        ) from None
    sock.listen(64)
    return sock


def _log_config() -> dict[str, Any]:
    # No access log: the login link's path is a secret until it is spent.
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "backchannel": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
    }


def serve(
    client: Client,
    *,
    port: int | None = None,
    open_browser: bool = False,
    round_seconds: float | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """Serve the desk for ``client`` on 127.0.0.1, as ``<random>.localhost``, until interrupted.

    The desk holds the home's rounds (:meth:`Home.rounds`) from before it prints
    the link until it stops: a second desk on the same home, or one started
    while ``backchannel run`` keeps the schedule, is refused at once, in one
    line, instead of serving a desk whose rounds never run.
    """
    with client.home.rounds():
        _serve(client, port, open_browser, round_seconds, echo)


def _serve(
    client: Client,
    port: int | None,
    open_browser: bool,
    round_seconds: float | None,
    echo: Callable[[str], None],
) -> None:
    sock = bind(port)
    bound = sock.getsockname()[1]
    origin = f"http://{private_host()}:{bound}"
    gate = Gate(origin)
    desk = Desk(client, round_seconds=round_seconds)
    link = origin + gate.login_path
    config = uvicorn.Config(
        create_app(desk, gate),
        log_config=_log_config(),
        access_log=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    echo(f"desk of {client.officer.name}: open this link once, in one browser (valid 5 minutes):")
    echo(link)
    echo("Ctrl-C stops the desk.")
    logging.getLogger("backchannel.ui").debug("serving on 127.0.0.1:%d", bound)  # not the name
    forward: LinkFile | None = None
    try:
        if open_browser:
            forward = open_link(link)
            gate.on_spent = forward.remove
        server.run(sockets=[sock])
    finally:
        sock.close()
        if forward is not None:
            forward.remove()
