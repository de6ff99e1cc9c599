"""A real relay process under a flood of bad requests keeps bounded memory and serves.

Thousands of malformed, oversized, unauthenticated and plain-garbage requests
(rate limits off, so every one is parsed) must leave the process's resident
memory roughly where it was, and a valid deposit must still succeed.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from pathlib import Path

import httpx
import pytest

from .procs import RelayProcess, register, rss_bytes

TENANT = "mission-flood"
RSS_BOUND = 64 * 1024 * 1024


async def _garbage_socket(port: int, payload: bytes) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        await asyncio.wait_for(reader.read(1024), timeout=5)
        writer.close()
        await writer.wait_closed()
    except (OSError, TimeoutError):
        pass


async def _flood(relay: RelayProcess, rounds: int) -> dict[int, int]:
    statuses: dict[int, int] = {}
    big = b"\x00" * (200 * 1024)
    limits = httpx.Limits(max_connections=32)
    sem = asyncio.Semaphore(32)
    async with httpx.AsyncClient(base_url=relay.base_url, limits=limits, timeout=10) as http:

        async def one(method: str, path: str, **kw: object) -> None:
            async with sem:
                try:
                    r = await http.request(method, path, **kw)  # type: ignore[arg-type]
                except httpx.TransportError:
                    return
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        octet = {"Content-Type": "application/octet-stream"}
        jobs = []
        for i in range(rounds):
            slot = secrets.token_hex(32)
            ghost = f"ghost-{secrets.token_hex(8)}"  # a new unknown tenant every time
            cred = {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}
            jobs += [
                one(
                    "PUT",
                    f"/v1/tenants/{TENANT}/slots/{slot}",
                    content=b"x" * (i % 4095),
                    headers=octet,
                ),
                one("PUT", f"/v1/tenants/{ghost}/slots/{slot}", content=b"x" * 4096, headers=octet),
                one(
                    "PUT",
                    f"/v1/tenants/{TENANT}/slots/{slot[:-1]}Z",
                    content=b"x" * 4096,
                    headers=octet,
                ),
                one("POST", f"/v1/tenants/{ghost}/fetch", json={"slots": [slot]}, headers=cred),
                one(
                    "POST",
                    f"/v1/tenants/{TENANT}/fetch",
                    content=b"{" * 1000,
                    headers={**cred, "Content-Type": "application/json"},
                ),
                one("GET", f"/{secrets.token_hex(100)}"),
            ]
            if i % 10 == 0:
                jobs.append(
                    one("PUT", f"/v1/tenants/{TENANT}/slots/{slot}", content=big, headers=octet)
                )
                jobs.append(_garbage_socket(relay.port, secrets.token_bytes(2000)))
                jobs.append(
                    _garbage_socket(
                        relay.port, b"GET / HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n"
                    )
                )
        await asyncio.gather(*jobs)
    return statuses


@pytest.mark.slow
def test_flood_of_bad_requests_keeps_memory_bounded(tmp_path: Path) -> None:
    credential = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    with RelayProcess(f"sqlite://{tmp_path / 'relay.db'}") as relay:
        asyncio.run(register(relay.base_url, TENANT, credential))
        asyncio.run(_flood(relay, 30))  # warm up allocator and caches
        before = rss_bytes(relay.pid)
        statuses = asyncio.run(_flood(relay, 500))
        after = rss_bytes(relay.pid)
        growth = after - before
        print(
            f"\nflood: {sum(statuses.values())} HTTP answers {dict(sorted(statuses.items()))}; "
            f"RSS before {before / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB, "
            f"growth {growth / 2**20:.1f} MiB"
        )
        assert sum(statuses.values()) >= 3000
        assert not any(code >= 500 for code in statuses), statuses
        assert growth < RSS_BOUND

        r = httpx.put(
            f"{relay.base_url}/v1/tenants/{TENANT}/slots/{secrets.token_hex(32)}",
            content=secrets.token_bytes(4096),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201
