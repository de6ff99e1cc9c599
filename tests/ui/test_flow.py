"""The demo scenario through four desks, in a real browser, from pairing to a lying relay.

New York (Officers Ri and Han) and Washington (Officers Smith and Jones) are
founded beforehand through the library (the desk has no founding page) and
registered with one relay process; each officer then works at his own desk
(``backchannel ui``), in his own browser, and everything from pairing on
happens there: the mission cards swapped as files or pasted text, the safety
number compared aloud and confirmed by all four, each mission's channel offer
made by one officer and co-signed by the other, the offers swapped as files,
the channel opened on every desk. Then Ri writes (keyboard only) and cannot
send alone; Han reads the full text and co-signs (keyboard only); Washington
receives; Smith cannot open alone; Jones approves; Smith reads it; Ri sees the
receipt. Last, the relay's operator restores an old copy of its database: the
log it now shows forks from the one the devices saw, and the alarm with what
to do and its evidence (which checks offline) is on the desk.

Every page visited passes axe-core with no serious or critical violation,
and no page breaks its Content-Security-Policy.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from backchannel.client.api import verify_misbehaviour
from backchannel.protocol.evidence import evidence_from_text
from tests.e2e.conftest import OPEN_REGISTRATION, set_up_missions
from tests.relay.procs import RelayProcess
from tests.ui.conftest import DeskProcess, axe_violations, in_thread, logged_in, screenshot

TEXT = "Proposal: working-level talks in Geneva on the 2nd.\nAgenda: prisoners, fisheries."
WAIT = 20_000  # ms: a few rounds of 0.5 s and the pages' 2 s refresh
#: The relay dates its log to the second (not the minute), so that a log it shows
#: shorter after a longer one proves the rewind within the test's rounds.
RELAY_ENV = {**OPEN_REGISTRATION, "BACKCHANNEL_RELAY_TIME_GRANULARITY_SECONDS": "1"}


def tab_to(page: Any, selector: str, limit: int = 40) -> None:
    """Press Tab from the top of the page until ``selector`` has the focus."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} cannot be reached with the Tab key")


class Officer:
    def __init__(self, name: str, desk: DeskProcess, context: Any, page: Any, work: Path) -> None:
        self.name, self.desk, self.context, self.page = name, desk, context, page
        self.work = work
        self.csp_errors: list[str] = []
        page.on("console", self._console)

    def _console(self, msg: Any) -> None:
        if "Content Security Policy" in msg.text:
            self.csp_errors.append(msg.text)

    def go(self, path: str, axe: bool = True) -> Any:
        """Open ``path``; check it with axe-core unless the same view was checked already."""
        self.page.goto(self.desk.origin + path)
        if axe:
            assert axe_violations(self.page) == [], path
        return self.page

    def download(self, link: str) -> Path:
        """Click the link ``link`` and keep the file the browser saves."""
        with self.page.expect_download() as info:
            self.page.get_by_role("link", name=link).first.click()
        d = info.value
        path = self.work / f"{self.name}-{d.suggested_filename}"
        d.save_as(path)
        return path

    def add_file(self, field: str, button: str, path: Path, paste: bool = False) -> None:
        """Give the desk a file: chosen in the file field, or its text pasted."""
        if paste:
            self.page.fill(f"#{field}_text", path.read_text())
        else:
            self.page.set_input_files(f"#{field}_file", str(path))
        self.submit(button)

    def submit(self, button: str) -> None:
        """Press a form's button and wait for the page that answers."""
        with self.page.expect_navigation():
            self.page.get_by_role("button", name=button).click()

    def note(self) -> Any:
        return self.page.locator(".note")

    def reload_until(self, path: str, ready: Callable[[Any], Any], seconds: float = 20) -> Any:
        """Reload ``path`` until ``ready(page)`` shows (a page that does not refresh itself)."""
        deadline = time.monotonic() + seconds
        while True:
            self.page.goto(self.desk.origin + path)
            if ready(self.page).count() and ready(self.page).first.is_visible():
                assert axe_violations(self.page) == [], path
                return self.page
            if time.monotonic() > deadline:
                shown = self.page.text_content("main")
                raise AssertionError(f"{self.name}: {path} never showed what was awaited: {shown}")
            self.page.wait_for_timeout(500)


@dataclass
class Scene:
    officers: dict[str, Officer]
    relay: RelayProcess
    db: Path
    work: Path


