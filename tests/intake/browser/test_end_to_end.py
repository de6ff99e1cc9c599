"""The public intake end to end, as people would use it: a mission's officers
open the intake and publish its card; a reporter writes from the intake page
in Chromium, another from the command line; the two officers triage them
through the CLI, answer one under the two-person rule and ignore the other;
the answered reporter reads the answer with his reply code in the page, and
the ignored one learns nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.conftest import OPEN_REGISTRATION, Officer, base_env, set_up_missions
from tests.relay.procs import REPO, RelayProcess
from tests.ui.conftest import in_thread

ANSWER = "The ambassador will see you on Thursday at ten, at the mission."


def public(*args: str | Path, stdin: str = "") -> Any:
    """``backchannel --json intake ...`` as a member of the public: no home at all."""
    env = base_env()
    env.pop("BACKCHANNEL_PASSPHRASE")
    p = subprocess.run(
        [sys.executable, "-m", "backchannel.cli.main", "--json", "intake", *map(str, args)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120, input=stdin,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def rounds(*officers: Officer, times: int = 2) -> None:
    for _ in range(times):
        for o in officers:
            o.sync(3)


def test_reporters_write_officers_triage_and_only_the_answered_one_hears_back(
    browser: Any, tmp_path: Path
) -> None:
    env = {**OPEN_REGISTRATION, "BACKCHANNEL_RELAY_INTAKE_POW_BITS": "14"}
    with RelayProcess(f"sqlite:///{tmp_path / 'relay.db'}", env) as relay:
        m = in_thread(lambda: set_up_missions(tmp_path, relay.base_url, relay.base_url, pair=False))
        ri, han = m.ri, m.han
        ri.ok("intake", "open")
        rounds(ri, han)
        card_file, qr = tmp_path / "intake-card.txt", tmp_path / "intake.svg"
        card = ri.json("intake", "card", "--out", card_file, "--qr", qr)
        assert card["open"] and card["page"].startswith(f"{relay.base_url}/intake/#")
        assert qr.read_text().lstrip().startswith("<?xml") or "<svg" in qr.read_text()
        assert han.json("intake", "card")["card"] == card["card"]  # the same on every desk

        # A reporter in the browser: an interview request.
        page = browser.new_page()
        page.goto(card["page"])
        page.wait_for_selector("body[data-ready='1']")
        assert page.text_content("#fingerprint") == card["fingerprint"]
        page.select_option("#kind", "interview")
        page.fill("#subject", "Interview on the talks")
        page.fill("#body", "Ten minutes with the ambassador, on the record?")
        page.fill("#contact", "reporter@paper.example")
        page.click("#send")
        page.wait_for_selector("#sent:not([hidden])", timeout=60_000)
        browser_code = page.text_content("#reply-code") or ""

        # Another from the command line: a media tour.
        request = tmp_path / "tour.txt"
        request.write_text(
            "Kind: media-tour\nSubject: A tour for our crew\n\nThree of us, no cameras.\n"
        )
        cli_code = public("submit", card_file, "--file", request)["reply_code"]

        # Both officers see both requests; the two-person rule governs the answer.
        rounds(ri, han)
        for o in (ri, han):
            listed = o.json("intake", "list")["requests"]
            assert [(r["number"], r["kind"], r["state"]) for r in listed] == [
                (1, "interview", "new"), (2, "media-tour", "new")
            ]  # fmt: skip
        answer_file = tmp_path / "answer.txt"
        answer_file.write_text(ANSWER + "\n")
        han.ok("intake", "assign", "1", "Officer Han")
        han.ok("intake", "answer", "1", "--file", answer_file)
        ri.ok("intake", "ignore", "2")
        rounds(ri, han)
        pending = ri.json("intake", "show", "1")
        assert pending["answer"] == ANSWER and pending["approvals"] == ["Officer Han"]
        assert not pending["answer_sent"]
        [proposal] = pending["proposals"]
        assert proposal["text"] == ANSWER
        assert public("check", card_file, stdin=browser_code + "\n") == {"answered": False}
        ri.ok("intake", "approve", "1", proposal["id"][:8])  # the text Ri read, by its id
        rounds(ri, han, times=3)
        for o in (ri, han):
            states = [(r["state"], r["answer_sent"]) for r in o.json("intake", "list")["requests"]]
            assert states == [("answered", True), ("ignored", False)]
            assert o.json("audit", "verify")["holds"] is True

        # The answered reporter reads the answer in the page; the ignored one learns nothing.
        page.fill("#check-code", browser_code)
        page.click("#check-form button")
        page.wait_for_selector(f"#answer:text-is('{ANSWER}')")
        assert public("check", card_file, stdin=browser_code + "\n") == {
            "answered": True, "answer": ANSWER
        }  # fmt: skip
        assert public("check", card_file, stdin=cli_code + "\n") == {"answered": False}
        page.close()
