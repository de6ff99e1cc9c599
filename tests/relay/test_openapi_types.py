"""The relay's JSON bodies are the types its OpenAPI document is generated from.

``relay/api_types.py`` holds one type per body; the document's schemas come
from them (pydantic), and the relay builds its answers as them. Here: the
document names only those types and every one of them, the schemas are what
the types give, and live answers validate strictly as their type.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import TypeAdapter

from backchannel.relay import api_types as api
from backchannel.relay.openapi_schemas import component_schemas
from backchannel.relay.settings import RelaySettings

from .conftest import Tenant, deposit, new_cell, new_slot


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


async def test_the_document_names_each_type_and_only_them(http: httpx.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    names = [tp.__name__ for tp in api.COMPONENTS]
    assert list(doc["components"]["schemas"]) == names
    used = {r.removeprefix("#/components/schemas/") for r in _refs(doc)}
    assert used == set(names)


def test_the_schemas_are_the_types_own_but_for_a_relays_bounds(settings: RelaySettings) -> None:
    schemas = component_schemas(settings)
    slot = schemas["SlotList"]["properties"]["slots"]
    assert slot["maxItems"] == settings.max_batch
    assert slot["items"]["pattern"] == "^[0-9a-f]{64}$"
    assert schemas["Info"]["properties"]["cell_size"]["const"] == settings.cell_size
    assert schemas["TenantRequest"]["properties"]["quota_cells"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": settings.max_quota_cells,
    }
    # A constraint written once on the type reaches the document.
    rotation = schemas["Rotation"]["properties"]["seq"]
    assert rotation == {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
    assert schemas["Deposit"]["required"] == ["cell_id", "created"]
    assert schemas["Deposit"]["additionalProperties"] is False


async def test_live_answers_are_their_types(http: httpx.AsyncClient, alpha: Tenant) -> None:
    def check(tp: type, r: httpx.Response, status: int = 200) -> Any:
        assert r.status_code == status, r.text
        return TypeAdapter(tp).validate_json(r.content, strict=True)

    slot, cell = new_slot(), new_cell()
    first = check(api.Deposit, await deposit(http, alpha.tenant_id, slot, cell), 201)
    again = check(api.Deposit, await deposit(http, alpha.tenant_id, slot, cell))
    assert first["cell_id"] == again["cell_id"] and "log" in first
    fetched = check(
        api.Cells,
        await http.post(
            alpha.path("fetch"), json={"slots": [slot, new_slot()]}, headers=alpha.auth
        ),
    )
    assert list(fetched["cells"]) == [slot] and "absent" in fetched["log"]
    head = check(api.LogHead, await http.get("/v1/log/head"))
    size = head["size"]
    check(api.LogHeadAt, await http.get("/v1/log/head", params={"size": size}))
    check(api.LogKey, await http.get("/v1/log/key"))
    check(api.LogLeaf, await http.get("/v1/log/leaves/0"))
    check(
        api.InclusionProof,
        await http.get("/v1/log/proof/inclusion", params={"leaf_index": 0, "tree_size": size}),
    )
    check(
        api.ConsistencyProof,
        await http.get("/v1/log/proof/consistency", params={"first": 1, "second": size}),
    )
    log = first["log"]
    entry = {"leaf_index": log["leaf_index"], "batch_position": 0, "tree_size": size}
    check(api.EntryProof, await http.get("/v1/log/proof/entry", params=entry))
    check(api.Info, await http.get("/v1/info"))
    check(api.Status, await http.get("/healthz"))
    check(api.Status, await http.get("/readyz"))
    removed = check(
        api.Removed, await http.post(alpha.path("ack"), json={"slots": [slot]}, headers=alpha.auth)
    )
    assert removed == {"removed": 1}
    check(api.Error, await deposit(http, alpha.tenant_id, "not-a-slot", cell), 400)
