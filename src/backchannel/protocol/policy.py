"""A mission's policy: standing rules its officers set together, k of n.

The roster says who the officers are and how many must act together; the
policy says what the mission's channels may carry:

- ``official``: the channel policies (:class:`~.channel.Policy`) the mission may
  agree with another mission: for the record only by default; a mission that
  also wants deniable messages on official channels says so here.
- ``track2_k``: how many officers sign a message to a Track II contact (a
  channel with a roster of one). ``0`` means the roster's ``k``; ``1`` lets one
  officer speak to a contact alone, as Track II meetings are held in person.
  Only deniable messages can go out under it (the contact checks a MAC, not the
  mission's signatures); reading what a contact writes always takes the
  roster's ``k``.
- ``epoch_seconds``: how long a channel's send epoch (the keys that seal its
  messages to the peer) lasts before it renews itself: a day by default, from
  an hour to a week. A shorter period closes sooner what a copy of the sending
  device opens; each renewal costs the next message an announcement.
- ``unseen_seconds``: how long a colleague's device may send nothing before
  the others get an alarm: a day by default, from an hour to thirty days.
- ``witnesses``: the witnesses whose cosignatures the mission's devices ask
  of the relay's log heads (:class:`~.witnessing.WitnessRule`): none by
  default.
- ``fallback``: the relay the mission moves to when its own is proven to lie
  (:class:`FallbackRelay`: its address and its log key's fingerprint): none by
  default.

Like the roster, the policy is versioned and chained: version ``v + 1`` names
the hash of version ``v`` and takes effect only with the hybrid signatures of
``k`` officers of the current roster, over the mission id and the policy. Version
0 is the default above and needs no signature. The policy stays inside the
mission (officers' devices exchange it in the mission mailbox); a peer learns
of it only what a channel offer or a message shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from backchannel.crypto import labels
from backchannel.crypto.primitives import HASH_LEN, equal, sha256
from backchannel.errors import DecodeError, RosterError
from backchannel.protocol.channel import Policy
from backchannel.protocol.codec import Reader, Writer
from backchannel.protocol.constants import MAX_OFFICERS
from backchannel.protocol.identity import Officer
from backchannel.protocol.roster import Roster, read_signatures, signers, write_signatures
from backchannel.protocol.witnessing import NO_WITNESSES, WitnessRule

_VERSION = 1
#: The layout of a policy whose periods are not both the default (version 1's, then
#: the epoch period and the unseen period).
_VERSION_EPOCH = 2
#: The layout of a policy that names witnesses (version 2's, then the witness rule).
_VERSION_WITNESS = 3
#: The layout of a policy that names a fallback relay (version 2's, the witness
#: rule, named or not, then the fallback relay).
_VERSION_FALLBACK = 4
#: Longest relay address a policy names.
MAX_URL_LEN = 512
#: Longest encoded policy (eight ML-DSA-44 witness keys fit).
MAX_POLICY_LEN = 16_384
#: A channel's send epoch: a day unless the policy says otherwise, an hour to a week.
DEFAULT_EPOCH_SECONDS = 86_400
MIN_EPOCH_SECONDS = 3_600
MAX_EPOCH_SECONDS = 7 * 86_400
#: A colleague's device unseen this long raises an alarm: a day, an hour to 30 days.
DEFAULT_UNSEEN_SECONDS = 86_400
MIN_UNSEEN_SECONDS = 3_600
MAX_UNSEEN_SECONDS = 30 * 86_400
ZERO_HASH = bytes(HASH_LEN)
_ALL = frozenset(Policy)


class PolicyError(RosterError):
    """A policy change that does not follow, or lacks its signatures."""


@dataclass(frozen=True, slots=True)
class FallbackRelay:
    """The relay a mission moves to when its own is proven to lie.

    ``key_fingerprint`` is SHA-256 of that relay's log key (Ed25519 || ML-DSA-65,
    as mission cards state it): the devices pin it before they trust anything
    the relay says, so the address alone cannot send them to an impostor.
    The empty address (and no fingerprint) is the default: no fallback.
    """

    url: str = ""
    key_fingerprint: bytes = b""

    def __post_init__(self) -> None:
        if not self.url:
            if self.key_fingerprint:
                raise DecodeError("a fallback relay's key needs the relay's address")
            return
        if len(self.url) > MAX_URL_LEN or not self.url.startswith(("http://", "https://")):
            raise DecodeError("a fallback relay's address is http(s)://host[:port]")
        if len(self.key_fingerprint) != HASH_LEN:
            raise DecodeError("a fallback relay's key fingerprint is 32 bytes (SHA-256)")

    @property
    def named(self) -> bool:
        return bool(self.url)

    def write(self, w: Writer) -> None:
        w.text(self.url).fixed(self.key_fingerprint, HASH_LEN)

    @classmethod
    def read(cls, r: Reader) -> FallbackRelay:
        url = r.text(MAX_URL_LEN)
        if not url:
            raise DecodeError("a policy in layout 4 names a fallback relay")
        return cls(url, r.fixed(HASH_LEN))


NO_FALLBACK = FallbackRelay()


@dataclass(frozen=True, slots=True)
class MissionPolicy:
    """One version of a mission's policy (unsigned body)."""

    version: int = 0
    official: frozenset[Policy] = field(default=frozenset({Policy.RECORD}))
    track2_k: int = 0
    prev_hash: bytes = ZERO_HASH
    #: The roster version whose officers sign it (a change of roster while a
    #: policy change waits for signatures makes it stale: propose it again).
    roster_version: int = 0
    #: How long a channel's send epoch lasts before it renews itself.
    epoch_seconds: int = DEFAULT_EPOCH_SECONDS
    #: How long a colleague's device may send nothing before the others get an alarm.
    unseen_seconds: int = DEFAULT_UNSEEN_SECONDS
    #: The witnesses whose cosignatures the mission's devices ask for.
    witnesses: WitnessRule = NO_WITNESSES
    #: The relay the mission moves to when its own is proven to lie.
    fallback: FallbackRelay = NO_FALLBACK

    def __post_init__(self) -> None:
        if not self.official or not self.official <= _ALL:
            raise DecodeError("a policy allows at least one known kind of official channel")
        if not 0 <= self.track2_k <= MAX_OFFICERS:
            raise DecodeError(f"a Track II k is 0 (the roster's) or 1 to {MAX_OFFICERS}")
        if len(self.prev_hash) != HASH_LEN:
            raise DecodeError("policy field has the wrong length")
        if (self.version == 0) != (self.prev_hash == ZERO_HASH):
            raise DecodeError("only the default policy may lack a predecessor")
        if not MIN_EPOCH_SECONDS <= self.epoch_seconds <= MAX_EPOCH_SECONDS:
            raise DecodeError("a send epoch lasts an hour to a week")
        if not MIN_UNSEEN_SECONDS <= self.unseen_seconds <= MAX_UNSEEN_SECONDS:
            raise DecodeError("a device may be unseen an hour to thirty days before an alarm")

    @property
    def _default_periods(self) -> bool:
        return (self.epoch_seconds, self.unseen_seconds) == (
            DEFAULT_EPOCH_SECONDS, DEFAULT_UNSEEN_SECONDS
        )  # fmt: skip

    @property
    def _layout(self) -> int:
        if self.fallback.named:
            return _VERSION_FALLBACK
        if self.witnesses != NO_WITNESSES:
            return _VERSION_WITNESS
        return _VERSION if self._default_periods else _VERSION_EPOCH

    def encode(self) -> bytes:
        mask = sum(1 << int(p) for p in self.official)
        layout = self._layout
        w = Writer().u8(layout).u32(self.version).u8(mask).u8(self.track2_k)
        w.fixed(self.prev_hash, HASH_LEN).u32(self.roster_version)
        if layout >= _VERSION_EPOCH:
            w.u32(self.epoch_seconds).u32(self.unseen_seconds)
        if layout >= _VERSION_WITNESS:
            self.witnesses.write(w)
        if layout == _VERSION_FALLBACK:
            self.fallback.write(w)
        return w.bytes()

    def same_rules(self, other: MissionPolicy) -> bool:
        """Whether ``other`` allows and asks for what this one does (whatever its version)."""
        return (self.official, self.track2_k, self.epoch_seconds, self.unseen_seconds,
                self.witnesses, self.fallback) == (other.official, other.track2_k,
                other.epoch_seconds, other.unseen_seconds, other.witnesses,
                other.fallback)  # fmt: skip

    @classmethod
    def read(cls, r: Reader) -> MissionPolicy:
        layout = r.u8()
        if layout not in (_VERSION, _VERSION_EPOCH, _VERSION_WITNESS, _VERSION_FALLBACK):
            raise DecodeError(f"unsupported mission policy version {layout}; expected 1 to 4")
        version, mask, k = r.u32(), r.u8(), r.u8()
        if mask >> (max(_ALL) + 1):
            raise DecodeError("the policy names a kind of channel this version does not know")
        official = frozenset(p for p in Policy if mask & (1 << int(p)))
        prev, roster_version = r.fixed(HASH_LEN), r.u32()
        if layout == _VERSION:
            return cls(version, official, k, prev, roster_version)
        epoch, unseen = r.u32(), r.u32()
        rule = WitnessRule.read(r) if layout >= _VERSION_WITNESS else NO_WITNESSES
        fallback = FallbackRelay.read(r) if layout == _VERSION_FALLBACK else NO_FALLBACK
        out = cls(version, official, k, prev, roster_version, epoch, unseen, rule, fallback)
        if out._layout != layout:
            raise DecodeError(f"a policy like this one is written in layout {out._layout}")
        return out

    @property
    def hash(self) -> bytes:
        return sha256(labels.POLICY_HASH, self.encode())

    # --- what it allows ------------------------------------------------------------

    def allows_official(self, channel_policy: Policy) -> bool:
        """Whether the mission may pair an official channel with this policy."""
        return channel_policy in self.official

    @property
    def official_deniable(self) -> bool:
        """Whether official channels may carry deniable messages at all."""
        return bool(self.official & {Policy.DENIABLE, Policy.EITHER})

    def send_threshold(self, roster: Roster, to_contact: bool) -> int:
        """How many officers sign a message: the roster's ``k``, or the Track II ``k``
        (capped at ``n``) for a message to a contact."""
        if not to_contact or self.track2_k == 0:
            return roster.threshold
        return min(self.track2_k, roster.n)

    def describe(self) -> str:
        official = ", ".join(p.phrase for p in sorted(self.official))
        k = "the roster's k" if self.track2_k == 0 else str(self.track2_k)
        text = f"version {self.version}: official channels {official}; Track II k = {k}"
        if self.epoch_seconds != DEFAULT_EPOCH_SECONDS:
            text += f"; send keys renew every {_period(self.epoch_seconds)}"
        if self.unseen_seconds != DEFAULT_UNSEEN_SECONDS:
            silent = _period(self.unseen_seconds)
            text += (
                f"; a device silent for {'an hour' if silent == 'hour' else silent} raises an alarm"
            )
        if self.witnesses.asked:
            text += f"; the relay's heads cosigned by {self.witnesses.describe()}"
        if self.fallback.named:
            text += (
                f"; if the relay is proven to lie, the mission moves to {self.fallback.url} "
                f"(key {self.fallback.key_fingerprint.hex()[:16]})"
            )
        return text


