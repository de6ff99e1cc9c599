"""What a sending device keeps of a deniable message, as attacks: whoever seizes
the sender's whole device (vault unlocked) and holds the receiver's copy of the
message must find nothing that proves who wrote it or who approved it
(``docs/spec/deniable-v1.md`` §3, §5).

The search is exact: Ed25519 signatures are deterministic, so each officer's
signature over a message's digest is one string of 64 bytes, which is looked
for in every record and queue of the vault, raw and as the hex the vault's
records store bytes in. The search is shown to find the signatures while a
draft still holds them (before it leaves), so finding none after is a finding.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from backchannel.client.receiving import PROOFS_FORGOTTEN
from backchannel.client.records import DraftRecord
from backchannel.client.service import Client
from backchannel.crypto import labels
from backchannel.protocol import channel as ch
from backchannel.protocol.audit import AuditKind
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.payload import note
from backchannel.protocol.sealing import sign
from backchannel.protocol.states import SendState
from tests.client.conftest import InProcessRelay, adopt_policy
from tests.client.test_deniable_channel import (
    contact,
    founded,
    founded_either,
    pair_with_contact,
)


def signatures_held(device: Client, digest: bytes, signers: list[Client]) -> list[str]:
    """Where ``device``'s vault holds a signature of one of ``signers`` over ``digest``."""
    sigs = {
        s.officer.name: s.officer.signing_key.sign_ed25519(labels.SIG_MESSAGE, digest)
        for s in signers
    }
    v = device.vault
    values: list[tuple[str, bytes]] = []
    for (table,) in v._conn.execute("SELECT DISTINCT tbl FROM records").fetchall():
        values += [(table, value) for _, value in v.items(table)]
    for (queue,) in v._conn.execute("SELECT DISTINCT q FROM queue").fetchall():
        values += [(queue, value) for _, value in v.pending(queue)]
    return [
        f"{name} in {where}"
        for where, value in values
        for name, sig in sigs.items()
        if sig in value or sig.hex().encode() in value
    ]


async def rounds(devices: tuple[Client, ...], n: int = 3) -> None:
    for _ in range(n):
        for c in devices:
            await c.settle()


async def paired_with_contact(tmp: Path, relay: InProcessRelay) -> tuple[Client, Client, Client]:
    (ri, han), _ = await founded(tmp, relay)
    kim = await contact(tmp, relay, "Kim")
    pair_with_contact((ri, han), kim)
    return ri, han, kim


