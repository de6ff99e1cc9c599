"""The desk's running state: one officer's :class:`Client`, its round engine, what happened.

The engine runs in the background on the device's own clock
(:meth:`Client.run`), exactly as ``backchannel run`` does; an officer's action
in the desk only writes to the vault, and the next rounds carry it. The desk
never talks to the relay itself.

The engine and the officers' actions share one event loop and one thread.
The engine's vault work between two waits is synchronous, and so is each
action (the client's calls never wait), so an action never lands in the
middle of the engine's changes to the vault; it can only land while the
engine waits (for the next phase, or for the relay), so a relay that is down
never freezes the desk. Actions take :meth:`Desk.use`, one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from backchannel.client.api import ChannelOffer
from backchannel.client.service import Client, SyncReport
from backchannel.errors import BackchannelError

log = logging.getLogger("backchannel.ui")

#: Most desk events kept (refused attempts, the engine's own troubles).
MAX_EVENTS = 50


@dataclass(frozen=True)
class Event:
    """Something the officer should know that the vault does not record."""

    at: float
    title: str
    advice: str


@dataclass
class RoundInfo:
    """What the last rounds did, for the status lines."""

    rounds: int = 0
    last_at: float | None = None
    relay_error: str | None = None
    alarms: list[str] = field(default_factory=list)


class Desk:
    """One officer's device behind the desk: the client, the lock, the engine task."""

    def __init__(
        self,
        client: Client,
        *,
        round_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.round_seconds = round_seconds
        self.info = RoundInfo()
        self.events: list[Event] = []
        #: Channel offers in hand, by the other mission's id (hex): "ours" and "theirs".
        #: Kept in memory only: offers travel as files, and a restarted desk is given
        #: them again. Nothing in them is secret (each contribution is sealed to the
        #: officers who may open it).
        self.offers: dict[str, dict[str, ChannelOffer]] = {}
        self._clock = clock
        self._lock: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def lock(self) -> asyncio.Lock:
        if self._lock is None:  # made in the server's event loop
            self._lock = asyncio.Lock()
        return self._lock

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[Client]:
        """The client, for one action (actions run one at a time)."""
        async with self.lock:
            yield self.client

    def note(self, title: str, advice: str) -> None:
        self.events.insert(0, Event(self._clock(), title, advice))
        del self.events[MAX_EVENTS:]

    # --- the engine ---------------------------------------------------------------

    def start(self) -> None:
        if self.client.mission_or_none() is None:
            return  # nothing to run until the officer belongs to a mission
        self._task = asyncio.create_task(self._engine())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_round(self, report: SyncReport) -> None:
        self.info.rounds += 1
        self.info.last_at = self._clock()
        self.info.relay_error = report.relay_error
        for alarm in report.alarms:
            if alarm not in self.info.alarms:
                self.info.alarms.append(alarm)

    async def _engine(self) -> None:
        while True:
            try:
                await self.client.run(self._on_round, seconds=self.round_seconds)
            except asyncio.CancelledError:
                raise
            except BackchannelError as exc:  # said in words (another process holds the rounds, say)
                log.warning("the rounds stopped: %s", type(exc).__name__)
                self.note(f"The rounds stopped: {exc}", "They restart by themselves.")
            except Exception as exc:  # a bug: say so on the alarms page and go on
                log.error("the rounds stopped: %s", type(exc).__name__)
                self.note(
                    f"The rounds stopped after an unexpected error ({type(exc).__name__})",
                    "They restart by themselves; if this repeats, restart the desk and report it.",
                )
            await asyncio.sleep(self.round_seconds or self.client.round_seconds())
