"""A new desk device taking a channel over (``protocol-v1.md`` §7.8), now or later.

When a roster change removes the officer whose device sent, the device of the
first officer who stays takes each channel over with the removal's re-key. A
channel that is moving to new keys at that moment (an earlier re-key still
under way, or one waiting for the peer's card) cannot be taken over yet: the
takeover waits here, with the seed and the signatures it needs, and every
round tries it again until the move has ended. Meanwhile the channel carries
nothing from this device (the engine leaves out a lane whose endpoint does
not send).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from backchannel.client import statecodec
from backchannel.client.audit import Audit
from backchannel.client.officer_alarms import MAX_DETAIL
from backchannel.client.records import ChannelRecord
from backchannel.errors import ConfigError, LocalProtocolError
from backchannel.protocol import rekey as rk
from backchannel.protocol.audit import AuditKind
from backchannel.protocol.endpoint import Endpoint
from backchannel.protocol.roster import SignedRoster

#: Channel id -> :class:`WaitingTakeover`.
WAITING = "takeovers_waiting"


@dataclass(frozen=True, slots=True)
class WaitingTakeover:
    """What a takeover needs once the channel's move to new keys has ended."""

    seed: bytes = field(repr=False)
    #: The removal's new roster, signed (``SignedRoster.encode()``).
    signed_roster: bytes
    #: The officers' signatures on this channel's re-key statement.
    signatures: tuple[tuple[bytes, bytes], ...]


class Takeovers(Audit):
    """Taking channels over on the new desk device."""

    def take_over_channel(
        self,
        rec: ChannelRecord,
        ep: Endpoint,
        signed: SignedRoster,
        signatures: tuple[tuple[bytes, bytes], ...],
        seed: bytes,
    ) -> None:
        """This device sends on ``rec`` from now on, on a chain the removed officer
        cannot derive, from the round it reads next; or, while the channel moves
        to new keys, once that has ended. The peer learns of it from our next
        mission card. ``ep`` is changed in place (the caller saves it)."""
        if ep.keys_moving:
            waiting = WaitingTakeover(seed, signed.encode(), signatures)
            self._put(WAITING, rec.channel_id, waiting)
            self._audit(
                AuditKind.CHANNEL_REKEYED, rec.channel_id,
                "this device takes the channel over once its move to new keys ends",
            )  # fmt: skip
            return
        try:
            peer = self._peer_card(rec.peer_mission)
            certs = rk.recipients(peer.certs, peer.roster, ep.peer_rekey_roster)
            base = max(ep.next_recv_round, ep.chain.round)
            rekey = rk.make_rekey(
                rec.channel_id, self.mission().mission_id, signed, base, seed, certs, signatures
            )
            ep.take_over(rekey, seed)
        except (LocalProtocolError, ConfigError) as exc:
            text = (
                f"channel with {rec.peer_mission.hex()[:8]}: this device cannot take it over: {exc}"
            )
            self._audit(AuditKind.ALARM, b"", text[:MAX_DETAIL])
            return
        self._put("channels", rec.channel_id, replace(rec, takeover=rekey.encode()))
        self._audit(
            AuditKind.CHANNEL_REKEYED,
            rec.channel_id,
            "this device now sends on the channel; hand the other mission our new card: "
            "it carries the move",
        )

    def retry_takeovers(self) -> None:
        """At the start of a round: the takeovers whose channel has ended its move."""
        for channel_id, raw in list(self.vault.items(WAITING)):
            ep = self._endpoint(channel_id)
            if ep.keys_moving:
                continue
            waiting = statecodec.loads(WaitingTakeover, raw)
            signed = SignedRoster.decode(waiting.signed_roster)
            with self._tx():
                self.vault.delete(WAITING, channel_id)
                current = self.mission().roster.version == signed.roster.version
                if current and self.is_runner and not ep.sends:
                    rec = self.channel(channel_id)
                    self.take_over_channel(rec, ep, signed, waiting.signatures, waiting.seed)
                    self._save_endpoint(channel_id, ep)
