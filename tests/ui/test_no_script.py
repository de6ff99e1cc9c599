"""The desk without JavaScript: plain HTML forms write and co-sign a message.

Officers Ri and Han of New York, each at his own desk, in browsers with
JavaScript turned off (no htmx: every button is a plain form POST and every
page is reloaded by hand). Ri writes and cannot send alone; Han reloads his
queue, reads the full text and co-signs; Ri's message then leaves. Each POST
is a browser's own form submission, which names the desk as its Origin (the
desk's ``Referrer-Policy: same-origin``), and passes the desk's origin check.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import OPEN_REGISTRATION, set_up_missions
from tests.relay.procs import RelayProcess
from tests.ui.conftest import DeskProcess, in_thread

TEXT = "No script needed: the fisheries annex follows by hand."


class Plain:
    """One officer's browser with JavaScript off, signed in to his desk; its POSTs."""

    def __init__(self, browser: Any, desk: DeskProcess) -> None:
        self.desk = desk
        self.context = browser.new_context(java_script_enabled=False)
        self.posts: list[dict[str, str]] = []
        self.context.on(
            "request", lambda r: self.posts.append(r.headers) if r.method == "POST" else None
        )
        self.page = self.context.new_page()
        self.page.goto(desk.link)
        assert self.page.url == desk.origin + "/inbox"

    def reload_until(self, path: str, locator: Any, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        self.page.goto(self.desk.origin + path)
        while not locator.count():
            assert time.monotonic() < deadline, f"{path}: {self.page.text_content('main')}"
            self.page.wait_for_timeout(500)
            self.page.reload()


@pytest.fixture()
def officers(browser: Any, tmp_path: Path) -> Iterator[tuple[Plain, Plain]]:
    with ExitStack() as stack:
        relay = stack.enter_context(
            RelayProcess(f"sqlite:///{tmp_path / 'relay.db'}", OPEN_REGISTRATION)
        )
        m = in_thread(lambda: set_up_missions(tmp_path, relay.base_url, relay.base_url))
        desks = [DeskProcess(m.ri.home), DeskProcess(m.han.home)]
        for d in desks:
            stack.callback(d.stop)
            d.launch()
        for d in desks:
            d.ready()
        plain = [Plain(browser, d) for d in desks]
        for p in plain:
            stack.callback(p.context.close)
        yield plain[0], plain[1]


def test_writing_and_co_signing_through_plain_forms(officers: tuple[Plain, Plain]) -> None:
    ri, han = officers
    page = ri.page
    page.goto(ri.desk.origin + "/compose")  # (axe-core needs scripts: the views pass it
    # in the other tests)
    page.fill("#text", TEXT)
    page.get_by_role("button", name="Seal, sign").click()
    page.wait_for_url("**/sent/*")
    expect(page.locator(".state")).to_contain_text("Waiting for co-signature (1 of 2)")
    page.get_by_role("button", name="Send now").click()
    expect(page.locator(".note-refused")).to_contain_text("you cannot send it alone")
    draft_url = page.url
    # A second tab, opened while the message waits, keeps its "Send now" button.
    stale = ri.context.new_page()
    stale.goto(draft_url)
    expect(stale.get_by_role("button", name="Send now")).to_be_visible()

    approve = han.page.get_by_role("button", name="Approve and co-sign")
    han.reload_until("/cosign", approve)
    assert han.page.locator(".content .text").inner_text() == TEXT
    approve.click()
    expect(han.page.locator(".note-ok")).to_contain_text("Co-signed")

    # Ri's message leaves: co-signed, it is queued for the rounds (no peer desk runs here).
    left = page.locator(".state", has_text=re.compile("^(Queued|Sent):"))
    ri.reload_until(draft_url.removeprefix(ri.desk.origin), left)

    # Pressed in the stale tab now, "Send now" changes nothing: the message is
    # already on its way.
    stale.get_by_role("button", name="Send now").click()
    stale.wait_for_url("**/sent/*")
    expect(stale.locator(".note-ok")).to_contain_text("Already on its way: nothing to do.")
    expect(stale.locator(".note-refused")).to_have_count(0)
    expect(stale.locator(".state")).to_have_text(re.compile("^(Queued|Sent):"))

    # Every POST was a plain form submission that named the desk as its origin.
    for officer in (ri, han):
        assert officer.posts, "no form was posted"
        for headers in officer.posts:
            assert "hx-request" not in headers, headers
            assert headers.get("origin") == officer.desk.origin, headers
