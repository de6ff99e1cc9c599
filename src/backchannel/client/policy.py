"""The mission's policy on an officer's device: proposing, signing, adopting.

A change of policy (``protocol/policy.py``) goes the way of a co-signature:
the officer who proposes it signs it, and his device sends it to every
colleague's device through the mission mailbox (the rounds carry it; nothing
goes on the network of its own). Each colleague sees it on his desk, with an
alarm naming who proposed it, and signs it or leaves it; his signature goes to
every colleague the same way. Every device adopts the change once it holds the
signatures of ``k`` officers of the roster: nobody runs a separate step, and
one officer alone changes nothing. Each step is an audit entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from backchannel.client.missions import check_relay_url
from backchannel.client.officer_alarms import AlarmKind, OfficerAlarms
from backchannel.crypto.primitives import equal
from backchannel.errors import ConfigError, DecodeError
from backchannel.protocol import joint
from backchannel.protocol import policy as mp
from backchannel.protocol.audit import AuditKind
from backchannel.protocol.channel import Policy
from backchannel.protocol.witnessing import WitnessRule

#: The first bytes of the NOTICE that carries a signed policy change.
POLICY_NOTICE = b"policy"
#: Pending changes, by the hash of the proposed policy: the encoded SignedPolicy.
POLICY_PENDING = "policy_pending"


@dataclass(frozen=True, slots=True)
class PendingPolicy:
    """A proposed change as this device holds it."""

    policy: mp.MissionPolicy
    signed_by: tuple[str, ...]
    needed: int
    signed_by_me: bool
    #: In force on this device (it had its signatures).
    adopted: bool

    @property
    def ref(self) -> str:
        """How an officer names it (``mission policy sign REF``)."""
        return self.policy.hash.hex()[:8]


def witness_rule(vkeys: Iterable[str], needed: int | None, lag_minutes: int) -> WitnessRule:
    """The witness rule an officer asks for: witnesses' verifier keys (``name+id+key``),
    how many must cosign (None: every one named) and the lag in minutes; ConfigError
    with a plain reason otherwise."""
    try:
        keys = WitnessRule.of_vkeys([v for v in vkeys if v.strip()], 1).keys
        count = len({k.name for k in keys})
        return WitnessRule(keys, count if needed is None else needed, lag_minutes * 60)
    except DecodeError as exc:
        raise ConfigError(f"witnesses: {exc}") from None


def fallback_asked(url: str, key_hex: str) -> mp.FallbackRelay | None:
    """The fallback relay an officer's form or options name: None when they name
    none (the one in force stays); ConfigError when only one half is given."""
    url, key_hex = url.strip(), key_hex.strip()
    if not url and not key_hex:
        return None
    if not url or not key_hex:
        raise ConfigError(
            "the fallback relay needs both its address and its key fingerprint: they go together"
        )
    return fallback_relay(url, key_hex)


def fallback_relay(url: str, key_hex: str) -> mp.FallbackRelay:
    """The fallback relay an officer names: its address and its log key's fingerprint
    (64 hex digits, as its operator reads them out); ConfigError otherwise."""
    digits = "".join(key_hex.split())
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        key = b""
    if len(digits) != 64 or len(key) != 32:
        raise ConfigError(
            "fallback relay: the key fingerprint is 64 hex digits (`backchannel relay key` "
            "on the relay's machine prints it)"
        )
    check_relay_url(url)
    try:
        return mp.FallbackRelay(url.rstrip("/"), key)
    except DecodeError as exc:
        raise ConfigError(f"fallback relay: {exc}") from None


class Policies(OfficerAlarms):
    """The mission policy: what it allows, and changing it k of n."""

    def mission_policy(self) -> mp.MissionPolicy:
        return self.mission().policy

    def policy_propose(
        self,
        official: Iterable[Policy],
        track2_k: int,
        epoch_seconds: int | None = None,
        unseen_seconds: int | None = None,
        witnesses: WitnessRule | None = None,
        fallback: mp.FallbackRelay | None = None,
    ) -> PendingPolicy:
        """Propose the next policy, signed by this officer, to every colleague
        (``epoch_seconds``: the send epochs' period, ``unseen_seconds``: how long a
        colleague's device may be silent, ``witnesses``: whose cosignatures the
        devices ask of the relay's heads, ``fallback``: the relay to move to when
        the mission's is proven to lie; ``None`` keeps each)."""
        m = self.mission()
        if m.roster.is_contact:
            raise ConfigError("a Track II contact has no mission policy to change")
        try:
            new = mp.propose(
                m.policy, official, track2_k, m.roster, epoch_seconds, unseen_seconds, witnesses,
                fallback,
            )  # fmt: skip
        except (mp.PolicyError, DecodeError) as exc:
            raise ConfigError(str(exc)) from None
        if new.same_rules(m.policy):
            raise ConfigError("that is the policy in force already")
        signed = mp.sign(mp.SignedPolicy(m.mission_id, new), self.officer)
        with self._tx():
            self._keep_policy(signed)
            self._audit(AuditKind.POLICY_PROPOSED, new.hash, new.describe())
            self._send_policy(signed)
            self._adopt_policies()
        return self._pending(signed)

    def policy_pending(self) -> list[PendingPolicy]:
        """Changes waiting for signatures on this device, oldest version first."""
        held = [mp.SignedPolicy.decode(raw) for _, raw in self.vault.items(POLICY_PENDING)]
        return [self._pending(s) for s in sorted(held, key=lambda s: s.policy.version)]

    def policy_sign(self, ref: str) -> PendingPolicy:
        """Sign the pending change whose hash starts with ``ref`` (``PendingPolicy.ref``)."""
        hits = [
            mp.SignedPolicy.decode(raw)
            for key, raw in self.vault.items(POLICY_PENDING)
            if key.hex().startswith(ref.lower())
        ]
        if len(hits) != 1 or not ref:
            raise ConfigError(
                f"no single pending policy change matches {ref!r}; see `mission policy show`"
            )
        if self.officer.officer_id in hits[0].signers(self.mission().roster):
            raise ConfigError("you have signed this change already; a colleague must sign it")
        signed = mp.sign(hits[0], self.officer)
        with self._tx():
            self._keep_policy(signed)
            self._audit(AuditKind.POLICY_SIGNED, signed.policy.hash, signed.policy.describe())
            self._send_policy(signed)
            self._adopt_policies()
        return self._pending(signed)

    # --- between devices -----------------------------------------------------------------

    def _send_policy(self, signed: mp.SignedPolicy) -> None:
        body = POLICY_NOTICE + signed.encode()
        for o in self.colleagues():
            self._send_joint(joint.JointKind.NOTICE, o, body)

    def _on_policy_notice(self, sender: bytes, body: bytes) -> str | None:
        """A colleague's proposal or signature: kept with the signatures that verify."""
        m = self.mission()
        try:
            signed = mp.SignedPolicy.decode(body[len(POLICY_NOTICE) :])
        except DecodeError:
            return "a colleague's policy change could not be read and was set aside"
        if not equal(signed.mission_id, m.mission_id):
            return "a colleague sent another mission's policy change; set aside"
        good = signed.signers(m.roster)
        if sender not in good:
            return "a colleague's policy change lacks his own signature; set aside"
        if signed.policy.version <= m.policy.version:
            return None  # adopted already (or superseded): nothing to do
        new = signed.policy.hash not in {k for k, _ in self.vault.items(POLICY_PENDING)}
        with self._tx():
            self._keep_policy(
                mp.SignedPolicy(
                    signed.mission_id,
                    signed.policy,
                    tuple(s for s in signed.signatures if s[0] in good),
                )
            )
            if new:
                self._record(
                    sender,
                    AlarmKind.POLICY_PROPOSED,
                    f"{self._officer_name(sender)} proposed a policy change: "
                    f"{signed.policy.describe()}",
                )
            self._adopt_policies()
        return None

    def _keep_policy(self, signed: mp.SignedPolicy) -> None:
        key = signed.policy.hash
        raw = self.vault.get(POLICY_PENDING, key)
        if raw is not None:
            signed = mp.SignedPolicy.decode(raw).with_signatures(signed.signatures)
        self.vault.put(POLICY_PENDING, key, signed.encode())

    def _adopt_policies(self) -> None:
        """Adopt every pending change that follows and has its signatures; drop the stale."""
        while True:
            m = self.mission()
            held = [mp.SignedPolicy.decode(raw) for _, raw in self.vault.items(POLICY_PENDING)]
            for s in held:
                if s.policy.version <= m.policy.version or (
                    s.policy.roster_version != m.roster.version
                ):
                    self.vault.delete(POLICY_PENDING, s.policy.hash)
            ready = None
            for s in held:
                try:
                    mp.verify_next(m.policy, s, m.roster, m.mission_id)
                except mp.PolicyError:
                    continue
                ready = s
                break
            if ready is None:
                return
            # Only the signatures of the roster are kept in the record.
            good = ready.signers(m.roster)
            ready = replace(ready, signatures=tuple(s for s in ready.signatures if s[0] in good))
            self._put("mission", b"state", replace(m, policies=(*m.policies, ready.encode())))
            self.vault.delete(POLICY_PENDING, ready.policy.hash)
            self._audit(AuditKind.POLICY_ADOPTED, ready.policy.hash, ready.policy.describe())

    def _pending(self, signed: mp.SignedPolicy) -> PendingPolicy:
        m = self.mission()
        raw = self.vault.get(POLICY_PENDING, signed.policy.hash)
        held = mp.SignedPolicy.decode(raw) if raw is not None else signed
        good = held.signers(m.roster)
        names = tuple(o.name for o in m.roster.officers if o.officer_id in good)
        return PendingPolicy(
            held.policy, names, m.roster.threshold, self.officer.officer_id in good,
            m.policy.hash == held.policy.hash,
        )  # fmt: skip
