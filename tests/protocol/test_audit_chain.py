"""The audit chain's core (protocol/audit.py) without a relay or a device: each
way an entry can be changed, dropped, reordered, moved or forked is named at
the entry it touched, and the encoding refuses what is malformed."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from backchannel.errors import DecodeError, SignatureError
from backchannel.protocol.audit import (
    AUDIT_VERSION,
    GENESIS,
    MAX_NOTE,
    MAX_SUBJECT,
    AuditEntry,
    AuditKind,
    ChainProblem,
    check_chain,
    check_fork,
)
from backchannel.protocol.identity import Officer
from tests.conftest import DetRng

MISSION = bytes(range(32))


@pytest.fixture
def ri(rng: DetRng) -> Officer:
    return Officer.generate("Ri", rng)


def _chain(officer: Officer, kinds: list[AuditKind]) -> list[AuditEntry]:
    out: list[AuditEntry] = []
    prev = GENESIS
    for n, kind in enumerate(kinds, start=1):
        e = AuditEntry.make(MISSION, officer, n, prev, 1000 + n, kind, bytes([n]) * 4, f"#{n}")
        out.append(e)
        prev = e.digest()
    return out


def _check(ri: Officer, entries: list[AuditEntry]) -> ChainProblem | None:
    return check_chain(
        MISSION, ri.officer_id, entries, lambda oid: ri.public if oid == ri.officer_id else None
    )


KINDS = [AuditKind.DRAFTED, AuditKind.COSIGNED, AuditKind.QUEUED, AuditKind.OPENED]


def test_an_honest_chain_checks_and_survives_encoding(ri: Officer) -> None:
    entries = _chain(ri, KINDS)
    assert _check(ri, entries) is None
    assert _check(ri, []) is None
    decoded = [AuditEntry.decode(e.encode()) for e in entries]
    assert decoded == entries and _check(ri, decoded) is None
    assert entries[0].prev == GENESIS and entries[1].prev == entries[0].digest()
    assert entries[0].encode()[0] == AUDIT_VERSION


def test_a_changed_entry_is_named(ri: Officer) -> None:
    entries = _chain(ri, KINDS)
    for field, value in (("note", "nothing happened"), ("at", 1), ("kind", AuditKind.REJECTED),
                         ("subject", b"other")):  # fmt: skip
        changed = [*entries]
        changed[2] = replace(entries[2], **{field: value})  # type: ignore[arg-type]
        assert _check(ri, changed) == ChainProblem(
            ri.officer_id, 3, "its signature does not verify (the entry was changed)"
        ), field
    # Changed and re-signed by someone else: his key is not the officer's.
    mallory = Officer.generate("Mallory", DetRng("mallory"))
    forged = AuditEntry.make(MISSION, mallory, 3, entries[1].digest(), 0, AuditKind.OPENED)
    forged = replace(forged, officer_id=ri.officer_id)
    problem = _check(ri, [*entries[:2], forged, *entries[3:]])
    assert problem is not None and problem.seq == 3


def test_a_dropped_or_reordered_entry_is_named(ri: Officer) -> None:
    entries = _chain(ri, KINDS)
    problem = _check(ri, [entries[0], entries[2], entries[3]])
    assert problem == ChainProblem(ri.officer_id, 2, "missing (the next entry held is 3)")
    # Renumbered to hide the gap: the link to the entry before breaks.
    renumbered = AuditEntry.make(MISSION, ri, 2, entries[1].prev, 5, AuditKind.OPENED)
    problem = _check(ri, [entries[0], renumbered, entries[2]])
    assert problem == ChainProblem(
        ri.officer_id, 3, "does not follow the entry before it (changed, dropped or reordered)"
    )
    swapped = [entries[1], entries[0]]
    problem = _check(ri, swapped)
    assert problem is not None and problem.seq == 1 and "missing" in problem.reason
    first_again = AuditEntry.make(MISSION, ri, 1, bytes([1]) * 32, 1, AuditKind.DRAFTED)
    problem = _check(ri, [first_again])
    assert problem is not None and problem.seq == 1 and "does not follow" in problem.reason


def test_an_entry_of_another_officer_or_mission_or_an_unknown_key_is_named(
    ri: Officer, rng: DetRng
) -> None:
    han = Officer.generate("Han", rng)
    entries = _chain(ri, KINDS)
    other_mission = AuditEntry.make(bytes(32), ri, 2, entries[0].digest(), 0, AuditKind.OPENED)
    problem = _check(ri, [entries[0], other_mission])
    assert problem == ChainProblem(ri.officer_id, 2, "names another officer or mission")
    his = _chain(han, KINDS[:1])
    problem = _check(ri, his)
    assert problem == ChainProblem(ri.officer_id, 1, "names another officer or mission")
    unknown = check_chain(MISSION, ri.officer_id, entries, lambda oid: None)
    assert unknown is not None and unknown.seq == 1 and "no roster version" in unknown.reason
    assert str(unknown).startswith(f"entry 1 of officer {ri.officer_id.hex()[:12]}: ")


def test_a_fork_is_a_proof_and_nothing_else_is(ri: Officer, rng: DetRng) -> None:
    entries = _chain(ri, KINDS)
    told_han = AuditEntry.make(MISSION, ri, 3, entries[1].digest(), 9, AuditKind.REJECTED)
    assert check_fork(entries[2], told_han, ri.public)
    assert check_fork(told_han, entries[2], ri.public)
    # The same entry twice, two numbers, two missions: no fork.
    assert not check_fork(entries[2], AuditEntry.decode(entries[2].encode()), ri.public)
    assert not check_fork(entries[2], entries[3], ri.public)
    elsewhere = AuditEntry.make(bytes(32), ri, 3, entries[1].digest(), 9, AuditKind.REJECTED)
    assert not check_fork(entries[2], elsewhere, ri.public)
    # An entry someone else signed in his name proves nothing against him.
    mallory = Officer.generate("Mallory", rng)
    fake = replace(
        AuditEntry.make(MISSION, mallory, 3, entries[1].digest(), 9, AuditKind.REJECTED),
        officer_id=ri.officer_id,
    )
    assert not check_fork(entries[2], fake, ri.public)
    assert not check_fork(fake, entries[2], ri.public)
    with pytest.raises(SignatureError, match="another officer"):
        entries[0].verify(mallory.public)


def test_malformed_entries_are_refused(ri: Officer) -> None:
    e = _chain(ri, KINDS[:1])[0]
    raw = e.encode()
    with pytest.raises(DecodeError):
        AuditEntry.decode(raw[:-1])
    with pytest.raises(DecodeError):
        AuditEntry.decode(raw + b"\x00")
    with pytest.raises(DecodeError):
        AuditEntry.decode(bytes([AUDIT_VERSION + 1]) + raw[1:])
    kind_at = 1 + 32 + 16 + 8 + 32 + 8
    assert raw[kind_at] == AuditKind.DRAFTED
    with pytest.raises(DecodeError, match="unknown kind"):
        AuditEntry.decode(raw[:kind_at] + b"\xff" + raw[kind_at + 1 :])
    zero = replace(e, seq=0)
    with pytest.raises(DecodeError, match="numbered from 1"):
        AuditEntry.decode(zero.encode())
    # The limits are inclusive.
    AuditEntry.make(MISSION, ri, 1, GENESIS, 0, AuditKind.ALARM, b"s" * MAX_SUBJECT, "n" * MAX_NOTE)
    with pytest.raises(DecodeError, match="too long"):
        AuditEntry.make(MISSION, ri, 1, GENESIS, 0, AuditKind.ALARM, b"s" * (MAX_SUBJECT + 1))
    with pytest.raises(DecodeError, match="too long"):
        AuditEntry.make(MISSION, ri, 1, GENESIS, 0, AuditKind.ALARM, b"", "n" * (MAX_NOTE + 1))
    long_note = replace(e, note="n" * (MAX_NOTE + 1))
    with pytest.raises(DecodeError):
        AuditEntry.decode(long_note.encode())


def test_an_entrys_digest_is_the_specifications(ri: Officer) -> None:
    """digest = SHA-256("…/audit/entry" || entry) (docs/spec/audit-v1.md)."""
    e = _chain(ri, KINDS[:1])[0]
    want = hashlib.sha256(b"backchannel/v1/audit/entry" + e.encode()).digest()
    assert e.digest() == want
