"""The channel offers at the desk, without a browser: what is refused, and that it changes nothing.

Two desks of New York (Ri, Han) and one of Washington (Smith) as ASGI apps over
the library's clients (no rounds run: the offers need none). Each refusal is a
note on the page the officer came from; the offers in hand and the channels
stay as they were.
"""

from __future__ import annotations

import asyncio
import html
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backchannel.client.home import Home
from backchannel.client.policy import POLICY_NOTICE, POLICY_PENDING
from backchannel.client.relay_move import RelayMove
from backchannel.client.service import Client
from backchannel.protocol.channel import Policy
from backchannel.protocol.note import TYPE_COSIGNATURE_ED25519, Verifier
from backchannel.ui.app import create_app
from backchannel.ui.desk import Desk
from backchannel.ui.security import Gate
from tests.e2e.conftest import PASSPHRASE, set_up_missions
from tests.ui.conftest import in_thread

DEAD_RELAY = "http://127.0.0.1:9"
ORIGIN = "http://mfrggzdfmztwq2lknnwg23tp.localhost:8471"  # a desk's own name (serve)


class DeskClient:
    """One officer's desk app, signed in; posts its forms as the desk's own pages do."""

    def __init__(self, home: Path) -> None:
        self.client = Client(Home.unlock(home, PASSPHRASE))
        self.desk = Desk(self.client)
        gate = Gate(ORIGIN)
        self.app = create_app(self.desk, gate)
        self.cookies = httpx.Cookies()
        assert self.request("GET", gate.login_path).status_code == 303
        self.csrf = gate._session.csrf if gate._session else ""

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(
                transport=transport, base_url=ORIGIN, cookies=self.cookies
            ) as http:
                r = await http.request(method, path, **kw)
                self.cookies.update(http.cookies)
                return r

        return in_thread(lambda: asyncio.run(go()))  # (a browser test may hold this thread's loop)

    def post(self, path: str, **form: str) -> str:
        """POST ``form``; the text of the page it leads to (its notes included)."""
        data = {"csrf": self.csrf, "back": path.rsplit("/", 1)[0], **form}
        r = self.request("POST", path, data=data, headers={"origin": ORIGIN})
        assert r.status_code == 303, r.text
        return html.unescape(self.get(r.headers["location"]).text)

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)


@pytest.fixture(scope="module")
def desks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, DeskClient]]:
    work = tmp_path_factory.mktemp("offers")
    m = in_thread(lambda: set_up_missions(work, DEAD_RELAY, DEAD_RELAY, register=False, pair=False))
    out = {"ri": DeskClient(m.ri.home), "han": DeskClient(m.han.home),
           "smith": DeskClient(m.smith.home)}  # fmt: skip
    for d, card in ((out["ri"], m.dc_card), (out["han"], m.dc_card), (out["smith"], m.ny_card)):
        d.post("/pairing/add", card_text=card)
    yield out
    for d in out.values():
        d.client.home.close()


def _peer(d: DeskClient) -> str:
    [p] = d.client.peers()
    return p.mission_id.hex()


