"""The desk's intake pages show what the public wrote as text, never as markup."""

from __future__ import annotations

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
