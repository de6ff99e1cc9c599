"""The whole two-person flow through four desks, in a real browser.

New York (Officers Ri and Han) and Washington (Officers Smith and Jones),
founded and paired through the library, each officer at his own desk
(``backchannel ui``), all four against one relay process. Everything the
officers do happens in the browser: Ri writes (keyboard only) and cannot send
alone; Han reads the full text and co-signs (keyboard only); Washington
receives; Smith cannot open alone; Jones approves; Smith reads it; Ri sees the
receipt. Every page visited passes axe-core with no serious or critical
violation, and no page breaks its Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import OPEN_REGISTRATION, set_up_missions
from tests.relay.procs import RelayProcess
from tests.ui.conftest import DeskProcess, axe_violations, in_thread, logged_in, screenshot

TEXT = "Proposal: working-level talks in Geneva on the 2nd.\nAgenda: prisoners, fisheries."
WAIT = 20_000  # ms: a few rounds of 0.5 s and the pages' 2 s refresh


def tab_to(page: Any, selector: str, limit: int = 40) -> None:
    """Press Tab from the top of the page until ``selector`` has the focus."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} cannot be reached with the Tab key")


class Officer:
    def __init__(self, name: str, desk: DeskProcess, context: Any, page: Any) -> None:
        self.name, self.desk, self.context, self.page = name, desk, context, page
        self.csp_errors: list[str] = []
        page.on("console", self._console)

    def _console(self, msg: Any) -> None:
        if "Content Security Policy" in msg.text:
            self.csp_errors.append(msg.text)

    def go(self, path: str) -> Any:
        self.page.goto(self.desk.origin + path)
        assert axe_violations(self.page) == [], path
        return self.page


@pytest.fixture(scope="module")
def officers(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Officer]]:
    work = tmp_path_factory.mktemp("desks")
    with ExitStack() as stack:
        relay = stack.enter_context(
            RelayProcess(f"sqlite:///{work / 'relay.db'}", OPEN_REGISTRATION)
        )
        m = in_thread(lambda: set_up_missions(work, relay.base_url, relay.base_url))
        homes = {"ri": m.ri.home, "han": m.han.home, "smith": m.smith.home, "jones": m.jones.home}
        desks = {k: DeskProcess(h) for k, h in homes.items()}
        for d in desks.values():
            stack.callback(d.stop)
            d.launch()
        for d in desks.values():
            d.ready()
        out = {}
        for k, d in desks.items():
            context, page = logged_in(browser, d)
            stack.callback(context.close)
            out[k] = Officer(k, d, context, page)
        yield out


def test_two_missions_exchange_a_message_through_four_desks(officers: dict[str, Officer]) -> None:
    ri, han, smith, jones = (officers[k] for k in ("ri", "han", "smith", "jones"))

    # Ri writes, with the keyboard only.
    page = ri.go("/compose")
    screenshot(page, "compose")
    tab_to(page, "#text")  # from the top of the page, past the menu and the choices
    page.keyboard.type(TEXT)
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url("**/sent/*")
    draft_url = page.url
    expect(page.locator(".state")).to_contain_text("Waiting for co-signature (1 of 2)")

    # Alone, he cannot send it.
    page.get_by_role("button", name="Send now").click()
    expect(page.locator(".note-refused")).to_contain_text("you cannot send it alone")
    screenshot(page, "draft-refused")

    # Han reads the whole text on his own desk and co-signs, with the keyboard only.
    page = han.go("/cosign")
    approve = page.get_by_role("button", name="Approve and co-sign")
    expect(approve).to_be_visible(timeout=WAIT)
    assert axe_violations(page) == []
    assert page.locator(".content .text").inner_text() == TEXT
    screenshot(page, "cosign")
    tab_to(page, "button[id$='-approve']")
    page.keyboard.press("Enter")
    expect(page.locator(".note-ok")).to_contain_text("Co-signed")

    # Washington receives; Smith alone cannot open it.
    page = smith.go("/inbox")
    row = page.get_by_role("link", name="Message")
    expect(row.first).to_be_visible(timeout=WAIT)
    screenshot(page, "inbox")
    row.first.click()
    page.wait_for_url("**/inbox/*")
    assert axe_violations(page) == []
    page.get_by_role("button", name="Open together with a colleague").click()
    expect(page.locator(".note-refused")).to_contain_text("You cannot open it alone")
    message_url = page.url

    # Jones approves the share request on his desk.
    page = jones.go("/inbox")
    share = page.get_by_role("button", name="Approve: open message")
    expect(share).to_be_visible(timeout=WAIT)
    assert axe_violations(page) == []
    screenshot(page, "share-request")
    share.click()
    expect(page.locator(".note-ok")).to_contain_text("Your part of the key goes to")

    # Smith's page opens the message by itself.
    page = smith.page
    page.goto(message_url)
    expect(page.locator(".content .text")).to_have_text(TEXT, timeout=WAIT)
    assert axe_violations(page) == []
    screenshot(page, "message-opened")

    # Ri sees the receipt.
    page = ri.page
    page.goto(draft_url)
    expect(page.locator(".state")).to_have_text("Delivered (receipt received)", timeout=WAIT)
    assert axe_violations(page) == []
    screenshot(page, "draft-delivered")
    page = ri.go("/alarms")
    expect(page.get_by_text("could not be sent by one officer alone")).to_be_visible()
    screenshot(page, "alarms")
    for name, path in (("channels", "/channels"), ("roster", "/roster"), ("sent", "/sent")):
        screenshot(ri.go(path), name)
    for o in (ri, han, smith, jones):
        assert o.csp_errors == [], (o.name, o.csp_errors)
