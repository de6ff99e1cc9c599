"""The mission's audit log: every device holds every officer's chain, and a
rewritten, dropped or forked history is caught and named."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from backchannel.client.audit import AUDIT, _key, verify_record
from backchannel.client.officer_alarms import AlarmKind
from backchannel.client.service import Client
from backchannel.errors import DecodeError
from backchannel.protocol import joint
from backchannel.protocol.audit import GENESIS, AuditEntry, AuditKind
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.payload import note
from backchannel.protocol.sealing import open_with_key
from tests.client.conftest import InProcessRelay
from tests.client.test_client_flow import two_missions

TEXT = "the delegation arrives on Thursday"


async def settle(*devices: Client, times: int = 2) -> None:
    """Until what the devices queued is out and read, audit entries included."""
    for _ in range(times):
        for c in devices:
            await c.settle()
    for _ in range(32):
        if not any(c.mailbox.waiting_audit() for c in devices):
            break
        for c in devices:
            await c.sync(1)
    for c in devices:
        await c.settle()


async def one_message_opened(tmp: Path, relay: InProcessRelay):  # type: ignore[no-untyped-def]
    ny, dc = await two_missions(tmp, relay)
    ri, han = ny
    smith, jones = dc
    ri.compose(ri.channel_for("Washington").channel_id, note(TEXT))
    await settle(ri, han)
    [req] = han.cosign_requests()
    han.approve_cosign(req.request_id)
    await settle(han, ri, smith, jones)
    [item] = smith.inbox()
    smith.request_open(item.message_id)
    await settle(smith, jones)
    [share] = jones.share_requests()
    jones.approve_share(share.request_id)
    await settle(jones, smith, ri, han)
    assert smith.read(item.message_id).text == TEXT
    return ny, dc


def chain(c: Client, officer: Client) -> list[AuditKind]:
    return [e.kind for e in c.audit_entries() if e.officer_id == officer.officer.officer_id]


async def test_every_device_holds_every_officers_chain(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    (ri, han), (smith, jones) = await one_message_opened(tmp_path, relay)
    # Each officer's own acts, in order, on his own device and on his colleague's.
    for holder in (ri, han):
        assert chain(holder, ri) == [
            AuditKind.PEER_CONFIRMED, AuditKind.DRAFTED, AuditKind.QUEUED
        ]  # fmt: skip
        assert chain(holder, han) == [AuditKind.PEER_CONFIRMED, AuditKind.COSIGNED]
    for holder in (smith, jones):
        assert chain(holder, smith) == [
            AuditKind.PEER_CONFIRMED, AuditKind.OPEN_ASKED, AuditKind.OPENED
        ]  # fmt: skip
        assert chain(holder, jones) == [AuditKind.PEER_CONFIRMED, AuditKind.SHARE_RELEASED]
    # A mission's log stays inside it, holds no plaintext, and verifies.
    assert all(e.mission_id == ri.mission().mission_id for e in ri.audit_entries())
    for c in (ri, han, smith, jones):
        assert c.audit_verify() == []
        assert all(TEXT not in e.note for e in c.audit_entries())
        assert TEXT.encode() not in c.export_record().encode()


async def test_a_changed_entry_is_named(tmp_path: Path, relay: InProcessRelay) -> None:
    (ri, han), _ = await two_missions(tmp_path, relay)
    await settle(ri, han)
    [first] = [e for e in han.audit_entries() if e.officer_id == ri.officer.officer_id]
    assert first.kind is AuditKind.PEER_CONFIRMED
    # Han's copy of Ri's entry is edited (say, by someone with Han's disk).
    forged = AuditEntry(**{**_fields(first), "note": "never happened"})
    han.vault.put(AUDIT, _key(first.officer_id, 1), forged.encode())
    [problem] = han.audit_verify()
    assert problem.startswith(f"entry 1 of officer {ri.officer.officer_id.hex()[:12]}")
    assert "signature does not verify" in problem


async def test_a_rewritten_history_breaks_at_the_next_entry(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Ri holds his own key: he can re-sign an old entry, but not hide that he did."""
    ny, _ = await two_missions(tmp_path, relay)
    ri, han = ny
    ri.compose(ri.channel_for("Washington").channel_id, note(TEXT))
    await settle(ri, han)
    old = next(e for e in ri.audit_entries() if e.officer_id == ri.officer.officer_id)
    m = ri.mission()
    rewritten = AuditEntry.make(
        m.mission_id, ri.officer, 1, GENESIS, old.at, AuditKind.PEER_CONFIRMED, old.subject,
        "a different card",
    )  # fmt: skip
    ri.vault.put(AUDIT, _key(ri.officer.officer_id, 1), rewritten.encode())
    [problem] = ri.audit_verify()
    assert problem.startswith(f"entry 2 of officer {ri.officer.officer_id.hex()[:12]}")
    assert "does not follow the entry before it" in problem
    # A dropped entry is named too.
    ri.vault.delete(AUDIT, _key(ri.officer.officer_id, 1))
    [problem] = ri.audit_verify()
    assert "entry 1 of officer" in problem and "missing" in problem


