"""One officer's device in a process of its own, driven by the harness over a pipe.

Each line on stdin is a JSON command; each answer is one JSON line on stdout.
The device runs the same round engine as ``backchannel run``; the harness
decides when each phase runs (all devices deposit, then fetch, then check), so
that a trial's schedule is the same on every machine.

With ``kill`` > 0 the device kills itself (SIGKILL) around some batch
deposits: after the round's cells are persisted and before they are sent, or
after the relay stored them and before the answer is taken. The harness
starts it again on the same home, as an officer would after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backchannel.client.home import Home
from backchannel.client.relay_client import RelayClient, RetryPolicy
from backchannel.client.report import SyncReport
from backchannel.client.service import Client
from backchannel.protocol.batch import DepositBatchAnswer
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.payload import note

#: How long a device waits for the relay before the round goes on without it.
TIMEOUT = 1.0


class _Device:
    def __init__(self) -> None:
        self.client: Client | None = None
        self.session: contextlib.AsyncExitStack | None = None
        #: The chance that a batch deposit kills this device (before or after sending).
        self.kill = 0.0

    async def open(self, cmd: dict[str, Any]) -> dict[str, Any]:
        target, skew = str(cmd["target"]), float(cmd["skew"])
        self.kill = float(cmd["kill"])
        rng = random.Random(int(cmd["seed"]))
        device = self

        class Killing(RelayClient):
            async def batch_deposit(
                self, cells: Sequence[tuple[str, bytes, bytes]], known_size: int
            ) -> DepositBatchAnswer:
                if device.kill and rng.random() < device.kill / 2:
                    os.kill(os.getpid(), signal.SIGKILL)  # persisted, not sent
                answer = await super().batch_deposit(cells, known_size)
                if device.kill and rng.random() < device.kill / 2:
                    os.kill(os.getpid(), signal.SIGKILL)  # stored, answer not taken
                return answer

        def factory(url: str, tenant: str | None, credential: str | None) -> RelayClient:
            retry = RetryPolicy(attempts=2, base_delay=0.05, max_delay=0.2)
            return Killing(target, tenant, credential, retry=retry, timeout=TIMEOUT)

        home = Home.unlock(Path(cmd["home"]), str(cmd["passphrase"]))
        self.client = Client(home, factory, lambda: time.time() + skew)  # type: ignore[arg-type]
        self.session = contextlib.AsyncExitStack()
        await self.session.enter_async_context(self.client.relay_session())
        return {}

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd["op"]
        if op == "open":
            return await self.open(cmd)
        if op == "exit":
            return {}
        if op == "calm":
            self.kill = 0.0
            return {}
        c = self.client
        assert c is not None
        if op == "phase":
            report = SyncReport()
            phase = {"deposit": c.deposit_phase, "fetch": c.fetch_phase}
            await phase[cmd["name"]](report)  # type: ignore[operator]
            return {"error": report.relay_error, "alarms": report.alarms}
        if op == "compose":
            draft = c.compose(c.channel_for(cmd["peer"]).channel_id, note(cmd["text"]))
            return {"draft": draft.draft_id.hex()}
        if op == "approve":
            requests = c.cosign_requests()
            for r in requests:
                c.approve_cosign(r.request_id)
            return {"approved": len(requests)}
        if op == "state":
            return self.state(c)
        if op == "close":
            if self.session is not None:
                await self.session.aclose()
            c.home.close()
            self.client = None
            return {}
        raise ValueError(f"unknown command {op!r}")

    @staticmethod
    def state(c: Client) -> dict[str, Any]:
        inbox = []
        for item in c.inbox():
            header = SealedMessage.decode(item.message).header
            inbox.append(
                {
                    "channel": item.channel_id.hex(),
                    "seq": header.seq,
                    "round": item.received_round,
                    "id": item.message_id.hex(),
                }
            )
        drafts = [
            {"channel": d.channel_id.hex(), "seq": d.seq, "state": d.outgoing.state.value}
            for d in c.drafts()
        ]
        return {
            "drafts": drafts,
            "inbox": inbox,
            "outbox": len(c.vault.pending("net_out")),
            "alarms": c.relay_alarms(),
        }


async def main() -> None:
    device = _Device()
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        try:
            answer = {"ok": True, **(await device.handle(cmd))}
        except Exception as exc:  # reported to the harness, which fails the trial
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
        if cmd["op"] == "exit":
            break


if __name__ == "__main__":
    asyncio.run(main())