@pytest.fixture(scope="module")
def scene(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    work = tmp_path_factory.mktemp("desks")
    db = work / "relay" / "relay.db"
    db.parent.mkdir()
    with ExitStack() as stack:
        relay = stack.enter_context(RelayProcess(f"sqlite:///{db}", RELAY_ENV))
        stack.callback(relay.stop)  # it is restarted by the test, so stopped again here
        m = in_thread(lambda: set_up_missions(work, relay.base_url, relay.base_url, pair=False))
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
            out[k] = Officer(k, d, context, page, work)
        yield Scene(out, relay, db, work)


def _pair(ri: Officer, han: Officer, smith: Officer, jones: Officer) -> None:
    # Each mission's card, downloaded from its desk.
    ri.go("/pairing")
    ny_card = ri.download("Download our mission card")
    smith.go("/pairing", axe=False)
    dc_card = smith.download("Download our mission card")
    assert ny_card.read_text().strip() and dc_card.read_text().strip() != ny_card.read_text()

    # Every officer adds the other mission's card: as a file, or its text pasted.
    for o, card, paste in ((ri, dc_card, False), (han, dc_card, True),
                           (smith, ny_card, False), (jones, ny_card, True)):  # fmt: skip
        o.go("/pairing", axe=False)
        o.add_file("card", "Add their card", card, paste)
        o.page.wait_for_url("**/pairing/*")
    assert axe_violations(ri.page) == []
    dc_path = ri.page.url.removeprefix(ri.desk.origin)
    ny_path = smith.page.url.removeprefix(smith.desk.origin)

    # The meeting step: Ri and Smith read the number aloud; it is the same on both desks.
    numbers = {o.name: o.page.locator(".safety .group").all_inner_texts() for o in (ri, smith)}
    assert len(numbers["ri"]) == 12 and numbers["ri"] == numbers["smith"]
    # Until the number is confirmed, no offer can be made.
    ri.go(dc_path + "/channel")
    expect(ri.page.get_by_text("Compare the safety number first")).to_be_visible()
    for o, path in ((ri, dc_path), (han, dc_path), (smith, ny_path), (jones, ny_path)):
        o.go(path, axe=False)
        o.page.get_by_label("read it aloud").check()
        o.page.get_by_label("confirms the same number").check()
        o.submit("Confirm the safety number")
        expect(o.page.locator(".state-opened")).to_have_text("Compared and confirmed.")

    # Each mission's offer: one officer makes it, the other co-signs it.
    offers = {}
    for maker, cosigner, peer_path, paste in ((ri, han, dc_path, False),
                                              (smith, jones, ny_path, True)):  # fmt: skip
        maker.go(peer_path, axe=False)
        maker.page.get_by_role("link", name="open the channel with").click()
        maker.page.wait_for_url("**/channel")
        if maker is ri:
            assert axe_violations(maker.page) == []
        maker.submit("Make our offer")
        expect(maker.note()).to_contain_text("signed by you (1 of 2)")
        expect(maker.page.get_by_role("button", name="Co-sign our offer")).to_have_count(0)
        if maker is ri:
            assert axe_violations(maker.page) == []
        half = maker.download("Download our offer")
        cosigner.go(peer_path + "/channel", axe=False)
        cosigner.add_file("offer", "Add the offer", half, paste)
        expect(cosigner.note()).to_contain_text("1 of 2 officers have signed")
        if maker is ri:
            assert axe_violations(cosigner.page) == []
            screenshot(cosigner.page, "channel-offer-cosign")
        cosigner.submit("Co-sign our offer")
        expect(cosigner.note()).to_contain_text("Co-signed: 2 of 2")
        offers[maker.name] = cosigner.download("Download our offer")
    ny_offer, dc_offer = offers["ri"], offers["smith"]

    # The missions swap their complete offers; each officer adds what he lacks and opens.
    for o, given, peer_path in ((ri, (dc_offer, ny_offer), dc_path), (han, (dc_offer,), dc_path),
                                (smith, (ny_offer, dc_offer), ny_path),
                                (jones, (ny_offer,), ny_path)):  # fmt: skip
        o.go(peer_path + "/channel", axe=False)
        for i, path in enumerate(given):
            if o is ri and i == 1:  # his own half-signed offer alone does not open it
                expect(o.page.get_by_role("button", name="Open the channel")).to_have_count(0)
            o.add_file("offer", "Add the offer", path, paste=(i == 1))
        if o is ri:
            assert axe_violations(o.page) == []
            screenshot(o.page, "channel-offer-ready")
        o.submit("Open the channel")
        expect(o.page.locator(".state-opened")).to_contain_text("is open on this desk")
    assert axe_violations(jones.page) == []


def test_the_demo_scenario_through_four_desks(scene: Scene) -> None:
    o = scene.officers
    ri, han, smith, jones = (o[k] for k in ("ri", "han", "smith", "jones"))
    _pair(ri, han, smith, jones)

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
    for name, path in (("channels", "/channels"), ("roster", "/roster"), ("sent", "/sent")):
        screenshot(ri.go(path), name)
    # The record: every officer's acts, checked on the desk, exported, checked from the file.
    page = ri.go("/record")
    expect(page.get_by_text("It holds:")).to_be_visible()
    expect(page.get_by_role("cell", name="drafted").first).to_be_visible()
    record = ri.download("Export the record for a review board")
    assert json.loads(record.read_text())["mission"] == "New York"
    ri.add_file("record", "Check this record", record)
    expect(ri.note().first).to_contain_text("The record holds:")
    assert axe_violations(ri.page) == []
    screenshot(ri.page, "record")
    page = ri.go("/alarms")
    expect(page.get_by_text("could not be sent by one officer alone")).to_be_visible()
    expect(page.get_by_text("The relay was caught lying")).to_have_count(0)

    # The relay's operator takes a copy of its database; the rounds go on, and every
    # device sees the log grow past it. Then he restores the old copy: the log the
    # relay now grows forks from the one every device saw. Ri's desk raises the alarm.
    backup = scene.work / "relay-backup.db"
    live, copy = sqlite3.connect(scene.db), sqlite3.connect(backup)
    try:
        live.backup(copy)
    finally:
        live.close()
        copy.close()
    page.wait_for_timeout(2000)  # a few rounds of every desk
    scene.relay.stop()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{scene.db}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, scene.db)
    scene.relay.start()
    page = ri.reload_until("/alarms", lambda p: p.get_by_text("The relay was caught lying"))
    alarm = page.locator("article.alarm").filter(has_text="The relay was caught lying").first
    expect(alarm).to_contain_text("What to do: It is proven. Export the evidence")
    screenshot(page, "alarms")
    proof = ri.download("Export the evidence")
    proves = verify_misbehaviour(evidence_from_text(proof.read_text()))  # as anyone would
    assert proves.startswith(("rewind:", "fork:", "divergence:")), proves

    # Han's desk heard of Ri's attempt to send alone, through the mission's rounds.
    han.reload_until("/alarms", lambda p: p.get_by_text("without a colleague's co-signature"))

    for who in (ri, han, smith, jones):
        assert who.csp_errors == [], (who.name, who.csp_errors)