def test_offers_are_refused_until_right_and_nothing_changes(desks: dict[str, DeskClient]) -> None:
    ri, han, smith = desks["ri"], desks["han"], desks["smith"]
    dc, ny = _peer(ri), _peer(smith)
    base = f"/pairing/{dc}/channel"

    # Before the safety number is confirmed: no offer.
    page = ri.post(base + "/make")
    assert "compare and confirm the safety number of Washington first" in page
    assert ri.desk.offers == {}
    for d, peer in ((ri, dc), (han, dc), (smith, ny)):
        d.post(f"/pairing/{peer}/confirm", read_aloud="yes", peer_confirmed="yes")

    ri.post(base + "/make")
    ours = ri.get(base + "/offer")
    assert ours.headers["content-disposition"].endswith('new-york-offer-for-washington.offer"')
    half = ours.text

    # Garbage, an altered offer, an empty form: refused, nothing held.
    for text, said in (("hello", "channel offer"), ("", "choose the offer file")):
        assert said in han.post(base + "/add", offer_text=text)
    for at, said in (
        (60, 'class="note note-refused"'),
        (-30, "no signature on that offer verifies"),
    ):
        altered = half[:at] + ("A" if half[at] != "A" else "B") + half[at:][1:]
        assert said in han.post(base + "/add", offer_text=altered), at  # its terms, its signature
    assert han.desk.offers.get(dc, {}) == {}

    # Co-signing one's own offer again adds nothing.
    assert "you have signed this offer already" in ri.post(base + "/cosign")

    # Washington's offer is Washington's: on New York's desks it is "theirs".
    smith.post(f"/pairing/{ny}/channel/make")
    dc_half = smith.get(f"/pairing/{ny}/channel/offer").text
    ri.post(base + "/add", offer_text=dc_half)
    # Opening with offers signed by one officer each: refused, no channel.
    page = ri.post(base + "/open")
    assert "needs 2 officers' signatures; 1 verify" in page and ri.client.channels() == []

    # Han adds Ri's offer and co-signs it; Ri's desk merges the signatures it is given.
    han.post(base + "/add", offer_text=half)
    page = han.post(base + "/cosign")
    assert "Co-signed: 2 of 2 officers have signed" in page
    full = han.get(base + "/offer").text
    ri.post(base + "/add", offer_text=full)
    assert ri.desk.offers[dc]["ours"].signatures == han.desk.offers[dc]["ours"].signatures


def test_the_missions_policy_decides_which_offers_the_desk_makes(tmp_path: Path) -> None:
    # By default a mission's official channels are for the record: the desk offers
    # nothing else, and a forged form asking for a deniable channel is refused.
    m = in_thread(lambda: set_up_missions(tmp_path, DEAD_RELAY, DEAD_RELAY, register=False,
                                          pair=False))  # fmt: skip
    ri = DeskClient(m.ri.home)
    try:
        ri.post("/pairing/add", card_text=m.dc_card)
        dc = _peer(ri)
        ri.post(f"/pairing/{dc}/confirm", read_aloud="yes", peer_confirmed="yes")
        page = html.unescape(ri.get(f"/pairing/{dc}/channel").text)
        assert 'name="policy" value="record"' in page
        assert 'value="deniable"' not in page and "The mission's policy allows only" in page
        page = html.unescape(ri.post(f"/pairing/{dc}/channel/make", policy="deniable"))
        assert "the mission's policy does not allow official channels that are deniable" in page
        assert dc not in ri.desk.offers or "ours" not in ri.desk.offers[dc]
    finally:
        ri.client.home.close()


def test_a_deniable_offer_is_made_and_shown_as_such(tmp_path: Path) -> None:
    m = in_thread(lambda: set_up_missions(tmp_path, DEAD_RELAY, DEAD_RELAY, register=False,
                                          pair=False, official=set(Policy)))  # fmt: skip
    ri, smith = DeskClient(m.ri.home), DeskClient(m.smith.home)
    try:
        ri.post("/pairing/add", card_text=m.dc_card)
        smith.post("/pairing/add", card_text=m.ny_card)
        dc, ny = _peer(ri), _peer(smith)
        for d, other in ((ri, dc), (smith, ny)):
            d.post(f"/pairing/{other}/confirm", read_aloud="yes", peer_confirmed="yes")
        page = html.unescape(ri.get(f"/pairing/{dc}/channel").text)
        assert 'name="policy" value="deniable"' in page and "Either, chosen message" in page
        page = ri.post(f"/pairing/{dc}/channel/make", policy="deniable")
        assert ri.desk.offers[dc]["ours"].terms.deniable
        assert "Deniable channel." in page
        # Washington's offer for the record: both are in hand, the channel does not open.
        smith.post(f"/pairing/{ny}/channel/make")
        assert not smith.desk.offers[ny]["ours"].terms.deniable
        ri.post(f"/pairing/{dc}/channel/add",
                offer_text=smith.get(f"/pairing/{ny}/channel/offer").text)  # fmt: skip
        assert "they ask for a deniable channel" not in html.unescape(
            ri.get(f"/pairing/{dc}/channel").text
        )
        assert "disagree" in ri.post(f"/pairing/{dc}/channel/open")
        assert ri.client.channels() == []
    finally:
        for d in (ri, smith):
            d.client.home.close()


