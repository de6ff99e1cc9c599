"""Alarms between a mission's officers: each solo attempt, a proposed roster change,
a peer card confirmed differently, and a colleague's device gone quiet reach the
other officers' devices through the rounds."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from backchannel.client import demo, roster_change
from backchannel.client.home import Home
from backchannel.client.officer_alarms import UNSEEN_AFTER, AlarmKind
from backchannel.client.service import Client
from backchannel.errors import ConfigError, NotEnoughShares, NotEnoughSignatures, RosterError
from backchannel.protocol.channel import Policy
from backchannel.protocol.payload import note
from tests.client.conftest import FAST_KDF, RELAY_URL, InProcessRelay, adopt_policy
from tests.client.test_client_flow import two_missions

SECRET = "the delegation arrives on Thursday"


def kinds(c: Client) -> list[AlarmKind]:
    return [a.kind for a in c.officer_alarms()]


async def settle_all(*devices: Client) -> None:
    for _ in range(2):
        for c in devices:
            await c.settle()


async def test_solo_send_is_refused_and_the_colleague_is_told(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    ri, han = ny
    draft = ri.compose(ri.channel_for("Washington").channel_id, note(SECRET))
    with pytest.raises(NotEnoughSignatures):
        ri.send_now(draft.draft_id)
    await settle_all(ri, han)
    [alarm] = han.officer_alarms()
    assert alarm.kind is AlarmKind.SOLO_SEND
    assert alarm.officer_id == ri.officer.officer_id and alarm.text.startswith("Ri tried")
    assert SECRET not in alarm.text and "refused" in alarm.text
    assert ri.officer_alarms() == []  # the alarm is for the others
    assert [a["officer"] for a in han.status()["officer_alarms"]] == ["Ri"]
    # Nothing went to the peer: the refusal held.
    for c in dc:
        await c.settle()
    assert dc[0].inbox() == [] and dc[1].inbox() == []


async def test_send_on_a_draft_already_queued_or_refused_raises_no_alarm(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Pressing Send on a draft that went out with its co-signature, or one a
    colleague refused, is not a solo send: nobody is told Ri tried one."""
    ny, _ = await two_missions(tmp_path, relay)
    ri, han = ny
    channel = ri.channel_for("Washington").channel_id
    sent = ri.compose(channel, note("co-signed"))
    await settle_all(ri, han)
    [req] = han.cosign_requests()
    han.approve_cosign(req.request_id)
    await settle_all(han, ri)
    refused = ri.compose(channel, note("refused"))
    await settle_all(ri, han)
    [req] = han.cosign_requests()
    han.reject_cosign(req.request_id)
    await settle_all(han, ri)
    states = {d.draft_id: d.outgoing.state.value for d in ri.drafts()}
    assert states[sent.draft_id] in ("queued", "delivered")
    assert states[refused.draft_id] == "rejected"
    assert ri.send_now(sent.draft_id).outgoing.state.value == states[sent.draft_id]
    with pytest.raises(ConfigError, match="refused or withdrawn"):
        ri.send_now(refused.draft_id)
    await settle_all(ri, han)
    assert han.officer_alarms() == []


