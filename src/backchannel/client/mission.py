"""Founding a mission: the genesis proposal every officer signs.

The founder proposes the genesis roster, draws the mission's internal secret
(for the mission-internal mailbox) and its relay credential, and seals both to
every officer's epoch key. Each officer checks the roster, signs it, and once
every officer has signed, each adopts the mission. Nobody is enrolled without
his own signature (``docs/design-decisions.md``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace

from backchannel.client.cards import CardError, OfficerCard
from backchannel.crypto import labels
from backchannel.crypto.primitives import equal
from backchannel.errors import AuthenticationError, ConfigError, RemoteProtocolError, RosterError
from backchannel.protocol import policy as mp
from backchannel.protocol import roster as rs
from backchannel.protocol import tenant_credential
from backchannel.protocol.codec import Reader
from backchannel.protocol.constants import CELL_SIZE
from backchannel.protocol.identity import EpochKey, EpochKeyCert, Officer, OfficerPublic
from backchannel.protocol.tenant_credential import tenant_id_for

PROPOSAL_PREFIX = "BACKCHANNEL-PROPOSAL-1:"


# Rosters, policies and epoch-key certificates are public and immutable once
# decoded: each encoding is decoded once while it is in use (a round reads the
# roster dozens of times). Nothing secret is kept here.
@functools.lru_cache(maxsize=64)
def _signed_roster(raw: bytes) -> rs.SignedRoster:
    return rs.SignedRoster.decode(raw)


@functools.lru_cache(maxsize=64)
def _signed_policy(raw: bytes) -> mp.SignedPolicy:
    return mp.SignedPolicy.decode(raw)


@functools.lru_cache(maxsize=256)
def _cert(raw: bytes) -> EpochKeyCert:
    return EpochKeyCert.decode(raw)


@dataclass(frozen=True, slots=True)
class MissionState:
    """What every officer's device knows of its own mission (kept in the vault)."""

    name: str
    mission_id: bytes
    chain: tuple[bytes, ...]
    certs: tuple[bytes, ...]
    relay_url: str
    tenant_id: str
    credential: str
    secret: bytes
    runner_id: bytes
    cell_size: int = CELL_SIZE
    #: The mission policy's signed changes, oldest first (none: the default).
    policies: tuple[bytes, ...] = ()
    #: The mission secrets before this one, oldest first: a roster change that
    #: removes an officer draws a new one. Generation ``g`` of the mailbox's
    #: lanes uses ``retired_secrets[g]``, the current generation ``secret``;
    #: the intake opens requests sealed to a card of any of them.
    retired_secrets: tuple[bytes, ...] = ()
    #: A credential rotation this device has yet to hand to the relay (JSON of
    #: :class:`~backchannel.protocol.tenant_credential.Rotation`; empty: none).
    #: ``credential`` is already the new one; the next round hands it over.
    pending_rotation: bytes = b""
    #: The latest credential rotation, kept once handed over (the same JSON): a
    #: relay that never saw it (a fallback registered later, a relay restored
    #: from an older copy) is handed it again, so that no older rotation, which
    #: a removed officer holds, can move the tenant to a credential he knows.
    last_rotation: bytes = b""

    def __repr__(self) -> str:
        return f"MissionState({self.name!r}, <secret>)"

    @property
    def generation(self) -> int:
        """How many times the mission secret was drawn anew."""
        return len(self.retired_secrets)

    def secret_of(self, generation: int) -> bytes:
        if generation == self.generation:
            return self.secret
        if 0 <= generation < self.generation:
            return self.retired_secrets[generation]
        raise RosterError("a mailbox lane names a generation of the mission secret we lack")

    @property
    def intake_secrets(self) -> list[bytes]:
        """The secrets the intake key comes from, the one of the card to publish first."""
        return [self.secret, *reversed(self.retired_secrets)]

    def with_new_secret(self, new: bytes) -> MissionState:
        """This state after a removal: ``new`` is the secret, the current one
        retires, and the relay credential is the one ``new`` gives (which the
        removed officer never learns)."""
        return replace(
            self,
            secret=new,
            retired_secrets=(*self.retired_secrets, self.secret),
            credential=tenant_credential.credential_for(new),
        )

    def signed_chain(self) -> list[rs.SignedRoster]:
        return [_signed_roster(c) for c in self.chain]

    @property
    def roster(self) -> rs.Roster:
        return _signed_roster(self.chain[-1]).roster

    @property
    def policy(self) -> mp.MissionPolicy:
        """The mission's policy in force (``protocol/policy.py``)."""
        if not self.policies:
            return mp.DEFAULT
        return _signed_policy(self.policies[-1]).policy

    def epoch_certs(self) -> list[EpochKeyCert]:
        return [_cert(c) for c in self.certs]

    def cert_of(self, officer_id: bytes) -> EpochKeyCert:
        for c in self.epoch_certs():
            if equal(c.officer_id, officer_id):
                return c
        raise RosterError("no epoch key for that officer")


