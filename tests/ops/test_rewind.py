"""A relay restored from an older backup is a rewind: the devices raise the alarm, lose nothing.

Four officers of two missions pair through a real relay process (SQLite). The
operator runs ``relay backup``; then New York's message is co-signed and its
cells are deposited and acknowledged. The operator stops the relay and runs
``relay restore --force`` with the older backup: the deposited cells are gone
and the log is shorter than the heads every device has seen. On their next
rounds the devices that had seen the longer log prove the rewind (a relay
alarm, with evidence anyone can verify).

Once the missions deposit again the message should reach Washington and its
receipt come back. Today it does not: a device marks a cell done once the
relay has proved it stored, and nothing makes it deposit again the cells a
rewound relay has lost, so the channel waits on the lost round. That test is a
strict expected failure, which turns into a failure to fix the day the client
re-deposits after a rewind.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backchannel.client import demo
from backchannel.client.service import default_relay_factory
from backchannel.protocol.evidence import verify_misbehaviour
from backchannel.protocol.payload import note
from backchannel.protocol.states import SendState
from tests.client.conftest import FAST_KDF
from tests.ops.test_backup import relay_cli
from tests.relay.procs import RelayProcess

pytestmark = pytest.mark.slow

TEXT = "The meeting moves to Thursday."


def test_restored_relay_is_a_detected_rewind(tmp_path: Path) -> None:
    _run(tmp_path, until_delivered=False)


def test_nothing_is_lost_once_the_missions_deposit_again(tmp_path: Path) -> None:
    _run(tmp_path, until_delivered=True)


def _run(tmp_path: Path, *, until_delivered: bool) -> None:
    db = str(tmp_path / "relay.db")
    relay = RelayProcess(db, {"BACKCHANNEL_RELAY_OPEN_REGISTRATION": "true"}).start()
    try:
        asyncio.run(_scenario(tmp_path, relay, db, until_delivered))
    finally:
        relay.stop()


async def _scenario(tmp_path: Path, relay: RelayProcess, db: str, until_delivered: bool) -> None:
    url = relay.base_url
    factory = default_relay_factory
    homes = tmp_path / "homes"
    ny = await demo.found(homes, "New York", ("Ri", "Han"), url, factory, "pw", FAST_KDF)
    dc = await demo.found(homes, "Washington", ("Smith", "Jones"), url, factory, "pw", FAST_KDF)
    await demo.pair(ny, dc)
    devices = (*ny, *dc)
    ri, han = ny
    smith, _ = dc
    await demo.lockstep(devices, lambda: False, 3)  # every device pins the relay's head

    made = await asyncio.to_thread(relay_cli, "backup", str(tmp_path / "backup"), "--db", db)
    assert made.returncode == 0, made.stderr

    draft = ri.compose(ri.channel_for("Washington").channel_id, note(TEXT))
    await ri.settle()
    await han.settle()
    [request] = han.cosign_requests()
    han.approve_cosign(request.request_id)
    # Only New York runs rounds: its cells reach the relay, which acknowledges
    # them, and every New York device pins the longer log.
    await demo.lockstep(ny, lambda: False, 3)
    assert not smith.inbox()
    assert all(not d.relay_alarms() for d in devices)

    relay.stop()
    restored = await asyncio.to_thread(
        relay_cli, "restore", str(tmp_path / "backup"), "--db", db, "--force"
    )
    assert restored.returncode == 0, restored.stderr
    relay.start()

    def delivered() -> bool:
        return any(
            d.draft_id == draft.draft_id and d.outgoing.state is SendState.DELIVERED
            for d in ri.drafts()
        )

    try:
        if not until_delivered:
            await demo.lockstep(devices, lambda: all(d.relay_evidence() for d in ny), 8)
            # The rewind is proven on the devices that had seen the longer log,
            # with evidence that verifies offline (as anyone would check it).
            for device in ny:
                assert device.relay_alarms()
                kinds = {verify_misbehaviour(b).split(":")[0] for b in device.relay_evidence()}
                assert kinds & {"rewind", "fork"}, kinds
            return
        await demo.lockstep(devices, lambda: bool(smith.inbox()) and delivered(), 12)
        # Nothing is lost: the message arrives once New York deposits again,
        # and its receipt comes back.
        assert len(smith.inbox()) == 1
        assert delivered()
    finally:
        for d in devices:
            d.home.close()
