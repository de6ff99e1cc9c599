"""The desk's defences, in a real browser: who may use it, what every answer carries.

One desk (Officer Ri of New York, paired with Washington, its relay down: the
desk never needs it to serve) and several browser contexts, each a separate
browser with its own cookies.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
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


def test_one_login_one_browser_and_a_stale_session(browser: Any, home: Path) -> None:
    desk = DeskProcess(home).start()
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
        desk = DeskProcess(home, port=port).start()
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
    post = context.request.post
    other = {"origin": "http://evil.example"}
    r = post(desk.origin + "/compose", form={**form, "csrf": csrf}, headers=other,
             max_redirects=0)  # fmt: skip
    assert r.status == 403
    r = post(desk.origin + "/compose", form={**form, "csrf": "wrong"},
             headers={"origin": desk.origin}, max_redirects=0)  # fmt: skip
    assert r.status == 403
    assert page.goto(desk.origin + "/sent").ok
    assert "Nothing written" in page.inner_text("main")  # none of them did anything
    # A request with both is done (adding a card the desk already holds).
    page.goto(desk.origin + "/pairing")
    card = {"card_text": washington_card, "csrf": csrf, "back": "/pairing"}
    r = post(desk.origin + "/pairing/add", multipart=card,
             headers={"origin": desk.origin}, max_redirects=0)  # fmt: skip
    assert r.status == 303 and r.headers["location"].startswith("/pairing/"), r.text()
    # Another Host (DNS rebinding) is refused before anything else.
    assert httpx.get(desk.origin + "/inbox", headers={"host": "evil.example"}).status_code == 421


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
