"""Attacks on a mission's relay credential: only ``k`` officers of the roster
move it, and the credential a removal retired (the removed officer's copy)
opens nothing at the relay again, whatever he replays or forges."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from backchannel.client.harness import MissionKit, OfficerKit
from backchannel.protocol import roster as rs
from backchannel.protocol import tenant_credential as tc
from backchannel.protocol.identity import Officer
from backchannel.relay.app import create_app
from backchannel.relay.settings import RelaySettings
from backchannel.store.memory import MemoryRelayStore
from tests.conftest import DetRng


def _credential() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


class Relay:
    def __init__(self, mission: MissionKit) -> None:
        self.store = MemoryRelayStore()
        settings = RelaySettings(open_registration=True, ip_rate=0, tenant_rate=0)
        self.app = create_app(settings, self.store, background=False)
        self.tenant = tc.tenant_id_for(mission.mission_id)

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url="http://relay")

    async def register(self, c: httpx.AsyncClient, credential: str) -> None:
        r = await c.post("/v1/tenants", json={"tenant_id": self.tenant, "credential": credential})
        assert r.status_code == 201, r.text

    async def opens(self, c: httpx.AsyncClient, credential: str) -> bool:
        """Whether ``credential`` fetches from the tenant (its cells, its intake)."""
        r = await c.post(
            f"/v1/tenants/{self.tenant}/fetch",
            json={"slots": [secrets.token_hex(32)]},
            headers={"Authorization": f"Bearer {credential}"},
        )
        assert r.status_code in (200, 401), r.text
        return r.status_code == 200

    async def rotate(self, c: httpx.AsyncClient, rotation: tc.Rotation) -> httpx.Response:
        return await c.post(f"/v1/tenants/{self.tenant}/credential", json=rotation.to_json())

    async def move(
        self,
        c: httpx.AsyncClient,
        chain: list[rs.SignedRoster],
        seq: int,
        credential: str,
        signers: list[Officer],
    ) -> httpx.Response:
        """Ask to move the tenant to ``credential``, signed by ``signers`` under ``chain``."""
        return await self.rotate(c, _rotation(self.tenant, chain, seq, credential, signers))


def _rotation(
    tenant: str, chain: list[rs.SignedRoster], seq: int, credential: str, signers: list[Officer]
) -> tc.Rotation:
    new_hash = tc.credential_hash(credential)
    roster = chain[-1].roster
    sigs = tuple(tc.sign(o, tenant, roster, seq, new_hash) for o in signers)
    return tc.Rotation(tuple(chain), seq, new_hash, sigs)


@pytest.fixture
def mission(rng: DetRng) -> MissionKit:
    return MissionKit.create("New York", ["Pak", "Kim", "Ri"], 2, rng)


@pytest.fixture
async def relay(mission: MissionKit) -> AsyncIterator[Relay]:
    r = Relay(mission)
    async with r.app.router.lifespan_context(r.app):
        yield r


def _remove_ri(mission: MissionKit) -> list[rs.SignedRoster]:
    """Roster version 1: Pak and Kim, 2 of 2, signed by both (Ri is removed)."""
    pak, kim, _ = (o.officer for o in mission.officers)
    new = rs.propose_update(mission.roster, [pak.public, kim.public], 2)
    signed = rs.SignedRoster(new, (rs.sign_roster(new, pak), rs.sign_roster(new, kim)))
    rs.verify_update(mission.roster, signed)
    return [mission.chain[0], signed]


async def test_k_officers_move_the_credential_and_the_old_one_opens_nothing(
    relay: Relay, mission: MissionKit
) -> None:
    pak, kim, _ = (o.officer for o in mission.officers)
    first, second = _credential(), _credential()
    async with relay.client() as c:
        await relay.register(c, first)
        assert await relay.opens(c, first)
        r = await relay.move(c, list(mission.chain), 1, second, [pak, kim])
        assert r.status_code == 200 and r.json() == {"rotated": True, "roster_version": 0, "seq": 1}
        assert not await relay.opens(c, first)
        assert await relay.opens(c, second)
        # The same rotation again (a device retrying after a lost answer) changes nothing.
        again = await relay.move(c, list(mission.chain), 1, second, [pak, kim])
        assert again.status_code == 200 and again.json()["rotated"] is False
        assert await relay.opens(c, second)


async def test_one_officer_alone_cannot_move_the_credential(
    relay: Relay, mission: MissionKit
) -> None:
    pak, _, _ = (o.officer for o in mission.officers)
    first, mine = _credential(), _credential()
    async with relay.client() as c:
        await relay.register(c, first)
        # His own signature twice is still one officer.
        for signers in ([pak], [pak, pak]):
            rotation = _rotation(relay.tenant, list(mission.chain), 1, mine, signers)
            r = await relay.rotate(c, rotation)
            assert r.status_code == 403 and "needs 2 officers" in r.json()["error"]
        assert await relay.opens(c, first) and not await relay.opens(c, mine)


async def test_the_removed_officer_can_neither_use_nor_bring_back_the_retired_credential(
    relay: Relay, mission: MissionKit, rng: DetRng
) -> None:
    pak, kim, ri = (o.officer for o in mission.officers)
    first, before, after = _credential(), _credential(), _credential()
    async with relay.client() as c:
        await relay.register(c, first)
        # While Ri served, Pak and Ri rotated once (Ri kept that rotation).
        old = _rotation(relay.tenant, list(mission.chain), 1, before, [pak, ri])
        assert (await relay.rotate(c, old)).status_code == 200
        # Ri is removed: Pak and Kim move the mission to a credential he never learns.
        chain = _remove_ri(mission)
        assert (await relay.move(c, chain, 0, after, [pak, kim])).status_code == 200
        assert not await relay.opens(c, before) and await relay.opens(c, after)
        # He replays the rotation he kept: older than the one in force.
        r = await relay.rotate(c, old)
        assert r.status_code == 409 and "later" in r.json()["error"]
        # He signs a new one under the roster he is still on (version 0): stale too,
        # even with a colleague's old signature beside his.
        mine = _credential()
        stale = _rotation(relay.tenant, list(mission.chain), 7, mine, [pak, ri])
        assert (await relay.rotate(c, stale)).status_code == 409
        # Under the new roster, his signature counts for nothing: he is not on it.
        alone = _rotation(relay.tenant, chain, 1, mine, [ri, kim])
        r = await relay.rotate(c, alone)
        assert r.status_code == 403 and "needs 2 officers" in r.json()["error"]
        # Nor does a roster he made up: Kim's and his crony's signatures on a
        # version 1 do not meet version 0's rule (2 of Pak, Kim, Ri, and every newcomer).
        crony = OfficerKit.create("crony", rng).officer
        made_up = rs.propose_update(mission.roster, [ri.public, crony.public], 2)
        forged = rs.SignedRoster(
            made_up, (rs.sign_roster(made_up, ri), rs.sign_roster(made_up, crony))
        )
        r = await relay.move(c, [mission.chain[0], forged], 0, mine, [ri, crony])
        assert r.status_code == 403
        assert await relay.opens(c, after) and not await relay.opens(c, mine)
        assert not await relay.opens(c, first) and not await relay.opens(c, before)


async def test_another_missions_chain_a_tampered_signature_and_a_fork_are_refused(
    relay: Relay, mission: MissionKit, rng: DetRng
) -> None:
    pak, kim, ri = (o.officer for o in mission.officers)
    first, mine = _credential(), _credential()
    other = MissionKit.create("New York", ["Pak", "Kim", "Ri"], 2, rng)
    o_pak, o_kim, _ = (o.officer for o in other.officers)
    async with relay.client() as c:
        await relay.register(c, first)
        # A mission of the same name and officers' names, but not this tenant's genesis.
        r = await relay.move(c, list(other.chain), 1, mine, [o_pak, o_kim])
        assert r.status_code == 403 and "not the chain of this tenant" in r.json()["error"]
        # A signature that does not verify counts for nothing.
        good = _rotation(relay.tenant, list(mission.chain), 1, mine, [pak, kim])
        sig = bytearray(good.signatures[1][1])
        sig[10] ^= 1
        bad_sigs = (good.signatures[0], (good.signatures[1][0], bytes(sig)))
        tampered = tc.Rotation(good.chain, 1, good.new_hash, bad_sigs)
        assert (await relay.rotate(c, tampered)).status_code == 403
        # Signed for another credential than the one named.
        swapped = tc.Rotation(good.chain, 1, tc.credential_hash(_credential()), good.signatures)
        assert (await relay.rotate(c, swapped)).status_code == 403
        assert await relay.opens(c, first) and not await relay.opens(c, mine)
        # Version 1 removing Ri is in force; another version 1 (removing Kim),
        # though signed by two officers of version 0, is refused: a fork.
        assert (await relay.move(c, _remove_ri(mission), 0, mine, [pak, kim])).status_code == 200
        fork = rs.propose_update(mission.roster, [pak.public, ri.public], 2)
        signed = rs.SignedRoster(fork, (rs.sign_roster(fork, pak), rs.sign_roster(fork, ri)))
        r = await relay.move(c, [mission.chain[0], signed], 5, _credential(), [pak, ri])
        assert r.status_code == 409 and "another roster" in r.json()["error"]
        assert await relay.opens(c, mine)


async def test_malformed_rotations_get_a_clear_400(relay: Relay, mission: MissionKit) -> None:
    pak, kim, _ = (o.officer for o in mission.officers)
    body = _rotation(relay.tenant, list(mission.chain), 1, _credential(), [pak, kim]).to_json()
    async with relay.client() as c:
        await relay.register(c, _credential())
        for bad in (
            {**body, "chain": []},
            {**body, "chain": ["not base64!"]},
            {**body, "seq": -1},
            {**body, "seq": True},
            {**body, "credential_hash": "ab"},
            {**body, "signatures": []},
            {**body, "signatures": [["00" * 8, body["signatures"][0][1]]]},
            {**body, "extra": 1},
        ):
            r = await c.post(f"/v1/tenants/{relay.tenant}/credential", json=bad)
            assert r.status_code == 400, (bad.keys(), r.text)
        # Well formed, but what it carries authorizes nothing: a chain entry that
        # is no roster, a signature too short to be one.
        for unauthorized in (
            {**body, "chain": [base64.b64encode(b"\x01\x02").decode()]},
            {**body, "signatures": [["00" * 16, "AAAA"], body["signatures"][1]]},
        ):
            r = await c.post(f"/v1/tenants/{relay.tenant}/credential", json=unauthorized)
            assert r.status_code == 403, r.text
        r = await c.post("/v1/tenants/m-000000000000000000000000/credential", json=body)
        assert r.status_code == 404
