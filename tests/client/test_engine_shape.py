"""What a device sends the relay does not depend on what its officers do.

Two missions of two officers run on an injected clock, round after round in
step, while their officers do every kind of real work at chosen rounds. Every
request each device makes is recorded as (method, path template, body size):
the sequence must be the same in every round, cover or real.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from backchannel.client import demo
from backchannel.client.relay_client import RelayClient, RetryPolicy
from backchannel.client.service import Client, RelayFactory
from backchannel.protocol.payload import note
from tests.client.conftest import FAST_KDF, RELAY_URL, InProcessRelay
from tests.client.evil_relay import Clock

Request = tuple[str, str, int]

_TENANT = re.compile(r"/v1/tenants/[a-z0-9-]+/")


class Recorder:
    """One device's view of its own traffic: every request it makes, in order."""

    def __init__(self, relay: InProcessRelay) -> None:
        self.relay = relay
        self.sent: list[Request] = []

    def factory(self) -> RelayFactory:
        recorder = self

        class Tap(httpx.AsyncBaseTransport):
            def __init__(self) -> None:
                self.inner = httpx.ASGITransport(app=recorder.relay.app)

            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                body = await request.aread()
                path = _TENANT.sub("/v1/tenants/{tenant_id}/", request.url.path)
                recorder.sent.append((request.method, path, len(body)))
                return await self.inner.handle_async_request(request)

        def make(url: str, tenant: str | None, credential: str | None) -> RelayClient:
            return RelayClient(
                url,
                tenant,
                credential,
                transport=Tap(),
                retry=RetryPolicy(attempts=1, base_delay=0.0, max_delay=0.0),
            )

        return make  # type: ignore[return-value]


async def test_every_round_looks_the_same_whatever_the_officers_do(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    clock = Clock()
    names = ("ri", "han", "smith", "jones")
    taps = {n: Recorder(relay) for n in names}
    ny = await demo.found(
        tmp_path, "New York", ("Ri", "Han"), RELAY_URL, taps["ri"].factory(), "pw", FAST_KDF, clock
    )
    # Each officer's device has its own tap: refit Han's (found() made both with Ri's).
    ny[1]._relay = taps["han"].factory()
    dc = await demo.found(
        tmp_path,
        "Washington",
        ("Smith", "Jones"),
        RELAY_URL,
        taps["smith"].factory(),
        "pw",
        FAST_KDF,
        clock,
    )
    dc[1]._relay = taps["jones"].factory()
    await demo.pair(ny, dc)
    ri, han = ny
    smith, jones = dc
    devices: tuple[Client, ...] = (ri, han, smith, jones)
    rounds: list[tuple[str, dict[str, list[Request]]]] = []

    async def round_(label: str) -> None:
        clock.now += 60
        for t in taps.values():
            t.sent.clear()
        await demo.lockstep(devices, lambda: True, limit=1)
        rounds.append((label, {n: list(t.sent) for n, t in taps.items()}))

    for _ in range(3):
        await round_("cover")
    ri.compose(ri.channel_for("Washington").channel_id, note("Talks resume on the 2nd."))
    while not han.cosign_requests():
        await round_("co-sign request travelling")
    [req] = han.cosign_requests()
    han.approve_cosign(req.request_id)
    await round_("co-signature")
    while not (smith.inbox() and jones.inbox()):
        await round_("message travelling")
    [item] = smith.inbox()
    smith.request_open(item.message_id)
    await round_("share request")
    while not jones.share_requests():
        await round_("share request travelling")
    [share] = jones.share_requests()
    jones.approve_share(share.request_id)
    await round_("share released")
    while not smith.inbox()[0].payload:
        await round_("share travelling")
    assert smith.read(item.message_id).text == "Talks resume on the 2nd."
    han.rotate_epoch_key()
    await round_("key rotation")
    while not [d for d in ri.drafts() if d.outgoing.state.value == "delivered"]:
        await round_("receipt travelling")
    for _ in range(2):
        await round_("cover")

    labels = {label for label, _ in rounds}
    assert {"cover", "co-signature", "share released", "key rotation"} <= labels
    for name in names:
        shapes = {tuple(sent[name]) for _, sent in rounds}
        assert len(shapes) == 1, (name, [(label, sent[name]) for label, sent in rounds])
        [shape] = shapes
        # Deposit, then fetch: two requests, to two endpoint templates.
        assert [(m, p) for m, p, _ in shape] == [
            ("POST", "/v1/batch/deposit"),
            ("POST", "/v1/tenants/{tenant_id}/batch/fetch"),
        ]
    # Nothing went to the relay outside the rounds: compose, approve, open and
    # release only queued their work.
    assert sum(len(sent[n]) for _, sent in rounds for n in names) == 2 * 4 * len(rounds)
