"""The Record page of the desk, without a browser: the audit log checked on the
device, exported, and a record checked from a file (with the other mission's).

New York (Ri, Han) and Washington (Smith) are founded and have added each
other's cards; no rounds run (the page needs none).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator

import pytest

from backchannel.client.audit import AUDIT
from backchannel.protocol.audit import AuditEntry
from tests.e2e.conftest import set_up_missions
from tests.ui.conftest import in_thread
from tests.ui.test_offers import DEAD_RELAY, ORIGIN, DeskClient


@pytest.fixture(scope="module")
def desks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, DeskClient]]:
    work = tmp_path_factory.mktemp("record")
    m = in_thread(lambda: set_up_missions(work, DEAD_RELAY, DEAD_RELAY, register=False, pair=False))
    out = {"ri": DeskClient(m.ri.home), "smith": DeskClient(m.smith.home)}
    out["ri"].post("/pairing/add", card_text=m.dc_card)
    out["smith"].post("/pairing/add", card_text=m.ny_card)
    for d in out.values():  # each confirms the other's safety number: an audit entry
        [peer] = d.client.peers()
        d.post(f"/pairing/{peer.mission_id.hex()}/confirm", read_aloud="yes", peer_confirmed="yes")
    yield out
    for d in out.values():
        d.client.home.close()


def _check(d: DeskClient, record: str, peer: str | None = None) -> str:
    """Upload ``record`` (and ``peer``) to the check form; the text of the page it leads to."""
    files = {"record_file": ("ny.audit", record.encode(), "application/json")}
    if peer is not None:
        files["peer_file"] = ("dc.audit", peer.encode(), "application/json")
    r = d.request(
        "POST",
        "/record/check",
        data={"csrf": d.csrf, "back": "/record#check"},
        files=files,
        headers={"origin": ORIGIN},
    )
    assert r.status_code == 303, r.text
    return html.unescape(d.get(r.headers["location"]).text)


def test_the_record_page_shows_the_chains_holding_and_exports_them(
    desks: dict[str, DeskClient],
) -> None:
    ri = desks["ri"]
    page = html.unescape(ri.get("/record").text)
    total = len(ri.client.audit_entries())
    assert total >= 1
    assert f"It holds: {total} entries, every officer's chain intact." in page
    assert "peer confirmed" in page and "Officer Ri" in page
    assert "No anchor of the record has been handed to another mission yet" in page
    assert 'href="/record"' in page and 'aria-current="page"' in page
    exported = ri.get("/record/export")
    assert exported.status_code == 200
    assert exported.headers["content-disposition"] == 'attachment; filename="new-york.audit"'
    assert json.loads(exported.text)["mission_id"] == ri.client.mission().mission_id.hex()
    assert f"The record holds: {total} entries, every chain intact." in _check(ri, exported.text)


def test_a_touched_record_is_named_and_a_peer_record_without_anchors_says_so(
    desks: dict[str, DeskClient],
) -> None:
    ri, smith = desks["ri"], desks["smith"]
    text = ri.get("/record/export").text
    record = json.loads(text)
    raw = bytearray(bytes.fromhex(record["entries"][0]))
    raw[-3] ^= 1  # a bit of the first entry's signature
    record["entries"][0] = raw.hex()
    page = _check(ri, json.dumps(record))
    assert "The record does not hold: 1 problem(s), each named below." in page
    assert "entry 1 of officer" in page and "signature does not verify" in page
    # Beside Washington's record, which holds no anchor of New York's yet: said, not passed.
    page = _check(ri, text, smith.get("/record/export").text)
    assert "Washington's record holds no anchor of this mission's audit log" in page
    # No file, or a file that is no record: a clear refusal.
    r = ri.request("POST", "/record/check", data={"csrf": ri.csrf, "back": "/record#check"},
                   headers={"origin": ORIGIN})  # fmt: skip
    assert "choose the record file to check" in html.unescape(ri.get(r.headers["location"]).text)
    page = _check(ri, "not a record")
    assert "the file cannot be checked: the audit record is damaged" in page
    # Without the form's token, nothing is checked.
    r = ri.request("POST", "/record/check", data={"back": "/record"},
                   files={"record_file": ("a", b"{}")}, headers={"origin": ORIGIN})  # fmt: skip
    assert r.status_code == 403


def test_an_entry_changed_on_the_device_is_named_on_the_page(
    desks: dict[str, DeskClient],
) -> None:
    smith = desks["smith"]
    vault = smith.client.vault
    key, raw = vault.items(AUDIT)[0]
    entry = AuditEntry.decode(raw)
    changed = AuditEntry(**{**{f: getattr(entry, f) for f in AuditEntry.__dataclass_fields__},
                            "note": entry.note + " (changed)"})  # fmt: skip
    vault.put(AUDIT, key, changed.encode())
    try:
        page = html.unescape(smith.get("/record").text)
        assert "The record on this device does not hold." in page
        assert f"entry {entry.seq} of officer {entry.officer_id.hex()[:12]}" in page
    finally:
        vault.put(AUDIT, key, raw)
    assert "It holds:" in html.unescape(smith.get("/record").text)
