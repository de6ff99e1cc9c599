"""Fixtures for client tests: a relay app in-process and cheap keystore parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

import httpx
import pytest

from backchannel.client.keystore import KdfParams
from backchannel.client.relay_client import RelayClient, RetryPolicy
from backchannel.client.service import Client, RelayFactory
from backchannel.protocol import channel as ch
from backchannel.protocol.payload import note
from backchannel.protocol.witnessing import WitnessRule
from backchannel.relay.app import create_app
from backchannel.relay.settings import RelaySettings
from backchannel.store.memory import MemoryRelayStore

FAST_KDF = KdfParams(memory_kib=1024, time_cost=1, parallelism=1)
RELAY_URL = "http://relay.test"


class InProcessRelay:
    def __init__(self, tmp: Path, witnesses: str = "") -> None:
        self.store = MemoryRelayStore()
        settings = RelaySettings(
            data_dir=tmp,
            open_registration=True,
            ip_rate=0,
            tenant_rate=0,
            expire_interval_seconds=3600,
            witnesses=witnesses,
            witness_interval_seconds=3600,
        )
        self.app = create_app(settings, self.store)
        self.down = False

    def factory(self) -> RelayFactory:
        def make(url: str, tenant: str | None, credential: str | None) -> RelayClient:
            if self.down:
                transport: httpx.AsyncBaseTransport = httpx.MockTransport(_refuse)
            else:
                transport = httpx.ASGITransport(app=self.app)
            return RelayClient(
                url,
                tenant,
                credential,
                transport=transport,
                retry=RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0),
            )

        return make  # type: ignore[return-value]


def _refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[InProcessRelay]:
    r = InProcessRelay(tmp_path / "relay")
    async with r.app.router.lifespan_context(r.app):
        yield r


async def adopt_policy(
    officers: Sequence[Client],
    official: Iterable[ch.Policy],
    track2_k: int = 0,
    epoch_seconds: int | None = None,
    unseen_seconds: int | None = None,
    witnesses: WitnessRule | None = None,
) -> None:
    """The mission's officers change its policy as they would: the first proposes,
    the rounds carry it, the others sign until ``k`` have; every device adopts it."""
    pending = officers[0].policy_propose(
        official, track2_k, epoch_seconds, unseen_seconds, witnesses
    )
    for _ in range(3):
        for c in officers:
            await c.settle()
    for c in officers[1 : officers[0].mission().roster.threshold]:
        c.policy_sign(pending.ref)
        for _ in range(3):
            for d in officers:
                await d.settle()
    for c in officers:
        assert c.mission_policy() == pending.policy, c.officer.name


async def rounds(devices: Sequence[Client], n: int) -> list[str]:
    """``n`` rounds of every device in turn; the alarms they raised."""
    alarms: list[str] = []
    for _ in range(n):
        for c in devices:
            alarms.extend((await c.sync(1)).alarms)
    return alarms


async def drafted(author: Client, cosigner: Client, peer: str, text: str) -> None:
    """``author`` drafts ``text`` to ``peer`` and ``cosigner`` co-signs it; the
    rounds that follow carry it."""
    author.compose(author.channel_for(peer).channel_id, note(text))
    await author.settle()
    await cosigner.settle()
    [req] = cosigner.cosign_requests()
    cosigner.approve_cosign(req.request_id)
