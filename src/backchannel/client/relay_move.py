"""Leaving a relay proven to lie, for the fallback relay the mission's policy names.

A relay caught in a lie it signed (a kept proof of misbehaviour, ``log_watch``)
is no longer the mission's relay when the policy (k of n) names a fallback
(``docs/spec/policy-v1.md`` §7). The device that holds the proof, at the start
of its next round:

* makes the fallback the mission's relay: it registers the mission's tenant
  there and pins the relay's key, which must be the one the policy names; the
  mailbox, the intake's answers, the checks and the fetches go there from then on;
* sends the proof to every colleague's device (a mailbox notice); a colleague's
  device checks it as anyone would (it must hold, and name the key pinned for
  the mission's relay) and moves too. A notice without a valid proof moves
  nothing: one officer cannot send the mission elsewhere;
* keeps reading the old relay, without checking it, for what was left there:
  the peer deposits there until its officers add the mission card that names
  the new relay (``backchannel mission card``; status says so), and a
  colleague's device deposits there until it has moved. Until then the
  device also copies its mailbox cells to the old relay.

The move ends when every channel's peer and every colleague has been seen at
the new relay. Without a fallback in the policy the device keeps the relay
(nothing else would carry the mission's traffic) and one alarm says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from backchannel.client.audit import Audit
from backchannel.client.plans import FetchPlan
from backchannel.client.rewind import Rewind
from backchannel.crypto.primitives import equal
from backchannel.errors import DecodeError, RemoteProtocolError
from backchannel.protocol import joint
from backchannel.protocol.audit import AuditKind
from backchannel.protocol.evidence import evidence_relay, verify_misbehaviour

#: The first bytes of the mailbox notice that carries the proof a colleague moved on.
MOVE_NOTICE = b"relay-move"
#: Where the move under way is kept (table "mission").
_MOVE = b"relay-move"
#: The relay url for which "no fallback" was said once already (table "mission").
_NO_FALLBACK_SAID = b"relay-no-fallback"


@dataclass(frozen=True, slots=True)
class RelayMove:
    """A move away from a relay proven to lie, while something may still be left there."""

    old_url: str
    old_tenant: str
    old_credential: str = field(repr=False)
    #: Channels whose peer has not been seen depositing at the new relay yet.
    channels: tuple[bytes, ...] = ()
    #: Colleagues whose devices have not been seen at the new relay yet.
    colleagues: tuple[bytes, ...] = ()
    #: The new relay holds the mission's tenant and its key is pinned.
    registered: bool = False

    @property
    def reads_old(self) -> bool:
        return bool(self.channels or self.colleagues)


class RelayMoves(Rewind, Audit):
    """Leaving the mission's relay once it is proven to lie (``policy-v1.md`` §7)."""

    def relay_move(self) -> RelayMove | None:
        move: RelayMove | None = self._get("mission", _MOVE, RelayMove)
        return move

    def _proof_against(self, url: str) -> bytes | None:
        """A kept proof of misbehaviour against the relay pinned for ``url``."""
        pinned = self.log.fingerprint(url)
        return None if pinned is None else self._proof_naming(pinned)

    def _proof_naming(self, fingerprint: bytes) -> bytes | None:
        """A kept proof of misbehaviour against the relay key with ``fingerprint``."""
        for blob in self.log.evidence():
            try:
                if equal(evidence_relay(blob), fingerprint):
                    return blob
            except DecodeError:
                continue
        return None

    def leave_condemned(self, alarms: list[str]) -> None:
        """At the start of a round: leave the mission's relay if a kept proof condemns it."""
        m = self.mission_or_none()
        if m is None or self.relay_move() is not None:
            return
        proof = self._proof_against(m.relay_url)
        if proof is not None:
            self._move_to_fallback(proof, alarms)

    def _move_to_fallback(self, proof: bytes, alarms: list[str]) -> None:
        m = self.mission()
        fallback = m.policy.fallback
        if not fallback.named or fallback.url == m.relay_url:
            if self.vault.get("mission", _NO_FALLBACK_SAID) != m.relay_url.encode():
                self.vault.put("mission", _NO_FALLBACK_SAID, m.relay_url.encode())
                self.log.alarm(
                    m.relay_url,
                    "the relay is proven to lie and the mission's policy names no other relay "
                    "to move to: the devices go on using it (nothing else carries the "
                    "mission's traffic); k officers can name one with `backchannel mission "
                    "policy propose --fallback-relay URL --fallback-key FINGERPRINT`",
                    alarms,
                )
            return
        move = RelayMove(
            m.relay_url, m.tenant_id, m.credential,
            tuple(c.channel_id for c in self.channels()), tuple(self.colleagues()),
        )  # fmt: skip
        old_key = self.log.fingerprint(m.relay_url) or bytes(32)
        with self._tx():
            self._put("mission", _MOVE, move)
            self._put("mission", b"state", replace(m, relay_url=fallback.url))
            self._stop_search(m.relay_url, alarms)
            for o in self.colleagues():
                self._send_joint(joint.JointKind.NOTICE, o, MOVE_NOTICE + proof)
            self._audit(
                AuditKind.RELAY_LEFT, old_key,
                f"began leaving {m.relay_url}, proven to lie, for {fallback.url}",
            )  # fmt: skip
        self.log.alarm(
            move.old_url,
            f"the relay is proven to lie: the mission now receives at {fallback.url}, as its "
            "policy says; give each peer mission our new card (`backchannel mission card`)",
            alarms,
        )

    def _on_move_notice(self, sender: bytes, body: bytes) -> str | None:
        """A colleague's device moved: follow it if its proof condemns our relay."""
        blob = body[len(MOVE_NOTICE) :]
        m = self.mission()
        try:
            verify_misbehaviour(blob)
            names = evidence_relay(blob)
        except (DecodeError, RemoteProtocolError):
            return "a colleague's proof against the relay does not hold; nothing moved"
        if self._proof_naming(names) is not None:
            return None  # this device knows of that lie already, and acted on it
        pinned = self.log.fingerprint(m.relay_url)
        if pinned is None or not equal(pinned, names):
            return "a colleague's proof names another relay than ours; nothing moved"
        alarms: list[str] = []
        with self._tx():
            self.log.keep(m.relay_url, blob, alarms)
            if self.relay_move() is None:
                self._move_to_fallback(blob, alarms)
        return None

    # --- the rounds of a move ------------------------------------------------------------

    def registered_at_fallback(self) -> None:
        move = self.relay_move()
        if move is not None:
            self._put("mission", _MOVE, replace(move, registered=True))

    def old_fetch_plan(self, plan: FetchPlan) -> FetchPlan | None:
        """``plan`` aimed at the relay being left, while something may be left there."""
        move = self.relay_move()
        if move is None or not move.reads_old:
            return None
        return replace(
            plan, relay_url=move.old_url, tenant_id=move.old_tenant, known_size=0, queries=(),
            unchecked=True,
        )  # fmt: skip

    def seen_at_new(self, plan: FetchPlan, cells: dict[bytes, bytes]) -> None:
        """Note who was seen at the new relay in a fetch of it; end the move when all were."""
        move = self.relay_move()
        if move is None or plan.unchecked or not plan.slots:
            return  # not a fetch of the new relay's slots
        channels = tuple(
            c
            for c in move.channels
            if c in plan.channels and not any(s in cells for s in plan.channels[c].values())
        )
        colleagues = tuple(
            o
            for o in move.colleagues
            if o in plan.mailbox and not any(s in cells for s in plan.mailbox[o].slots)
        )
        if channels or colleagues:
            if (channels, colleagues) != (move.channels, move.colleagues):
                self._put("mission", _MOVE, replace(move, channels=channels, colleagues=colleagues))
            return
        with self._tx():
            self.vault.delete("mission", _MOVE)
            self._audit(
                AuditKind.RELAY_LEFT, self.log.fingerprint(move.old_url) or bytes(32),
                f"finished leaving {move.old_url}: every peer and colleague is at "
                f"{self.mission().relay_url}",
            )  # fmt: skip

    def mirrored_lanes(self) -> tuple[str, str] | None:
        """(old relay, tenant) to which this round's mailbox cells are copied, if any."""
        move = self.relay_move()
        if move is None or not move.colleagues:
            return None
        return move.old_url, move.old_tenant
