"""An outgoing message through its life: draft, sealed, co-signed, queued, delivered.

The author seals and signs; each co-signer is given the sealed message, the
content key and the plaintext, checks on his own device that the ciphertext
carries exactly that plaintext, and only then signs. The content key is erased
from the state once the message is co-signed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from backchannel.errors import LocalProtocolError
from backchannel.protocol.identity import Officer, Rng
from backchannel.protocol.message import Header, SealedMessage
from backchannel.protocol.payload import Payload
from backchannel.protocol.roster import Roster
from backchannel.protocol.sealing import SendEpoch, check_draft, seal, sign, valid_signers
from backchannel.protocol.states import SendEvent, SendState, send_transition


@dataclass(frozen=True, slots=True)
class Outgoing:
    state: SendState
    payload: Payload
    message: SealedMessage | None = None
    content_key: bytes | None = None

    def __repr__(self) -> str:
        return f"Outgoing({self.state.value}, {self.payload!r})"

    @classmethod
    def draft(cls, payload: Payload) -> Outgoing:
        return cls(SendState.DRAFT, payload)

    @property
    def on_its_way(self) -> bool:
        """Queued for the rounds or delivered: sending it again is nothing to do."""
        return self.state in (SendState.QUEUED, SendState.DELIVERED)

    def _to(self, event: SendEvent, **changes: object) -> Outgoing:
        return replace(self, state=send_transition(self.state, event), **changes)  # type: ignore[arg-type]

    def seal(
        self,
        header: Header,
        epoch: SendEpoch,
        recipients: Roster,
        author: Officer,
        sender_roster: Roster,
        rng: Rng,
        ahead: Sequence[SealedMessage] = (),
    ) -> tuple[Outgoing, SendEpoch]:
        """Seal and sign; ``ahead``: the messages this one cannot go out before
        (:func:`~backchannel.protocol.sealing.seal`)."""
        send_transition(self.state, SendEvent.SEAL)
        msg, key, new_epoch = seal(header, self.payload, epoch, recipients, rng, ahead)
        msg = sign(msg, author, sender_roster)
        return self._to(SendEvent.SEAL, message=msg, content_key=key), new_epoch

    def cosign(self, officer: Officer, sender_roster: Roster) -> Outgoing:
        """``officer`` checks the ciphertext against the plaintext, then signs."""
        send_transition(self.state, SendEvent.COSIGN)
        if self.message is None or self.content_key is None:
            raise LocalProtocolError("nothing sealed to co-sign")
        check_draft(self.message, self.content_key, self.payload)
        others = valid_signers(self.message, sender_roster) - {officer.officer_id}
        msg = sign(self.message, officer, sender_roster)  # ours is fresh: no need to verify it
        out = self._to(SendEvent.COSIGN, message=msg)
        if len(others) + 1 >= sender_roster.threshold:
            out = out._to(SendEvent.THRESHOLD, content_key=None)
        return out

    def with_cosignature(
        self, message: SealedMessage, sender_roster: Roster, threshold: int | None = None
    ) -> Outgoing:
        """Take a co-signed copy back from another officer's device. ``threshold``:
        the signatures needed, where the mission's policy sets them (a deniable
        message to a Track II contact); the roster's ``k`` otherwise."""
        if self.message is None or message.digest != self.message.digest:
            raise LocalProtocolError("the co-signed message is not the one sealed")
        if threshold is not None and not message.header.deniable:
            raise LocalProtocolError("only a deniable message can go out under another k")
        k = sender_roster.threshold if threshold is None else threshold
        out = self._to(SendEvent.COSIGN, message=message)
        if len(valid_signers(message, sender_roster)) >= k:
            out = out._to(SendEvent.THRESHOLD, content_key=None)
        return out

    def queue(self) -> Outgoing:
        return self._to(SendEvent.QUEUE)

    def deliver(self) -> Outgoing:
        return self._to(SendEvent.DELIVER)

    def reject(self) -> Outgoing:
        return self._to(SendEvent.REJECT, content_key=None)
