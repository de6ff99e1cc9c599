"""Mission rosters: who the officers are and how many must act together.

A roster is versioned. The genesis roster (version 0) is signed by every
officer in it: nobody is enrolled without proving possession of his key. Each
later version names the hash of the one before, and is valid only when signed
by at least ``k`` distinct officers of the *previous* version and by every
officer it newly adds. A peer pins the mission id (the hash of the genesis) and
verifies the whole chain from there, so a roster change signed by fewer than
``k`` officers is refused, and nobody can rewrite history behind the pin.

A roster may name a **recovery quorum**: keys that headquarters holds offline,
``r`` of which together may sign a change in place of ``k`` officers (a 2-of-2
mission that lost an officer cannot act alone). Only the recovery quorum
changes the recovery quorum once there is one; officers may add one to a
roster that has none.

All signatures on rosters are hybrid (Ed25519 + ML-DSA-65).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from backchannel.crypto import labels
from backchannel.crypto.primitives import HASH_LEN, equal, sha256
from backchannel.crypto.signing import HYBRID_SIG_LEN, VerifyKey
from backchannel.errors import DecodeError, LocalProtocolError, RosterError, SignatureError
from backchannel.protocol.codec import Reader, Writer
from backchannel.protocol.constants import MAX_OFFICERS
from backchannel.protocol.identity import OFFICER_ID_LEN, Officer, OfficerPublic

_VERSION = 1
#: The layout of a roster that names a recovery quorum (version 1's, then it).
_VERSION_RECOVERY = 2
NONCE_LEN = 16
MAX_MISSION_NAME = 64
ZERO_HASH = bytes(HASH_LEN)


@dataclass(frozen=True, slots=True)
class Roster:
    """One version of a mission's roster (unsigned body)."""

    version: int
    mission_name: str
    mission_nonce: bytes
    threshold: int
    officers: tuple[OfficerPublic, ...]
    prev_hash: bytes
    #: Headquarters' offline keys, and how many of them replace ``k`` officers.
    recovery: tuple[OfficerPublic, ...] = ()
    recovery_threshold: int = 0

    def __post_init__(self) -> None:
        n = len(self.officers)
        # A mission's roster is k-of-n with k >= 2 (the two-person rule); a Track II
        # contact's is a roster of one (k = n = 1): a private person, alone.
        if not (2 <= self.threshold <= n <= MAX_OFFICERS or self.threshold == n == 1):
            raise RosterError(
                f"a roster needs 2 <= k <= n <= {MAX_OFFICERS} (a mission) or k = n = 1 "
                f"(a contact); got k={self.threshold}, n={n}"
            )
        ids = [o.officer_id for o in self.officers]
        if len(set(ids)) != n:
            raise RosterError("an officer appears twice in the roster")
        name = self.mission_name
        # Printable, as an officer's name: no control character, and none of the
        # invisible direction controls that would turn round the text beside it.
        if not name or len(name.encode()) > MAX_MISSION_NAME or not name.isprintable():
            raise RosterError("mission name must be 1-64 bytes of printable text")
        if len(self.mission_nonce) != NONCE_LEN or len(self.prev_hash) != HASH_LEN:
            raise DecodeError("roster field has the wrong length")
        if (self.version == 0) != (self.prev_hash == ZERO_HASH):
            raise RosterError("only the genesis roster may lack a predecessor")
        m, r = len(self.recovery), self.recovery_threshold
        if m and not 2 <= r <= m <= MAX_OFFICERS:
            raise RosterError(
                f"a recovery quorum needs 2 <= r <= m <= {MAX_OFFICERS} keys; got r={r}, m={m}"
            )
        if not m and r:
            raise RosterError("a recovery threshold needs recovery keys")
        every = ids + [o.officer_id for o in self.recovery]
        if len(set(every)) != len(every):
            raise RosterError("a recovery key appears twice, or is also an officer's")

    @property
    def is_contact(self) -> bool:
        """A roster of one: a Track II contact, not a mission."""
        return self.n == 1

    def encode(self) -> bytes:
        layout = _VERSION_RECOVERY if self.recovery else _VERSION
        w = Writer().u8(layout).u32(self.version).text(self.mission_name)
        w.fixed(self.mission_nonce, NONCE_LEN).u8(self.threshold).u8(len(self.officers))
        for o in self.officers:
            w.var(o.encode())
        w.fixed(self.prev_hash, HASH_LEN)
        if self.recovery:
            w.u8(self.recovery_threshold).u8(len(self.recovery))
            for o in self.recovery:
                w.var(o.encode())
        return w.bytes()

    @classmethod
    def read(cls, r: Reader) -> Roster:
        layout = r.u8()
        if layout not in (_VERSION, _VERSION_RECOVERY):
            raise DecodeError(f"unsupported roster version {layout}; expected 1 or 2")
        version = r.u32()
        name = r.text(MAX_MISSION_NAME)
        nonce = r.fixed(NONCE_LEN)
        k = r.u8()
        n = r.u8()
        if n > MAX_OFFICERS:
            raise DecodeError("too many officers")
        officers = tuple(OfficerPublic.decode(r.var(4096)) for _ in range(n))
        prev = r.fixed(HASH_LEN)
        if layout == _VERSION:
            return cls(version, name, nonce, k, officers, prev)
        rk, m = r.u8(), r.u8()
        if not 0 < m <= MAX_OFFICERS:
            raise DecodeError("a roster's recovery quorum has no keys, or too many")
        recovery = tuple(OfficerPublic.decode(r.var(4096)) for _ in range(m))
        return cls(version, name, nonce, k, officers, prev, recovery, rk)

    @property
    def hash(self) -> bytes:
        return sha256(labels.ROSTER_HASH, self.encode())

    @property
    def n(self) -> int:
        return len(self.officers)

    def index_of(self, officer_id: bytes) -> int:
        """1-based position of an officer, or raise ``RosterError``."""
        for i, o in enumerate(self.officers):
            if equal(o.officer_id, officer_id):
                return i + 1
        raise RosterError("that officer is not on the roster")

    def officer(self, officer_id: bytes) -> OfficerPublic:
        return self.officers[self.index_of(officer_id) - 1]

    def contains(self, officer_id: bytes) -> bool:
        return any(equal(o.officer_id, officer_id) for o in self.officers)

    def recovery_pool(self) -> Roster:
        """The recovery keys as a roster of their own, to check their signatures with."""
        if not self.recovery:
            raise RosterError("this roster names no recovery quorum")
        return Roster(
            self.version, self.mission_name, self.mission_nonce, self.recovery_threshold,
            self.recovery, self.prev_hash,
        )  # fmt: skip


