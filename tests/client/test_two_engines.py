"""Two round engines on one home: the second is refused with a clear error, the first goes on.

Two engines reading one home's windows at once would each take in what the
other already took (a round "already received", a mailbox position read
twice). ``backchannel run``, ``sync`` and the desk all run their rounds inside
:meth:`Driver.relay_session`, which holds the home for one engine at a time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from backchannel.client import demo
from backchannel.client.home import Home
from backchannel.client.relay_client import RelayClient
from backchannel.client.report import SyncReport
from backchannel.client.service import Client, RelayFactory
from backchannel.errors import StoreUnavailable
from backchannel.protocol.payload import note
from tests.client.conftest import FAST_KDF, RELAY_URL, InProcessRelay


class _Slow(httpx.AsyncBaseTransport):
    """Every request waits a little: two engines' rounds then interleave."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        return await self.inner.handle_async_request(request)


def _slow(factory: RelayFactory) -> RelayFactory:
    def make(url: str, tenant: str | None, credential: str | None) -> RelayClient:
        client = factory(url, tenant, credential)
        assert isinstance(client, RelayClient)
        client._http._transport = _Slow(client._http._transport)
        return client

    return make


async def test_a_second_engine_on_one_home_is_refused_and_the_first_goes_on(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    f = _slow(relay.factory())
    ny = await demo.found(tmp_path, "New York", ("Ri", "Han"), RELAY_URL, f, "pw", FAST_KDF)
    dc = await demo.found(tmp_path, "Washington", ("Smith", "Jones"), RELAY_URL, f, "pw", FAST_KDF)
    await demo.pair(ny, dc)
    ri, han = ny
    ri.compose(ri.channel_for("Washington").channel_id, note("read once"))
    await ri.settle()
    # A second process on Han's home (a `sync` while `run` keeps the schedule).
    second = Client(Home.unlock(han.home.path, "pw"), f)
    try:
        results = await asyncio.gather(han.sync(3), second.sync(3), return_exceptions=True)
        first, refused = results
        assert isinstance(first, SyncReport), first
        assert first.relay_error is None and first.alarms == []
        assert isinstance(refused, StoreUnavailable), refused
        assert "another Backchannel process" in str(refused)
        [request] = han.cosign_requests()
        assert han.show_cosign(request.request_id)[1].text == "read once"
        # Once the first engine is done, the second may run the rounds.
        report = await second.sync(1)
        assert report.relay_error is None and report.alarms == []
        with pytest.raises(StoreUnavailable, match="another Backchannel process"):
            async with second.relay_session():
                await han.sync(1)
    finally:
        second.home.close()
