"""A relay that lies, for the malicious-relay tests.

It runs the real relay app over a memory store that can be told to cheat in the
ways a relay operator could: hide a cell it logged (a drop), put an old cell
back in a new slot (a replay), swap two cells (a reorder), restore an old copy
of itself (a rewind), or keep two logs and show each mission one (a fork). The
cheating store keeps its log self-consistent and signs with the relay's real
key, as a careful liar would; a careless one is caught by the proof checks
already.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from backchannel.client.relay_client import RelayClient, RetryPolicy
from backchannel.client.service import RelayFactory
from backchannel.protocol.constants import CELL_SIZE
from backchannel.relay.app import create_app
from backchannel.relay.settings import RelaySettings
from backchannel.store import _log
from backchannel.store.memory import MemoryRelayStore
from backchannel.store.relay_store import CellProof, DepositResult


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Plan:
    """What the store does to the next deposits into ``tenant``."""

    tenant: str = ""
    #: The slots aimed at (empty: every slot of ``tenant``). The relay cannot tell a
    #: channel's cells from the mission mailbox's; the tests tell it.
    slots: set[bytes] = field(default_factory=set)
    drop: bool = False
    replay: bool = False
    #: Which earlier deposit a replay serves again (an index into ``history``).
    replay_index: int = -3
    swap: bool = False
    held: bool = False
    #: Slots whose cells fetches leave out.
    hidden: set[bytes] = field(default_factory=set)
    #: (slot, cell) of every deposit into ``tenant``, in order.
    history: list[tuple[bytes, bytes]] = field(default_factory=list)


class LyingStore(MemoryRelayStore):
    def __init__(self, *, signing_key: _log.SigningKey | None = None) -> None:
        super().__init__(signing_key=signing_key)
        self.plan = Plan()
        self.now = 0

    async def deposit(self, tenant_id: str, slot: bytes, cell: bytes, now: int) -> DepositResult:
        result = await super().deposit(tenant_id, slot, cell, now)
        p = self.plan
        if tenant_id != p.tenant or not result.created or (p.slots and slot not in p.slots):
            return result
        p.history.append((slot, cell))
        if p.drop:
            p.drop = False
            p.hidden.add(slot)
        elif p.replay and len(p.history) > max(p.replay_index, -p.replay_index - 1):
            p.replay = False
            await self.overwrite(tenant_id, slot, p.history[p.replay_index][1], now)
        elif p.swap and not p.held:
            p.held = True  # hold this one back until the next comes
            p.hidden.add(slot)
        elif p.swap:
            p.swap = p.held = False
            (first, a), (second, b) = p.history[-2], p.history[-1]
            p.hidden.discard(first)
            await self.overwrite(tenant_id, first, b, now)
            await self.overwrite(tenant_id, second, a, now)
        return result

    async def overwrite(self, tenant_id: str, slot: bytes, cell: bytes, now: int) -> None:
        """Put ``cell`` in ``slot`` as if it were a new deposit: logged, proved, served."""
        del self._cells[tenant_id][slot]
        await super().deposit(tenant_id, slot, cell, now)

    async def fetch_proved(
        self, tenant_id: str, slots: Sequence[bytes]
    ) -> tuple[bytes, dict[bytes, bytes], dict[bytes, CellProof]]:
        shown = [s for s in slots if s not in self.plan.hidden]
        return await super().fetch_proved(tenant_id, shown)

    def snapshot(self) -> dict[str, object]:
        keep = ("_tenants", "_cells", "_tree", "_leaves", "_times", "_members", "_state")
        return {name: copy.deepcopy(getattr(self, name)) for name in keep}

    def restore(self, snap: dict[str, object]) -> None:
        """Go back to ``snap`` (as from a backup), forgetting what came after."""
        for name, value in snap.items():
            setattr(self, name, copy.deepcopy(value))
        self._signer = _log.LogCache(self._signer.key)


def _settings(tmp: Path) -> RelaySettings:
    return RelaySettings(
        data_dir=tmp,
        open_registration=True,
        ip_rate=0,
        tenant_rate=0,
        expire_interval_seconds=3600,
    )


def _client(url: str, tenant: str | None, credential: str | None, transport: object) -> RelayClient:
    return RelayClient(
        url,
        tenant,
        credential,
        transport=transport,  # type: ignore[arg-type]
        retry=RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0),
    )


#: Put in ``LyingRelay.busy``: the relay answers 503 to every round's fetch (the
#: request that asks the log for proofs), and serves everything else.
FETCHES = "fetches"


class _Flaky(httpx.AsyncBaseTransport):
    """The app, except that paths in ``down`` answer 503 (the relay 'is busy')."""

    def __init__(self, app: object, down: set[str]) -> None:
        self.inner = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        self.down = down

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path in self.down:
            return httpx.Response(503, json={"error": "busy"})
        if FETCHES in self.down and request.url.path.endswith("/batch/fetch"):
            return httpx.Response(503, json={"error": "busy"})
        return await self.inner.handle_async_request(request)


class LyingRelay:
    """One lying relay (a drop, replay, reorder or rewind)."""

    def __init__(self, tmp: Path, clock: Callable[[], float]) -> None:
        self.store = LyingStore()
        self.app = create_app(_settings(tmp), self.store, clock=clock)
        #: Paths that answer 503 for now.
        self.busy: set[str] = set()

    def factory(self) -> RelayFactory:
        def make(url: str, tenant: str | None, credential: str | None) -> RelayClient:
            return _client(url, tenant, credential, _Flaky(self.app, self.busy))

        return make  # type: ignore[return-value]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[LyingRelay]:
        async with self.app.router.lifespan_context(self.app):
            yield self

    def restore(self, snap: dict[str, object]) -> None:
        """Restore the store from a backup, as an operator would."""
        self.store.restore(snap)


class _Mirror(httpx.AsyncBaseTransport):
    """Reads from one app; writes to both (the two logs get the same cells)."""

    def __init__(self, primary: object, shadow: object) -> None:
        self.primary = httpx.ASGITransport(app=primary)  # type: ignore[arg-type]
        self.shadow = httpx.ASGITransport(app=shadow)  # type: ignore[arg-type]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        path = request.url.path
        is_write = request.method == "PUT" or (
            request.method == "POST"
            and (path in ("/v1/tenants", "/v1/batch/deposit") or path.endswith("/ack"))
        )
        if is_write:
            copy_ = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            await self.shadow.handle_async_request(copy_)
        return await self.primary.handle_async_request(
            httpx.Request(request.method, request.url, headers=request.headers, content=body)
        )


class ForkingRelay:
    """One relay key, two logs: mission A is shown ``one``, mission B ``two``.

    Every cell goes into both logs, in the same order, so the two stay equal
    until :meth:`fork` slips a cell into the second log alone.
    """

    def __init__(self, tmp: Path, clock: Clock) -> None:
        key = _log.key_from_seeds(*_log.new_key_seeds())
        self.one = LyingStore(signing_key=key)
        self.two = LyingStore(signing_key=key)
        self.app_one = create_app(_settings(tmp / "one"), self.one, clock=clock)
        self.app_two = create_app(_settings(tmp / "two"), self.two, clock=clock)
        self.clock = clock

    def factory(self, view: int) -> RelayFactory:
        primary, shadow = (
            (self.app_one, self.app_two) if view == 1 else (self.app_two, self.app_one)
        )

        def make(url: str, tenant: str | None, credential: str | None) -> RelayClient:
            return _client(url, tenant, credential, _Mirror(primary, shadow))

        return make  # type: ignore[return-value]

    async def fork(self, tenant_id: str) -> None:
        """Log one more cell in the second log only."""
        cell = secrets.token_bytes(CELL_SIZE)
        now = int(self.clock.now) // 60 * 60
        await self.two.deposit(tenant_id, secrets.token_bytes(32), cell, now)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ForkingRelay]:
        async with AsyncExitStack() as stack:
            for app in (self.app_one, self.app_two):
                await stack.enter_async_context(app.router.lifespan_context(app))
            yield self
