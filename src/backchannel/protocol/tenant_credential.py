"""Who may change a mission's relay credential: ``k`` officers of its roster.

A mission's tenant at the relay is named after its mission id (``m-`` and the
id's first 12 bytes in hex), so the relay can check a roster chain against a
tenant without trusting anyone: a chain whose genesis hashes to the tenant's
name, each version signed as :mod:`backchannel.protocol.roster` requires, is
that mission's chain. A *rotation* names the last roster of that chain, a
sequence number within that roster version and the SHA-256 of the new
credential (never the credential); ``k`` officers of that roster sign it.

The relay keeps the greatest (roster version, sequence) it accepted and
refuses anything not above it, so a replayed rotation never undoes a newer
one. An officer removed from the roster cannot sign one, and before his
removal he could not have made one alone (``k >= 2``): the credential a
removal moves to is one he never learns (it comes from the mission's new
secret, which only the officers who stay receive).

Specified in docs/spec/relay-api.md ("Credential rotation").
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from backchannel.crypto import labels
from backchannel.crypto.primitives import HASH_LEN, hkdf, sha256
from backchannel.crypto.signing import HYBRID_SIG_LEN
from backchannel.errors import DecodeError, RosterError
from backchannel.protocol import roster as rs
from backchannel.protocol.codec import Writer
from backchannel.protocol.constants import MAX_OFFICERS
from backchannel.protocol.identity import OFFICER_ID_LEN, Officer

#: Most roster versions a rotation may carry (its whole chain from the genesis).
MAX_CHAIN = 256
#: The credential's length in bytes (what its base64url text encodes).
CREDENTIAL_BYTES = 32


def tenant_id_for(mission_id: bytes) -> str:
    """The relay tenant of a mission: fixed by its id, so the relay can check it."""
    return "m-" + mission_id[:12].hex()


def credential_for(secret: bytes) -> str:
    """The tenant credential of a mission secret (base64url, unpadded).

    Every officer who holds the secret derives the same one; nobody without
    it can.
    """
    raw = hkdf(secret, salt=None, info=labels.TENANT_CREDENTIAL, length=CREDENTIAL_BYTES)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def credential_hash(credential: str) -> bytes:
    """SHA-256 of the credential's bytes: what the relay keeps and compares."""
    try:
        raw = base64.urlsafe_b64decode(credential + "=" * (-len(credential) % 4))
    except (binascii.Error, ValueError):
        raise DecodeError("a tenant credential is base64url of 32 bytes") from None
    if len(raw) != CREDENTIAL_BYTES:
        raise DecodeError("a tenant credential is base64url of 32 bytes")
    return sha256(raw)


def statement(tenant_id: str, roster: rs.Roster, seq: int, new_hash: bytes) -> bytes:
    """What each officer signs: this tenant, under this roster, moves to this credential."""
    if len(new_hash) != HASH_LEN or not 0 <= seq < 1 << 32:
        raise DecodeError("a rotation names a 32-byte credential hash and a 32-bit sequence")
    w = Writer().text(tenant_id).fixed(roster.hash, HASH_LEN).u32(seq)
    return w.fixed(new_hash, HASH_LEN).bytes()


def sign(
    officer: Officer, tenant_id: str, roster: rs.Roster, seq: int, new_hash: bytes
) -> tuple[bytes, bytes]:
    body = statement(tenant_id, roster, seq, new_hash)
    return officer.officer_id, officer.signing_key.sign_hybrid(labels.SIG_TENANT_CREDENTIAL, body)


@dataclass(frozen=True, slots=True)
class Rotation:
    """A request to move a tenant to a new credential, and what authorizes it."""

    chain: tuple[rs.SignedRoster, ...]
    seq: int
    new_hash: bytes
    signatures: tuple[tuple[bytes, bytes], ...]

    @property
    def roster(self) -> rs.Roster:
        return self.chain[-1].roster

    def to_json(self) -> dict[str, Any]:
        b64 = base64.b64encode
        return {
            "chain": [b64(s.encode()).decode() for s in self.chain],
            "seq": self.seq,
            "credential_hash": self.new_hash.hex(),
            "signatures": [[o.hex(), b64(sig).decode()] for o, sig in self.signatures],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Rotation:
        """The rotation of a request body: ``DecodeError`` names what is malformed,
        ``RosterError`` says a roster of the chain is not one."""
        try:
            chain_in, seq = d["chain"], d["seq"]
            if isinstance(seq, float) and seq.is_integer() and 0 <= seq < 1 << 32:
                seq = int(seq)  # 960.0 is the integer 960 in JSON (and its schema)
            if not isinstance(chain_in, list) or not 1 <= len(chain_in) <= MAX_CHAIN:
                raise DecodeError(f"chain must list 1 to {MAX_CHAIN} signed rosters")
            if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 1 << 32:
                raise DecodeError("seq must be an integer from 0 to 2^32 - 1")
            new_hash = bytes.fromhex(d["credential_hash"])
            if len(new_hash) != HASH_LEN:
                raise DecodeError("credential_hash must be 64 hex digits")
            sigs_in = d["signatures"]
            if not isinstance(sigs_in, list) or not 1 <= len(sigs_in) <= MAX_OFFICERS:
                raise DecodeError(f"signatures must list 1 to {MAX_OFFICERS} signatures")
            raw_chain = [base64.b64decode(c, validate=True) for c in chain_in]
            sigs = []
            for pair in sigs_in:
                oid, sig = bytes.fromhex(pair[0]), base64.b64decode(pair[1], validate=True)
                if len(pair) != 2 or len(oid) != OFFICER_ID_LEN:
                    raise DecodeError("a signature is [officer id hex, hybrid signature base64]")
                # One of another length is no signature: like one that does not
                # verify, it counts for nothing (and the threshold says so).
                if len(sig) == HYBRID_SIG_LEN:
                    sigs.append((oid, sig))
        except DecodeError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, binascii.Error):
            raise DecodeError(
                "a rotation is {chain: [base64 signed roster], seq, credential_hash: hex,"
                " signatures: [[officer id hex, signature base64]]}"
            ) from None
        # Well formed; what the rosters say is for :func:`verify` to judge, and
        # one that does not decode authorizes nothing.
        try:
            chain = tuple(rs.SignedRoster.decode(c) for c in raw_chain)
        except (DecodeError, RosterError, ValueError):
            raise RosterError("a roster of the chain does not decode") from None
        return cls(chain, seq, new_hash, tuple(sigs))


def verify(tenant_id: str, rotation: Rotation) -> rs.Roster:
    """The roster ``rotation`` is made under, if its chain belongs to ``tenant_id``
    and ``k`` of that roster's officers signed it; ``RosterError`` if not."""
    genesis = rotation.chain[0].roster
    if genesis.version != 0 or tenant_id_for(rs.mission_id(genesis)) != tenant_id:
        raise RosterError("the roster chain is not the chain of this tenant's mission")
    rosters = rs.verify_chain(rs.mission_id(genesis), rotation.chain)
    roster = rosters[-1]
    body = statement(tenant_id, roster, rotation.seq, rotation.new_hash)
    good = rs.signers(
        roster,
        rotation.signatures,
        lambda vk, sig: vk.verify_hybrid(sig, labels.SIG_TENANT_CREDENTIAL, body),
    )
    if len(good) < roster.threshold:
        raise RosterError(
            f"a credential rotation needs {roster.threshold} officers of the roster; "
            f"{len(good)} signed"
        )
    return roster
