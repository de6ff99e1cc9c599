"""The public intake end to end on officers' devices: requests come in on the
round schedule, officers triage them under the two-person rule, and only an
answer that k officers approved reaches the submitter."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from backchannel.client import intake_public as public
from backchannel.client import statecodec
from backchannel.client.intake import INTAKE_LANE, INTAKE_OUT, INTAKE_TEXTS, IntakeRecord, _digest
from backchannel.client.records import NetOut
from backchannel.client.service import Client
from backchannel.errors import ConfigError, IntakeClosed
from backchannel.protocol import intake as pi
from backchannel.protocol.audit import AuditEntry, AuditKind
from tests.client.conftest import InProcessRelay
from tests.client.test_audit import settle
from tests.client.test_client_flow import two_missions


def transport(relay: InProcessRelay) -> httpx.AsyncBaseTransport:
    return httpx.ASGITransport(app=relay.app, client=("203.0.113.7", 40000))


async def opened_intake(tmp: Path, relay: InProcessRelay) -> tuple[Client, Client]:
    (ri, han), _ = await two_missions(tmp, relay)
    ri.intake_set_open(True)
    await settle(ri, han)
    assert han.intake_is_open() and ri.intake_is_open()
    assert await relay.store.intake_is_open(ri.mission().tenant_id)
    return ri, han


async def submit(relay: InProcessRelay, c: Client, kind: str, subject: str, body: str,
                 contact: str = "") -> str:  # fmt: skip
    card = public.read_card(c.intake_card().to_text())
    sent = await public.submit(
        card, public.Kind.parse(kind), subject, body, contact, transport=transport(relay)
    )
    return sent.reply_code


async def check(relay: InProcessRelay, c: Client, code: str) -> str | None:
    return await public.check(c.intake_card(), code, transport=transport(relay))


async def test_two_officers_answer_one_request_and_ignore_another(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, han = await opened_intake(tmp_path, relay)
    interview = await submit(relay, ri, "interview", "Interview", "Ten minutes on the talks?")
    tour = await submit(relay, ri, "media-tour", "Tour", "A tour of the mission for our crew",
                        "desk@example.org")  # fmt: skip
    await settle(ri, han)
    for c in (ri, han):
        items = c.intake_items()
        assert [(i.number, i.kind, i.subject, i.state) for i in items] == [
            (1, "interview", "Interview", "new"), (2, "media-tour", "Tour", "new")
        ]  # fmt: skip
        assert items[1].contact == "desk@example.org"
    ri.intake_assign("1", "Han")
    ri.intake_tag("2", "press")
    han.intake_note("2", "crew of three; no cameras inside")
    han.intake_ignore("2")
    han.intake_answer("1", "Yes: Thursday at ten, at the mission.")
    await settle(ri, han)
    # Proposed by one officer: not yet out, and the submitter sees nothing.
    [first, second] = ri.intake_items()
    assert first.assigned_to == "Han" and first.answer == "Yes: Thursday at ten, at the mission."
    assert first.approvals == ("Han",) and first.needed == 2 and first.state == "assigned"
    assert second.state == "ignored" and second.tags == ("press",)
    assert second.notes == (("Han", "crew of three; no cameras inside"),)
    await settle(ri, han)
    assert await check(relay, ri, interview) is None
    # The second officer approves the same text: the runner's lane carries it.
    [proposal] = ri.intake_item("1").proposals
    ri.intake_approve("1", proposal.answer_id.hex())
    await settle(ri, han)
    assert await check(relay, ri, interview) == "Yes: Thursday at ten, at the mission."
    for c in (ri, han):
        states = [(i.state, i.sent) for i in c.intake_items()]
        assert states == [("answered", True), ("ignored", False)]
    # The ignored submitter learns nothing: the same "no answer" as while pending.
    assert await check(relay, ri, tour) is None
    # Every triage act is a signed audit entry on both devices, and the log verifies.
    kinds = {e.kind for e in han.audit_entries()}
    assert {AuditKind.INTAKE_ASSIGNED, AuditKind.INTAKE_TAGGED, AuditKind.INTAKE_NOTED,
            AuditKind.INTAKE_IGNORED, AuditKind.INTAKE_ANSWER_PROPOSED,
            AuditKind.INTAKE_ANSWER_APPROVED, AuditKind.INTAKE_ANSWER_SENT} <= kinds  # fmt: skip
    assert ri.audit_verify() == [] and han.audit_verify() == []


async def test_the_queue_is_read_again_only_once_it_changed(
    tmp_path: Path, relay: InProcessRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A desk asks for the queue every two seconds; a flood leaves thousands of
    # requests. Asked again with nothing changed, nothing is read again; any
    # change (an act here, a colleague's arriving, another process's commit)
    # is seen at once.
    ri, han = await opened_intake(tmp_path, relay)
    await submit(relay, ri, "interview", "One", "First?")
    await submit(relay, ri, "meeting", "Two", "Second?")
    await settle(ri, han)
    built: list[int] = []
    real = type(ri)._items

    def counting(self: Client, records: list[IntakeRecord], entries: list[AuditEntry]) -> Any:
        built.append(len(records))
        return real(self, records, entries)

    monkeypatch.setattr(type(ri), "_items", counting)
    first = ri.intake_items()
    assert [i.state for i in first] == ["new", "new"]
    assert ri.intake_items() == first and ri.intake_items() == first
    assert built == [2]
    ri.intake_ignore("2")
    assert [i.state for i in ri.intake_items()] == ["new", "ignored"]
    assert built == [2, 2]
    han.intake_assign("1", "Han")
    await settle(ri, han)
    assert [(i.state, i.assigned_to) for i in ri.intake_items()] == [
        ("assigned", "Han"), ("ignored", None)
    ]  # fmt: skip
    before = len(built)
    ri.intake_items()
    assert len(built) == before
    # Another process commits to the vault (a CLI command beside the desk).
    db = sqlite3.connect(ri.vault._path, isolation_level=None)
    db.execute("CREATE TABLE elsewhere (x)")
    db.close()
    ri.intake_items()
    assert len(built) == before + 1


async def test_a_solo_officer_cannot_answer(tmp_path: Path, relay: InProcessRelay) -> None:
    ri, han = await opened_intake(tmp_path, relay)
    code = await submit(relay, ri, "meeting", "Meeting", "Could we meet next week?")
    await settle(ri, han)
    # The runner himself proposes: one approval of two, nothing is sealed or sent.
    ri.intake_answer("1", "Agreed.")
    [own] = ri.intake_item("1").proposals
    with pytest.raises(ConfigError, match="already approved"):
        ri.intake_approve("1", own.answer_id.hex())
    for _ in range(4):
        await settle(ri, han)
    assert ri.vault.pending(INTAKE_OUT) == []
    assert await check(relay, ri, code) is None
    # A different text proposed by the colleague does not count towards the first.
    han.intake_answer("1", "Agreed, on Monday.")
    await settle(ri, han)
    assert await check(relay, ri, code) is None
    [theirs] = [p for p in ri.intake_item("1").proposals if p.text == "Agreed, on Monday."]
    ri.intake_approve("1", theirs.answer_id.hex()[:8])  # the colleague's text, by its id
    await settle(ri, han)
    assert await check(relay, ri, code) == "Agreed, on Monday."


async def test_two_requests_under_one_reply_code_get_one_answer_and_no_false_alarm(
    tmp_path: Path, relay: InProcessRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attack: the submitter chooses his reply code, and sends two requests
    under one code, so both answers would go to one slot at the relay (the
    second refused there, lost, and taken for a relay that lies). The later
    request is filed as a duplicate of the earlier: it cannot be answered apart,
    the earlier one's answer reaches the submitter, and no device raises an alarm."""
    ri, han = await opened_intake(tmp_path, relay)
    chosen = bytes(range(16))
    monkeypatch.setattr(pi, "new_reply_code", lambda rng: chosen)
    first = await submit(relay, ri, "interview", "Interview", "Ten minutes on the talks?")
    second = await submit(relay, ri, "meeting", "Meeting", "Or a meeting instead?")
    monkeypatch.undo()
    assert first == second
    other = await submit(relay, ri, "other", "Other", "Something else")
    await settle(ri, han)
    for c in (ri, han):
        assert [(i.number, i.state, i.duplicate_of) for i in c.intake_items()] == [
            (1, "new", None), (2, "duplicate", 1), (3, "new", None)
        ]  # fmt: skip
    # Neither officer can propose an answer to the duplicate: the refusal names #1.
    for c in (ri, han):
        with pytest.raises(ConfigError, match="same reply code as request #1"):
            c.intake_answer("2", "A meeting on Friday.")
    ri.intake_answer("1", "Yes: Thursday at ten.")
    han.intake_answer("3", "No, thank you.")
    await settle(ri, han)
    [proposal] = han.intake_item("1").proposals
    with pytest.raises(ConfigError, match="answer #1 instead"):
        han.intake_approve("2", proposal.answer_id.hex())
    han.intake_approve("1", proposal.answer_id.hex())
    [other_proposal] = ri.intake_item("3").proposals
    ri.intake_approve("3", other_proposal.answer_id.hex())
    for _ in range(2):
        await settle(ri, han)
    assert await check(relay, ri, first) == "Yes: Thursday at ten."
    assert await check(relay, ri, other) == "No, thank you."
    # Even were k approvals of an answer to the duplicate to reach the runner (from
    # a device that did not refuse it), it seals nothing for that slot.
    rid = ri.intake_item("2").request_id
    text = "A meeting on Friday."
    ri.vault.put(INTAKE_TEXTS, rid + _digest(text), text.encode())
    for o in (ri, han):
        ri._keep_vote(rid, _digest(text), o.officer.officer_id)
    ri._queue_approved()
    assert ri.vault.pending(INTAKE_OUT) == []
    for _ in range(2):
        report = await ri.sync(1)
        assert report.alarms == []
    await settle(ri, han)
    assert await check(relay, ri, first) == "Yes: Thursday at ten."
    for c in (ri, han):
        assert [(i.state, i.sent) for i in c.intake_items()] == [
            ("answered", True), ("duplicate", False), ("answered", True)
        ]  # fmt: skip
        assert c.relay_alarms() == []
        sent = sorted(e.subject[:16] for e in c.audit_entries()
                      if e.kind is AuditKind.INTAKE_ANSWER_SENT)  # fmt: skip
        assert sent == sorted(c.intake_item(n).request_id for n in ("1", "3"))
        answered = {e.subject[:16] for e in c.audit_entries()
                    if e.kind is AuditKind.INTAKE_ANSWER_PROPOSED}  # fmt: skip
        assert rid not in answered
        assert c.audit_verify() == []
    # A second answer queued for that slot before this check (a home from an earlier
    # version) is refused by the relay: named as such, not as a relay that lies.
    m = ri.mission()
    card = ri.intake_card()
    cell = pi.seal_answer(card, chosen, "A meeting on Friday.", secrets.token_bytes)
    slot = pi.answer_slot(pi.reply_id(card, chosen))
    late = NetOut(m.relay_url, m.tenant_id, slot, cell, b"", -1, INTAKE_LANE)
    ri.vault.append(INTAKE_OUT, statecodec.dumps(late))
    report = await ri.sync(1)
    [alarm] = report.alarms
    assert "an earlier answer under the same reply code" in alarm and "lying" not in alarm
    assert await check(relay, ri, first) == "Yes: Thursday at ten."


