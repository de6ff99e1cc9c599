"""Who may use the desk: one login link, one browser, one session, a CSRF token per session.

The desk serves one officer on 127.0.0.1. At start it prints a login link
holding a random token in its path; the first visit within
:data:`LINK_SECONDS` spends it and opens the one session, carried by a
cookie (HttpOnly, SameSite=Strict, Path=/). A second visit of the link, any
other browser and a session past its idle or total lifetime are refused with
a page saying what to do. Every POST carries the session's CSRF token
(compared in constant time) and comes from the desk's own origin
(:meth:`Gate.check_post`).

Browsers send a host's cookies to every port of it: a session cookie for
127.0.0.1 would reach any local program the browser visits on another port,
and that program (no browser: it sends any Origin it likes) could drive the
desk. So each run of the desk has a host name of its own that nobody else
knows (:func:`private_host`, ``<random>.localhost``): its cookie is host-only
for that name, the Host and Origin checks accept that name and port only,
and a page served by another local program can neither receive the cookie
nor post to the desk.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

#: How long the printed login link stays valid.
LINK_SECONDS = 300.0
#: A session left idle this long ends (the officer logs in again with a new desk).
IDLE_SECONDS = 30 * 60.0
#: No session lasts longer than this.
MAX_SECONDS = 12 * 3600.0


class Refusal(Exception):
    """A request the gate turns away; ``title`` and ``advice`` go on the refusal page."""

    def __init__(self, status: int, title: str, advice: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.advice = advice


RESTART = "Start the desk again (`backchannel ui`) and open the new link it prints."
#: Random bytes in the desk's host name (120 bits, 24 base32 letters and digits).
HOST_BYTES = 15


def private_host() -> str:
    """A host name for one run of the desk that nobody else knows: ``<random>.localhost``.

    Chromium, Firefox and curl resolve every name under ``localhost`` to the
    loopback address themselves, without DNS (RFC 6761 §6.3), so the name reaches
    the desk's socket on 127.0.0.1 and no name server hears of it; a cookie
    host-only for it goes to no other program listening on the machine.
    """
    label = base64.b32encode(secrets.token_bytes(HOST_BYTES)).decode().lower()
    return f"{label}.localhost"


@dataclass
class Session:
    token: str = field(repr=False)
    csrf: str = field(repr=False)
    started: float
    seen: float
    #: Short notes for the next page ("Approved.", a refusal), shown once.
    notes: list[tuple[str, str]] = field(default_factory=list, repr=False)
    #: What a refused form held, for the page it goes back to (path, fields), shown once.
    kept: tuple[str, dict[str, str]] | None = field(default=None, repr=False)
    #: The intake queue's list and page last shown, where a request's page goes back to.
    intake_view: tuple[str, int] = field(default=("all", 1), repr=False)


class Gate:
    """The login link, the one session and the checks every request passes."""

    def __init__(
        self,
        origin: str,
        clock: Callable[[], float] = time.monotonic,
        link_seconds: float = LINK_SECONDS,
        idle_seconds: float = IDLE_SECONDS,
        max_seconds: float = MAX_SECONDS,
    ) -> None:
        self.origin = origin
        self._clock = clock
        self._link: str | None = secrets.token_urlsafe(32)
        self._link_issued = clock()
        self._link_seconds = link_seconds
        self._idle = idle_seconds
        self._max = max_seconds
        self._session: Session | None = None
        #: Called once, when the login link is spent (used, or tried with a wrong token).
        self.on_spent: Callable[[], None] = _nothing
        port = origin.rsplit(":", 1)[-1]
        self.cookie = f"backchannel_desk_{port}"

    @property
    def login_path(self) -> str:
        """The path of the one-time login link (only before it is spent)."""
        if self._link is None:
            raise RuntimeError("the login link was spent")
        return f"/login/{self._link}"

    def login(self, token: str) -> Session:
        """Spend the login link: open the one session, or refuse."""
        link, self._link = self._link, None  # one try: a wrong guess spends it too
        if link is not None:
            self.on_spent()
        now = self._clock()
        if link is None or not hmac.compare_digest(token.encode(), link.encode()):
            raise Refusal(
                403,
                "This login link has already been used",
                "A login link opens the desk once, in one browser. " + RESTART,
            )
        if now - self._link_issued > self._link_seconds:
            raise Refusal(403, "This login link has expired", RESTART)
        self._session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        return self._session

    def session(self, cookies: Mapping[str, str], *, active: bool = True) -> Session:
        """The session a request's cookie names; refuses anything else.

        Only an ``active`` request (the officer's own: a page he opens, a form he
        sends) keeps the session from idling out; a page refreshing itself does
        not, or a browser left open on the inbox would never be signed out.
        """
        given = cookies.get(self.cookie, "")
        s = self._session
        if s is None or not given or not hmac.compare_digest(given.encode(), s.token.encode()):
            raise Refusal(
                403,
                "This browser is not signed in to the desk",
                "The desk serves one browser, the one that opened its login link. " + RESTART,
            )
        now = self._clock()
        if now - s.seen > self._idle or now - s.started > self._max:
            self._session = None
            raise Refusal(403, "Your session has ended", "It was left idle too long. " + RESTART)
        if active:
            s.seen = now
        return s

    def check_post(self, s: Session, headers: Mapping[str, str], form_token: str) -> None:
        """A POST must come from the desk's own pages: its origin and its CSRF token.

        The browser says where a POST comes from in ``Origin``. A plain form (no
        JavaScript) sends the desk's origin there under the desk's
        ``Referrer-Policy: same-origin``; a browser that still sends ``null``
        says ``Sec-Fetch-Site: same-origin`` for the desk's own pages (a header no
        page can set), or names the page in ``Referer``. An origin other than the
        desk's is refused whatever the other headers say.
        """
        origin = headers.get("origin")
        if origin not in (None, "null"):
            same = origin == self.origin
        else:
            referer = headers.get("referer")
            same = headers.get("sec-fetch-site") == "same-origin" or (
                referer is not None and referer.startswith(self.origin + "/")
            )
        if not same:
            raise Refusal(
                403,
                "Refused: this request did not come from the desk's own page",
                "Use the desk's buttons; if you did, reload the page and try again.",
            )
        if not form_token or not hmac.compare_digest(form_token.encode(), s.csrf.encode()):
            raise Refusal(
                403,
                "Refused: the form's security token is missing or wrong",
                "Reload the page and try again.",
            )


def _nothing() -> None:
    """What :attr:`Gate.on_spent` does unless told otherwise."""
