"""The mission's audit log: per officer, a hash chain of signed entries.

Every officer's device writes down what its officer did (drafted, co-signed,
rejected, asked to open, released a share, opened, proposed or signed or
adopted a roster change, confirmed a peer's card) and the alarms it raised,
one :class:`AuditEntry` at a time. Entry ``n`` of an officer names the digest
of his entry ``n - 1``, is signed by him and
goes to every colleague's device, so each device holds every officer's chain.
Entries are signed with his Ed25519 key, like co-signatures and receipts: an
entry then fits in one mailbox piece, so it never holds up a joint object
(``docs/design-decisions.md``).

What this gives a review board (``docs/spec/audit-v1.md``):

* an entry cannot be changed, dropped or reordered without breaking the chain
  at the entry that was touched (:func:`check_chain` names it);
* an officer's device that shows two colleagues two different histories has
  signed two entries with the same number: the pair is a proof anyone can
  check offline with the officer's public key (:func:`check_fork`);
* entries carry no message text, key or slot: what was done, by whom, when,
  on which draft or message id.

No I/O here: the client keeps the chains and moves the entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from backchannel.crypto import labels
from backchannel.crypto.primitives import equal, sha256
from backchannel.crypto.signing import ED25519_SIG_LEN
from backchannel.errors import DecodeError, SignatureError
from backchannel.protocol.codec import Reader, Writer, expect_version
from backchannel.protocol.identity import OFFICER_ID_LEN, Officer, OfficerPublic

AUDIT_VERSION = 1
DIGEST_LEN = 32
GENESIS = bytes(DIGEST_LEN)
MAX_SUBJECT = 64
MAX_NOTE = 512


class AuditKind(IntEnum):
    DRAFTED = 1
    COSIGNED = 2
    REJECTED = 3
    QUEUED = 4
    OPEN_ASKED = 5
    SHARE_RELEASED = 6
    OPENED = 7
    ROSTER_PROPOSED = 8
    ROSTER_SIGNED = 9
    ROSTER_ADOPTED = 10
    PEER_CONFIRMED = 11
    ALARM = 12
    FORGOTTEN = 13
    # The public intake's triage (docs/intake.md); the subject is the request's id.
    INTAKE_OPENED = 14
    INTAKE_CLOSED = 15
    INTAKE_ASSIGNED = 16
    INTAKE_TAGGED = 17
    INTAKE_NOTED = 18
    INTAKE_IGNORED = 19
    INTAKE_BLOCKED = 20
    #: The subject is the request's id and the answer's digest.
    INTAKE_ANSWER_PROPOSED = 21
    INTAKE_ANSWER_APPROVED = 22
    INTAKE_ANSWER_SENT = 23
    # The mission policy (protocol/policy.py); the subject is the policy's hash.
    POLICY_PROPOSED = 24
    POLICY_SIGNED = 25
    POLICY_ADOPTED = 26
    #: A channel moved, or began to move, to new keys after a removal
    #: (protocol/rekey.py); the subject is the channel's id.
    CHANNEL_REKEYED = 27
    #: An officer's device drew a new epoch key (its own, on the policy's
    #: schedule or by hand); the subject is the officer's id.
    EPOCH_KEY_ROTATED = 28
    #: A peer officer's new epoch key, announced in a channel
    #: (protocol/key_announce.py); the subject is his officer id.
    PEER_KEY_LEARNED = 29
    #: This device left a relay proven to lie for the fallback relay of the
    #: mission's policy, or finished leaving it; the subject is the fingerprint
    #: of the left relay's log key.
    RELAY_LEFT = 30


@dataclass(frozen=True, slots=True)
class AuditEntry:
    mission_id: bytes
    officer_id: bytes
    #: 1, 2, 3, ... per officer.
    seq: int
    #: Digest of the officer's entry ``seq - 1`` (:data:`GENESIS` for the first).
    prev: bytes
    at: int
    kind: AuditKind
    #: The id of what the entry is about (a draft, a message, a roster version...).
    subject: bytes
    note: str
    signature: bytes = field(default=b"", repr=False)

    def signed_part(self) -> bytes:
        return (
            Writer()
            .u8(AUDIT_VERSION)
            .fixed(self.mission_id, 32)
            .fixed(self.officer_id, OFFICER_ID_LEN)
            .u64(self.seq)
            .fixed(self.prev, DIGEST_LEN)
            .u64(self.at)
            .u8(int(self.kind))
            .var(self.subject)
            .text(self.note)
            .bytes()
        )

    def encode(self) -> bytes:
        return self.signed_part() + self.signature

    @classmethod
    def decode(cls, raw: bytes) -> AuditEntry:
        r = Reader(raw)
        expect_version(r, AUDIT_VERSION, "audit entry")
        mission_id, officer_id = r.fixed(32), r.fixed(OFFICER_ID_LEN)
        seq, prev, at = r.u64(), r.fixed(DIGEST_LEN), r.u64()
        try:
            kind = AuditKind(r.u8())
        except ValueError:
            raise DecodeError("audit entry of an unknown kind") from None
        subject, note = r.var(MAX_SUBJECT), r.text(MAX_NOTE)
        signature = r.fixed(ED25519_SIG_LEN)
        r.end()
        if seq < 1:
            raise DecodeError("audit entries are numbered from 1")
        return cls(mission_id, officer_id, seq, prev, at, kind, subject, note, signature)

    def digest(self) -> bytes:
        return sha256(labels.AUDIT_ENTRY, self.encode())

    @classmethod
    def make(
        cls,
        mission_id: bytes,
        officer: Officer,
        seq: int,
        prev: bytes,
        at: int,
        kind: AuditKind,
        subject: bytes = b"",
        note: str = "",
    ) -> AuditEntry:
        if len(subject) > MAX_SUBJECT or len(note.encode()) > MAX_NOTE:
            raise DecodeError("audit entry subject or note too long")
        unsigned = cls(mission_id, officer.officer_id, seq, prev, at, kind, subject, note)
        sig = officer.signing_key.sign_ed25519(labels.SIG_AUDIT, unsigned.signed_part())
        return cls(mission_id, officer.officer_id, seq, prev, at, kind, subject, note, sig)

    def verify(self, author: OfficerPublic) -> None:
        """Raise SignatureError unless ``author`` (the officer it names) signed this entry."""
        if not equal(author.officer_id, self.officer_id):
            raise SignatureError("audit entry checked against another officer's key")
        author.verify_key.verify_ed25519(self.signature, labels.SIG_AUDIT, self.signed_part())


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """Where an officer's chain breaks, in words a review board can act on."""

    officer_id: bytes
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"entry {self.seq} of officer {self.officer_id.hex()[:12]}: {self.reason}"