async def test_an_approval_counts_for_the_text_read_not_one_proposed_since(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """One officer proposes a text, his colleague reads it; the first proposes
    another before the colleague approves: the approval names the text read,
    and only that text can go out."""
    ri, han = await opened_intake(tmp_path, relay)
    code = await submit(relay, ri, "meeting", "Meeting", "Could we meet next week?")
    await settle(ri, han)
    ri.intake_answer("1", "We decline.")
    await settle(ri, han)
    [read] = han.intake_item("1").proposals  # what Han's desk shows him
    assert read.text == "We decline."
    ri.intake_answer("1", "Yes: meet our officer alone at the back door at 2am.")
    await settle(ri, han)
    assert len(han.intake_item("1").proposals) == 2
    han.intake_approve("1", read.answer_id.hex())
    for _ in range(3):
        await settle(ri, han)
    assert await check(relay, ri, code) == "We decline."
    for c in (ri, han):
        item = c.intake_item("1")
        assert item.state == "answered" and item.answer == "We decline."
        [swapped] = [p for p in item.proposals if p.text != "We decline."]
        assert swapped.approvals == (ri.officer.name,)  # his alone: it never goes out
    # An approval naming no proposal, or one this officer already gave, is refused.
    with pytest.raises(ConfigError, match="no single proposed answer"):
        han.intake_approve("1", "00" * 16)
    with pytest.raises(ConfigError, match="no single proposed answer"):
        han.intake_approve("1", "")


async def test_blocking_files_later_requests_from_that_contact(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, han = await opened_intake(tmp_path, relay)
    await submit(relay, ri, "other", "Hi", "first", "pest@example.org")
    await settle(ri, han)
    ri.intake_block("1")
    await settle(ri, han)
    await submit(relay, ri, "other", "Hi again", "second", "pest@example.org")
    await submit(relay, ri, "other", "Hello", "from someone else", "")
    await settle(ri, han)
    for c in (ri, han):
        assert [i.state for i in c.intake_items()] == ["blocked", "blocked", "new"]


async def test_junk_in_the_intake_is_skipped_without_stalling(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, han = await opened_intake(tmp_path, relay)
    tenant = ri.mission().tenant_id
    # Cells a flooder stored directly (bypassing the relay's checks): not sealed to the card.
    await relay.store.intake_put(tenant, bytes(4096), 100, 0)
    await relay.store.intake_put(tenant, b"\x01" * 4096, 100, 0)
    await submit(relay, ri, "interview", "Real", "after the junk")
    await settle(ri, han)
    assert [i.subject for i in ri.intake_items()] == ["Real"]
    assert [i.subject for i in han.intake_items()] == ["Real"]


async def test_a_closed_intake_refuses_requests(tmp_path: Path, relay: InProcessRelay) -> None:
    ri, han = await opened_intake(tmp_path, relay)
    han.intake_set_open(False)
    await settle(han, ri)
    assert not ri.intake_is_open()
    assert not await relay.store.intake_is_open(ri.mission().tenant_id)
    with pytest.raises(public.RelayRefused, match="404"):
        await submit(relay, ri, "interview", "Late", "too late")


async def test_closing_withholds_a_sent_answer_and_the_submitter_is_told_it_is_closed(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, han = await opened_intake(tmp_path, relay)
    code = await submit(relay, ri, "interview", "Interview", "Ten minutes?")
    await settle(ri, han)
    han.intake_answer("1", "Yes: Thursday at ten.")
    await settle(ri, han)
    [proposal] = ri.intake_item("1").proposals
    ri.intake_approve("1", proposal.answer_id.hex())
    await settle(ri, han)
    assert await check(relay, ri, code) == "Yes: Thursday at ten."
    # Closed: the answer already sent is withheld, and the submitter is told why,
    # not that there is no answer.
    han.intake_set_open(False)
    await settle(han, ri)
    assert not await relay.store.intake_is_open(ri.mission().tenant_id)
    with pytest.raises(IntakeClosed, match="intake is closed") as closed:
        await check(relay, ri, code)
    assert "not even one already sent" in str(closed.value)
    # An unknown code while closed is told the same (the relay shows nothing while closed).
    other = pi.format_reply_code(pi.new_reply_code(secrets.token_bytes))
    with pytest.raises(IntakeClosed):
        await check(relay, ri, other)
    # Opened again: the answer is there once more; an unknown code has none.
    ri.intake_set_open(True)
    await settle(ri, han)
    assert await check(relay, ri, code) == "Yes: Thursday at ten."
    assert await check(relay, ri, other) is None


async def test_an_answer_notice_whose_text_does_not_match_its_digest_is_set_aside(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    from backchannel.client.intake import INTAKE_NOTICE, INTAKE_VOTES
    from backchannel.protocol.codec import Writer

    ri, han = await opened_intake(tmp_path, relay)
    await submit(relay, ri, "interview", "Interview", "Ten minutes?")
    await settle(ri, han)
    rid = han.intake_items()[0].request_id
    forged = (
        Writer().fixed(INTAKE_NOTICE, len(INTAKE_NOTICE)).u8(1).fixed(rid, 16)
        .fixed(bytes(16), 16).var(b"Agreed.").bytes()
    )  # fmt: skip
    said = han._on_intake_notice(ri.officer.officer_id, forged)
    assert said is not None and "set aside" in said
    assert han.vault.items(INTAKE_VOTES) == [] and han.intake_items()[0].proposals == ()


async def test_a_colleagues_round_does_not_undo_the_opening(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    # The runner's device alone states the open state, in every round: a colleague's
    # device that has not yet heard of an opening does not close the intake again.
    (ri, han), _ = await two_missions(tmp_path, relay)
    assert ri.is_runner and not han.is_runner
    tenant = ri.mission().tenant_id
    ri.intake_set_open(True)
    await ri.sync(1)
    assert await relay.store.intake_is_open(tenant)
    assert not han.intake_is_open()  # not yet heard of it
    await han.sync(1)
    assert await relay.store.intake_is_open(tenant)
    # An opening decided on the colleague's device reaches the relay through the
    # runner's: closing there, then the rounds carry it.
    han_knows = False
    for _ in range(16):
        await han.sync(1)
        await ri.sync(1)
        han_knows = han_knows or han.intake_is_open()
        if han_knows:
            break
    assert han_knows
    han.intake_set_open(False)
    await han.sync(1)
    assert await relay.store.intake_is_open(tenant)  # his device states nothing
    for _ in range(16):
        await han.sync(1)
        await ri.sync(1)
        if not await relay.store.intake_is_open(tenant):
            break
    assert not ri.intake_is_open() and not await relay.store.intake_is_open(tenant)


async def test_a_submitters_requests_carry_no_user_agent(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """The CLI's requests to the relay carry no User-Agent (it would name his
    software and its version)."""
    ri, _ = await opened_intake(tmp_path, relay)
    seen: list[httpx.Request] = []

    class Recording(httpx.ASGITransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return await super().handle_async_request(request)

    card = public.read_card(ri.intake_card().to_text())
    recording = Recording(app=relay.app, client=("203.0.113.7", 40000))
    sent = await public.submit(
        card, public.Kind.parse("interview"), "Hello", "Ten minutes?", "", transport=recording
    )
    assert await public.check(card, sent.reply_code, transport=recording) is None
    assert [r.method for r in seen] == ["GET", "POST", "GET"]
    assert not [r for r in seen if "user-agent" in r.headers]


async def test_a_home_from_before_the_intake_index_reads_the_switch_from_its_log(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    # The round asks whether the intake is open from the intake's own index of
    # the log, not from the whole log; a home whose log was written before that
    # index existed (no flag) builds it at its first read.
    from backchannel.client.audit import AUDIT, AUDIT_INDEXED, AUDIT_INTAKE

    ri, han = await opened_intake(tmp_path, relay)
    for c in (ri, han):
        indexed = c.vault.items(AUDIT_INTAKE)
        assert len(indexed) == 1 and set(indexed) <= set(c.vault.items(AUDIT))
        c.vault.delete(AUDIT_INTAKE, indexed[0][0])
        assert not c.intake_is_open()  # the index is what it reads
        c.vault.delete(AUDIT_INDEXED, b"intake")
        assert c.intake_is_open()
        assert c.vault.items(AUDIT_INTAKE) == indexed
