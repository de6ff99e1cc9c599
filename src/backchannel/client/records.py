"""Records the client keeps in its encrypted vault."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from backchannel.client import statecodec
from backchannel.protocol.channel import ChannelTerms
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.outgoing import Outgoing
from backchannel.protocol.sealing import SendEpoch
from backchannel.protocol.states import SendState

#: The states in which a deniable draft no longer needs its officers' signatures:
#: it went out (with the channel's MAC instead), or it never will.
_DONE = frozenset({SendState.QUEUED, SendState.DELIVERED, SendState.REJECTED})


@dataclass(frozen=True, slots=True)
class PeerRecord:
    mission_id: bytes
    name: str
    card: str
    safety_number: str
    confirmed: bool = False
    #: Epoch-key certificates its officers announced in a channel since the card
    #: (each checked there); the newer of these and the card's is sealed to.
    certs: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    channel_id: bytes
    peer_mission: bytes
    terms: ChannelTerms
    start_round: int
    send_epoch: SendEpoch | None = None
    epoch_no: int = 0
    announcements: tuple[tuple[bytes, bytes], ...] = ()
    alarms: tuple[str, ...] = ()
    #: When the send epoch started (this device's clock, seconds), and under which
    #: roster version of our own (0 for records kept before either was).
    epoch_started: int = 0
    epoch_own_roster: int = 0
    #: On a device that took over sending (``protocol-v1.md`` §7.8): the takeover,
    #: encoded, for our mission cards to carry until the peer has answered it.
    takeover: bytes = b""
    #: The base round of the latest takeover of the peer this device followed.
    peer_takeover: int = 0
    #: Whether the peer was a Track II contact (a roster of one) when the channel
    #: was paired: what it is, whatever the peer's roster becomes (None in records
    #: kept before this was: :meth:`Sending._peer_is_contact` decides then).
    peer_contact: bool | None = None

    def __repr__(self) -> str:
        return f"ChannelRecord({self.channel_id.hex()[:8]}, <secret>)"


@dataclass(frozen=True, slots=True)
class DraftRecord:
    draft_id: bytes
    channel_id: bytes
    outgoing: Outgoing
    created_at: int
    seq: int = 0
    #: The content key, kept for the record for a review board after the message
    #: itself forgets it (it opens this message only, whose text the draft holds).
    #: Empty for a deniable message once it has gone out (:meth:`without_proof`).
    record_key: bytes = field(default=b"", repr=False)
    #: Why the author's own device withdrew it (a rejected draft with none was
    #: refused by a colleague).
    withdrawn: str = ""
    #: How many officers had signed a deniable draft when its signatures were
    #: dropped (:meth:`without_proof`): the count, which proves nothing, for the
    #: desk to show.
    signers: int = 0

    def __repr__(self) -> str:
        return f"DraftRecord({self.outgoing.state.value})"

    @property
    def holds_proof(self) -> bool:
        """A deniable draft that went out (or was refused) and still holds what
        proves its authors to a third party: signatures over its digest, or the
        content key that would put it on the record (``deniable-v1.md`` §3)."""
        msg = self.outgoing.message
        return (
            msg is not None
            and msg.header.deniable
            and self.outgoing.state in _DONE
            and bool(msg.signatures or self.record_key)
        )

    def without_proof(self) -> DraftRecord:
        """What the sending device keeps of a deniable draft once it has gone out
        with the channel's MAC, or was refused: the message without its
        officers' signatures (its header, digest and text stay, which is all
        that receipts, the desk and drafting again read) and no record key (a
        deniable message never goes on the record). Any other draft, and one
        still awaiting its signatures (the two-person rule), is unchanged."""
        msg = self.outgoing.message
        if msg is None or not self.holds_proof:
            return self
        bare = replace(msg, signatures=())
        return replace(
            self,
            outgoing=replace(self.outgoing, message=bare),
            record_key=b"",
            signers=len(msg.signatures),
        )


@dataclass(frozen=True, slots=True)
class InboxRecord:
    message_id: bytes
    channel_id: bytes
    message: bytes
    received_round: int
    own_share: bytes = b""
    shares: tuple[bytes, ...] = ()
    payload: bytes = b""
    open_requested: bool = False
    #: It came with a MAC, not signatures: the sender could deny it (deniable-v1.md).
    deniable: bool = False
    #: Once opened, its content key (it opens this message only), kept so that the
    #: record for a review board can show what the signatures cover.
    content_key: bytes = field(default=b"", repr=False)

    def __repr__(self) -> str:
        return f"InboxRecord({self.message_id.hex()[:8]})"


@dataclass(frozen=True, slots=True)
class CosignRequest:
    request_id: bytes
    from_officer: bytes
    channel_id: bytes
    draft_id: bytes
    message: bytes
    content_key: bytes
    payload: bytes

    def __repr__(self) -> str:
        return "CosignRequest(<secret>)"

    @property
    def deniable(self) -> bool:
        """The author chose to send it deniably (its header, which the co-signer signs)."""
        return SealedMessage.decode(self.message).header.deniable


@dataclass(frozen=True, slots=True)
class ShareRequest:
    request_id: bytes
    from_officer: bytes
    channel_id: bytes
    message_id: bytes


@dataclass(frozen=True, slots=True)
class NetOut:
    """A cell to deposit: persisted before it is sent, removed once the relay holds it."""

    relay_url: str
    tenant_id: str
    slot: bytes = field(repr=False)
    cell: bytes = field(repr=False)
    #: The channel and round of a channel cell (empty for mailbox cells).
    channel_id: bytes = b""
    round: int = -1
    #: The lane the cell fills: ``b"ch" + channel id`` or ``b"mb" + colleague id``.
    lane: bytes = b""


def dump_out(out: NetOut) -> bytes:
    """A cell to deposit as the vault keeps it: the cell itself raw, beside the rest."""
    return statecodec.dumps_beside(replace(out, cell=b""), out.cell)


def load_out(kind: object, raw: bytes) -> NetOut:
    """A cell to deposit as :func:`dump_out` kept it, or as a record of JSON (before).

    ``kind`` is ignored: the signature is that of a vault's ``decode``."""
    out, cell = statecodec.loads_beside(NetOut, raw)
    return out if cell is None else replace(out, cell=cell)