async def test_solo_open_is_refused_and_the_colleague_is_told(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    ri, han = ny
    smith, jones = dc
    ri.compose(ri.channel_for("Washington").channel_id, note(SECRET))
    await settle_all(ri, han)
    [req] = han.cosign_requests()
    han.approve_cosign(req.request_id)
    await settle_all(han, ri, smith, jones)
    [item] = smith.inbox()
    with pytest.raises(NotEnoughShares):
        smith.read(item.message_id)
    await settle_all(smith, jones)
    assert kinds(jones) == [AlarmKind.SOLO_OPEN]
    assert jones.officer_alarms()[0].text.startswith("Smith tried to read")
    assert kinds(smith) == []
    # The alarms of one mission stay in it.
    assert kinds(ri) == [] and kinds(han) == []


async def test_roster_change_proposed_and_adopted_alone(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, _ = await two_missions(tmp_path, relay)
    ri, han = ny
    kim = Client(Home.create(tmp_path / "kim", "Kim", "pw", FAST_KDF), relay.factory())
    change = roster_change.propose(ri, [kim.officer_card()], [], 2)
    with pytest.raises(RosterError):
        roster_change.adopt(ri, change)  # with Ri's signature only
    assert ri.mission().roster.version == 0
    await settle_all(ri, han)
    alarms = han.officer_alarms()
    assert [a.kind for a in alarms] == [AlarmKind.ROSTER_PROPOSED, AlarmKind.SOLO_ROSTER]
    assert "Ri, Han, Kim; 2 must act together" in alarms[0].text
    assert all(a.text.startswith("Ri ") for a in alarms)
    assert kinds(ri) == []


async def test_a_colleague_cannot_raise_alarms_in_anothers_name(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """The mailbox authenticates the sender: an alarm names who sent it, not who it says."""
    ny, _ = await two_missions(tmp_path, relay)
    ri, han = ny
    han._tell_colleagues(AlarmKind.SOLO_SEND)  # Han's device, wherever it claims it is from
    await settle_all(han, ri)
    [alarm] = ri.officer_alarms()
    assert alarm.officer_id == han.officer.officer_id and alarm.text.startswith("Han tried")


async def test_peer_card_confirmed_differently_raises_an_alarm_on_both(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    f = relay.factory()
    ri, han = await demo.found(tmp_path, "New York", ("Ri", "Han"), RELAY_URL, f, "pw", FAST_KDF)
    smith, _ = await demo.found(
        tmp_path, "Washington", ("Smith", "Jones"), RELAY_URL, f, "pw", FAST_KDF
    )
    real = smith.mission_card()
    # A card that verifies (an insider of the peer mission signed it) and has the
    # same safety number, but sends New York's messages to another tenant.
    forged = replace(real, tenant_id="elsewhere").sign(smith.officer)
    for officer, card in ((ri, real), (han, forged)):
        rec = officer.add_peer(card.encode())
        officer.confirm_peer(rec.mission_id, rec.safety_number)
    await settle_all(ri, han)
    for officer, other in ((ri, "Han confirmed"), (han, "Ri confirmed")):
        [alarm] = officer.officer_alarms()
        assert alarm.kind is AlarmKind.CARD_MISMATCH
        assert other in alarm.text and "forged" in alarm.text


async def test_the_same_card_confirmed_by_both_raises_nothing(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)  # both officers confirm the same cards
    await settle_all(*ny, *dc)
    assert all(c.officer_alarms() == [] for c in (*ny, *dc))


async def test_a_device_unseen_for_a_day_raises_one_alarm(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    now = [time.time()]
    f = relay.factory()
    ri, han = await demo.found(
        tmp_path, "New York", ("Ri", "Han"), RELAY_URL, f, "pw", FAST_KDF, lambda: now[0]
    )
    await settle_all(ri, han)
    await ri.sync(3)  # everything Han's device deposited so far is read
    assert kinds(ri) == [] and kinds(han) == []
    now[0] += UNSEEN_AFTER - 60  # not yet a day
    await ri.sync(2)
    assert kinds(ri) == []
    now[0] += 120  # Han's device has been off for more than a day
    await ri.sync(3)
    [alarm] = ri.officer_alarms()
    assert alarm.kind is AlarmKind.DEVICE_UNSEEN and "from Han's device" in alarm.text
    await ri.sync(3)
    assert len(ri.officer_alarms()) == 1  # one alarm for one absence
    # Han's device comes back: seen again, and a second absence is a second alarm.
    await han.sync(1)
    await ri.sync(1)
    now[0] += UNSEEN_AFTER + 60
    await ri.sync(2)
    assert kinds(ri) == [AlarmKind.DEVICE_UNSEEN, AlarmKind.DEVICE_UNSEEN]


async def test_the_mission_policy_sets_how_long_a_device_may_be_unseen(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Two hours, set by both officers: Han's device silent for a little less
    raises nothing on Ri's, a little more raises the alarm."""
    now = [time.time()]
    f = relay.factory()
    ri, han = await demo.found(
        tmp_path, "New York", ("Ri", "Han"), RELAY_URL, f, "pw", FAST_KDF, lambda: now[0]
    )
    await adopt_policy([ri, han], {Policy.RECORD}, 0, None, 2 * 3600)
    assert ri.mission_policy().unseen_seconds == 7200
    await settle_all(ri, han)
    await ri.sync(3)
    assert kinds(ri) == []
    now[0] += 2 * 3600 - 60
    await ri.sync(2)
    assert kinds(ri) == []
    now[0] += 120
    await ri.sync(3)
    [alarm] = ri.officer_alarms()
    assert alarm.kind is AlarmKind.DEVICE_UNSEEN and "for 2 hours" in alarm.text
