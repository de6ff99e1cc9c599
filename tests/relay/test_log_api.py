"""The relay log over HTTP: deposit and fetch receipts, heads, leaves and proofs."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest

from backchannel.crypto.signing import VerifyKey
from backchannel.protocol.merkle import TreeHead, leaf_hash, verify_inclusion
from backchannel.protocol.misbehaviour import (
    open_signed_head,
    relay_key_fingerprint,
    verify_cell_receipt,
)
from backchannel.relay.app import create_app
from backchannel.relay.settings import RelaySettings

from .conftest import Tenant, deposit, new_cell, new_slot, running


async def relay_key(http: httpx.AsyncClient) -> VerifyKey:
    r = await http.get("/v1/log/key")
    assert r.status_code == 200
    body = r.json()
    key = VerifyKey(bytes.fromhex(body["ed25519"]), bytes.fromhex(body["mldsa65"]))
    assert relay_key_fingerprint(key).hex() == body["fingerprint"]
    return key


async def check_cell(
    http: httpx.AsyncClient,
    key: VerifyKey,
    tenant: str,
    slot: str,
    cell: bytes,
    log: dict[str, object],
    signed_head: str,
) -> TreeHead:
    head = open_signed_head(bytes.fromhex(signed_head), key)
    index = log["leaf_index"]
    assert isinstance(index, int)
    leaf = (await http.get(f"/v1/log/leaves/{index}")).json()["leaf"]
    batch_proof = log["batch_proof"]
    inclusion = log["inclusion_proof"]
    assert isinstance(batch_proof, list) and isinstance(inclusion, list)
    position = log["batch_position"]
    assert isinstance(position, int)
    verify_cell_receipt(
        tenant_id=tenant,
        slot=bytes.fromhex(slot),
        cell=cell,
        leaf=bytes.fromhex(leaf),
        batch_position=position,
        batch_proof=[bytes.fromhex(h) for h in batch_proof],
        inclusion_proof=[bytes.fromhex(h) for h in inclusion],
        head=head,
    )
    return head


async def test_deposit_and_fetch_answers_prove_each_cell(
    http: httpx.AsyncClient, alpha: Tenant
) -> None:
    key = await relay_key(http)
    cells = {new_slot(): new_cell() for _ in range(6)}
    heads: list[TreeHead] = []
    for slot, cell in cells.items():
        r = await deposit(http, alpha.tenant_id, slot, cell)
        assert r.status_code == 201
        log = r.json()["log"]
        heads.append(
            await check_cell(http, key, alpha.tenant_id, slot, cell, log, log["signed_head"])
        )
    r = await http.post(alpha.path("fetch"), json={"slots": list(cells)}, headers=alpha.auth)
    body = r.json()
    assert set(body["log"]["cells"]) == set(cells)
    for slot, cell in cells.items():
        heads.append(
            await check_cell(
                http,
                key,
                alpha.tenant_id,
                slot,
                cell,
                body["log"]["cells"][slot],
                body["log"]["signed_head"],
            )
        )
    # Every head handed out is consistent with every later one.
    for i, old in enumerate(heads):
        for new in heads[i + 1 :]:
            if old.size < new.size:
                r = await http.get(
                    "/v1/log/proof/consistency", params={"first": old.size, "second": new.size}
                )
                assert r.status_code == 200
                old.check_consistent(new, [bytes.fromhex(h) for h in r.json()["proof"]])


async def test_head_leaf_and_proof_endpoints(http: httpx.AsyncClient, alpha: Tenant) -> None:
    key = await relay_key(http)
    r = await http.get("/v1/log/head")
    empty = r.json()
    assert empty["size"] == 0
    assert open_signed_head(bytes.fromhex(empty["signed_head"]), key).size == 0
    for _ in range(5):
        await deposit(http, alpha.tenant_id, new_slot(), new_cell())
    head = (await http.get("/v1/log/head")).json()
    signed = open_signed_head(bytes.fromhex(head["signed_head"]), key)
    assert (signed.size, signed.root.hex(), signed.timestamp) == (
        head["size"],
        head["root"],
        head["timestamp"],
    )
    assert head["size"] == 5  # the memory store: one batch per deposit
    leaf = bytes.fromhex((await http.get("/v1/log/leaves/3")).json()["leaf"])
    r = await http.get("/v1/log/proof/inclusion", params={"leaf_index": 3, "tree_size": 5})
    verify_inclusion(
        leaf_hash(leaf), 3, 5, [bytes.fromhex(h) for h in r.json()["proof"]], signed.root
    )


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/log/leaves/0", 404),
        ("/v1/log/leaves/-1", 400),
        ("/v1/log/leaves/x", 400),
        ("/v1/log/leaves/99999999999999999999", 400),
        ("/v1/log/proof/inclusion?leaf_index=0&tree_size=1", 404),  # not that big yet
        ("/v1/log/proof/inclusion?leaf_index=0&tree_size=0", 400),
        ("/v1/log/proof/inclusion?leaf_index=0", 400),
        ("/v1/log/proof/inclusion?leaf_index=0&leaf_index=0&tree_size=1", 400),
        ("/v1/log/proof/consistency?first=0&second=0", 400),
        ("/v1/log/proof/consistency?first=1&second=x", 400),
        ("/v1/log/proof/consistency?first=1&second=2", 404),  # not that big yet
        ("/v1/log/proof/consistency?first=1&second=0", 400),
        ("/v1/log/head?size=0", 400),
        ("/v1/log/head?size=1", 404),
        ("/v1/log/proof/entry?leaf_index=0&batch_position=0&tree_size=1", 404),
    ],
)
async def test_log_requests_outside_the_log_are_refused(
    http: httpx.AsyncClient, path: str, status: int
) -> None:
    r = await http.get(path)
    assert r.status_code == status
    assert set(r.json()) == {"error"}


async def test_embedded_relay_keeps_its_key_in_the_data_dir(tmp_path: Path) -> None:
    settings = RelaySettings(
        data_dir=tmp_path,
        operator_token="op",
        ip_rate=0,
        tenant_rate=0,
        expire_interval_seconds=3600,
    )
    keys = []
    for _ in range(2):  # the same key after a restart
        app = create_app(settings)
        async for http in running(app):
            keys.append((await http.get("/v1/log/key")).json()["fingerprint"])
            tenant = await register_with(http)
            slot, cell = new_slot(), new_cell()
            r = await deposit(http, tenant, slot, cell)
            assert r.status_code == 201
            key = await relay_key(http)
            log = r.json()["log"]
            await check_cell(http, key, tenant, slot, cell, log, log["signed_head"])
    assert keys[0] == keys[1]
    mode = stat.S_IMODE((tmp_path / "relay-key").stat().st_mode)
    assert mode == 0o600
    assert len((tmp_path / "relay-key").read_bytes()) == 65


_counter = iter(range(1000))


async def register_with(http: httpx.AsyncClient) -> str:
    tenant_id = f"mission-{next(_counter)}"
    r = await http.post(
        "/v1/tenants",
        json={"tenant_id": tenant_id, "credential": "A" * 43},
        headers={"Authorization": "Bearer op"},
    )
    assert r.status_code == 201, r.text
    return tenant_id
