"""The whole flow through the client library and an in-process relay."""

from __future__ import annotations

from pathlib import Path

from backchannel.client import demo
from tests.client.conftest import FAST_KDF, RELAY_URL, InProcessRelay


async def test_demo_steps_through_a_relay(tmp_path: Path, relay: InProcessRelay) -> None:
    steps = await demo.run(
        tmp_path / "homes",
        RELAY_URL,
        "Meet in Geneva on the 2nd.",
        factory=relay.factory(),
        passphrase="pw",
        params=FAST_KDF,
    )
    outcomes = {s.name: s.outcome for s in steps}
    assert outcomes == {
        "found missions": "ok",
        "pair": "ok",
        "solo send": "refused",
        "co-sign": "ok",
        "deliver": "ok",
        "solo open": "refused",
        "joint open": "ok",
        "receipt": "ok",
        "relay log": "ok",
        "record": "ok",
    }
