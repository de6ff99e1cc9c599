"""An incoming message on a recipient's side: received, shares gathered, opened.

Each recipient officer decrypts only his own share of the content key
(:func:`backchannel.protocol.sealing.decrypt_share`) and hands it, encrypted,
to the officer who opens. Opening needs ``k`` distinct officers' shares.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from backchannel.crypto.sharing import Share
from backchannel.errors import NotEnoughShares
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.payload import Payload
from backchannel.protocol.roster import Roster
from backchannel.protocol.sealing import open_message
from backchannel.protocol.states import RecvEvent, RecvState, recv_transition


@dataclass(frozen=True, slots=True)
class Incoming:
    state: RecvState
    message: SealedMessage
    shares: tuple[Share, ...] = ()
    payload: Payload | None = None

    def __repr__(self) -> str:
        return f"Incoming({self.state.value}, seq={self.message.header.seq})"

    @classmethod
    def received(cls, message: SealedMessage) -> Incoming:
        return cls(RecvState.RECEIVED, message)

    def add_share(self, share: Share, roster: Roster) -> Incoming:
        """Add one officer's share; open once ``k`` distinct shares are in."""
        state = recv_transition(self.state, RecvEvent.SHARE)
        shares = (*(s for s in self.shares if s.index != share.index), share)
        out = replace(self, state=state, shares=shares)
        if len(shares) < roster.threshold:
            return out
        payload = open_message(self.message, shares, roster)
        return replace(
            out, state=recv_transition(state, RecvEvent.THRESHOLD), payload=payload, shares=()
        )

    def open(self, roster: Roster) -> Payload:
        if self.payload is None:
            raise NotEnoughShares(
                f"{len(self.shares)} of the {roster.threshold} officers needed have contributed"
            )
        return self.payload

    def refuse(self) -> Incoming:
        return replace(self, state=recv_transition(self.state, RecvEvent.REFUSE))