@dataclass(frozen=True, slots=True)
class Proposal:
    genesis: rs.Roster
    signatures: tuple[tuple[bytes, bytes], ...]
    certs: tuple[EpochKeyCert, ...]
    relay_url: str
    runner_id: bytes
    boxes: tuple[tuple[bytes, bytes], ...]  # (officer_id, HPKE box of credential || secret)

    @property
    def mission_id(self) -> bytes:
        return rs.mission_id(self.genesis)

    def encode(self) -> str:
        data = {
            "genesis": self.genesis.encode().hex(),
            "signatures": [[o.hex(), s.hex()] for o, s in self.signatures],
            "certs": [c.encode().hex() for c in self.certs],
            "relay_url": self.relay_url,
            "runner_id": self.runner_id.hex(),
            "boxes": [[o.hex(), b.hex()] for o, b in self.boxes],
        }
        raw = json.dumps(data, separators=(",", ":")).encode()
        return PROPOSAL_PREFIX + base64.urlsafe_b64encode(raw).decode() + "\n"

    @classmethod
    def decode(cls, text: str) -> Proposal:
        text = text.strip()
        if not text.startswith(PROPOSAL_PREFIX):
            raise CardError("this is not a mission proposal; check you passed the right file")
        try:
            d = json.loads(base64.urlsafe_b64decode(text[len(PROPOSAL_PREFIX) :]))
            r = Reader(bytes.fromhex(d["genesis"]))
            genesis = rs.Roster.read(r)
            r.end()
            return cls(
                genesis,
                tuple((bytes.fromhex(o), bytes.fromhex(s)) for o, s in d["signatures"]),
                tuple(EpochKeyCert.decode(bytes.fromhex(c)) for c in d["certs"]),
                str(d["relay_url"]),
                bytes.fromhex(d["runner_id"]),
                tuple((bytes.fromhex(o), bytes.fromhex(b)) for o, b in d["boxes"]),
            )
        except (ValueError, KeyError, TypeError, binascii.Error, RemoteProtocolError):
            raise CardError("the mission proposal is damaged; ask for a fresh copy") from None

    def verify_certs(self) -> None:
        by_id = {c.officer_id: c for c in self.certs}
        for o in self.genesis.officers:
            if o.officer_id not in by_id:
                raise CardError("the proposal lacks an officer's epoch key")
            by_id[o.officer_id].verify(o)

    def signed_by(self) -> set[bytes]:
        body = self.genesis.encode()
        good = set()
        for oid, sig in self.signatures:
            if self.genesis.contains(oid):
                try:
                    self.genesis.officer(oid).verify_key.verify_hybrid(sig, labels.SIG_ROSTER, body)
                except RemoteProtocolError:
                    continue
                good.add(oid)
        return good

    @property
    def complete(self) -> bool:
        return len(self.signed_by()) == self.genesis.n


def propose(
    founder: Officer,
    founder_cert: EpochKeyCert,
    name: str,
    threshold: int,
    others: Sequence[OfficerCard],
    relay_url: str,
    recovery: Sequence[OfficerPublic] = (),
    recovery_threshold: int = 0,
) -> Proposal:
    """The genesis proposal, signed by the founder. ``recovery`` (headquarters'
    keys, ``client/recovery.py``) and ``recovery_threshold`` name the mission's
    recovery quorum; none by default."""
    officers = [founder.public, *(c.officer for c in others)]
    if len({o.officer_id for o in officers}) != len(officers):
        raise ConfigError("an officer is listed twice")
    try:
        genesis = rs.new_genesis(
            name, officers, threshold, secrets.token_bytes(rs.NONCE_LEN), recovery,
            recovery_threshold,
        )  # fmt: skip
    except RosterError as exc:
        raise ConfigError(str(exc)) from None
    certs = (founder_cert, *(c.cert for c in others))
    mid = rs.mission_id(genesis)
    credential = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    secret = secrets.token_bytes(32)
    payload = json.dumps({"credential": credential, "secret": secret.hex()}).encode()
    boxes = tuple(
        (c.officer_id, c.public_key.seal(payload, labels.MISSION_SECRET + mid + c.officer_id))
        for c in certs
    )
    p = Proposal(genesis, (), certs, relay_url, founder.officer_id, boxes)
    return sign_proposal(p, founder)


def sign_proposal(p: Proposal, officer: Officer) -> Proposal:
    if not p.genesis.contains(officer.officer_id):
        raise ConfigError("you are not on this mission's roster")
    p.verify_certs()
    sig = rs.sign_roster(p.genesis, officer)
    others = tuple(s for s in p.signatures if s[0] != officer.officer_id)
    return replace(p, signatures=(*others, sig))


def adopt(p: Proposal, officer: Officer, keys: Sequence[EpochKey]) -> MissionState:
    """The mission as this officer's device keeps it, once every officer signed."""
    if not p.complete:
        missing = p.genesis.n - len(p.signed_by())
        raise ConfigError(f"{missing} officer(s) have not signed the proposal yet")
    signed = rs.SignedRoster(p.genesis, p.signatures)
    rs.verify_genesis(signed)
    mid = p.mission_id
    box = next((b for o, b in p.boxes if equal(o, officer.officer_id)), None)
    if box is None:
        raise ConfigError("the proposal carries no secrets for you")
    payload = None
    for k in reversed(list(keys)):
        try:
            payload = k.private_key.open(box, labels.MISSION_SECRET + mid + officer.officer_id)
            break
        except AuthenticationError:
            continue
    if payload is None:
        raise AuthenticationError("decryption failed")
    d = json.loads(payload)
    return MissionState(
        p.genesis.mission_name,
        mid,
        (signed.encode(),),
        tuple(c.encode() for c in p.certs),
        p.relay_url,
        tenant_id_for(mid),
        str(d["credential"]),
        bytes.fromhex(d["secret"]),
        p.runner_id,
    )
