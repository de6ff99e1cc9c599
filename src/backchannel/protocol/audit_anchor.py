"""Anchors of a mission's audit log, held by the peer mission (``docs/spec/audit-v1.md`` §6).

Every officer's chain is held by every device of his mission, so one officer
alone cannot rewrite the record; but officers who collude could drop a third
officer's latest entries from every copy they hold. An anchor stops that.
Every :data:`ANCHOR_EVERY` rounds the device that sends on a channel commits
to the chains as it holds them, (officer, number, digest of that entry) for
each officer, in one digest, signs the digest with its officer's Ed25519 key
and sends it to the peer mission as a control object in the channel's own
cells (so inside cells the relay logs). The peer's devices keep the signed
anchors; the mission's devices keep the *opening* (which entry of each
officer the anchor names). A record that a review board checks beside the
peer's must then open the latest anchor the peer holds: an entry the anchor
named cannot be missing from it nor changed, and an opening cannot be made up
for a digest.

The peer learns nothing from an anchor: the digest covers entry digests it
has never seen and the round it was made in, so it changes every time, busy
or not; it is sent on the schedule, whatever the officers did. Anchors go on
channels for the record only: a signed statement has no place on a deniable
one.

No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from backchannel.crypto import labels
from backchannel.crypto.primitives import equal, sha256
from backchannel.crypto.signing import ED25519_SIG_LEN
from backchannel.errors import DecodeError, SignatureError
from backchannel.protocol.audit import DIGEST_LEN
from backchannel.protocol.codec import Reader, Writer, expect_version
from backchannel.protocol.identity import OFFICER_ID_LEN, Officer, OfficerPublic
from backchannel.protocol.rekey import TAG_ANCHOR

#: An anchor every this many rounds of a channel (an hour at the default 60 s).
ANCHOR_EVERY = 60
OPENING_VERSION = 1
#: Officers an opening names at most (every officer who ever held the mission's keys).
MAX_HEADS = 255
MISSION_ID_LEN = 32

#: The digest of entry ``seq`` of an officer, as a record holds it; ``None`` if absent.
DigestOf = Callable[[bytes, int], bytes | None]


class AnchorProblem(Exception):
    """An anchor that a record does not open, in words a review board can act on."""


@dataclass(frozen=True, slots=True)
class AnchorOpening:
    """Which entry of each officer an anchor of ``round`` names (kept by the mission)."""

    mission_id: bytes
    round: int
    #: (officer id, entry number), sorted by officer id; numbers from 1.
    heads: tuple[tuple[bytes, int], ...]

    def __post_init__(self) -> None:
        ids = [o for o, _ in self.heads]
        if ids != sorted(set(ids)) or any(seq < 1 for _, seq in self.heads):
            raise DecodeError("an anchor's opening names each officer once, in order, from entry 1")
        if len(self.heads) > MAX_HEADS or len(self.mission_id) != MISSION_ID_LEN:
            raise DecodeError("malformed anchor opening")

    def encode(self) -> bytes:
        w = Writer().u8(OPENING_VERSION).fixed(self.mission_id, MISSION_ID_LEN).u64(self.round)
        w.u8(len(self.heads))
        for officer_id, seq in self.heads:
            w.fixed(officer_id, OFFICER_ID_LEN).u64(seq)
        return w.bytes()

    @classmethod
    def decode(cls, raw: bytes) -> AnchorOpening:
        r = Reader(raw)
        expect_version(r, OPENING_VERSION, "anchor opening")
        mission_id, round_no, count = r.fixed(MISSION_ID_LEN), r.u64(), r.u8()
        heads = tuple((r.fixed(OFFICER_ID_LEN), r.u64()) for _ in range(count))
        r.end()
        return cls(mission_id, round_no, heads)

    def digest(self, digest_of: DigestOf) -> bytes:
        """The anchor's digest, from the entries' digests as ``digest_of`` gives them.

        Raises :class:`AnchorProblem` for the first entry it names that is missing.
        """
        w = Writer().fixed(self.mission_id, MISSION_ID_LEN).u64(self.round).u8(len(self.heads))
        for officer_id, seq in self.heads:
            d = digest_of(officer_id, seq)
            if d is None:
                raise AnchorProblem(
                    f"entry {seq} of officer {officer_id.hex()[:12]}: named by the anchor "
                    f"of round {self.round}, missing from the record"
                )
            w.fixed(officer_id, OFFICER_ID_LEN).u64(seq).fixed(d, DIGEST_LEN)
        return sha256(labels.AUDIT_ANCHOR, w.bytes())


def opening_of(
    mission_id: bytes, round_no: int, held: Mapping[bytes, Iterable[int]]
) -> AnchorOpening:
    """The opening of an anchor made now: for each officer, the last entry of the
    unbroken run from entry 1 among the numbers ``held`` (an officer with none is
    left out)."""
    heads = []
    for officer_id in sorted(held):
        have = set(held[officer_id])
        seq = 0
        while seq + 1 in have:
            seq += 1
        if seq:
            heads.append((officer_id, seq))
    return AnchorOpening(mission_id, round_no, tuple(heads))


@dataclass(frozen=True, slots=True)
class SignedAnchor:
    """An officer's signed anchor, as the peer mission receives and keeps it."""

    mission_id: bytes
    round: int
    digest: bytes
    officer_id: bytes
    signature: bytes = field(default=b"", repr=False)

    def signed_part(self) -> bytes:
        w = Writer().u8(TAG_ANCHOR).fixed(self.mission_id, MISSION_ID_LEN).u64(self.round)
        return w.fixed(self.digest, DIGEST_LEN).fixed(self.officer_id, OFFICER_ID_LEN).bytes()

    def encode(self) -> bytes:
        return self.signed_part() + self.signature

    @classmethod
    def decode(cls, raw: bytes) -> SignedAnchor:
        r = Reader(raw)
        if r.u8() != TAG_ANCHOR:
            raise DecodeError("not an anchor of an audit log")
        mission_id, round_no, digest = r.fixed(MISSION_ID_LEN), r.u64(), r.fixed(DIGEST_LEN)
        officer_id, sig = r.fixed(OFFICER_ID_LEN), r.fixed(ED25519_SIG_LEN)
        r.end()
        return cls(mission_id, round_no, digest, officer_id, sig)

    @classmethod
    def make(
        cls, mission_id: bytes, round_no: int, digest: bytes, officer: Officer
    ) -> SignedAnchor:
        unsigned = cls(mission_id, round_no, digest, officer.officer_id)
        sig = officer.signing_key.sign_ed25519(labels.SIG_AUDIT_ANCHOR, unsigned.signed_part())
        return cls(mission_id, round_no, digest, officer.officer_id, sig)

    def verify(self, author: OfficerPublic) -> None:
        """Raise SignatureError unless ``author`` (the officer it names) signed this anchor."""
        if not equal(author.officer_id, self.officer_id):
            raise SignatureError("an audit anchor checked against another officer's key")
        author.verify_key.verify_ed25519(
            self.signature, labels.SIG_AUDIT_ANCHOR, self.signed_part()
        )


def check_anchor(
    anchor: SignedAnchor,
    author: OfficerPublic | None,
    openings: Sequence[AnchorOpening],
    digest_of: DigestOf,
) -> None:
    """That a record opens ``anchor`` (held by the peer): signed by an officer of the
    mission, and one of the record's ``openings`` of its round gives its digest from
    the record's entries. Raises :class:`AnchorProblem` or ``SignatureError``."""
    if author is None:
        raise SignatureError(f"the anchor of round {anchor.round} is signed by no officer "
                             "of the mission's roster")  # fmt: skip
    anchor.verify(author)
    mine = [o for o in openings if o.round == anchor.round and o.mission_id == anchor.mission_id]
    problem: AnchorProblem | None = None
    for opening in mine:
        try:
            if equal(opening.digest(digest_of), anchor.digest):
                return
        except AnchorProblem as exc:
            problem = exc
    if problem is not None:
        raise problem
    raise AnchorProblem(
        f"the anchor of round {anchor.round} is not opened by the record: an entry it "
        "names was changed, or its opening is gone"
    )
