"""``POST /v1/tenants/{tenant_id}/credential``: a mission moves to a new credential.

No bearer credential is asked: ``k`` officers of the mission's roster sign the
rotation, and the relay checks their signatures against the mission's roster
chain, which it verifies from the genesis the tenant is named after
(:mod:`backchannel.protocol.tenant_credential`). A replay of an older
rotation is refused, so whoever holds the credential a removal retired (the
removed officer's copy of his device) can neither use it nor bring it back.
Specified in docs/spec/relay-api.md ("Credential rotation").
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from backchannel.errors import DecodeError, RosterError, UnknownTenant
from backchannel.protocol import tenant_credential as tc
from backchannel.relay import api_types as api
from backchannel.relay.requests import HTTPRefusal, is_tenant_id, read_json_object
from backchannel.relay.service import RelayService
from backchannel.store import _common

#: Most bytes of a rotation: its roster chain from the genesis, every version
#: with its officers' public keys and signatures (about 20 KiB a version for
#: two officers), far above what one cell's endpoints take.
BODY_LIMIT = 1 << 20

_REFUSED = {
    _common.STALE: "a later credential rotation of this tenant is in force",
    _common.FORK: "a rotation under another roster of the same version is in force",
}


async def rotate_credential(service: RelayService, request: Request) -> Response:
    tenant_id = request.path_params["tenant_id"]
    if not is_tenant_id(tenant_id):
        raise HTTPRefusal(404, "no such tenant is registered on this relay")
    body = await read_json_object(
        request, BODY_LIMIT, ("chain", "seq", "credential_hash", "signatures")
    )
    try:
        rotation = tc.Rotation.from_json(body)
    except DecodeError as exc:
        raise HTTPRefusal(400, str(exc)) from None
    except RosterError as exc:
        raise HTTPRefusal(403, f"the rotation is not authorized: {exc}") from None
    if await service.store.get_tenant(tenant_id) is None:
        raise HTTPRefusal(404, "no such tenant is registered on this relay")
    try:
        # Hybrid signatures over the whole chain: off the event loop.
        roster = await asyncio.to_thread(tc.verify, tenant_id, rotation)
    except (RosterError, DecodeError) as exc:
        raise HTTPRefusal(403, f"the rotation is not authorized: {exc}") from None
    try:
        outcome = await service.store.rotate_credential(
            tenant_id, rotation.new_hash, roster.version, rotation.seq, roster.hash
        )
    except UnknownTenant:
        raise HTTPRefusal(404, "no such tenant is registered on this relay") from None
    service.forget_tenant(tenant_id)
    service.metrics.credential_rotation(outcome)
    if outcome in _REFUSED:
        raise HTTPRefusal(409, _REFUSED[outcome])
    answer: api.Rotated = {
        "rotated": outcome == _common.ROTATED,
        "roster_version": roster.version,
        "seq": rotation.seq,
    }
    return JSONResponse(answer)
