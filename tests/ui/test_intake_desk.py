"""The desk's intake pages show what the public wrote as text, never as markup."""

from __future__ import annotations

import html
import re
from pathlib import Path

from backchannel.client.intake import INTAKE, IntakeRecord
from backchannel.protocol.intake import Kind
from tests.e2e.conftest import set_up_missions
from tests.ui.conftest import in_thread
from tests.ui.test_offers import DEAD_RELAY, DeskClient

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_a_hostile_request_is_shown_escaped(tmp_path: Path) -> None:
    m = in_thread(lambda: set_up_missions(tmp_path, DEAD_RELAY, DEAD_RELAY, register=False,
                                          pair=False))  # fmt: skip
    ri = DeskClient(m.ri.home)
    try:
        record = IntakeRecord(1, bytes(16), 0, Kind.OTHER, HOSTILE, HOSTILE, HOSTILE, bytes(16))
        with ri.client._tx():
            ri.client._put(INTAKE, record.request_id, record)
        for path in ("/intake", "/intake/1"):
            page = ri.get(path).text
            assert "<script>alert" not in page and "<img src=x" not in page, path
            assert "&lt;script&gt;" in page
        # A note with markup is signed as text and shown as text.
        ri.post("/intake/1/note", note=HOSTILE)
        page = ri.get("/intake/1").text
        assert "<script>alert" not in page and page.count("&lt;script&gt;") >= 4
    finally:
        ri.client.home.close()


def _desk_with_requests(tmp_path: Path, count: int) -> DeskClient:
    """Ri's desk, his vault holding ``count`` requests numbered 1 to ``count``."""
    m = in_thread(lambda: set_up_missions(tmp_path, DEAD_RELAY, DEAD_RELAY, register=False,
                                          pair=False))  # fmt: skip
    ri = DeskClient(m.ri.home)
    with ri.client._tx():
        for n in range(1, count + 1):
            rid = n.to_bytes(16, "big")
            record = IntakeRecord(n, rid, 0, Kind.OTHER, f"Request {n}", "", "", rid)
            ri.client._put(INTAKE, rid, record)
    return ri


def test_the_queue_shows_a_page_at_a_time_and_each_list_apart(tmp_path: Path) -> None:
    # A flood leaves thousands of requests: the queue, which refreshes every two
    # seconds, shows fifty of them, the newest first, and where the rest are.
    ri = _desk_with_requests(tmp_path, 120)
    try:
        ri.client.intake_ignore("7")
        rows = re.compile(r'<tr class="state-[a-z]+">\s*<td><a href="/intake/(\d+)">')

        first = ri.get("/intake").text
        assert [int(n) for n in rows.findall(first)] == list(range(120, 70, -1))
        assert "page 1 of 3 (120 in all)" in first
        assert (
            'href="/intake?show=all&amp;page=2" rel="next"' in first and 'rel="prev"' not in first
        )
        assert "All (120)" in first and "To triage (119)" in first
        assert "Ignored, blocked or duplicate (1)" in first
        # The refresh asks for the page it shows, not the first one.
        assert 'hx-get="/intake?show=all&amp;page=2"' in ri.get("/intake?page=2").text
        last = ri.get("/intake?page=3").text
        assert [int(n) for n in rows.findall(last)] == list(range(20, 0, -1))
        assert 'rel="prev"' in last and 'rel="next"' not in last
        # A page past the end, or not a number, shows the nearest page.
        assert rows.findall(ri.get("/intake?page=99").text) == rows.findall(last)
        for junk in ("x", "%C2%B2", "-1", "1e3", "9" * 40):  # "²" passes isdigit()
            assert rows.findall(ri.get(f"/intake?page={junk}").text) == rows.findall(first)
        # Each list apart: the ignored one alone, and the rest without it.
        closed = ri.get("/intake?show=closed").text
        assert rows.findall(closed) == ["7"] and "page 1 of" not in closed
        to_triage = ri.get("/intake?show=open&page=3").text
        assert [int(n) for n in rows.findall(to_triage)] == [n for n in range(20, 0, -1) if n != 7]
        assert rows.findall(ri.get("/intake?show=answered").text) == []
        assert "No requests here" in ri.get("/intake?show=answered").text
        assert rows.findall(ri.get("/intake?show=<b>").text) == rows.findall(first)
    finally:
        ri.client.home.close()


def test_a_request_goes_back_to_the_list_and_page_it_was_opened_from(tmp_path: Path) -> None:
    ri = _desk_with_requests(tmp_path, 120)
    try:
        back = re.compile(r'<a href="([^"]*)">← Public intake</a>')
        assert back.findall(ri.get("/intake/5").text) == ["/intake?show=all&amp;page=1"]
        ri.get("/intake?show=open&page=3")
        assert back.findall(ri.get("/intake/5").text) == ["/intake?show=open&amp;page=3"]
        # Triage lands on the request's page, which still goes back there.
        ri.post("/intake/5/note", note="Seen; ask the press office.")
        page = ri.get("/intake/5").text
        assert "Seen; ask the press office." in page
        assert back.findall(page) == ["/intake?show=open&amp;page=3"]
        # A page past the end is remembered as the page shown.
        ri.get("/intake?show=closed&page=9")
        assert back.findall(ri.get("/intake/5").text) == ["/intake?show=closed&amp;page=1"]
    finally:
        ri.client.home.close()


def test_the_close_button_says_that_closing_withdraws_the_answers_sent(tmp_path: Path) -> None:
    ri = _desk_with_requests(tmp_path, 1)
    try:
        ri.client.intake_set_open(True)
        page = html.unescape(ri.get("/intake").text)
        # Two steps, without script: the warning unfolds with the button that closes.
        warning = re.search(
            r'<details class="confirm" id="intake-close">(.*?)</details>', page, re.S
        )
        assert warning is not None
        assert "withdraws the answers already sent" in warning.group(1)
        assert "until it is opened again" in warning.group(1)
        assert "Close the intake and withdraw the answers sent" in warning.group(1)
        page = ri.post("/intake/switch", open="0")
        assert "withholds the answers already sent, until it is opened again" in page
        assert not ri.client.intake_is_open()
        assert "cannot read the answers already sent until it is opened again" in page
        assert 'id="intake-close"' not in page and ">Open the intake</button>" in page
    finally:
        ri.client.home.close()
