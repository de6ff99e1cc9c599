"""The two roles' state machines, each as one transition table.

Sending (one outgoing message, on the author's and co-signers' devices)::

    DRAFT --seal--> SEALED --cosign--> SEALED --threshold--> COSIGNED
    COSIGNED --queue--> QUEUED --deliver--> DELIVERED
    DRAFT|SEALED|COSIGNED --reject--> REJECTED  (COSIGNED: withdrawn before it was queued)

Sealing comes before co-signing (the sketch in DESIGN.md orders them the other
way): co-signatures cover the ciphertext and the key shares, so there must be
a ciphertext to sign; the co-signer checks that it decrypts to the plaintext
he was shown. Diagrams: ``docs/state-machines/*.dot``.

Receiving (one incoming message, on each recipient officer's device)::

    RECEIVING --fragment--> RECEIVING --complete--> RECEIVED
    RECEIVED --share--> GATHERING --share--> GATHERING --threshold--> OPENED
    RECEIVING|RECEIVED|GATHERING --refuse--> REFUSED
"""

from __future__ import annotations

from enum import Enum

from backchannel.errors import LocalProtocolError


class SendState(Enum):
    DRAFT = "draft"
    SEALED = "sealed"
    COSIGNED = "cosigned"
    QUEUED = "queued"
    DELIVERED = "delivered"
    REJECTED = "rejected"


class SendEvent(Enum):
    SEAL = "seal"
    COSIGN = "cosign"
    THRESHOLD = "threshold"
    QUEUE = "queue"
    DELIVER = "deliver"
    REJECT = "reject"


class RecvState(Enum):
    RECEIVING = "receiving"
    RECEIVED = "received"
    GATHERING = "gathering"
    OPENED = "opened"
    REFUSED = "refused"


class RecvEvent(Enum):
    FRAGMENT = "fragment"
    COMPLETE = "complete"
    SHARE = "share"
    THRESHOLD = "threshold"
    REFUSE = "refuse"


SEND_TRANSITIONS: dict[tuple[SendState, SendEvent], SendState] = {
    (SendState.DRAFT, SendEvent.SEAL): SendState.SEALED,
    (SendState.SEALED, SendEvent.COSIGN): SendState.SEALED,
    (SendState.SEALED, SendEvent.THRESHOLD): SendState.COSIGNED,
    (SendState.COSIGNED, SendEvent.QUEUE): SendState.QUEUED,
    (SendState.QUEUED, SendEvent.DELIVER): SendState.DELIVERED,
    (SendState.DRAFT, SendEvent.REJECT): SendState.REJECTED,
    (SendState.SEALED, SendEvent.REJECT): SendState.REJECTED,
    (SendState.COSIGNED, SendEvent.REJECT): SendState.REJECTED,
}

RECV_TRANSITIONS: dict[tuple[RecvState, RecvEvent], RecvState] = {
    (RecvState.RECEIVING, RecvEvent.FRAGMENT): RecvState.RECEIVING,
    (RecvState.RECEIVING, RecvEvent.COMPLETE): RecvState.RECEIVED,
    (RecvState.RECEIVED, RecvEvent.SHARE): RecvState.GATHERING,
    (RecvState.GATHERING, RecvEvent.SHARE): RecvState.GATHERING,
    (RecvState.GATHERING, RecvEvent.THRESHOLD): RecvState.OPENED,
    (RecvState.RECEIVING, RecvEvent.REFUSE): RecvState.REFUSED,
    (RecvState.RECEIVED, RecvEvent.REFUSE): RecvState.REFUSED,
    (RecvState.GATHERING, RecvEvent.REFUSE): RecvState.REFUSED,
}


def send_transition(state: SendState, event: SendEvent) -> SendState:
    try:
        return SEND_TRANSITIONS[(state, event)]
    except KeyError:
        raise LocalProtocolError(f"cannot {event.value} a message that is {state.value}") from None


def recv_transition(state: RecvState, event: RecvEvent) -> RecvState:
    try:
        return RECV_TRANSITIONS[(state, event)]
    except KeyError:
        raise LocalProtocolError(f"cannot {event.value} a message that is {state.value}") from None


def to_dot(
    name: str,
    table: dict[tuple[SendState, SendEvent], SendState]
    | dict[tuple[RecvState, RecvEvent], RecvState],
) -> str:
    """Graphviz source of a transition table (``docs/state-machines``)."""
    lines = [f"digraph {name} {{", "  rankdir=LR;"]
    for (src, ev), dst in table.items():
        lines.append(f'  {src.value} -> {dst.value} [label="{ev.value}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
