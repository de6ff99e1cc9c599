"""Someone registers a mission's tenant id at a relay before the mission does
(the id is named after the mission, which is no secret): the officers are told
so in words, and a mission that holds a credential rotation takes it back."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from backchannel.errors import RelayRefused
from tests.attacks.test_rotation_handed_again import reads, register_at_fallback, removed
from tests.client.conftest import RELAY_URL, InProcessRelay, relay
from tests.client.test_client_flow import two_missions

__all__ = ["relay"]


def _someone_elses() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


async def test_a_tenant_registered_first_by_someone_else_is_named_at_founding(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    (ri, _), _ = await two_missions(tmp_path, relay)
    m = ri.mission()
    # As if someone had registered the mission's id first, with his credential.
    squatter = InProcessRelay(tmp_path / "squatted")
    async with squatter.app.router.lifespan_context(squatter.app):
        async with squatter.factory()(RELAY_URL, None, None) as r:
            await r.register_tenant(m.tenant_id, _someone_elses())
        ri._relay = squatter.factory()
        with pytest.raises(RelayRefused, match="someone registered this mission's id there first"):
            await ri.register_tenant()
        # Registering again where the tenant is the mission's own is quiet.
        ri._relay = relay.factory()
        await ri.register_tenant()


async def test_a_mission_with_a_rotation_takes_back_a_squatted_fallback_tenant(
    tmp_path: Path, relay: InProcessRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    ri, _, _ = await removed(tmp_path, relay)
    m = ri.mission()
    fallback = InProcessRelay(tmp_path / "fallback")
    async with fallback.app.router.lifespan_context(fallback.app):
        async with fallback.factory()(RELAY_URL, None, None) as r:
            await r.register_tenant(m.tenant_id, _someone_elses())
        assert not await reads(fallback, m, m.credential)
        report = await register_at_fallback(ri, fallback, monkeypatch)
        assert report.relay_error is None and report.alarms == []
        assert await reads(fallback, m, m.credential)


async def test_a_squatted_fallback_tenant_without_a_rotation_is_one_alarm(
    tmp_path: Path, relay: InProcessRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    (ri, _), _ = await two_missions(tmp_path, relay)
    m = ri.mission()
    assert not m.last_rotation
    fallback = InProcessRelay(tmp_path / "fallback")
    async with fallback.app.router.lifespan_context(fallback.app):
        async with fallback.factory()(RELAY_URL, None, None) as r:
            await r.register_tenant(m.tenant_id, _someone_elses())
        report = await register_at_fallback(ri, fallback, monkeypatch)
        [alarm] = report.alarms
        assert "someone registered this mission's id there first" in alarm