async def test_two_histories_from_one_device_are_proved(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, _ = await two_missions(tmp_path, relay)
    ri, han = ny
    await settle(ri, han)
    m = ri.mission()
    # Ri's device signs another entry number 1 and sends it to Han.
    other = AuditEntry.make(
        m.mission_id, ri.officer, 1, GENESIS, int(time.time()), AuditKind.ROSTER_SIGNED
    )
    ri.mailbox.send(joint.JointKind.AUDIT, han.officer.officer_id, other.encode())
    await settle(ri, han)
    alarms = [a for a in han.officer_alarms() if a.kind is AlarmKind.AUDIT_FORK]
    assert len(alarms) == 1 and alarms[0].officer_id == ri.officer.officer_id
    problems = han.audit_verify()
    assert any("entry 1 of officer" in p and "fork" in p for p in problems)
    # The record carries both signed entries: the proof travels with it.
    record = json.loads(han.export_record())
    assert len(record["forks"]) == 1
    # The alarm itself is in Han's own chain.
    assert AuditKind.ALARM in chain(han, han)


async def test_an_entry_can_only_come_from_its_author(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, _ = await two_missions(tmp_path, relay)
    ri, han = ny
    m = ri.mission()
    # Han's device passes off an entry in Ri's name (signed by Han: he has no other key).
    fake = AuditEntry.make(m.mission_id, han.officer, 5, GENESIS, 0, AuditKind.OPENED)
    fake = AuditEntry(**{**_fields(fake), "officer_id": ri.officer.officer_id})
    assert han._on_audit(han.officer.officer_id, fake.encode()) is not None
    assert ri._on_audit(han.officer.officer_id, fake.encode()) is not None
    assert ri.vault.get(AUDIT, _key(ri.officer.officer_id, 5)) is None
    # And one in his own name that Ri's key did not sign is refused by Ri.
    bad = AuditEntry(**{**_fields(fake), "officer_id": han.officer.officer_id, "seq": 9})
    assert "did not verify" in (ri._on_audit(han.officer.officer_id, bad.encode()) or "")


async def test_the_exported_record_verifies_offline_and_fails_when_touched(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    (_, han), _ = await one_message_opened(tmp_path, relay)
    text = han.export_record()
    check = verify_record(text)
    assert check.entries == len(han.audit_entries()) >= 5 and check.problems == []
    record = json.loads(text)
    raw = bytearray(bytes.fromhex(record["entries"][1]))
    raw[-10] ^= 1  # one bit of the signature
    record["entries"][1] = raw.hex()
    problems = verify_record(json.dumps(record)).problems
    assert len(problems) == 1 and "signature does not verify" in problems[0]
    del record["entries"][0]  # and an entry dropped from the record
    problems = verify_record(json.dumps(record)).problems
    assert any("missing" in p for p in problems)
    with pytest.raises(DecodeError):
        verify_record("{}")


async def test_the_record_carries_the_messages_with_their_signatures(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """The sender's record holds the message it sent and the receiver's the one it
    opened: a third party checks each one's signatures against the sender's roster and
    reads what they cover; a touched key, signature or roster chain is named."""
    (ri, han), (smith, jones) = await one_message_opened(tmp_path, relay)
    for device, direction in ((ri, "sent"), (smith, "received")):
        text = device.export_record()
        check = verify_record(text)
        assert check.problems == [] and check.messages == 1, device.officer.name
        record = json.loads(text)
        [doc] = record["messages"]
        assert doc["direction"] == direction
        msg = SealedMessage.decode(bytes.fromhex(doc["message"]))
        opened = open_with_key(msg, bytes.fromhex(doc["content_key"]))
        assert opened.text == TEXT and len(msg.signatures) == 2
        # The content key of another message (or none that fits) opens nothing.
        record["messages"][0]["content_key"] = bytes(32).hex()
        assert "decryption failed" in verify_record(json.dumps(record)).problems[0]
        # One of the two signatures dropped: k = 2 no longer holds.
        record = json.loads(text)
        one_signer = replace(msg, signatures=msg.signatures[:1])
        record["messages"][0]["message"] = one_signer.encode().hex()
        assert (
            "needs 2 officers' signatures; 1 verify"
            in (verify_record(json.dumps(record)).problems[0])
        )
    # The receiver's record names the peer's roster chain; another mission's chain in
    # its place (here the receiver's own) proves nothing about the sender.
    record = json.loads(smith.export_record())
    [peer] = record["peers"]
    assert peer == ri.mission().mission_id.hex()
    record["peers"][peer] = record["roster_chain"]
    [problem] = verify_record(json.dumps(record)).problems
    assert problem.startswith("message 1 (received)")
    # A colleague who did not open the message holds none on the record; the one who
    # co-signed without drafting holds none either (the author's device sent it).
    assert "messages" not in json.loads(jones.export_record())
    assert "messages" not in json.loads(han.export_record())


def _fields(e: AuditEntry) -> dict[str, object]:
    return {f: getattr(e, f) for f in AuditEntry.__dataclass_fields__}


def test_a_long_note_in_any_script_is_cut_to_what_an_entry_holds() -> None:
    from backchannel.client.audit import _clip
    from backchannel.protocol.audit import MAX_NOTE

    long = "外交" * 300  # 600 characters, 1,800 bytes
    cut = _clip(long, 400)
    assert long.startswith(cut) and len(cut.encode()) <= 400 <= MAX_NOTE
    assert _clip("short", 400) == "short"
