"""A full disk in the middle of a round: the step is undone whole, and nothing is lost.

The vault's disk fills at a chosen statement of a round (``faulty_vault``). The
round stops with the vault's own error (:class:`StoreUnavailable`, "free space
and retry"); once space is freed the next rounds carry on, and every message,
co-sign request and cell queued before is still there and goes out once.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from backchannel.client import demo, vault_sql
from backchannel.client.home import Home
from backchannel.client.service import Client
from backchannel.errors import StoreUnavailable
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.payload import note
from tests.client.conftest import FAST_KDF, RELAY_URL, InProcessRelay
from tests.client.faulty_vault import FaultyConnection, install

Mission = tuple[Client, Client]


async def _missions(relay: InProcessRelay, tmp: Path) -> tuple[Mission, Mission]:
    f = relay.factory()
    ny = await demo.found(tmp, "New York", ("Ri", "Han"), RELAY_URL, f, "pw", FAST_KDF)
    dc = await demo.found(tmp, "Washington", ("Smith", "Jones"), RELAY_URL, f, "pw", FAST_KDF)
    await demo.pair(ny, dc)
    return ny, dc


def _set_aside(alarms: list[str]) -> list[str]:
    return [a for a in alarms if "set aside" in a]


async def test_a_full_disk_while_a_colleagues_object_is_taken_in_sets_nothing_aside(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    (ri, han), _ = await _missions(relay, tmp_path)
    ri.compose(ri.channel_for("Washington").channel_id, note("written before the disk filled"))
    await ri.settle()  # the co-sign request is in Han's lane at the relay
    faulty = install(han.vault)
    # The disk fills as Han's device keeps the request it has just read.
    faulty.fail_when = lambda sql, params: sql.startswith("INSERT") and params[0] == "cosign_in"
    with pytest.raises(StoreUnavailable, match="full"):
        await han.sync(1)
    assert faulty.failures == 1
    assert han.cosign_requests() == []
    faulty.fail_when = None  # space freed
    report = await han.settle()
    assert _set_aside(report.alarms) == []
    [request] = han.cosign_requests()
    assert han.show_cosign(request.request_id)[1].text == "written before the disk filled"


@pytest.mark.parametrize("seed", [3, 7])
async def test_a_full_disk_at_any_statement_of_a_round_loses_nothing(
    tmp_path: Path, relay: InProcessRelay, seed: int
) -> None:
    rng = random.Random(seed)
    ny, dc = await _missions(relay, tmp_path)
    ri, han = ny
    smith, jones = dc
    devices = (ri, han, smith, jones)
    disks: dict[str, FaultyConnection] = {d.officer.name: install(d.vault) for d in devices}
    texts = [f"message {i}" for i in range(4)]
    for text in texts:
        ri.compose(ri.channel_for("Washington").channel_id, note(text))
    failed = 0
    alarms: list[str] = []
    for n in range(50):
        for d in devices:
            disk = disks[d.officer.name]
            disk.count = 0
            # In the first rounds, half the rounds of every device find the disk
            # full at one statement (a round makes a hundred or more).
            disk.fail_at = rng.randint(1, 150) if n < 30 and rng.random() < 0.5 else None
            try:
                alarms += (await d.sync(1)).alarms
            except StoreUnavailable as exc:
                assert "full" in str(exc)
                failed += 1
            disk.fail_at = None
        for request in han.cosign_requests():
            han.approve_cosign(request.request_id)
        if n >= 30 and all(d.outgoing.state.value == "delivered" for d in ri.drafts()):
            break
    assert failed > 10, "the disk was hardly ever full: the test tested little"
    assert _set_aside(alarms) == []
    assert [d.outgoing.state.value for d in ri.drafts()] == ["delivered"] * len(texts)
    for d in (smith, jones):  # each message once, in order
        seqs = [SealedMessage.decode(i.message).header.seq for i in d.inbox()]
        assert sorted(seqs) == list(range(1, len(texts) + 1)), d.officer.name
    for d in devices:  # the last round's cells went out: nothing waits
        report = await d.sync(1)
        assert (report.relay_error, d.vault.pending("net_out")) == (None, [])


async def test_an_epoch_key_whose_rotation_was_undone_is_not_handed_out(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """A device that runs on after the failure (the desk) shows the keys its vault holds."""
    (ri, _), _ = await _missions(relay, tmp_path)
    before = [k.epoch for k in ri.home.epoch_keys]
    faulty = install(ri.vault)
    # The new key is written; the disk is full by the time the mission records it.
    faulty.fail_when = lambda sql, params: sql.startswith("INSERT") and params[0] == "mission"
    with pytest.raises(StoreUnavailable, match="full"):
        ri.rotate_epoch_key()
    faulty.fail_when = None
    assert [k.epoch for k in ri.home.epoch_keys] == before
    assert ri.officer_card().cert.epoch == before[-1]
    # Erasing keys on a full disk leaves them all, in the vault and in use.
    ri.rotate_epoch_key()
    faulty.fail_when = lambda sql, params: sql.startswith("DELETE")
    with pytest.raises(StoreUnavailable, match="full"):
        ri.erase_epoch_keys(1)
    faulty.fail_when = None
    held = [k.epoch for k in ri.home.epoch_keys]
    assert len(held) == len(before) + 1
    reopened = Home.unlock(ri.home.path, "pw")
    try:
        assert [k.epoch for k in reopened.epoch_keys] == held
    finally:
        reopened.close()


def test_a_disk_too_full_to_open_the_vault_is_said_to_be_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With no byte free SQLite cannot even make the vault's -shm file, and says
    # only "disk I/O error": the officer is told what to do about it.
    Home.create(tmp_path / "ri", "Ri", "pw", FAST_KDF).close()

    def no_room(*args: object, **kwargs: object) -> sqlite3.Connection:
        exc = sqlite3.OperationalError("disk I/O error")
        exc.sqlite_errorcode = sqlite3.SQLITE_IOERR_SHMSIZE  # type: ignore[attr-defined]
        raise exc

    monkeypatch.setattr(vault_sql.sqlite3, "connect", no_room)
    for free, said in ((0, "the disk holding the vault is full"), (10**9, "the disk or system")):
        usage = SimpleNamespace(total=10**10, used=10**10 - free, free=free)
        monkeypatch.setattr(vault_sql.shutil, "disk_usage", lambda _p, u=usage: u)
        with pytest.raises(StoreUnavailable, match=said):
            Home.unlock(tmp_path / "ri", "pw")
