"""The desk's defences, in a real browser: who may use it, what every answer carries.

One desk (Officer Ri of New York, paired with Washington, its relay down: the
desk never needs it to serve) and several browser contexts, each a separate
browser with its own cookies.
"""

from __future__ import annotations

import http.server
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pytest

from tests.e2e.conftest import PASSPHRASE, Missions, set_up_missions
from tests.ui.conftest import DeskProcess, in_thread, logged_in, screenshot

DEAD_RELAY = "http://127.0.0.1:9"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
VIEWS = ("/inbox", "/compose", "/sent", "/cosign", "/channels", "/alarms", "/pairing", "/roster")
TEXT = "Secret marker: the fisheries clause stays."


@pytest.fixture(scope="module")
def missions(tmp_path_factory: pytest.TempPathFactory) -> Missions:
    work = tmp_path_factory.mktemp("desk")
    return in_thread(lambda: set_up_missions(work, DEAD_RELAY, DEAD_RELAY, register=False))


@pytest.fixture(scope="module")
def home(missions: Missions) -> Path:
    return missions.ri.home


@pytest.fixture(scope="module")
def own_home(missions: Missions) -> Path:
    """A home the module's desk does not serve, for a test that starts desks of its own
    (one desk per home: a second one on the module's home is refused)."""
    return missions.han.home


@pytest.fixture(scope="module")
def washington_card(missions: Missions) -> str:
    return missions.dc_card


@pytest.fixture(scope="module")
def desk(home: Path) -> Iterator[DeskProcess]:
    with DeskProcess(home) as d:
        yield d


class Browser:
    """One browser signed in to the module's desk, with every request and answer it saw."""

    def __init__(self, browser: Any, desk: DeskProcess) -> None:
        self.context = browser.new_context()
        self.urls: list[str] = []
        self.answers: list[Any] = []
        self.context.on("request", lambda r: self.urls.append(r.url))
        self.context.on("response", lambda r: self.answers.append(r))
        self.page = self.context.new_page()
        self.page.goto(desk.link)
        assert self.page.url == desk.origin + "/inbox"


@pytest.fixture(scope="module")
def signed_in(browser: Any, desk: DeskProcess) -> Iterator[Browser]:
    b = Browser(browser, desk)
    yield b
    b.context.close()


def _refused(page: Any, title: str) -> None:
    assert page.locator("h1").inner_text().startswith(title), page.locator("h1").inner_text()


def _cookie_header(context: Any) -> str:
    """The browser's cookies as a Cookie header, for a client that is no browser."""
    return "; ".join(f"{c['name']}={c['value']}" for c in context.cookies())


class Listener:
    """Another local program: a web server on another port of 127.0.0.1 noting each Cookie."""

    def __init__(self) -> None:
        heard: list[str] = []
        self.cookies = heard

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                heard.append(self.headers.get("cookie") or "")
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.end_headers()
                self.wfile.write(b"<p>nothing here</p>")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_one_login_one_browser_and_a_stale_session(browser: Any, own_home: Path) -> None:
    desk = DeskProcess(own_home).start()
    first, page = logged_in(browser, desk)
    other = browser.new_context()
    try:
        intruder = other.new_page()
        answer = intruder.goto(desk.link)  # replayed
        assert answer.status == 403
        _refused(intruder, "This login link has already been used")
        screenshot(intruder, "refused")
        for path in ("/inbox", "/cosign", "/compose"):  # a second browser gets nothing
            answer = intruder.goto(desk.origin + path)
            assert answer.status == 403
            _refused(intruder, "This browser is not signed in to the desk")
        # The first browser is still in.
        assert page.goto(desk.origin + "/roster").status == 200

        # The desk restarted on the same port: the old session's cookie opens nothing.
        desk.stop()
        port = int(desk.origin.rsplit(":", 1)[1])
        desk = DeskProcess(own_home, port=port).start()
        answer = page.goto(desk.origin + "/inbox")
        assert answer.status == 403
        _refused(page, "This browser is not signed in to the desk")
    finally:
        other.close()
        first.close()
        desk.stop()


def test_every_answer_carries_the_policy(signed_in: Browser, desk: DeskProcess) -> None:
    page = signed_in.page
    for path in (*VIEWS, "/inbox/00", "/login/replayed", "/static/desk.css"):
        page.goto(desk.origin + path)
    answers = signed_in.answers
    assert len(answers) > len(VIEWS) + 3
    for r in answers:
        h = r.all_headers()
        assert h.get("content-security-policy") == CSP, r.url
        assert h.get("x-content-type-options") == "nosniff", r.url
        assert h.get("referrer-policy") == "same-origin", r.url
        assert h.get("cache-control") == "no-store", r.url
    cookies = signed_in.context.cookies()
    cookie = next(c for c in cookies if c["name"].startswith("backchannel_desk_"))
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"