Signatures = tuple[tuple[bytes, bytes], ...]


def write_signatures(w: Writer, signatures: Signatures) -> Writer:
    """``count u8 | count x (officer_id [16] | hybrid signature)``."""
    w.u8(len(signatures))
    for oid, sig in signatures:
        w.fixed(oid, OFFICER_ID_LEN).fixed(sig, HYBRID_SIG_LEN)
    return w


def read_signatures(r: Reader, most: int, what: str) -> Signatures:
    """What :func:`write_signatures` wrote; more than ``most`` is refused."""
    count = r.u8()
    if count > most:
        raise DecodeError(f"too many {what} signatures")
    return tuple((r.fixed(OFFICER_ID_LEN), r.fixed(HYBRID_SIG_LEN)) for _ in range(count))


@dataclass(frozen=True, slots=True)
class SignedRoster:
    roster: Roster
    signatures: tuple[tuple[bytes, bytes], ...]  # (officer_id, hybrid signature)

    def encode(self) -> bytes:
        return write_signatures(Writer().var(self.roster.encode()), self.signatures).bytes()

    @classmethod
    def read(cls, r: Reader) -> SignedRoster:
        body = Reader(r.var(64 * 1024))
        roster = Roster.read(body)
        body.end()
        return cls(roster, read_signatures(r, MAX_OFFICERS * 2, "roster"))

    @classmethod
    def decode(cls, raw: bytes) -> SignedRoster:
        r = Reader(raw)
        out = cls.read(r)
        r.end()
        return out


def mission_id(genesis: Roster) -> bytes:
    """The mission's permanent identifier: the hash of its genesis roster."""
    if genesis.version != 0:
        raise LocalProtocolError("the mission id comes from the genesis roster")
    return sha256(labels.MISSION_ID, genesis.encode())


def new_genesis(
    mission_name: str,
    officers: Sequence[OfficerPublic],
    threshold: int,
    nonce: bytes,
    recovery: Sequence[OfficerPublic] = (),
    recovery_threshold: int = 0,
) -> Roster:
    return Roster(
        0, mission_name, nonce, threshold, tuple(officers), ZERO_HASH, tuple(recovery),
        recovery_threshold,
    )  # fmt: skip


