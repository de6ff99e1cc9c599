"""The client checks the relay's transparency log on every deposit and fetch."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from backchannel.client import cards
from backchannel.client.cards import CardError
from backchannel.client.home import Home
from backchannel.client.relay_client import RelayClient
from backchannel.client.service import Client
from backchannel.crypto.signing import SigningKey
from backchannel.errors import ConfigError, RelayRefused
from backchannel.protocol.batch import LogBundle
from backchannel.protocol.log_monitor import LogMonitor
from backchannel.protocol.merkle import TreeHead
from backchannel.protocol.misbehaviour import Absence, sign_head_compact
from tests.client.conftest import FAST_KDF, RELAY_URL, InProcessRelay
from tests.client.test_client_flow import cosigned, two_missions


async def test_honest_relay_raises_no_alarm_and_the_pinned_head_grows(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    await cosigned(ny, "logged")
    await ny[0].sync(2)
    first = await dc[0].sync(2)
    monitor: LogMonitor = dc[0]._get("relay_logs", RELAY_URL.encode(), LogMonitor)
    assert monitor is not None and monitor.head is not None
    size = monitor.head.size
    await ny[0].sync(2)
    await dc[0].sync(2)
    after: LogMonitor = dc[0]._get("relay_logs", RELAY_URL.encode(), LogMonitor)
    assert after.head is not None and after.head.size > size
    assert first.alarms == [] and dc[0].relay_alarms() == [] and ny[0].relay_alarms() == []


async def test_a_head_not_signed_by_the_pinned_key_raises_an_alarm(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    await ny[0].sync(2)
    await dc[0].sync(2)  # pins the relay's key and head
    honest = relay.factory()
    impostor = SigningKey(b"\x07" * 32, b"\x08" * 32)

    def lying(url: str, tenant: str | None, credential: str | None) -> RelayClient:
        client = honest(url, tenant, credential)
        original = client.batch_fetch

        async def batch_fetch(*args, **kwargs):  # type: ignore[no-untyped-def]
            answer = await original(*args, **kwargs)
            if not answer.log.signed_head:
                return answer
            head = TreeHead.decode(answer.log.signed_head[:49])
            log = replace(answer.log, signed_head=sign_head_compact(impostor, head))
            return replace(answer, log=log)

        client.batch_fetch = batch_fetch  # type: ignore[method-assign]
        return client

    await ny[0].sync(2)
    pinned = dc[0]._get("relay_logs", RELAY_URL.encode(), LogMonitor)
    dc[0]._relay = lying  # type: ignore[assignment]
    report = await dc[0].sync(2)
    assert any(a.startswith("relay log") and "key changed" in a for a in report.alarms)
    assert dc[0].status()["relay_alarms"]
    # The impostor's heads were not taken: the key stands, and the pinned head
    # (moved on by the honest deposit answers) is the relay's own.
    after: LogMonitor = dc[0]._get("relay_logs", RELAY_URL.encode(), LogMonitor)
    assert after.relay_key == pinned.relay_key
    after.open(after.pinned)  # signed by the relay's key, not the impostor's


async def test_the_mission_card_states_the_relay_key_and_a_different_one_is_refused(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    card = ny[0].mission_card()
    assert card.relay_key == hashlib.sha256(relay.store.log_public_key()).digest()
    # A card (properly signed by New York's officer) that names another relay key
    # for the same URL: an impostor relay, or a forged card. Refused, nothing changes.
    forged = replace(card, relay_key=hashlib.sha256(b"impostor").digest()).sign(ny[0].officer)
    before = dc[0].peer(card.mission_id)
    with pytest.raises(CardError, match="impostor"):
        dc[0].add_peer(forged.encode())
    assert dc[0].peer(card.mission_id) == before


async def test_first_contact_with_a_relay_that_shows_another_key_than_the_card(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    _ny, dc = await two_missions(tmp_path, relay)
    jones = dc[1]
    # Jones's device has not yet met the relay (a new device), and an impostor
    # answers at the relay's address with a key of its own.
    jones.vault.delete("relay_logs", RELAY_URL.encode())
    impostor = InProcessRelay(tmp_path / "impostor")
    async with impostor.app.router.lifespan_context(impostor.app):
        m = dc[0].mission()
        async with impostor.factory()(RELAY_URL, None, None) as c:
            await c.register_tenant(m.tenant_id, m.credential)
        jones._relay = impostor.factory()  # type: ignore[assignment]
        report = await jones.sync(1)
    assert any("no mission card names" in a for a in report.alarms), report
    assert jones._get("relay_logs", RELAY_URL.encode(), LogMonitor) is None  # nothing pinned
    assert jones.status()["relay_alarms"]


async def test_a_relay_that_stops_proving_its_answers_raises_an_alarm(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    await ny[0].sync(1)
    await dc[0].sync(1)  # the relay's key is pinned: it keeps a log
    honest = relay.factory()

    def unproving(url: str, tenant: str | None, credential: str | None) -> RelayClient:
        client = honest(url, tenant, credential)
        original = client.batch_fetch

        async def batch_fetch(*args, **kwargs):  # type: ignore[no-untyped-def]
            answer = await original(*args, **kwargs)
            # The log left out: no head, no places, no statement of absence.
            cells = tuple(replace(c, place=None) for c in answer.cells)
            return replace(answer, cells=cells, absent=b"", log=LogBundle())

        client.batch_fetch = batch_fetch  # type: ignore[method-assign]
        return client

    await ny[0].sync(1)
    dc[0]._relay = unproving  # type: ignore[assignment]
    report = await dc[0].sync(1)
    assert any("without proving it in its log" in a for a in report.alarms), report.alarms


async def test_a_peer_card_kept_from_before_the_relay_key_still_syncs(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    # The card New York's officers hold for Washington, in the earlier layout
    # (version 1: no relay key), as a home made before the change keeps it.
    old = replace(dc[0].mission_card(), version=1, relay_key=bytes(32))
    raw = old.signed_part()
    text = cards.armor(
        cards.MISSION_PREFIX, raw + dc[0].officer.signing_key.sign_hybrid(cards.SIG_CARD, raw)
    )
    decoded = cards.MissionCard.decode(text)
    assert decoded.version == 1 and decoded.relay_key == bytes(32)
    ri = ny[0]
    ri._put("peers", old.mission_id, replace(ri.peer(old.mission_id), card=text))
    report = await ri.sync(1)
    # One cell on the channel, one in the mailbox lane to the colleague, one in
    # the intake's answer lane.
    assert report.relay_error is None and report.deposited == 3
    # A fresh card from the peer replaces it, in the current layout.
    ri.add_peer(dc[0].mission_card().encode())
    assert cards.MissionCard.decode(ri.peer(old.mission_id).card).version == cards.CARD_VERSION


async def test_a_relay_key_of_the_wrong_length_is_never_pinned() -> None:
    def short_key(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ed25519": "00" * 32, "mldsa65": "00" * 10})

    async with RelayClient(RELAY_URL, transport=httpx.MockTransport(short_key)) as client:
        with pytest.raises(RelayRefused, match="malformed"):
            await client.log_key()


@pytest.mark.parametrize(
    "url",
    [
        "https://relay:hunter2@relay.example",
        "https://relay.example/?token=hunter2",
        "https://relay.example/#hunter2",
        "ftp://relay.example",
    ],
)
async def test_a_relay_address_that_would_carry_a_secret_into_the_card_is_refused(
    tmp_path: Path, url: str
) -> None:
    founder = Client(Home.create(tmp_path / "a", "A", "pw", FAST_KDF))
    other = Client(Home.create(tmp_path / "b", "B", "pw", FAST_KDF))
    with pytest.raises(ConfigError, match="relay address"):
        founder.propose_mission("Mission", 2, [other.officer_card()], url)
    assert founder.mission_or_none() is None


async def test_a_relay_that_calls_a_slot_spent_without_signing_it_raises_an_alarm(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """A relay could hide a peer's cell by answering that it was acknowledged
    (spent), which is not a statement of absence and so made no proof. It now
    signs what it calls spent: an answer whose signed statement does not name
    the slot it calls spent is refused."""
    ny, dc = await two_missions(tmp_path, relay)
    await ny[0].sync(1)
    await dc[0].sync(1)  # the relay's key is pinned
    honest = relay.factory()
    hidden: list[bytes] = []

    def lying(url: str, tenant: str | None, credential: str | None) -> RelayClient:
        client = honest(url, tenant, credential)
        original = client.batch_fetch

        async def batch_fetch(*args, **kwargs):  # type: ignore[no-untyped-def]
            answer = await original(*args, **kwargs)
            if not answer.absent or hidden:
                return answer
            st = Absence.decode(answer.absent)
            victim, rest = st.slots[0], st.slots[1:]
            hidden.append(victim)
            # Signed by the relay's own key, naming the slot neither empty nor spent.
            statement = relay.store.sign_absence(
                st.head, st.served_at, st.tenant_id, rest, st.retention
            )
            return replace(answer, spent=(*answer.spent, victim), absent=statement)

        client.batch_fetch = batch_fetch  # type: ignore[method-assign]
        return client

    dc[0]._relay = lying  # type: ignore[assignment]
    report = await dc[0].sync(1)
    assert hidden
    assert any(
        "statement of absence" in a and "does not match its answer" in a for a in report.alarms
    ), report.alarms