def test_posts_need_the_csrf_token_and_the_desk_origin(
    signed_in: Browser, desk: DeskProcess, washington_card: str
) -> None:
    context, page = signed_in.context, signed_in.page
    page.goto(desk.origin + "/compose")
    channel = page.locator("#channel").input_value()
    csrf = page.locator("input[name=csrf]").first.input_value()
    form = {"channel": channel, "kind": "note", "text": "x", "back": "/compose"}

    # From the desk's own page, without the token: refused.
    status = page.evaluate(
        "async (f) => (await fetch('/compose', {method: 'POST', body: new URLSearchParams(f)}))"
        ".status",
        form,
    )
    assert status == 403
    # With the token, from another origin: refused (the browser's cookie goes along).
    http = desk.http(cookie=_cookie_header(context))
    other = {"origin": "http://evil.example"}
    r = http.post("/compose", data={**form, "csrf": csrf}, headers=other)
    assert r.status_code == 403
    r = http.post("/compose", data={**form, "csrf": "wrong"}, headers={"origin": desk.origin})
    assert r.status_code == 403
    assert page.goto(desk.origin + "/sent").ok
    assert "Nothing written" in page.inner_text("main")  # none of them did anything
    # A request with both is done (adding a card the desk already holds).
    page.goto(desk.origin + "/pairing")
    card = {"card_text": washington_card, "csrf": csrf, "back": "/pairing"}
    r = http.post("/pairing/add", files={k: (None, v) for k, v in card.items()},
                  headers={"origin": desk.origin})  # fmt: skip
    assert r.status_code == 303 and r.headers["location"].startswith("/pairing/"), r.text
    http.close()
    # Another Host (DNS rebinding) is refused before anything else.
    with desk.http(host="evil.example", cookie=_cookie_header(context)) as evil:
        assert evil.get("/inbox").status_code == 421


def test_nothing_leaves_the_desk_and_no_secret_is_in_a_url(
    signed_in: Browser, desk: DeskProcess
) -> None:
    page, urls = signed_in.page, signed_in.urls
    page.goto(desk.origin + "/compose")
    csrf = page.locator("input[name=csrf]").first.input_value()
    page.fill("#text", TEXT)
    page.get_by_role("button", name="Seal, sign").click()
    page.wait_for_url("**/sent/*")
    page.wait_for_timeout(1500)  # the progress page refreshes itself
    for path in (*VIEWS, "/pairing"):
        page.goto(desk.origin + path)
        assert PASSPHRASE not in page.content(), path  # nor on any page
    page.get_by_role("link", name="Washington").click()
    page.wait_for_url("**/pairing/*")
    session = next(c["value"] for c in signed_in.context.cookies())
    # Every request went to the desk (an inline image is no request to anyone).
    assert all(u.startswith((desk.origin + "/", "data:")) for u in urls), urls
    assert urls[0] == desk.link
    later = " ".join(urls[1:])
    secrets = [PASSPHRASE, TEXT, "fisheries", session, csrf, desk.link.split("/")[-1]]
    for secret in secrets:
        assert secret not in later
        assert secret.replace(" ", "%20") not in later and secret.replace(" ", "+") not in later


def test_another_local_program_gets_no_cookie_and_the_old_address_is_refused(
    signed_in: Browser, desk: DeskProcess
) -> None:
    """A program on another port of 127.0.0.1 that the officer's browser visits hears
    no session cookie; with it, it could not use the desk at 127.0.0.1 or another name."""
    context = signed_in.context
    cookie = next(c for c in context.cookies() if c["name"].startswith("backchannel_desk_"))
    name = desk.host.rsplit(":", 1)[0]
    assert name.endswith(".localhost") and len(name) >= 16 + len(".localhost")
    assert cookie["domain"] == name  # host-only, for the desk's own name
    login = next(r for r in signed_in.answers if r.url == desk.link)
    set_cookie = login.all_headers()["set-cookie"].lower()
    assert "domain" not in set_cookie and "httponly" in set_cookie, set_cookie

    listener = Listener()
    page = context.new_page()
    try:
        page.goto(f"http://127.0.0.1:{listener.port}/")
        page.goto(f"http://127.0.0.1:{listener.port}/inbox")
    finally:
        page.close()
        listener.close()
    assert len(listener.cookies) >= 2 and cookie["value"] not in " ".join(listener.cookies)
    assert all("backchannel_desk" not in c for c in listener.cookies), listener.cookies

    # Even holding the cookie, a request naming the old address or another name is refused.
    stolen = f"{cookie['name']}={cookie['value']}"
    with desk.http(cookie=stolen) as own:
        assert own.get("/inbox").status_code == 200  # (the cookie itself is good)
    for host in (f"127.0.0.1:{desk.port}", f"localhost:{desk.port}",
                 f"other.localhost:{desk.port}", name):  # fmt: skip
        with desk.http(host=host, cookie=stolen) as http:
            r = http.get("/inbox")
            assert r.status_code == 421 and name not in r.text, host


