"""Two relay processes share one PostgreSQL database and see the same mailbox."""

from __future__ import annotations

import asyncio
import base64
import secrets

import httpx
import pytest

from backchannel.client.relay_client import RelayClient
from backchannel.crypto.signing import VerifyKey
from backchannel.protocol.misbehaviour import open_signed_head

from .procs import OPERATOR, RelayProcess


async def _exchange(a: RelayProcess, b: RelayProcess) -> None:
    credential = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    tenant = "mission-shared"
    async with (
        RelayClient(a.base_url, tenant, credential) as via_a,
        RelayClient(b.base_url, tenant, credential) as via_b,
    ):
        await via_a.register_tenant(tenant, credential, operator_token=OPERATOR)
        cells = {secrets.token_bytes(32): secrets.token_bytes(4096) for _ in range(20)}
        for slot, cell in cells.items():
            assert (await via_a.deposit(tenant, slot, cell)).created
        # B never saw the registration or the deposits, yet serves them.
        assert await via_b.fetch(list(cells)) == cells
        first = next(iter(cells))
        assert await via_b.get(first) == cells[first]
        # A retry through B is recognised as the same cell.
        assert not (await via_b.deposit(tenant, first, cells[first])).created
        # Deposit through B, read and ack through A.
        slot, cell = secrets.token_bytes(32), secrets.token_bytes(4096)
        assert (await via_b.deposit(tenant, slot, cell)).created
        assert await via_a.get(slot) == cell
        assert await via_a.ack([slot, first]) == 2
        assert await via_b.get(slot) is None
    await _one_log(a, b)


async def _one_log(a: RelayProcess, b: RelayProcess) -> None:
    """Both processes sign with one key and serve one consistent log."""
    async with (
        httpx.AsyncClient(base_url=a.base_url) as ha,
        httpx.AsyncClient(base_url=b.base_url) as hb,
    ):
        key_a, key_b = (await ha.get("/v1/log/key")).json(), (await hb.get("/v1/log/key")).json()
        assert key_a == key_b
        key = VerifyKey(bytes.fromhex(key_a["ed25519"]), bytes.fromhex(key_a["mldsa65"]))
        head_a = open_signed_head(
            bytes.fromhex((await ha.get("/v1/log/head")).json()["signed_head"]), key
        )
        head_b = open_signed_head(
            bytes.fromhex((await hb.get("/v1/log/head")).json()["signed_head"]), key
        )
        assert head_a.size == head_b.size > 0 and head_a.root == head_b.root


@pytest.mark.postgres
def test_deposit_through_one_relay_fetch_through_another(pg_url: str) -> None:
    with RelayProcess(pg_url) as a, RelayProcess(pg_url) as b:
        asyncio.run(_exchange(a, b))
