"""The transcript's checks one field at a time: each wrong field alone is caught.

The channel tests (tests/attacks/test_channel.py) replay, drop, reorder and
fork whole messages, where several fields are wrong at once; here each check
of :class:`Transcript` meets an input that is wrong in exactly one way.
"""

from __future__ import annotations

import pytest

from backchannel.errors import ForkDetected
from backchannel.protocol.message import Header, MessageKind
from backchannel.protocol.transcript import Transcript

CH, OTHER = bytes([1]) * 16, bytes([2]) * 16
DIGEST = bytes([9]) * 32


def _header(t: Transcript, **changes: object) -> Header:
    fields: dict[str, object] = {
        "kind": MessageKind.NOTE,
        "channel_id": CH,
        "direction": t.out_direction,
        **t.header_fields(),
        "sender_roster": 0,
        "recipient_roster": 0,
        "epoch_id": bytes(16),
        "chain_index": 0,
        "created_at": 0,
    }
    fields.update(changes)
    return Header(**fields)  # type: ignore[arg-type]


def test_our_next_message_is_recorded_and_a_stale_one_refused_for_either_field() -> None:
    t = Transcript.start(CH, 0)
    good = _header(t)
    t2 = t.record_sent(good, DIGEST)
    assert t2.next_seq == 2
    with pytest.raises(ForkDetected):
        t2.record_sent(_header(t2, seq=1), DIGEST)  # the seq alone is stale
    with pytest.raises(ForkDetected):
        t2.record_sent(_header(t2, prev_hash=t.sent[-1]), DIGEST)  # the hash alone


def test_a_message_in_our_own_direction_or_of_another_channel_is_refused() -> None:
    ours, theirs = Transcript.start(CH, 0), Transcript.start(CH, 1)
    incoming = _header(theirs)
    assert ours.accept(incoming, DIGEST).received_seq == 1
    with pytest.raises(ForkDetected, match="not from the peer"):
        ours.accept(_header(theirs, direction=0), DIGEST)  # the direction alone
    with pytest.raises(ForkDetected, match="not from the peer"):
        ours.accept(_header(theirs, channel_id=OTHER), DIGEST)  # the channel alone