def test_officers_change_the_policy_on_their_desks(tmp_path: Path) -> None:
    m = in_thread(lambda: set_up_missions(tmp_path, DEAD_RELAY, DEAD_RELAY, register=False,
                                          pair=False))  # fmt: skip
    ri, han = DeskClient(m.ri.home), DeskClient(m.han.home)
    try:
        page = html.unescape(ri.get("/roster").text)
        assert "Official channels may be: for the record." in page
        assert "goes out with 2 officers' signatures (the roster's k)" in page
        assert "renew every 24 hours" in page
        assert "silent for more than 24 hours raises an alarm" in page
        assert page.count("key 1") == 2  # each officer's decryption key, by its number
        ri.client.rotate_epoch_key()
        page = html.unescape(ri.get("/roster").text)
        assert page.count("key 1") == 1 and "key 2" in page
        assert "No recovery quorum: if fewer than 2 of you remain" in page
        data = {"csrf": ri.csrf, "back": "/roster", "official": ["record", "either"],
                "track2_k": "1", "epoch_hours": "6", "unseen_hours": "2"}  # fmt: skip
        r = ri.request("POST", "/roster/policy", data=data, headers={"origin": ORIGIN})
        assert r.status_code == 303
        page = html.unescape(ri.get("/roster").text)
        assert "Policy change proposed and signed by you (1 of 2)" in page
        assert "Signed by <bdi>Officer Ri</bdi> (1 of 2)" in page and "Sign this change" not in page
        assert "Official channels may be: for the record." in page  # not yet in force
        # The rounds would carry it to Han's device; here it is handed over.
        [pending] = ri.client.policy_pending()
        raw = ri.client.vault.get(POLICY_PENDING, pending.policy.hash)
        assert raw is not None
        han.client._on_policy_notice(ri.client.officer.officer_id, POLICY_NOTICE + raw)
        page = html.unescape(han.get("/roster").text)
        assert "Officer Ri proposed a policy change" in html.unescape(han.get("/alarms").text)
        assert "Track II k = 1" in page and "Sign this change" in page
        page = han.post(f"/roster/policy/{pending.ref}/sign")
        assert "Signed: the change has its signatures and is in force." in page
        assert "Official channels may be: for the record; either, message by message." in page
        assert "goes out with one officer's signature" in page
        assert "renew every 6 hours" in page
        assert "silent for more than 2 hours raises an alarm" in page
        # An empty choice is refused with a clear line, and changes nothing.
        data = {"csrf": han.csrf, "back": "/roster", "track2_k": "0"}
        r = han.request("POST", "/roster/policy", data=data, headers={"origin": ORIGIN})
        assert "tick at least one kind" in html.unescape(han.get(r.headers["location"]).text)
        data = {"csrf": han.csrf, "back": "/roster", "official": ["record"], "epoch_hours": "0"}
        r = han.request("POST", "/roster/policy", data=data, headers={"origin": ORIGIN})
        assert "1 to 168 hours" in html.unescape(han.get(r.headers["location"]).text)
        data = {"csrf": han.csrf, "back": "/roster", "official": ["record"], "unseen_hours": "721"}
        r = han.request("POST", "/roster/policy", data=data, headers={"origin": ORIGIN})
        assert "1 to 720 hours" in html.unescape(han.get(r.headers["location"]).text)
        assert han.client.mission_policy().track2_k == 1
        assert han.client.mission_policy().epoch_seconds == 6 * 3600
        assert han.client.mission_policy().unseen_seconds == 2 * 3600
        # The witnesses: named by their keys, one per line; a key that is not one is
        # refused with a clear line, and nothing changes.
        page = html.unescape(han.get("/roster").text)
        assert "No witnesses: your devices check the relay's log" in page
        vkeys = [
            Verifier("example.org/w1", TYPE_COSIGNATURE_ED25519, os.urandom(32)).vkey(),
            Verifier("example.org/w2", TYPE_COSIGNATURE_ED25519, os.urandom(32)).vkey(),
        ]
        data = {"csrf": han.csrf, "back": "/roster", "official": ["record", "either"],
                "track2_k": "1", "witness_keys": "example.org/w1+zz"}  # fmt: skip
        r = han.request("POST", "/roster/policy", data=data, headers={"origin": ORIGIN})
        assert "witnesses: a verifier key is" in html.unescape(han.get(r.headers["location"]).text)
        assert han.client.policy_pending() == []
        data |= {
            "witness_keys": "\n".join(vkeys),
            "witnesses_needed": "1",
            "witness_lag_minutes": "30",
        }
        r = han.request("POST", "/roster/policy", data=data, headers={"origin": ORIGIN})
        page = html.unescape(han.get(r.headers["location"]).text)
        assert "Policy change proposed and signed by you (1 of 2)" in page
        assert "1 of the witnesses example.org/w1, example.org/w2 within 30 minutes" in page
        [pending] = han.client.policy_pending()
        assert pending.policy.witnesses.names == ("example.org/w1", "example.org/w2")
    finally:
        for d in (ri, han):
            d.client.home.close()


