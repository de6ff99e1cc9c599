"""The desk against what it must not trust: forged requests, odd input, names in any script.

New York (Ri, Han) paired with Washington, and a third mission, ``<i>Москва</i>``,
whose name is markup in Cyrillic letters, as ASGI apps over the library's
clients (no rounds run). Every request here is one an officer's browser could
send, or one a hostile page or program would like it to send.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from starlette.routing import Route

from backchannel.client.api import decode_offer, encode_offer
from backchannel.client.home import Home
from backchannel.client.intake import INTAKE, IntakeRecord
from backchannel.client.service import Client
from backchannel.protocol.intake import Kind
from backchannel.ui.app import create_app
from backchannel.ui.desk import Desk
from backchannel.ui.security import Gate
from backchannel.ui.web import attachment, local_path
from tests.e2e.conftest import FAST_KDF, PASSPHRASE, set_up_missions
from tests.ui.conftest import in_thread

DEAD_RELAY = "http://127.0.0.1:9"
ORIGIN = "http://mfrggzdfmztwq2lknnwg23tp.localhost:8471"
MOSCOW = "<i>Москва</i>"
TEXT = "The annex on fisheries follows; keep it between us."
#: What htmx sends when a page refreshes itself (``hx-trigger="every 1s"``).
REFRESH = {"hx-request": "true", "hx-trigger": "live", "hx-target": "live"}
#: What htmx sends when the officer follows a link (``hx-boost``).
BOOSTED = {"hx-request": "true", "hx-boosted": "true"}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Officer:
    """One officer's desk app over ``client``, signed in; every answer as it is (no raise)."""

    def __init__(self, client: Client, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.desk = Desk(client)
        self.gate = Gate(ORIGIN, clock)
        self.app = create_app(self.desk, self.gate)
        self.cookies = httpx.Cookies()
        assert self.request("GET", self.gate.login_path).status_code == 303
        assert self.gate._session is not None
        self.csrf = self.gate._session.csrf

    def request(
        self, method: str, path: str, *, anonymous: bool = False, **kw: Any
    ) -> httpx.Response:
        """``anonymous``: from another browser, without this one's cookie."""

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            jar = httpx.Cookies() if anonymous else self.cookies
            async with httpx.AsyncClient(transport=transport, base_url=ORIGIN, cookies=jar) as http:
                r = await http.request(method, path, **kw)
                if not anonymous:
                    self.cookies.update(http.cookies)
                return r

        return in_thread(lambda: asyncio.run(go()))

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.request("GET", path, headers=headers or {})

    def post(self, path: str, back: str, **form: str) -> httpx.Response:
        data = {"csrf": self.csrf, "back": back, **form}
        return self.request("POST", path, data=data, headers={"origin": ORIGIN})

    def after(self, r: httpx.Response) -> str:
        """The text of the page a POST leads to (its notes included)."""
        assert r.status_code == 303, (r.status_code, r.text[:500])
        page = self.get(r.headers["location"])
        assert page.status_code == 200, (page.status_code, page.text[:500])
        return html.unescape(page.text)


def _found(work: Path, name: str, officers: tuple[str, str]) -> tuple[Path, Path]:
    """A 2-of-2 mission named ``name``, as ``backchannel mission create`` founds one."""
    a, b = (
        Client(Home.create(work / f"founding-{i}", n, PASSPHRASE, FAST_KDF))
        for i, n in enumerate(officers)
    )
    proposal = b.sign_proposal(a.propose_mission(name, 2, [b.officer_card()], DEAD_RELAY))
    a.adopt_mission(proposal)
    b.adopt_mission(proposal)
    paths = (a.home.path, b.home.path)
    a.home.close()
    b.home.close()
    return paths


@dataclasses.dataclass
class World:
    ri: Client
    han: Client
    ivan: Client  # of Moscow
    pyotr: Client

    def close(self) -> None:
        for c in (self.ri, self.han, self.ivan, self.pyotr):
            c.home.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("hostile")

    def build() -> World:
        m = set_up_missions(work, DEAD_RELAY, DEAD_RELAY, register=False)
        homes = (m.ri.home, m.han.home, *_found(work, MOSCOW, ("Офицер Иван", "Офицер Пётр")))
        ri, han, ivan, pyotr = (Client(Home.unlock(p, PASSPHRASE)) for p in homes)
        for ours, theirs in (((ri, han), ivan), ((ivan, pyotr), ri)):
            card = theirs.mission_card().encode()
            for c in ours:
                rec = c.add_peer(card)
                c.confirm_peer(rec.mission_id, rec.safety_number)
        return World(ri, han, ivan, pyotr)

    w = in_thread(build)
    yield w
    w.close()


def _moscow(c: Client) -> str:
    return next(p.mission_id.hex() for p in c.peers() if p.name == MOSCOW)


def _channel(c: Client) -> str:
    return c.channels()[0].channel_id.hex()


# --- the session ----------------------------------------------------------------------------


def test_a_page_refreshing_itself_does_not_keep_an_idle_session_alive(world: World) -> None:
    """The inbox refreshes itself every second: a browser left open on it, with nobody
    at it, must still be signed out after the idle time, as a quiet one is."""
    clock = Clock()
    ri = Officer(world.ri, clock)
    for _ in range(29):  # the officer at work: links followed, pages loaded
        clock.t += 60
        assert ri.get("/inbox", BOOSTED).status_code == 200
        assert ri.get("/cosign").status_code == 200
    for _ in range(40):  # then away for 40 minutes, the page refreshing itself
        clock.t += 60
        r = ri.get("/inbox", REFRESH)
        if r.status_code != 200:
            break
    assert r.status_code == 403 and "Your session has ended" in html.unescape(r.text)
    r = ri.get("/inbox")
    assert r.status_code == 403, "the session outlived the idle time"
    assert "Officer Ri" not in r.text


def test_a_refresh_does_not_swallow_the_note_meant_for_the_officer(world: World) -> None:
    ri = Officer(world.ri)
    page = ri.post("/compose", "/compose", channel=_channel(world.ri), kind="note", text=" ")
    assert page.status_code == 303
    ri.get("/compose", REFRESH)  # a refresh lands before the officer's page loads
    assert "write the message first" in ri.after(page)


# --- input that must be refused in words, and keep what was written ----------------------------


def _in_textarea(text: str, page: str) -> bool:
    """``text`` is what a textarea of ``page`` holds (a newline after its tag is no part)."""
    return re.search(r"<textarea[^>]*>\n?" + re.escape(text) + "</textarea>", page) is not None


def test_a_refused_form_keeps_what_the_officer_wrote(world: World) -> None:
    ri = Officer(world.ri)
    channel = _channel(world.ri)
    drafts = len(world.ri.drafts())
    # A meeting request without its "when": refused, and the text is still in the form.
    r = ri.post("/compose", "/compose", channel=channel, kind="meeting", where="Geneva", text=TEXT)
    page = ri.after(r)
    assert "a meeting needs: when, where" in page
    assert _in_textarea(TEXT, page)
    assert 'value="Geneva"' in page
    assert re.search(r'value="meeting"\s+checked', page), "the kind chosen is lost"
    assert len(world.ri.drafts()) == drafts
    # Once shown, it is not shown again.
    assert TEXT not in ri.get("/compose").text
    # What comes back into the form is text, never markup.
    hostile = '</textarea><script>alert(1)</script>" autofocus onfocus="alert(2)'
    r = ri.post("/compose", "/compose", channel=channel, kind="media", outlet=hostile, text=hostile)
    raw = ri.get(r.headers["location"]).text
    assert "<script>" not in raw and 'onfocus="alert' not in raw
    assert _in_textarea(hostile, html.unescape(raw)) and "a media needs" in html.unescape(raw)

    # A note on an intake request too long for the audit log: kept, not lost.
    record = IntakeRecord(1, bytes(16), 0, Kind.OTHER, "Subject", "Body", "", bytes(16))
    with world.ri._tx():
        world.ri._put(INTAKE, record.request_id, record)
    note = "A long note on the submitter. " * 20  # 600 bytes: more than the log holds
    page = ri.after(ri.post("/intake/1/note", "/intake/1", note=note))
    assert "a note is 1 to 400 bytes" in page
    assert _in_textarea(note, page)
    # A pasted card that is no card: refused, and the text is there to correct.
    page = ri.after(ri.post("/pairing/add", "/pairing", card_text="not a card"))
    assert 'class="note note-refused"' in page
    assert _in_textarea("not a card", page)


def test_a_message_nobody_could_read_is_refused_when_written(world: World) -> None:
    """A text or field longer than the other end reads: refused at the desk, not sealed
    into a draft that no colleague can co-sign and no peer can open."""
    ri = Officer(world.ri)
    channel = _channel(world.ri)
    drafts = len(world.ri.drafts())
    for form in (
        {"kind": "note", "text": "x" * (300 * 1024)},
        {"kind": "meeting", "text": TEXT, "when": "w" * 2000, "where": "Geneva"},
    ):
        r = ri.post("/compose", "/compose", channel=channel, **form)
        assert r.status_code == 303 and r.headers["location"] == "/compose", r.status_code
        assert "too long" in ri.after(r)
    assert len(world.ri.drafts()) == drafts


@pytest.mark.parametrize(
    "field,value",
    [
        ("track2_k", "²"),  # a digit to str.isdigit(), not to int()
        ("epoch_hours", "²"),
        ("unseen_hours", "9" * 5000),  # more digits than int() reads
        ("witnesses_needed", "³"),
        ("witness_lag_minutes", "1" * 5000),
    ],
)
def test_a_number_in_other_digits_is_refused_in_words(world: World, field: str, value: str) -> None:
    ri = Officer(world.ri)
    pending = len(world.ri.policy_pending())
    form = {"official": "record", field: value}
    if field.startswith("witness"):
        form["witness_keys"] = "a witness key"
    r = ri.post("/roster/policy", "/roster#policy", **form)
    assert r.status_code == 303, (r.status_code, r.text[:300])
    assert 'role="alert"' in ri.get("/roster").text
    assert len(world.ri.policy_pending()) == pending


# --- names in any script, in headers and pages ------------------------------------------------


def _filename(r: httpx.Response) -> str:
    header = r.headers["content-disposition"]
    assert header.startswith("attachment; "), header
    extended = re.search(r"filename\*=UTF-8''([^;]+)", header)
    if extended:
        return unquote(extended.group(1))
    plain = re.search(r'filename="([^"\\]*)"', header)
    assert plain, header
    return plain.group(1)


def test_downloads_named_after_a_mission_in_any_script(world: World) -> None:
    """Moscow's officers download their card and record; New York downloads its offer
    for Moscow: each file is served, named after the mission, and no header breaks."""
    ivan, ri = Officer(world.ivan), Officer(world.ri)
    for path, ending in (("/pairing/card", ".card"), ("/record/export", ".audit")):
        r = ivan.get(path)
        assert r.status_code == 200, (path, r.status_code)
        name = _filename(r)
        assert "москва" in name and name.endswith(ending) and '"' not in name, name
    moscow = _moscow(world.ri)
    ri.after(ri.post(f"/pairing/{moscow}/channel/make", f"/pairing/{moscow}/channel"))
    r = ri.get(f"/pairing/{moscow}/channel/offer")
    assert r.status_code == 200, r.status_code
    name = _filename(r)
    assert name.startswith("new-york-offer-for-i-москва") and name.endswith(".offer"), name
    assert decode_offer(r.text).terms  # the file is the offer
    # The mission's name is markup: every page shows it as text.
    for path in ("/pairing", f"/pairing/{moscow}", f"/pairing/{moscow}/channel"):
        page = ri.get(path).text
        assert "<i>Москва" not in page and "&lt;i&gt;Москва&lt;/i&gt;" in page, path


def test_an_offer_signed_twice_by_one_officer_is_not_complete(world: World) -> None:
    """Ri hands Han our offer with his own signature in it twice: Han's desk counts one
    officer, asks Han to co-sign, and offers no channel to open."""
    ri, han = Officer(world.ri), Officer(world.han)
    moscow = _moscow(world.ri)
    base = f"/pairing/{moscow}/channel"
    ri.after(ri.post(base + "/make", base))
    offer = ri.desk.offers[moscow]["ours"]  # the file Ri downloads
    assert len(offer.signatures) == 1
    twice = dataclasses.replace(offer, signatures=offer.signatures * 2)
    page = han.after(han.post(base + "/add", base, offer_text=encode_offer(twice)))
    assert "1 of 2 officers have signed" in page, page
    # Moscow's complete offer in hand too: still nothing to open, and Han is asked to co-sign.
    ny = world.ri.mission().mission_id
    theirs = world.pyotr.sign_offer(world.ivan.make_offer(ny))
    han.after(han.post(base + "/add", base, offer_text=encode_offer(theirs)))
    page = html.unescape(han.get(base).text)
    assert "Complete" not in page and "Co-sign our offer" in page
    assert "Open the channel</button>" not in page
    assert "1 of 2" in page


def test_a_download_header_holds_any_name_whole() -> None:
    for name in ('a"b.card', "a\r\nSet-Cookie: x=1.card", "東京.audit", "new-york.card"):
        value = attachment(name)["Content-Disposition"]
        value.encode("latin-1")  # a header is Latin-1 at most
        assert "\r" not in value and "\n" not in value and value.count('"') == 2, value
        assert unquote(value.partition("filename*=UTF-8''")[2]) in ("", name), value
    assert attachment("new-york.card") == {
        "Content-Disposition": 'attachment; filename="new-york.card"'
    }


# --- where a form sends the officer next ------------------------------------------------------


@pytest.mark.parametrize(
    "back",
    ["//evil.example/", "/\\evil.example", "/\\/evil.example", "/\t/evil.example",
     "/\n/evil.example", "https://evil.example", "javascript:alert(1)", "/ /evil"],
)  # fmt: skip
def test_back_never_leaves_the_desk(back: str) -> None:
    """Browsers read ``/\\host`` and ``/<tab>/host`` as ``//host``: another site."""
    assert local_path(back, "/") == "/"
    assert local_path("/pairing/ab12#policy", "/") == "/pairing/ab12#policy"


# --- every route ------------------------------------------------------------------------------


def _routes(officer: Officer) -> list[tuple[str, str]]:
    app: Any = officer.app.app  # the Starlette app inside the host guard
    out = []
    for route in app.routes:
        if not isinstance(route, Route) or route.path.startswith("/login/"):
            continue
        path = re.sub(r"\{[a-z_]+:int\}", "1", route.path)
        path = re.sub(r"\{[a-z_]+:str\}", "00", path)
        out += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return out


def test_every_route_needs_the_session_and_every_post_the_token_and_origin(
    world: World,
) -> None:
    ri = Officer(world.ri)
    routes = _routes(ri)
    assert len([m for m, _ in routes if m == "POST"]) >= 20, routes
    entries = len(world.ri.audit_entries())
    for method, path in routes:
        body = {"data": {"csrf": ri.csrf}} if method == "POST" else {}
        for headers in ({}, {"origin": ORIGIN}):  # another browser, without the cookie
            r = ri.request(method, path, anonymous=True, headers=headers, **body)
            assert r.status_code == 403, (method, path, r.status_code)
            assert "Officer Ri" not in r.text and "New York" not in r.text, (method, path)
        if method != "POST":
            continue
        for headers, data in (
            ({"origin": ORIGIN}, {}),  # no token
            ({"origin": ORIGIN}, {"csrf": ri.csrf[:-1]}),
            ({"origin": "http://evil.example"}, {"csrf": ri.csrf}),
            ({"origin": "null"}, {"csrf": ri.csrf}),
            ({"sec-fetch-site": "same-site"}, {"csrf": ri.csrf}),
            ({}, {"csrf": ri.csrf}),
        ):
            r = ri.request(method, path, headers=headers, data=data)
            assert r.status_code == 403, (method, path, headers, r.status_code)
    assert len(world.ri.audit_entries()) == entries  # nothing was done
    # Signed in, a GET shows and changes nothing (no audit entry, no offer, no draft).
    drafts, offers = len(world.ri.drafts()), dict(ri.desk.offers)
    for method, path in routes:
        if method == "GET":
            r = ri.request(method, path)
            assert r.status_code in (200, 303, 404), (path, r.status_code)
    assert len(world.ri.audit_entries()) == entries
    assert (len(world.ri.drafts()), ri.desk.offers) == (drafts, offers)
    # Under any other name (DNS rebinding), each is refused before anything else.
    for method, path in routes:
        body = {"data": {"csrf": ri.csrf}} if method == "POST" else {}
        for host in ("evil.example", "127.0.0.1:8471", "localhost:8471"):
            r = ri.request(method, path, headers={"host": host, "origin": ORIGIN}, **body)
            assert r.status_code == 421, (method, path, host, r.status_code)
            assert r.headers["content-security-policy"].startswith("default-src 'self'")
    assert len(world.ri.audit_entries()) == entries