async def test_nothing_the_senders_keep_proves_who_wrote_a_deniable_message(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, han, kim = await paired_with_contact(tmp_path, relay)
    everyone = (ri, han, kim)
    # The mission (2 of 2) writes to the contact.
    ri.compose(ri.channel_for("Kim").channel_id, note("Could we meet on Thursday?"))
    await rounds(everyone)
    [req] = han.cosign_requests()
    [sealed] = ri.drafts()
    assert sealed.outgoing.message is not None
    # The search finds a signature where one is kept: the author's, on the draft
    # awaiting its co-signature, and in the co-sign request on his colleague's.
    assert signatures_held(ri, sealed.outgoing.message.digest, [ri]) == ["Ri in drafts"]
    assert signatures_held(han, sealed.outgoing.message.digest, [ri]) == ["Ri in cosign_in"]
    han.approve_cosign(req.request_id)
    await rounds((han, ri, kim), 4)
    # The contact (a roster of one) answers, alone.
    kim.compose(kim.channel_for("New York").channel_id, note("Thursday suits me."))
    await rounds(everyone, 4)

    [to_kim] = kim.inbox()
    [to_ny] = ri.inbox()
    wire_to_kim = SealedMessage.decode(to_kim.message)
    wire_to_ny = SealedMessage.decode(to_ny.message)
    assert wire_to_kim.deniable and wire_to_ny.deniable
    # Seize either sender's device and take the receiver's copy: no signature over it.
    for device in (ri, han):
        assert signatures_held(device, wire_to_kim.digest, [ri, han]) == [], device.officer.name
    assert signatures_held(kim, wire_to_ny.digest, [kim]) == []
    for device, wire in ((ri, wire_to_kim), (kim, wire_to_ny)):
        [draft] = device.drafts()
        kept = draft.outgoing.message
        assert draft.outgoing.state is SendState.DELIVERED
        assert kept is not None and kept.digest == wire.digest  # the receipt matched it
        assert kept.signatures == () and draft.record_key == b""
        # It keeps how many had signed (a count proves nothing): two for the
        # mission, one for the contact.
        assert draft.signers == (2 if device is ri else 1)
        # Nor does the record for a review board put it on the record.
        assert "messages" not in json.loads(device.export_record())
    # The mission's own record of who did what stays: drafted, co-signed, queued,
    # by the draft's id (no digest, no text).
    [draft] = ri.drafts()
    acts = {(e.kind, e.officer_id) for e in ri.audit_entries() if e.subject == draft.draft_id}
    assert acts == {
        (AuditKind.DRAFTED, ri.officer.officer_id),
        (AuditKind.COSIGNED, han.officer.officer_id),
        (AuditKind.QUEUED, ri.officer.officer_id),
    }
    # No entry on the sending side names the message's digest or id.
    for device, wire in ((ri, wire_to_kim), (han, wire_to_kim), (kim, wire_to_ny)):
        for e in device.audit_entries():
            assert wire.digest not in e.encode() and wire.message_id not in e.encode()


async def test_a_refused_deniable_draft_keeps_no_signature(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Refused, then drafted again with the same text and sent: the refused draft
    must not prove that its author wrote that text."""
    ri, han, kim = await paired_with_contact(tmp_path, relay)
    ri.compose(ri.channel_for("Kim").channel_id, note("We could drop the second clause."))
    await rounds((ri, han, kim))
    [req] = han.cosign_requests()
    [sealed] = ri.drafts()
    assert sealed.outgoing.message is not None
    han.reject_cosign(req.request_id)
    await rounds((han, ri, kim))
    [refused] = ri.drafts()
    assert refused.outgoing.state is SendState.REJECTED
    assert refused.outgoing.message is not None and refused.outgoing.message.signatures == ()
    assert refused.record_key == b"" and refused.outgoing.content_key is None
    for device in (ri, han):
        assert signatures_held(device, sealed.outgoing.message.digest, [ri, han]) == []


async def test_deniable_drafts_kept_signed_by_an_earlier_version_are_swept(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """A home whose device kept its deniable drafts signed (before it dropped the
    signatures as they leave) drops them at its next round."""
    ri, han, kim = await paired_with_contact(tmp_path, relay)
    kim.compose(kim.channel_for("New York").channel_id, note("Thursday suits me."))
    await rounds((kim, ri, han), 4)
    [draft] = kim.drafts()
    assert draft.outgoing.state is SendState.DELIVERED and draft.outgoing.message is not None
    # As an earlier version left it: his signature and the record key kept.
    signed = sign(draft.outgoing.message, kim.officer, kim.mission().roster)
    old = replace(draft, outgoing=replace(draft.outgoing, message=signed), record_key=bytes(32))
    kim._put("drafts", draft.draft_id, old)
    kim.vault.delete("counters", PROOFS_FORGOTTEN)
    assert signatures_held(kim, signed.digest, [kim]) == ["Kim in drafts"]
    await kim.sync(1)
    kept: DraftRecord = kim._get("drafts", draft.draft_id, DraftRecord)
    assert kept.outgoing.message is not None and kept.outgoing.message.signatures == ()
    assert kept.record_key == b""
    assert signatures_held(kim, signed.digest, [kim]) == []


async def test_messages_for_the_record_keep_their_signatures_beside_deniable_ones(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await founded_either(tmp_path, relay)
    ri, han = ny
    channel = ri.channel_for("Washington").channel_id
    for text, deniable in (("for the record", False), ("off the record", True)):
        ri.compose(channel, note(text), deniable=deniable)
        await rounds((*ny, *dc))
        [req] = han.cosign_requests()
        han.approve_cosign(req.request_id)
        await rounds((han, ri, *dc), 4)
    kept = {d.outgoing.payload.text: d for d in ri.drafts()}
    assert {d.outgoing.state for d in kept.values()} == {SendState.DELIVERED}
    record, deniable_one = kept["for the record"], kept["off the record"]
    assert record.outgoing.message is not None and deniable_one.outgoing.message is not None
    assert len(record.outgoing.message.signatures) == 2 and record.record_key
    assert deniable_one.outgoing.message.signatures == () and not deniable_one.record_key
    assert signatures_held(ri, record.outgoing.message.digest, [ri, han]) == [
        "Ri in drafts",
        "Han in drafts",
    ]
    assert signatures_held(ri, deniable_one.outgoing.message.digest, [ri, han]) == []
    [on_record] = json.loads(ri.export_record())["messages"]
    assert SealedMessage.decode(bytes.fromhex(on_record["message"])).digest == (
        record.outgoing.message.digest
    )


async def test_the_desk_shows_the_signatures_a_deniable_message_went_out_with(
    tmp_path: Path, relay: InProcessRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the policy lets one officer write to a contact alone, the desk says
    one signature, not the roster's k, once the signatures are forgotten."""
    from backchannel.ui import views_mail

    ri, han, kim = await paired_with_contact(tmp_path, relay)
    await adopt_policy((ri, han), set(ch.Policy), track2_k=1)
    draft = ri.compose(ri.channel_for("Kim").channel_id, note("On my word alone."))
    assert draft.outgoing.state is SendState.QUEUED
    await rounds((ri, han, kim), 4)
    [sent] = [d for d in ri.drafts() if d.draft_id == draft.draft_id]
    assert sent.outgoing.state is SendState.DELIVERED and sent.signers == 1
    monkeypatch.setattr(views_mail, "peer_names", lambda desk: {})
    view = views_mail._draft_view(SimpleNamespace(), ri, sent)  # no desk needed
    assert view["steps"][1] == ("Co-signed: 1 of 2 signatures", True)
