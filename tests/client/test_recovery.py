"""A 2-of-2 mission loses an officer and headquarters' recovery quorum restores
it, end to end through a relay; the peer mission verifies the change."""

from __future__ import annotations

from pathlib import Path

import pytest

from backchannel.client import demo, recovery, roster_change
from backchannel.client.cards import CardError
from backchannel.client.home import Home
from backchannel.client.service import Client
from backchannel.errors import CorruptKeystore, RosterError, WrongPassphrase
from tests.client.conftest import FAST_KDF, RELAY_URL, InProcessRelay, drafted, rounds

HQ_PASS = "headquarters' own passphrase"


async def _new_york_with_headquarters(tmp: Path, relay: InProcessRelay) -> tuple[Client, Client]:
    """Ri and Han, 2 of 2, founded with headquarters' keys, 2 of 3."""
    f = relay.factory()
    cards = [
        recovery.card(recovery.create(tmp / f"hq{i}.key", f"HQ {i}", HQ_PASS, FAST_KDF))
        for i in (1, 2, 3)
    ]
    ri = Client(Home.create(tmp / "ny-ri", "Ri", "pw", FAST_KDF), f)
    han = Client(Home.create(tmp / "ny-han", "Han", "pw", FAST_KDF), f)
    keys = [recovery.read_card(c) for c in cards]
    p = ri.propose_mission("New York", 2, [han.officer_card()], RELAY_URL, keys, 2)
    p = han.sign_proposal(p)
    for c in (ri, han):
        c.adopt_mission(p)
    await ri.register_tenant()
    assert ri.mission().roster.recovery_threshold == 2
    return ri, han


async def test_a_2_of_2_mission_that_lost_an_officer_is_restored_by_headquarters(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, han = await _new_york_with_headquarters(tmp_path, relay)
    dc = await demo.found(tmp_path, "Washington", ("Smith", "Jones"), RELAY_URL, relay.factory(),
                          "pw", FAST_KDF)  # fmt: skip
    await demo.pair((ri, han), dc)
    smith, jones = dc
    lost = han.mission()  # Han's device is gone; whoever has it holds this
    # Ri alone, with Kim who is to replace Han, is one officer of the roster: refused.
    kim = Client(Home.create(tmp_path / "ny-kim", "Kim", "pw", FAST_KDF), relay.factory())
    change = roster_change.propose(ri, [kim.officer_card()], [han.officer.officer_id], 2)
    change = roster_change.sign(kim, change)
    # Kim, added, opened his welcome and signed the new credential and channel keys too.
    assert {o for o, _ in change.credential_signatures} == {
        ri.officer.officer_id, kim.officer.officer_id
    }  # fmt: skip
    with pytest.raises(RosterError, match=r"needs 2 officers .*or 2 recovery keys; 0 signed"):
        roster_change.adopt(ri, change)
    # Headquarters takes its keys out of the safe: one is not enough...
    hq1 = recovery.unlock(tmp_path / "hq1.key", HQ_PASS)
    change = recovery.sign(change, hq1)
    with pytest.raises(RosterError, match="1 signed"):
        roster_change.adopt(ri, change)
    assert ri.mission().roster.version == 0
    # ...two are.
    change = recovery.sign(change, recovery.unlock(tmp_path / "hq3.key", HQ_PASS))
    change = roster_change.RosterChange.decode(change.encode())  # as a file passed on
    roster_change.adopt(ri, change)
    roster_change.adopt(kim, change)
    assert [o.name for o in kim.mission().roster.officers] == ["Ri", "Kim"]
    assert kim.mission().credential == ri.mission().credential != lost.credential
    # Washington takes New York's new card: it verifies the change from the
    # mission id it pinned, headquarters' signatures included.
    for c in dc:
        c.add_peer(ri.mission_card().encode())
        assert [o.name for o in c._peer_card(ri.mission().mission_id).roster.officers] == [
            "Ri", "Kim"
        ]  # fmt: skip
    devices = [ri, kim, smith, jones]
    assert await rounds(devices, 12) == []
    # The mission works again: Ri and Kim write to Washington...
    await drafted(ri, kim, "Washington", "we are two again")
    # ...and Washington answers; Ri and Kim open it together.
    await drafted(smith, jones, "New York", "received")
    assert await rounds(devices, 30) == []
    assert len(smith.inbox()) == 1 and len(jones.inbox()) == 1
    [item] = kim.inbox()
    kim.request_open(item.message_id)
    await rounds([kim, ri], 3)
    [share] = ri.share_requests()
    ri.approve_share(share.request_id)
    await rounds([ri, kim], 3)
    assert kim.read(item.message_id).text == "received"
    for c in devices:
        assert not c.status()["channels"][0]["alarms"], c.officer.name


def test_a_recovery_key_needs_its_passphrase_and_is_no_officer_keystore(tmp_path: Path) -> None:
    recovery.create(tmp_path / "hq.key", "HQ", HQ_PASS, FAST_KDF)
    with pytest.raises(WrongPassphrase):
        recovery.unlock(tmp_path / "hq.key", "a guess")
    Home.create(tmp_path / "officer", "Ri", "pw", FAST_KDF).close()
    with pytest.raises(CorruptKeystore, match="no recovery key"):
        recovery.unlock(tmp_path / "officer" / "keystore.bcks", "pw")
    with pytest.raises(CardError, match="not a recovery card"):
        recovery.read_card("BACKCHANNEL-OFFICER-1:AAAA")
    with pytest.raises(CardError, match="damaged"):
        recovery.read_card(recovery.RECOVERY_PREFIX + "AAAA")