KeyOf = Callable[[bytes], OfficerPublic | None]


def check_chain(
    mission_id: bytes, officer_id: bytes, entries: Sequence[AuditEntry], key_of: KeyOf
) -> ChainProblem | None:
    """The first problem in one officer's chain (entries in order from 1), or None."""
    author = key_of(officer_id)
    prev = GENESIS
    for n, e in enumerate(entries, start=1):
        if e.seq != n:
            return ChainProblem(officer_id, n, f"missing (the next entry held is {e.seq})")
        if not equal(e.officer_id, officer_id) or not equal(e.mission_id, mission_id):
            return ChainProblem(officer_id, n, "names another officer or mission")
        if not equal(e.prev, prev):
            return ChainProblem(
                officer_id, n, "does not follow the entry before it (changed, dropped or reordered)"
            )
        if author is None:
            return ChainProblem(officer_id, n, "signed by an officer no roster version names")
        try:
            e.verify(author)
        except SignatureError:
            return ChainProblem(
                officer_id, n, "its signature does not verify (the entry was changed)"
            )
        prev = e.digest()
    return None


def check_fork(a: AuditEntry, b: AuditEntry, author: OfficerPublic) -> bool:
    """True when ``a`` and ``b`` prove that ``author`` signed two histories.

    Two different entries with the same mission, officer and number, both
    signed by him: his device showed different colleagues different records.
    """
    if a.encode() == b.encode():
        return False
    if (a.mission_id, a.officer_id, a.seq) != (b.mission_id, b.officer_id, b.seq):
        return False
    try:
        a.verify(author)
        b.verify(author)
    except SignatureError:
        return False
    return True
