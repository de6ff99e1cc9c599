"""Invisible direction controls in what others wrote never turn the desk's own text round.

A peer mission's name, a message's text, what the public sends to the intake:
each may hold U+202E (RIGHT-TO-LEFT OVERRIDE) and its kin. On the desk each
such value is isolated (``<bdi>``, or FSI…PDI where no markup may stand) and
its controls are shown as ``\\u202e``, as the command line shows them;
right-to-left letters stay as written. Tags, notes and mission names holding
them are refused when they are made.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from backchannel.client.intake import INTAKE, IntakeRecord
from backchannel.errors import RosterError
from backchannel.protocol.identity import Officer
from backchannel.protocol.intake import Kind
from backchannel.protocol.roster import NONCE_LEN, ZERO_HASH, Roster
from backchannel.ui.web import templates
from tests.e2e.conftest import set_up_missions
from tests.ui.conftest import in_thread
from tests.ui.test_offers import DEAD_RELAY, ORIGIN, DeskClient

RLO, PDF = "\u202e", "\u202c"
#: Every character that reorders text without being seen.
CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
EVIL = f"Evil{RLO}noissiM"
COSIGN = f"We agree to {RLO}ecnerefnoc eht lecnac{PDF} nothing else."
ARABIC = "نلتقي يوم الخميس في السفارة"  # "we meet on Thursday at the embassy"


def raw_controls(page: str) -> list[str]:
    """The invisible controls a page holds, but for the FSI/PDI pairs the desk put around
    a value in a title or an option (what the value held is shown, never raw)."""
    outside = re.sub("\u2068[^\u2066-\u2069]*\u2069", "", page)
    return [f"U+{ord(c):04X}" for c in outside if c in CONTROLS]


def render(name: str, **context: object) -> str:
    base = {"officer": "Officer Ri", "mission": "New York", "runner": True, "csrf": "t",
            "notes": [], "counts": {}, "path": "/", "kept": {}}  # fmt: skip
    return templates.get_template(name).render({**base, **context})


def test_a_peer_name_cannot_turn_round_the_safety_check() -> None:
    peer = SimpleNamespace(name=EVIL, id="ab" * 32, groups=["12345"] * 12, confirmed=False)
    page = render("safety.html", p=peer, qr="data:,", me="Officer Ri", mission=EVIL)
    assert raw_controls(page) == []
    shown = "Evil\\u202enoissiM"
    # In the page's text, each time in <bdi>: the top bar, the heading, the advice...
    assert page.count(f"<bdi>{shown}</bdi>") == page.count(shown) - 1 >= 4
    # ...and in the title, where no markup may stand, between FSI and PDI.
    assert f"<title>Safety number of \u2068{shown}\u2069 · Backchannel</title>" in page
    # The desk's own sentence around it reads as written.
    assert "It must be the same on both desks: if a single digit differs" in page


def test_a_cosigner_reads_the_override_not_a_reversed_sentence() -> None:
    content = SimpleNamespace(kind="note", fields=[("where", f"Geneva{RLO}")], text=COSIGN)
    request = SimpleNamespace(id="cd" * 16, peer=EVIL, deniable=False, content=content)
    request.__dict__["from"] = "Officer Han"
    page = render("cosign.html", requests=[request])
    assert raw_controls(page) == []
    assert "<bdi>We agree to \\u202eecnerefnoc eht lecnac\\u202c nothing else.</bdi>" in page
    assert "<bdi>Geneva\\u202e</bdi>" in page and "to <bdi>Evil\\u202enoissiM</bdi>" in page


@pytest.fixture(scope="module")
def ri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeskClient]:
    work = tmp_path_factory.mktemp("untrusted")
    m = in_thread(lambda: set_up_missions(work, DEAD_RELAY, DEAD_RELAY, register=False))
    desk = DeskClient(m.ri.home)
    yield desk
    desk.client.home.close()


def test_a_message_shows_its_controls_and_keeps_its_arabic(ri: DeskClient) -> None:
    channel = ri.client.channels()[0].channel_id.hex()
    text = f"{COSIGN}\n{ARABIC}\u200f."
    data = {"csrf": ri.csrf, "back": "/compose", "channel": channel, "kind": "note", "text": text}
    r = ri.request("POST", "/compose", data=data, headers={"origin": ORIGIN})
    assert r.status_code == 303 and r.headers["location"].startswith("/sent/"), r.text[:300]
    page = ri.get(r.headers["location"]).text
    assert raw_controls(page) == []
    assert "We agree to \\u202eecnerefnoc eht lecnac\\u202c nothing else." in page
    assert f"{ARABIC}\\u200f." in page  # the letters as written; the mark made visible
    assert '<pre class="text"><bdi>We agree to' in page


def test_what_the_public_writes_is_isolated_and_shown(ri: DeskClient) -> None:
    record = IntakeRecord(
        1, bytes(16), 0, Kind.OTHER, f"Urgent{RLO}gat", f"Body{RLO}\x00\x1b[2J", f"me{RLO}@x",
        bytes(16),
    )  # fmt: skip
    with ri.client._tx():
        ri.client._put(INTAKE, record.request_id, record)
    for path in ("/intake", "/intake/1"):
        page = ri.get(path).text
        assert raw_controls(page) == [] and "\x00" not in page and "\x1b" not in page, path
        assert "<bdi>Urgent\\u202egat</bdi>" in page, path
    page = ri.get("/intake/1").text
    assert "<bdi>Body\\u202e\u2400\u241b[2J</bdi>" in page
    assert "Contact: <bdi>me\\u202e@x</bdi>" in page
    # A tag or a note holding a control is refused, in words; one in Arabic is not.
    for field, value in (("tag", f"press{RLO}"), ("tag", "a\x00b"), ("note", f"see{RLO}me"),
                         ("note", "nul\x00here")):  # fmt: skip
        page = ri.post(f"/intake/1/{field}", **{field: value})
        assert "control" in page and 'class="note note-refused"' in page, (field, value)
    assert ri.client.intake_item("1").tags == () and ri.client.intake_item("1").notes == ()
    page = ri.post("/intake/1/tag", tag="صحافة")
    page = ri.post("/intake/1/note", note=f"{ARABIC}\r\nsecond line")
    item = ri.client.intake_item("1")
    assert item.tags == ("صحافة",) and item.notes[0][1] == f"{ARABIC}\nsecond line"
    page = ri.get("/intake").text
    assert '<span class="badge"><bdi>صحافة</bdi></span>' in page
    assert f"<bdi>{ARABIC}" in html.unescape(ri.get("/intake/1").text)


def test_a_mission_name_is_printable_text() -> None:
    officers = tuple(Officer.generate(n, secrets.token_bytes).public for n in ("A", "B"))
    for name in (EVIL, "Mission\u200f", "Mission\u2066x", "Mission\x00", "Mission\nTwo"):
        with pytest.raises(RosterError, match="printable"):
            Roster(0, name, bytes(NONCE_LEN), 2, officers, ZERO_HASH)
    # Letters of any script are fine.
    assert Roster(0, "بعثة القاهرة", bytes(NONCE_LEN), 2, officers, ZERO_HASH).mission_name
