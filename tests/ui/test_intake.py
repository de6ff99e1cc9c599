"""The public intake on two officers' desks, in Chromium, against a real relay.

Ri opens the intake from his desk; a reporter writes from the intake page;
both desks show the request by themselves; Ri proposes an answer and cannot
send it alone; Han reads it on his own desk and approves it; the reporter
reads it with his reply code. Every intake page passes axe-core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.e2e.conftest import OPEN_REGISTRATION, set_up_missions
from tests.relay.procs import RelayProcess
from tests.ui.conftest import DeskProcess, axe_violations, in_thread, logged_in

WAIT = 30_000
ANSWER = "Yes: Thursday at ten, at the mission."


def test_two_desks_triage_and_answer_a_request_under_the_two_person_rule(
    browser: Any, tmp_path: Path
) -> None:
    env = {**OPEN_REGISTRATION, "BACKCHANNEL_RELAY_INTAKE_POW_BITS": "12"}
    with RelayProcess(f"sqlite:///{tmp_path / 'relay.db'}", env) as relay:
        m = in_thread(lambda: set_up_missions(tmp_path, relay.base_url, relay.base_url, pair=False))
        with DeskProcess(m.ri.home) as ri_desk, DeskProcess(m.han.home) as han_desk:
            ri_ctx, ri = logged_in(browser, ri_desk)
            han_ctx, han = logged_in(browser, han_desk)
            ri.goto(ri_desk.origin + "/intake")
            assert axe_violations(ri) == []
            ri.click("#intake-switch")
            expect(ri.locator("text=The intake is open")).to_be_visible(timeout=WAIT)
            page_url = ri.locator("a", has_text="Intake page").get_attribute("href")
            assert page_url and page_url.startswith(relay.base_url + "/intake/#")

            # A reporter writes, from the page the mission hands out.
            reporter = browser.new_page()
            reporter.goto(page_url)
            reporter.wait_for_selector("body[data-ready='1']")
            reporter.fill("#subject", "Interview on the talks")
            reporter.fill("#body", "Ten minutes with the ambassador?")
            reporter.click("#send")
            reporter.wait_for_selector("#sent:not([hidden])", timeout=60_000)
            code = reporter.text_content("#reply-code") or ""

            # Both desks show it by themselves (the queue refreshes).
            for page, desk in ((ri, ri_desk), (han, han_desk)):
                page.goto(desk.origin + "/intake")
                expect(page.locator("a", has_text="Interview on the talks")).to_be_visible(
                    timeout=WAIT
                )
            ri.goto(ri_desk.origin + "/intake/1")
            assert axe_violations(ri) == []
            ri.fill("#answer", ANSWER)
            ri.click("text=Propose this answer")
            expect(ri.locator("text=approved by Officer Ri (1 of 2 needed)")).to_be_visible()
            # Han sees the proposal on his desk, reads it, approves it.
            han.goto(han_desk.origin + "/intake/1")
            expect(han.locator("pre", has_text=ANSWER)).to_be_visible(timeout=WAIT)
            assert axe_violations(han) == []
            han.click("text=Approve this answer")
            expect(han.locator("#approved-answer")).to_have_text(ANSWER)
            # The desk device sends it; the reporter reads it with his code.
            ri.goto(ri_desk.origin + "/intake/1")
            expect(ri.locator("text=sent to the submitter")).to_be_visible(timeout=WAIT)
            reporter.fill("#check-code", code)
            reporter.click("#check-form button")
            reporter.wait_for_selector(f"#answer:text-is('{ANSWER}')", timeout=WAIT)
            for ctx in (ri_ctx, han_ctx):
                ctx.close()
            reporter.close()