def test_a_refusal_without_the_session_names_nobody(signed_in: Browser, desk: DeskProcess) -> None:
    with desk.http() as http:
        answers = [
            http.get("/inbox"),
            http.get("/roster"),
            http.get("/login/guessed"),
            http.post("/compose", data={"text": "x"}, headers={"origin": desk.origin}),
        ]
    for r in answers:
        assert r.status_code == 403, r.url
        for word in ("Officer Ri", "Ri</strong>", "New York", "Washington", "desk device"):
            assert word not in r.text, (r.url, word)
    assert "not signed in" in answers[0].text
    # Inside the session, a refusal still says whose desk it is.
    page = signed_in.page
    assert page.goto(desk.origin + "/login/replayed").status == 403
    assert "Officer Ri" in page.locator(".who").inner_text()


def test_open_hands_the_browser_a_private_file_not_the_link(
    browser: Any, own_home: Path, tmp_path: Path
) -> None:
    """``ui --open``: the browser's command line holds a file's address, never the token;
    the file (0600) forwards to the link and is gone once the link is spent."""
    script = tmp_path / "browser.sh"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$1" >> "$0.args"\n')
    script.chmod(0o700)
    args = tmp_path / "browser.sh.args"
    env = {"BROWSER": str(script)}

    def opened() -> str:
        deadline = time.monotonic() + 10
        while not args.exists() or not args.read_text().endswith("\n"):
            assert time.monotonic() < deadline, "the desk opened no browser"
            time.sleep(0.05)
        return args.read_text().splitlines()[-1]

    with DeskProcess(own_home, args=("--open",), env=env) as desk:
        url = opened()
        token = desk.link.rsplit("/", 1)[1]
        assert url.startswith("file://") and token not in url and desk.host not in url, url
        path = Path(url2pathname(urlsplit(url).path))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        text = path.read_text()
        assert desk.link in text and "<script" not in text
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(url)
            page.wait_for_url(desk.origin + "/inbox")
        finally:
            context.close()
        assert not path.exists() and not path.parent.exists()  # spent: removed

    args.unlink()
    with DeskProcess(own_home, args=("--open",), env=env) as desk:  # never used
        path = Path(url2pathname(urlsplit(opened()).path))
        assert path.exists()
    assert not path.parent.exists()  # removed when the desk stopped


def test_the_browser_the_desk_opens_does_not_inherit_the_passphrase(
    own_home: Path, tmp_path: Path
) -> None:
    """``ui --open`` with the passphrase in ``BACKCHANNEL_PASSPHRASE``: the browser it
    starts (which outlives the desk and starts programs of its own) is not handed it."""
    script = tmp_path / "browser.sh"
    script.write_text('#!/bin/sh\nenv > "$0.env"\nprintf "%s\\n" "$1" >> "$0.args"\n')
    script.chmod(0o700)
    args, env = tmp_path / "browser.sh.args", tmp_path / "browser.sh.env"
    with DeskProcess(own_home, args=("--open",), env={"BROWSER": str(script)}):
        deadline = time.monotonic() + 10
        while not args.exists() or not args.read_text().endswith("\n"):
            assert time.monotonic() < deadline, "the desk opened no browser"
            time.sleep(0.05)
    inherited = env.read_text()
    assert "BROWSER=" in inherited  # the browser's environment, as the desk handed it on
    assert PASSPHRASE not in inherited
    assert "BACKCHANNEL_PASSPHRASE" not in inherited


def test_only_the_officer_keeps_the_session_alive_not_the_pages_refreshing(
    browser: Any, own_home: Path
) -> None:
    """What the desk tells apart to end an idle session: the inbox's own refreshes (htmx's
    timer) from the officer's clicks (htmx's boosted links), as Chromium sends them."""
    context = browser.new_context()
    seen: list[tuple[str, dict[str, str]]] = []
    context.on("request", lambda r: seen.append((r.url, r.headers)))
    try:
        with DeskProcess(own_home) as desk:
            page = context.new_page()
            page.goto(desk.link)
            page.wait_for_timeout(2500)  # the inbox refreshes itself every second
            page.get_by_role("link", name="Roster").click()
            page.wait_for_url("**/roster")
    finally:
        context.close()
    inbox = [h for u, h in seen if u == desk.origin + "/inbox"]
    refreshes = [h for h in inbox if h.get("hx-request") == "true"]
    assert len(refreshes) >= 2, inbox
    assert all("hx-boosted" not in h for h in refreshes), refreshes
    [click] = [h for u, h in seen if u == desk.origin + "/roster"]
    assert click.get("hx-request") == "true" and click.get("hx-boosted") == "true", click


def test_a_refused_message_is_still_in_the_form(signed_in: Browser, desk: DeskProcess) -> None:
    page = signed_in.page
    page.goto(desk.origin + "/compose")
    page.get_by_label("Meeting request").check()
    page.fill("#where", "Geneva")
    page.fill("#text", TEXT)
    page.get_by_role("button", name="Seal, sign").click()
    page.wait_for_selector(".note-refused")
    assert "a meeting needs: when, where" in page.inner_text(".note-refused")
    assert page.input_value("#text") == TEXT
    assert page.input_value("#where") == "Geneva"
    assert page.is_checked("input[name=kind][value=meeting]")
    page.reload()  # shown once
    assert page.input_value("#text") == ""
