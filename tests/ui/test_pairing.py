"""Pairing at the desk: the other mission's card (a file, or pasted), then the safety number
compared aloud as a meeting step, in a real browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.e2e.conftest import set_up_missions
from tests.ui.conftest import DeskProcess, axe_violations, in_thread, logged_in, screenshot

DEAD_RELAY = "http://127.0.0.1:9"


def test_a_card_file_then_the_safety_number_aloud(browser: Any, tmp_path: Path) -> None:
    m = in_thread(
        lambda: set_up_missions(tmp_path, DEAD_RELAY, DEAD_RELAY, register=False, pair=False)
    )
    card = tmp_path / "washington.card"
    card.write_text(m.dc_card)
    with DeskProcess(m.ri.home) as desk:
        context, page = logged_in(browser, desk)
        try:
            page.goto(desk.origin + "/pairing")
            assert axe_violations(page) == []
            screenshot(page, "pairing")
            page.set_input_files("#card_file", str(card))
            page.get_by_role("button", name="Add their card").click()
            page.wait_for_url("**/pairing/*")
            assert axe_violations(page) == []
            groups = page.locator(".safety .group").all_inner_texts()
            assert len(groups) == 12 and all(len(g) == 5 and g.isdigit() for g in groups)
            number = " ".join(groups)
            assert page.locator(".qr img").get_attribute("src").startswith("data:image/svg+xml")
            screenshot(page, "safety-number")

            # Both officers must say they compared it: one box is not enough.
            confirm = page.get_by_role("button", name="Confirm the safety number")
            page.get_by_label("read it aloud").check()
            confirm.click()
            expect(page.locator(".state-opened")).to_have_count(0)
            page.get_by_label("confirms the same number").check()
            confirm.click()
            expect(page.locator(".state-opened")).to_have_text("Compared and confirmed.")

            # The same card pasted: known already, and still confirmed.
            page.goto(desk.origin + "/pairing")
            page.fill("#card_text", m.dc_card)
            page.get_by_role("button", name="Add their card").click()
            page.wait_for_url("**/pairing/*")
            expect(page.locator(".state-opened")).to_have_text("Compared and confirmed.")
            page.goto(desk.origin + "/pairing")
            expect(page.get_by_role("cell", name="Compared and confirmed")).to_be_visible()

            # The number is the one both missions' devices compute.
            assert _library_number(m.ri.home) == number

            page.goto(desk.origin + "/login/replayed")
            assert axe_violations(page) == []
        finally:
            context.close()


def _library_number(home: Path) -> str:
    from backchannel.client.home import Home
    from backchannel.client.service import Client
    from tests.e2e.conftest import PASSPHRASE

    c = Client(Home.unlock(home, PASSPHRASE))
    try:
        [peer] = c.peers()
        return peer.safety_number
    finally:
        c.home.close()