def test_officers_name_the_relay_to_move_to_and_see_the_move(tmp_path: Path) -> None:
    m = in_thread(lambda: set_up_missions(tmp_path, DEAD_RELAY, DEAD_RELAY, register=False,
                                          pair=False))  # fmt: skip
    ri = DeskClient(m.ri.home)
    try:
        page = html.unescape(ri.get("/roster").text)
        assert "No relay to move to: if this relay is proven to lie" in page
        base = {"csrf": ri.csrf, "back": "/roster", "official": ["record"]}
        for extra, why in (
            ({"fallback_url": "https://spare.example"}, "needs both its address and its key"),
            ({"fallback_url": "https://spare.example", "fallback_key": "ab" * 31},
             "64 hex digits"),
            ({"fallback_url": "spare.example", "fallback_key": "ab" * 32}, "http"),
        ):  # fmt: skip
            r = ri.request("POST", "/roster/policy", data=base | extra, headers={"origin": ORIGIN})
            assert why in html.unescape(ri.get(r.headers["location"]).text)
            assert ri.client.policy_pending() == []
        good = base | {"fallback_url": "https://spare.example", "fallback_key": "ab" * 32}
        r = ri.request("POST", "/roster/policy", data=good, headers={"origin": ORIGIN})
        page = html.unescape(ri.get(r.headers["location"]).text)
        assert "moves to https://spare.example (key abababababababab)" in page
        [pending] = ri.client.policy_pending()
        assert pending.policy.fallback.key_fingerprint == bytes.fromhex("ab" * 32)

        # A move under way (as the rounds leave it when a proof condemns the relay).
        assert "left a relay" not in html.unescape(ri.get("/alarms").text)
        move = RelayMove(DEAD_RELAY, "t", "c", (), tuple(ri.client.colleagues()))
        ri.client._put("mission", b"relay-move", move)
        page = html.unescape(ri.get("/alarms").text)
        assert "The mission left a relay that lied" in page
        assert "the other missions already write to the new relay" in page
        assert "The devices of <bdi>Officer Han</bdi> follow by themselves" in page
        assert "No alarm." not in page
    finally:
        ri.client.home.close()