def _period(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    if rest:
        return f"{seconds:,} seconds"
    return "hour" if hours == 1 else f"{hours} hours"


DEFAULT = MissionPolicy()


def _signed_body(mission_id: bytes, policy: MissionPolicy) -> bytes:
    return Writer().var(mission_id).var(policy.encode()).bytes()


@dataclass(frozen=True, slots=True)
class SignedPolicy:
    mission_id: bytes
    policy: MissionPolicy
    signatures: tuple[tuple[bytes, bytes], ...] = ()  # (officer_id, hybrid signature)

    def encode(self) -> bytes:
        w = Writer().var(self.mission_id).var(self.policy.encode())
        return write_signatures(w, self.signatures).bytes()

    @classmethod
    def decode(cls, raw: bytes) -> SignedPolicy:
        r = Reader(raw)
        mission = r.var(64)
        body = Reader(r.var(MAX_POLICY_LEN))
        policy = MissionPolicy.read(body)
        body.end()
        sigs = read_signatures(r, MAX_OFFICERS, "policy")
        r.end()
        return cls(mission, policy, sigs)

    def signers(self, roster: Roster) -> set[bytes]:
        """Officers of ``roster`` whose signature verifies (others are left out)."""
        body = _signed_body(self.mission_id, self.policy)
        return signers(
            roster,
            self.signatures,
            lambda vk, sig: vk.verify_hybrid(sig, labels.SIG_POLICY, body),
        )

    def with_signatures(self, more: Iterable[tuple[bytes, bytes]]) -> SignedPolicy:
        """This policy with ``more`` signatures added (one per officer; the first kept)."""
        seen = {oid for oid, _ in self.signatures}
        sigs = list(self.signatures)
        for oid, sig in more:
            if oid not in seen:
                seen.add(oid)
                sigs.append((oid, sig))
        return SignedPolicy(self.mission_id, self.policy, tuple(sigs))


def propose(
    current: MissionPolicy,
    official: Iterable[Policy],
    track2_k: int,
    roster: Roster,
    epoch_seconds: int | None = None,
    unseen_seconds: int | None = None,
    witnesses: WitnessRule | None = None,
    fallback: FallbackRelay | None = None,
) -> MissionPolicy:
    """The next version of the policy, to be signed by ``k`` officers of ``roster``
    (each period, the witness rule and the fallback relay stay unless given)."""
    if track2_k > roster.n:
        raise PolicyError(f"a Track II k of {track2_k} is more than the {roster.n} officers")
    return MissionPolicy(
        current.version + 1,
        frozenset(official),
        track2_k,
        current.hash,
        roster.version,
        current.epoch_seconds if epoch_seconds is None else epoch_seconds,
        current.unseen_seconds if unseen_seconds is None else unseen_seconds,
        current.witnesses if witnesses is None else witnesses,
        current.fallback if fallback is None else fallback,
    )


def sign(signed: SignedPolicy, officer: Officer) -> SignedPolicy:
    body = _signed_body(signed.mission_id, signed.policy)
    sig = officer.signing_key.sign_hybrid(labels.SIG_POLICY, body)
    return signed.with_signatures([(officer.officer_id, sig)])


def verify_next(
    current: MissionPolicy, signed: SignedPolicy, roster: Roster, mission_id: bytes
) -> MissionPolicy:
    """Accept ``signed`` as the successor of ``current`` or raise :class:`PolicyError`."""
    new = signed.policy
    if not equal(signed.mission_id, mission_id):
        raise PolicyError("that policy is another mission's")
    if new.version != current.version + 1 or not equal(new.prev_hash, current.hash):
        raise PolicyError("the policy change does not follow the current policy")
    if new.roster_version != roster.version:
        raise PolicyError("the policy change was signed under another roster; propose it again")
    if new.track2_k > roster.n:
        raise PolicyError(f"a Track II k of {new.track2_k} is more than the {roster.n} officers")
    good = signed.signers(roster)
    if len(good) < roster.threshold:
        raise PolicyError(
            f"a policy change needs {roster.threshold} officers of the roster; {len(good)} signed"
        )
    return new


def verify_chain(
    mission_id: bytes, chain: Iterable[SignedPolicy], rosters: Iterable[Roster]
) -> MissionPolicy:
    """Check a mission's policy changes offline, each against the roster version it
    names (``rosters``: the mission's verified roster chain); the current policy."""
    by_version = {r.version: r for r in rosters}
    current = DEFAULT
    for signed in chain:
        roster = by_version.get(signed.policy.roster_version)
        if roster is None:
            raise PolicyError("a policy change names a roster version the record lacks")
        current = verify_next(current, signed, roster, mission_id)
    return current
