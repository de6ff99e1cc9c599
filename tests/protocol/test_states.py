"""The state machines: tables, diagrams in docs/, and refused transitions."""

from __future__ import annotations

from pathlib import Path

import pytest

from backchannel.errors import LocalProtocolError
from backchannel.protocol.states import (
    RECV_TRANSITIONS,
    SEND_TRANSITIONS,
    RecvEvent,
    RecvState,
    SendEvent,
    SendState,
    recv_transition,
    send_transition,
    to_dot,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "state-machines"


def test_diagrams_in_docs_match_the_tables() -> None:
    assert (DOCS / "sending.dot").read_text() == to_dot("sending", SEND_TRANSITIONS)
    assert (DOCS / "receiving.dot").read_text() == to_dot("receiving", RECV_TRANSITIONS)


def test_every_state_is_reachable_and_terminal_states_have_no_exit() -> None:
    for table, start, terminal in (
        (SEND_TRANSITIONS, SendState.DRAFT, {SendState.DELIVERED, SendState.REJECTED}),
        (RECV_TRANSITIONS, RecvState.RECEIVING, {RecvState.OPENED, RecvState.REFUSED}),
    ):
        reached = {start}
        frontier = [start]
        while frontier:
            s = frontier.pop()
            for (src, _), dst in table.items():  # type: ignore[attr-defined]
                if src == s and dst not in reached:
                    reached.add(dst)
                    frontier.append(dst)
        assert reached == set(type(start))
        assert not any(src in terminal for (src, _) in table)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (SendState.DRAFT, SendEvent.QUEUE),  # an unsigned draft cannot leave
        (SendState.SEALED, SendEvent.QUEUE),  # nor one signed by its author alone
        (SendState.DELIVERED, SendEvent.REJECT),
        (SendState.REJECTED, SendEvent.SEAL),
    ],
)
def test_refused_send_transitions(state: SendState, event: SendEvent) -> None:
    with pytest.raises(LocalProtocolError):
        send_transition(state, event)


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (RecvState.RECEIVED, RecvEvent.THRESHOLD),  # no opening without shares
        (RecvState.RECEIVING, RecvEvent.SHARE),
        (RecvState.OPENED, RecvEvent.SHARE),
    ],
)
def test_refused_receive_transitions(state: RecvState, event: RecvEvent) -> None:
    with pytest.raises(LocalProtocolError):
        recv_transition(state, event)
