"""Attack: fill a mission's intake with junk to shut it for the retention.

The cap (``intake_queue_cap``) counts only requests the mission has not
fetched: once a device's round fetch asks after the junk's numbers (by the
JSON endpoint or the batch fetch every device sends), an honest request is
taken at once; a device asking with an older number frees nothing twice.
"""

from __future__ import annotations

import secrets

import httpx

from backchannel.protocol.batch import FetchBatch, FetchBatchAnswer, IntakeAsk

from .test_relay import Relay

OCTET = {"Content-Type": "application/octet-stream"}


async def submit(r: Relay, c: httpx.AsyncClient) -> int:
    return (await c.post("/v1/intake/mission-a/requests", json=r.body())).status_code


async def json_fetch(r: Relay, c: httpx.AsyncClient, after: int) -> list[int]:
    answer = await c.post(
        "/v1/tenants/mission-a/intake/fetch", json={"after": after, "limit": 32}, headers=r.auth
    )
    assert answer.status_code == 200, answer.text
    return [row["seq"] for row in answer.json()["requests"]]


async def batch_fetch(r: Relay, c: httpx.AsyncClient, after: int) -> list[int]:
    body = FetchBatch(0, 0, (secrets.token_bytes(32),), (), IntakeAsk(after, 32, None)).encode()
    answer = await c.post(
        "/v1/tenants/mission-a/batch/fetch", content=body, headers={**OCTET, **r.auth}
    )
    assert answer.status_code == 200, answer.text
    rows = FetchBatchAnswer.decode(answer.content, 1, intake=True).intake
    assert rows is not None
    return [seq for seq, _ in rows]


async def test_junk_that_fills_the_cap_shuts_the_intake_only_until_the_mission_fetches() -> None:
    r = Relay(intake_queue_cap=3, intake_ip_rate=0)
    async with r.app.router.lifespan_context(r.app):
        await r.setup()
        async with r.client("2001:db8::1") as junk, r.client("198.51.100.7") as honest:
            assert [await submit(r, junk) for _ in range(4)] == [201, 201, 201, 507]
            assert await submit(r, honest) == 507
            # The device's round brings the junk (after 0: nothing passed yet).
            assert await batch_fetch(r, honest, 0) == [1, 2, 3]
            assert await submit(r, honest) == 507
            # Its next round asks after 3: the honest request is taken at once.
            assert await batch_fetch(r, honest, 3) == []
            assert await submit(r, honest) == 201
            # The junk stays stored (for the mission's other devices) until it expires.
            assert await json_fetch(r, honest, 0) == [1, 2, 3, 4]


async def test_a_lagging_device_frees_no_place_twice() -> None:
    r = Relay(intake_queue_cap=2, intake_ip_rate=0)
    async with r.app.router.lifespan_context(r.app):
        await r.setup()
        async with r.client() as c:
            assert [await submit(r, c) for _ in range(3)] == [201, 201, 507]
            assert await json_fetch(r, c, 2) == []
            assert [await submit(r, c) for _ in range(3)] == [201, 201, 507]
            for after in (0, 1, 2):  # another device, behind
                await json_fetch(r, c, after)
                assert await submit(r, c) == 507
            await json_fetch(r, c, 3)
            assert [await submit(r, c) for _ in range(2)] == [201, 507]