def propose_update(
    current: Roster,
    officers: Sequence[OfficerPublic],
    threshold: int,
    recovery: tuple[Sequence[OfficerPublic], int] | None = None,
) -> Roster:
    """The next roster version; it still needs its signatures. The recovery
    quorum stays unless ``recovery`` (keys, threshold) replaces it."""
    keys, r = (current.recovery, current.recovery_threshold) if recovery is None else recovery
    return Roster(
        current.version + 1,
        current.mission_name,
        current.mission_nonce,
        threshold,
        tuple(officers),
        current.hash,
        tuple(keys),
        r,
    )


def sign_roster(roster: Roster, officer: Officer) -> tuple[bytes, bytes]:
    return officer.officer_id, officer.signing_key.sign_hybrid(labels.SIG_ROSTER, roster.encode())


def signers(
    pool: Roster,
    signatures: Iterable[tuple[bytes, bytes]],
    check: Callable[[VerifyKey, bytes], None],
) -> set[bytes]:
    """Distinct officers of ``pool`` whose signature passes ``check`` (which raises if not).

    Signers off the roster, repeated signers and bad signatures are left out;
    callers compare the count with a threshold.
    """
    good: set[bytes] = set()
    for oid, sig in signatures:
        if oid in good or not pool.contains(oid):
            continue
        try:
            check(pool.officer(oid).verify_key, sig)
        except SignatureError:
            continue
        good.add(oid)
    return good


def _valid_signers(
    roster: Roster, signatures: Iterable[tuple[bytes, bytes]], pool: Roster
) -> set[bytes]:
    """Officer ids from ``pool`` whose hybrid signature on ``roster`` verifies."""
    body = roster.encode()
    return signers(pool, signatures, lambda vk, sig: vk.verify_hybrid(sig, labels.SIG_ROSTER, body))


def roster_signers(
    roster: Roster, signatures: Iterable[tuple[bytes, bytes]], pool: Roster
) -> set[bytes]:
    """The officers of ``pool`` whose signature on ``roster`` verifies."""
    return _valid_signers(roster, signatures, pool)


def verify_genesis(signed: SignedRoster) -> Roster:
    r = signed.roster
    if r.version != 0:
        raise RosterError("the chain must start at the genesis roster")
    signers = _valid_signers(r, signed.signatures, r)
    if len(signers) != r.n:
        raise RosterError(
            f"the genesis roster needs every officer's signature; {len(signers)} of {r.n} verify"
        )
    return r


def verify_update(current: Roster, signed: SignedRoster) -> Roster:
    """Accept ``signed`` as the successor of ``current`` or raise ``RosterError``."""
    new = signed.roster
    if new.version != current.version + 1 or not equal(new.prev_hash, current.hash):
        raise RosterError("roster update does not follow the current roster")
    if new.mission_name != current.mission_name or new.mission_nonce != current.mission_nonce:
        raise RosterError("roster update names another mission")
    old_signers = _valid_signers(new, signed.signatures, current)
    hq = len(_valid_signers(new, signed.signatures, current.recovery_pool())) if (
        current.recovery
    ) else 0  # fmt: skip
    by_recovery = bool(current.recovery) and hq >= current.recovery_threshold
    moved = (new.recovery, new.recovery_threshold) != (
        current.recovery, current.recovery_threshold
    )  # fmt: skip
    if current.recovery and moved and not by_recovery:
        raise RosterError(
            f"changing the recovery quorum needs {current.recovery_threshold} of its keys; "
            f"{hq} signed"
        )
    if len(old_signers) < current.threshold and not by_recovery:
        alternative = (
            f" (or {current.recovery_threshold} recovery keys; {hq} signed)"
            if current.recovery
            else ""
        )
        raise RosterError(
            f"roster update needs {current.threshold} officers of the current roster; "
            f"{len(old_signers)} signed{alternative}"
        )
    added = [o for o in new.officers if not current.contains(o.officer_id)]
    new_signers = _valid_signers(new, signed.signatures, new)
    if any(o.officer_id not in new_signers for o in added):
        raise RosterError("every officer added to the roster must sign it")
    return new


def verify_chain(pinned_mission_id: bytes, chain: Sequence[SignedRoster]) -> list[Roster]:
    """Verify a roster chain from the pinned mission id; return every version."""
    if not chain:
        raise RosterError("empty roster chain")
    genesis = verify_genesis(chain[0])
    if not equal(mission_id(genesis), pinned_mission_id):
        raise RosterError("the roster chain belongs to another mission than the one pinned")
    out = [genesis]
    for signed in chain[1:]:
        out.append(verify_update(out[-1], signed))
    return out
