"""A relay that never saw the mission's latest credential rotation is handed it
again, so that an older rotation (an officer a removal cut off holds those,
signed while he was on the roster) cannot move the tenant to a credential he
knows: at a fallback relay where the tenant is registered only now, and at a
relay restored from a copy made before the rotation."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from backchannel.client import driver, roster_change
from backchannel.client.mission import MissionState
from backchannel.client.report import SyncReport
from backchannel.client.service import Client
from backchannel.protocol import tenant_credential as tc
from tests.client.conftest import RELAY_URL, InProcessRelay, relay
from tests.client.test_roster_change import _removal_of_han
from tests.client.test_roster_change import credential_reads as reads

__all__ = ["relay"]


async def older_rotation(relay: InProcessRelay, ri: Client, han: Client) -> httpx.Response:
    """What the removed officer replays: a rotation ``k`` officers signed under the
    roster before his removal, to the credential he holds (the stand-in for one
    an earlier change left him)."""
    m = han.mission()
    chain = ri.mission().signed_chain()[:-1]
    new_hash = tc.credential_hash(m.credential)
    sigs = tuple(tc.sign(o.officer, m.tenant_id, chain[-1].roster, 0, new_hash) for o in (ri, han))
    rotation = tc.Rotation(tuple(chain), 0, new_hash, sigs)
    transport = httpx.ASGITransport(app=relay.app)
    async with httpx.AsyncClient(transport=transport, base_url=RELAY_URL) as c:
        return await c.post(f"/v1/tenants/{m.tenant_id}/credential", json=rotation.to_json())


async def register_at_fallback(
    device: Client, fallback: InProcessRelay, monkeypatch: pytest.MonkeyPatch
) -> SyncReport:
    """What ``device`` does in the first round of a move to ``fallback``: its
    registration there (the move itself stands in)."""
    device._relay = fallback.factory()
    done: list[bool] = []
    monkeypatch.setattr(device, "relay_move", lambda: SimpleNamespace(registered=False))
    monkeypatch.setattr(device, "registered_at_fallback", lambda: done.append(True))
    report = SyncReport()
    await device._register_at_fallback(report)
    assert done == [True]
    return report


async def removed(tmp: Path, relay: InProcessRelay) -> tuple[Client, Client, MissionState]:
    """Ri and Kim removed Han, and the relay holds the rotation; Han's copy of the mission."""
    ri, han, kim, change = await _removal_of_han(tmp, relay)
    defector = han.mission()
    roster_change.adopt(ri, change)
    roster_change.adopt(kim, change)
    await ri.sync(1)
    assert not ri.mission().pending_rotation and ri.mission().last_rotation
    assert not await reads(relay, defector, defector.credential)
    return ri, han, defector


async def test_a_fallback_relay_is_handed_the_latest_rotation_as_it_registers(
    tmp_path: Path, relay: InProcessRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    ri, han, defector = await removed(tmp_path, relay)
    m = ri.mission()
    # The attack, at a relay that took only the registration: the tenant never
    # saw a rotation, so an older one is taken as its first.
    bare = InProcessRelay(tmp_path / "bare")
    async with bare.app.router.lifespan_context(bare.app):
        async with bare.factory()(RELAY_URL, None, None) as r:
            await driver._register(r, m.tenant_id, m.credential)
        assert (await older_rotation(bare, ri, han)).status_code == 200
        assert await reads(bare, defector, defector.credential)
        assert not await reads(bare, m, m.credential)

    # The device's own registration at the fallback hands the latest one over.
    fallback = InProcessRelay(tmp_path / "fallback")
    async with fallback.app.router.lifespan_context(fallback.app):
        report = await register_at_fallback(ri, fallback, monkeypatch)
        assert report.relay_error is None and report.alarms == []
        refused = await older_rotation(fallback, ri, han)
        assert refused.status_code == 409
        assert not await reads(fallback, defector, defector.credential)
        assert await reads(fallback, m, m.credential)


async def test_a_relay_restored_from_before_the_rotation_is_handed_it_again(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, _, defector = await removed(tmp_path, relay)
    m = ri.mission()
    tenant = m.tenant_id
    # The operator restores a copy made before the rotation: the tenant's
    # credential is the one the removal retired, which the removed officer holds.
    relay.store._tenants[tenant] = relay.store._tenants[tenant].__class__(
        tenant,
        tc.credential_hash(defector.credential),
        relay.store._tenants[tenant].quota_cells,
        relay.store._tenants[tenant].created_at,
    )
    del relay.store._rotations[tenant]
    relay.app.state.service.forget_tenant(tenant)
    assert await reads(relay, defector, defector.credential)
    first = await ri.sync(1)  # refused: the latest rotation is queued again
    assert first.relay_error is not None and "401" in first.relay_error
    again = await ri.sync(1)  # handed over before the round's fetch
    assert again.relay_error is None
    assert not await reads(relay, defector, defector.credential)
    assert await reads(relay, m, m.credential)
    # A credential refused for another reason is not a request more every round.
    relay.store._tenants[tenant] = relay.store._tenants[tenant].__class__(
        tenant, bytes(32), relay.store._tenants[tenant].quota_cells, 0
    )
    relay.app.state.service.forget_tenant(tenant)
    usual = (await ri.sync(1)).requests
    assert [(await ri.sync(1)).requests for _ in range(3)] == [usual] * 3
