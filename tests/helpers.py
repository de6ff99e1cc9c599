"""Test-only tools for crafting what a malicious party would send."""

from __future__ import annotations

from backchannel.protocol import cells
from backchannel.protocol.endpoint import Endpoint
from backchannel.protocol.message import SealedMessage


def force_queue(endpoint: Endpoint, msg: SealedMessage, *, record: bool = True) -> None:
    """Queue ``msg`` as a modified client would: without the local signature check."""
    if record:
        endpoint.transcript = endpoint.transcript.record_sent(msg.header, msg.digest)
    endpoint.outbox.extend(
        cells.fragment(msg.encode(), msg.message_id, cells.fragment_capacity(4096))
    )
