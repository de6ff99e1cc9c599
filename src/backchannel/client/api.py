"""The client's public vocabulary for adapters (the CLI, the officers' desk).

Adapters import the client, never the protocol core or the stores: the types
they show or build (a message's payload and kind, a channel offer and its
text file form, a roster), the offline check of a proof of relay misbehaviour and of
an audit record come from here.
"""

from __future__ import annotations

from backchannel.client.audit import RecordCheck, verify_record
from backchannel.client.cards import decode_offer, encode_offer
from backchannel.client.intake import INTAKE_STATES, TO_TRIAGE
from backchannel.protocol.channel import ChannelOffer, Policy
from backchannel.protocol.evidence import (
    evidence_from_text,
    evidence_kind,
    evidence_relay,
    verify_misbehaviour,
)
from backchannel.protocol.payload import REQUIRED_FIELDS, MessageKind, Payload
from backchannel.protocol.policy import NO_FALLBACK, FallbackRelay
from backchannel.protocol.roster import Roster
from backchannel.protocol.states import SendState
from backchannel.protocol.witnessing import DEFAULT_LAG_SECONDS, NO_WITNESSES, WitnessRule

__all__ = [
    "DEFAULT_LAG_SECONDS",
    "INTAKE_STATES",
    "NO_FALLBACK",
    "NO_WITNESSES",
    "REQUIRED_FIELDS",
    "TO_TRIAGE",
    "ChannelOffer",
    "FallbackRelay",
    "MessageKind",
    "Payload",
    "Policy",
    "RecordCheck",
    "Roster",
    "SendState",
    "WitnessRule",
    "decode_offer",
    "encode_offer",
    "evidence_from_text",
    "evidence_kind",
    "evidence_relay",
    "verify_misbehaviour",
    "verify_record",
]
