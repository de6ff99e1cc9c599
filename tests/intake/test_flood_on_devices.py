"""A flood of intake requests on the officers' devices: the runner's round
reads only the requests with an answer under way, however many the device
holds, and what the desk shows of the others is unchanged."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backchannel.client.intake import _CODES_INDEXED, INTAKE, INTAKE_CODES, INTAKE_OUT
from backchannel.client.service import Client
from backchannel.protocol import intake as pi
from tests.client.conftest import InProcessRelay
from tests.client.test_audit import settle
from tests.intake.test_triage import check, opened_intake, submit


def sealed(c: Client, n: int, code: bytes | None = None) -> list[bytes]:
    card = c.intake_card()
    return [
        pi.seal_request(
            card,
            pi.IntakeRequest(
                pi.Kind.INTERVIEW, f"Request {i}", "Ten minutes on the talks? " * 8, "",
                code or secrets.token_bytes(pi.REPLY_CODE_LEN),
            ),
        )
        for i in range(n)
    ]  # fmt: skip


def reads_of(c: Client, table: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each read of ``table`` on ``c``'s vault: 'list' or 'get'."""
    seen: list[str] = []

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def read(t: str, *args: Any, **kwargs: Any) -> Any:
            if t == table:
                seen.append(name)
            return real(t, *args, **kwargs)

        return read

    monkeypatch.setattr(c.vault, "items", spy("list", c.vault.items))
    monkeypatch.setattr(c.vault, "get", spy("get", c.vault.get))
    return seen


async def test_the_runners_round_reads_only_requests_with_an_answer_under_way(
    tmp_path: Path, relay: InProcessRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    ri, han = await opened_intake(tmp_path, relay)
    code = await submit(relay, ri, "interview", "Interview", "Ten minutes on the talks?")
    await settle(ri, han)
    # A flood the devices have drained: 300 more requests on the runner.
    cells = sealed(ri, 300)
    assert ri.take_intake(list(enumerate(cells, start=1000))) == 300
    assert len(ri.intake_items()) == 301
    ri.intake_answer("1", "Yes: Thursday at ten.")
    await settle(ri, han)

    # A round with nothing new: it lists no requests and reads one, the one
    # whose answer is under way (the runner checks it for its threshold).
    seen = reads_of(ri, INTAKE, monkeypatch)
    assert ri.take_intake([]) == 0
    assert seen == ["get"]
    monkeypatch.undo()

    # And it still does its work: approved by the second officer, the answer
    # goes out once, and the submitter reads it.
    [proposal] = han.intake_item("1").proposals
    han.intake_approve("1", proposal.answer_id.hex())
    for _ in range(2):
        await settle(ri, han)
    assert await check(relay, ri, code) == "Yes: Thursday at ten."
    assert ri.vault.pending(INTAKE_OUT) == []
    seen = reads_of(ri, INTAKE, monkeypatch)
    assert ri.take_intake([]) == 0
    assert seen == []  # sent: nothing under way any more


async def test_a_home_from_before_the_reply_code_index_still_files_duplicates(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, _ = await opened_intake(tmp_path, relay)
    code = secrets.token_bytes(pi.REPLY_CODE_LEN)
    first, other, later = sealed(ri, 1, code) + sealed(ri, 1) + sealed(ri, 1, code)
    assert ri.take_intake([(1, first), (2, other), (3, later)]) == 3
    expected = [(1, "new", None), (2, "new", None), (3, "duplicate", 1)]
    assert [(i.number, i.state, i.duplicate_of) for i in ri.intake_items()] == expected
    # What a home written before the index holds: the requests, no index.
    for key, _ in ri.vault.items(INTAKE_CODES):
        ri.vault.delete(INTAKE_CODES, key)
    ri.vault.delete("counters", _CODES_INDEXED)
    assert len(ri.vault.items(INTAKE)) == 3
    assert [(i.number, i.state, i.duplicate_of) for i in ri.intake_items()] == expected
    assert len(ri.vault.items(INTAKE_CODES)) == 2
