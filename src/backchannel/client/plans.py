"""What a round asks of a relay: the engine's deposit and fetch plans (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

from backchannel.client.mailbox import LaneWindow
from backchannel.client.records import NetOut
from backchannel.protocol.batch import Query


@dataclass(frozen=True)
class OutCell:
    entry_id: int
    out: NetOut = field(repr=False)


@dataclass(frozen=True)
class DepositPlan:
    relay_url: str
    cells: tuple[OutCell, ...]
    known_size: int
    #: A copy of cells that go to another relay too, to a relay the mission is
    #: leaving (relay_move.py): its answer is not taken in.
    mirror: bool = False


@dataclass(frozen=True)
class FetchPlan:
    relay_url: str
    tenant_id: str
    slots: tuple[bytes, ...] = field(repr=False)
    known_size: int
    queries: tuple[Query, ...]
    #: channel id -> {round: slot} of the window read.
    channels: dict[bytes, dict[int, bytes]] = field(repr=False)
    #: colleague id -> the slots of his lanes to us that this fetch reads.
    mailbox: dict[bytes, LaneWindow] = field(repr=False)
    #: A fetch from a relay the mission is leaving (relay_move.py): its cells
    #: are read (they authenticate themselves) but nothing it says is checked
    #: against its log, and the peer's gossip in them is not kept.
    unchecked: bool = False
