"""The intake page in Chromium: it seals in the browser what Python opens, it
opens what Python seals, and a reporter submits and reads an answer through a
real relay, with nothing loaded from elsewhere and no accessibility faults."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import httpx
import pytest

from backchannel.protocol import intake as pi
from tests.intake.browser.conftest import TENANT, Mission
from tests.ui.conftest import axe_violations

MODULE = "const m = await import('/intake/intake.js');"


def page_for(browser: Any, mission: Mission, requests: list[str]) -> Any:
    page = browser.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.goto(mission.card.page_url())
    page.wait_for_selector("body[data-ready='1']")
    return page


def test_a_reporter_submits_in_the_page_and_the_mission_opens_it(
    browser: Any, mission: Mission
) -> None:
    seen: list[str] = []
    page = page_for(browser, mission, seen)
    assert page.text_content("#mission-name") == "Mission of Testland"
    assert page.text_content("#fingerprint") == mission.card.fingerprint()
    before = {seq for seq, _ in mission.fetch()}
    page.select_option("#kind", "interview")
    page.fill("#subject", "Interview request")
    page.fill("#body", "Could the ambassador speak to us for ten minutes? — Ünïcödé ok")
    page.click("#send")
    page.wait_for_selector("#sent:not([hidden])", timeout=30_000)
    code_text = page.text_content("#reply-code") or ""
    assert axe_violations(page) == []
    # Only the sealed cell reached the relay: the mission opens it with its key.
    [cell] = [c for s, c in mission.fetch() if s not in before]
    assert len(cell) == pi.REQUEST_CELL_SIZE
    assert b"ambassador" not in cell and b"Interview" not in cell
    req = pi.open_request(mission.key, mission.card, cell)
    assert req.kind is pi.Kind.INTERVIEW and req.subject == "Interview request"
    assert req.body == "Could the ambassador speak to us for ten minutes? — Ünïcödé ok"
    assert req.contact == "" and pi.format_reply_code(req.reply_code) == code_text
    # The page asked for nothing outside the relay's own origin.
    assert seen and all(u.startswith(mission.relay.base_url) for u in seen), seen
    # Unanswered: the status the page shows. Then the mission answers, and the page reads it.
    page.fill("#check-code", code_text)
    page.click("#check-form button")
    page.wait_for_selector("#answer:not([hidden])")
    assert page.text_content("#answer") == "There is no answer under this code."
    mission.answer(req.reply_code, "Yes, on Thursday at ten.")
    page.click("#check-form button")
    # (The page's CSP forbids evaluating strings, so the wait is a selector.)
    page.wait_for_selector("#answer:text-is('Yes, on Thursday at ten.')")
    page.close()


def test_what_python_seals_the_page_opens(browser: Any, mission: Mission) -> None:
    page = page_for(browser, mission, [])
    code = pi.new_reply_code(secrets.token_bytes)
    request = pi.IntakeRequest(pi.Kind.MEDIA_TOUR, "Tour", "A crew of three", "desk@x.org", code)
    cell = pi.seal_request(mission.card, request)
    answer = pi.seal_answer(mission.card, code, "Agreed: Monday.", secrets.token_bytes)
    got = page.evaluate(
        "async ([card, seed, cell, code, answer]) => {" + MODULE + """
        const c = await m.parseCard(card);
        const r = await m.openRequest(c, m.fromBase64(seed), m.fromBase64(cell));
        const parsed = m.parseReplyCode(code);
        return {kind: r.kind, subject: r.subject, body: r.body, contact: r.contact,
                code: m.formatReplyCode(r.code), same: m.toHex(parsed) === m.toHex(r.code),
                replyId: m.toHex(await m.replyId(c, r.code)),
                answer: await m.openAnswer(c, r.code, m.fromBase64(answer))};
        }""",
        [mission.card.to_text(), b64(mission.seed), b64(cell), pi.format_reply_code(code),
         b64(answer)],
    )  # fmt: skip
    assert got == {
        "kind": "media-tour", "subject": "Tour", "body": "A crew of three",
        "contact": "desk@x.org", "code": pi.format_reply_code(code), "same": True,
        "replyId": pi.reply_id(mission.card, code).hex(), "answer": "Agreed: Monday.",
    }  # fmt: skip
    page.close()


def test_what_the_page_seals_python_opens_and_its_proof_of_work_holds(
    browser: Any, mission: Mission
) -> None:
    page = page_for(browser, mission, [])
    got = page.evaluate(
        "async ([card]) => {"
        + MODULE
        + """
        const c = await m.parseCard(card);
        const code = m.newReplyCode();
        const plain = m.encodeRequest('meeting', 'Meet', 'Tuesday?', '', code);
        const cell = await m.sealRequest(c, plain);
        const nonce = await m.solvePow(c.tenantId, 12345, cell, 10);
        return {cell: m.toBase64(cell), code: m.formatReplyCode(code), nonce};
        }""",
        [mission.card.to_text()],
    )
    cell = base64.b64decode(got["cell"])
    req = pi.open_request(mission.key, mission.card, cell)
    assert (req.kind, req.subject, req.body) == (pi.Kind.MEETING, "Meet", "Tuesday?")
    assert pi.format_reply_code(req.reply_code) == got["code"]
    assert pi.pow_ok(pi.pow_prefix(mission.card.tenant_id, 12345, cell), got["nonce"], 10)
    page.close()


@pytest.mark.parametrize(
    "card",
    ["not a card", "BACKCHANNEL-INTAKE-1:AAAA", "BACKCHANNEL-INTAKE-1:" + "A" * 3000],
)
def test_a_damaged_card_is_refused_in_words(browser: Any, mission: Mission, card: str) -> None:
    page = browser.new_page()
    page.goto(f"{mission.relay.base_url}/intake/")
    page.wait_for_selector("body[data-ready='1']")
    page.fill("#card-text", card)
    page.click("#card-form button")
    page.wait_for_selector("#card-error:not([hidden])")
    assert "card" in (page.text_content("#card-error") or "")
    assert page.is_hidden("#mission")
    page.close()


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _set_open(mission: Mission, is_open: bool) -> None:
    """The mission's round request stating the intake open or closed."""
    answer = httpx.post(
        f"{mission.relay.base_url}/v1/tenants/{TENANT}/intake/fetch",
        json={"after": 0, "limit": 1, "open": is_open},
        headers={"Authorization": f"Bearer {mission.credential}"},
    )
    answer.raise_for_status()


def test_the_page_says_the_intake_is_closed_not_that_there_is_no_answer(
    browser: Any, mission: Mission
) -> None:
    code = pi.new_reply_code(secrets.token_bytes)
    mission.answer(code, "Agreed: Friday.")
    page = page_for(browser, mission, [])
    page.fill("#check-code", pi.format_reply_code(code))
    try:
        _set_open(mission, False)
        page.click("#check-form button")
        page.wait_for_selector("#answer:not([hidden])")
        said = page.text_content("#answer") or ""
        assert said.startswith("The mission's intake is closed.") and "already sent" in said
        assert "There is no answer" not in said
        _set_open(mission, True)  # opened again: the answer sent before is read
        page.click("#check-form button")
        page.wait_for_selector("#answer:text-is('Agreed: Friday.')")
    finally:
        _set_open(mission, True)
        page.close()
