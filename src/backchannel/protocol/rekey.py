"""Re-keying a channel when a roster change removes an officer.

Whoever leaves a mission keeps what his device held, the channel's slot chain
included: with it he could compute the channel's slot addresses and cell keys
for every later round, in both directions, and deposit into them first (the
relay keeps the first cell of a slot), jamming the channel, or read with a
colluding relay which rounds carry work. A change that removes an officer
therefore moves every channel of the mission to a new slot chain that he
cannot derive (``docs/spec/protocol-v1.md`` §7.5):

- **The seed.** ``seed = HKDF(new mission secret, info = label || mission ||
  version || channel)``: every officer who stays derives it from the mission
  secret the change gives them, and nobody else can. The ``k`` officers who
  sign the change also sign, per channel, a statement binding the channel,
  the new roster version and a commitment to the seed
  (:func:`sign_statement`).
- **The re-key** (:class:`ChannelRekey`): the sending device seals the seed
  to each of the peer's officers (HPKE, the hybrid KEM) and sends it, with the
  signed roster of the change and the statements' signatures, in the channel's
  own cells. The peer accepts it only when the roster update verifies against
  the roster it holds (``k`` officers of the previous roster signed it, so the
  removed officer alone cannot forge one) and ``k`` officers of the new roster
  signed the seed's commitment.
- **The switch, one direction at a time.** Rounds in a direction are sent and
  read in order, so each side switches the direction it sends in at a round
  it names by sending: the initiator's rounds after the one that carried the
  last piece of the re-key use the new chain; the peer answers with an
  acknowledgement (:class:`RekeyAck`, a MAC under a key from the seed, which
  the removed officer cannot compute), and its rounds after the one that
  carried the acknowledgement use the new chain too. What a device keeps
  while a move is under way, and two re-keys that cross (both missions
  removed an officer at once), are in :mod:`.rekeying`.
"""

from __future__ import annotations

from dataclasses import dataclass

from backchannel.crypto import labels
from backchannel.crypto.kem import KemPrivateKey
from backchannel.crypto.primitives import HASH_LEN, KEY_LEN, equal, hkdf, hmac_sha256, sha256
from backchannel.errors import AuthenticationError, DecodeError, RosterError, SignatureError
from backchannel.protocol.cells import Fragment, fragment, fragment_capacity
from backchannel.protocol.channel import CHANNEL_ID_LEN, SlotChain
from backchannel.protocol.codec import Reader, Writer
from backchannel.protocol.constants import MAX_OFFICERS
from backchannel.protocol.identity import OFFICER_ID_LEN, EpochKeyCert, Officer
from backchannel.protocol.roster import (
    Roster,
    SignedRoster,
    read_signatures,
    signers,
    verify_update,
    write_signatures,
)

#: The first byte of a control object in a channel's stream (cells.FLAG_CONTROL).
TAG_REKEY = 1
TAG_ACK = 2
TAG_BOTH = 3
#: An announcement of officers' new epoch keys (:mod:`.key_announce`).
TAG_KEYS = 4
#: An officer's signed anchor of his mission's audit log (:mod:`.audit_anchor`).
TAG_ANCHOR = 5
#: Where the peer reads a direction another device took over from (:class:`ChannelResume`).
TAG_RESUME = 6
_MAX_BOX = 4096


def seed_for(new_secret: bytes, mission_id: bytes, version: int, channel_id: bytes) -> bytes:
    """The channel's new seed, from the mission secret a removal gives those who stay."""
    if len(new_secret) != KEY_LEN:
        raise DecodeError("the mission secret has the wrong length")
    info = labels.CHANNEL_REKEY_SEED + mission_id + version.to_bytes(4, "big") + channel_id
    return hkdf(new_secret, salt=None, info=info)


def commitment(seed: bytes) -> bytes:
    return sha256(labels.CHANNEL_REKEY_COMMIT, seed)


def _statement(channel_id: bytes, mission_id: bytes, version: int, commit: bytes) -> bytes:
    return channel_id + mission_id + version.to_bytes(4, "big") + commit


def sign_statement(
    officer: Officer, channel_id: bytes, mission_id: bytes, version: int, seed: bytes
) -> tuple[bytes, bytes]:
    """One officer's signature binding the channel's new seed to the roster change."""
    data = _statement(channel_id, mission_id, version, commitment(seed))
    return officer.officer_id, officer.signing_key.sign_hybrid(labels.SIG_CHANNEL_REKEY, data)


def chain_for(seed: bytes, channel_id: bytes, base_round: int) -> SlotChain:
    """The slot chain the channel moves to, starting at ``base_round``."""
    return SlotChain.start(hkdf(seed, salt=channel_id, info=labels.CHANNEL_REKEY_CHAIN), base_round)


def _box_info(channel_id: bytes, officer_id: bytes) -> bytes:
    return labels.HPKE_CHANNEL_REKEY + channel_id + officer_id


@dataclass(frozen=True, slots=True)
class ChannelRekey:
    """The initiating mission's move of a channel to a new slot chain."""

    from_mission: bytes
    #: The change that removed an officer: the new roster, signed by ``k`` of the previous one.
    change: SignedRoster
    #: The first round of the new chain (the initiator's next round when it queued this).
    base_round: int
    boxes: tuple[tuple[bytes, bytes], ...]  # (peer officer id, HPKE box of the seed)
    signatures: tuple[tuple[bytes, bytes], ...]  # k officers of the new roster: the statement

    @property
    def version(self) -> int:
        return self.change.roster.version

    def encode(self) -> bytes:
        w = Writer().u8(TAG_REKEY).fixed(self.from_mission, HASH_LEN).u64(self.base_round)
        w.var(self.change.encode()).u8(len(self.boxes))
        for oid, box in self.boxes:
            w.fixed(oid, OFFICER_ID_LEN).var(box)
        return write_signatures(w, self.signatures).bytes()

    @classmethod
    def decode(cls, raw: bytes) -> ChannelRekey:
        r = Reader(raw)
        if r.u8() != TAG_REKEY:
            raise DecodeError("not a channel re-key")
        frm, base = r.fixed(HASH_LEN), r.u64()
        change = SignedRoster.decode(r.var(256 * 1024))
        count = r.u8()
        if count > MAX_OFFICERS:
            raise DecodeError("too many sealed seeds in a channel re-key")
        boxes = tuple((r.fixed(OFFICER_ID_LEN), r.var(_MAX_BOX)) for _ in range(count))
        sigs = read_signatures(r, MAX_OFFICERS, "channel re-key")
        r.end()
        return cls(frm, change, base, boxes, sigs)


def recipients(
    certs: tuple[EpochKeyCert, ...], card_roster: Roster, newest: Roster | None
) -> tuple[EpochKeyCert, ...]:
    """The peer officers a re-key's seed is sealed to: those of the peer's card,
    less any the peer's own later re-key showed removed (its card may not have
    come yet; an officer it removed must not learn our new seed). A key the card
    lists for anyone its roster does not name gets nothing: one officer signs a
    card, and only the keys of its roster's officers are checked."""
    roster = newest if newest is not None and newest.version > card_roster.version else card_roster
    return tuple(c for c in certs if roster.contains(c.officer_id))


def make_rekey(
    channel_id: bytes,
    from_mission: bytes,
    change: SignedRoster,
    base_round: int,
    seed: bytes,
    peer_certs: tuple[EpochKeyCert, ...],
    signatures: tuple[tuple[bytes, bytes], ...],
) -> ChannelRekey:
    """Seal ``seed`` to each of the peer's officers and bundle the statement's signatures.

    Refuses (``SignatureError``) unless ``k`` officers of the new roster signed
    this seed's statement: a device never sends a re-key its peer would refuse.
    """
    rekey = ChannelRekey(
        from_mission,
        change,
        base_round,
        tuple(
            (c.officer_id, c.public_key.seal(seed, _box_info(channel_id, c.officer_id)))
            for c in peer_certs
        ),
        signatures,
    )
    _check_statement(rekey, channel_id, change.roster, seed)
    return rekey


def _check_statement(rekey: ChannelRekey, channel_id: bytes, roster: Roster, seed: bytes) -> None:
    verify_statement(rekey.signatures, channel_id, rekey.from_mission, roster, seed)


def verify_statement(
    signatures: tuple[tuple[bytes, bytes], ...],
    channel_id: bytes,
    mission_id: bytes,
    roster: Roster,
    seed: bytes,
) -> None:
    """Raise ``SignatureError`` unless ``k`` officers of ``roster`` signed the seed's statement."""
    data = _statement(channel_id, mission_id, roster.version, commitment(seed))
    good = signers(
        roster,
        signatures,
        lambda vk, sig: vk.verify_hybrid(sig, labels.SIG_CHANNEL_REKEY, data),
    )
    if len(good) < roster.threshold:
        raise SignatureError(
            f"a channel re-key needs {roster.threshold} officers' signatures on its seed; "
            f"{len(good)} verify"
        )


def roster_of(rekey: ChannelRekey, peer_roster: Roster) -> Roster | None:
    """The peer's roster the re-key was made under, checked against the one held here.

    ``None`` when this device holds a roster of the peer older than the change's
    previous one (it waits for the peer's new card). Raises ``RosterError`` when
    the change does not follow the roster held (a forged or foreign change).
    """
    new = rekey.change.roster
    if new.version == peer_roster.version:
        if not equal(new.hash, peer_roster.hash):
            raise RosterError("a channel re-key names a roster the peer never had")
        return peer_roster
    if new.version == peer_roster.version + 1:
        return verify_update(peer_roster, rekey.change)
    if new.version < peer_roster.version:
        raise RosterError("a channel re-key names an earlier roster of the peer")
    return None


def known_signers(rekey: ChannelRekey, roster: Roster) -> set[bytes]:
    """Officers of ``roster`` (the peer's, as held here) whose signature on the
    re-key's roster change verifies. A re-key under a roster this device does
    not hold yet waits for the peer's card only on the word of one of them:
    whoever else holds the channel's keys (an officer the change removed, once
    the card that removes him is in) could otherwise stop the channel with a
    re-key claiming a roster that never comes."""
    body = rekey.change.roster.encode()
    return signers(
        roster,
        rekey.change.signatures,
        lambda vk, sig: vk.verify_hybrid(sig, labels.SIG_ROSTER, body),
    )


def open_rekey(
    rekey: ChannelRekey,
    channel_id: bytes,
    roster: Roster,
    officer_id: bytes,
    keys: tuple[KemPrivateKey, ...],
) -> bytes:
    """The seed sealed to ``officer_id``, once ``k`` officers of ``roster`` vouch for it."""
    box = next((b for o, b in rekey.boxes if equal(o, officer_id)), None)
    if box is None:
        raise AuthenticationError("the channel re-key carries no seed for this officer")
    seed = None
    for key in keys:
        try:
            seed = key.open(box, _box_info(channel_id, officer_id))
            break
        except AuthenticationError:
            continue
    if seed is None or len(seed) != KEY_LEN:
        raise AuthenticationError("the channel re-key's seed does not open with this device's keys")
    _check_statement(rekey, channel_id, roster, seed)
    return seed


@dataclass(frozen=True, slots=True)
class RekeyAck:
    """The peer's answer: "my rounds after this one use the new chain too".

    ``both``: the answer to a re-key that crossed one of ours (each side's
    re-key was under way when the other's came): the MAC and the chain are
    from the two seeds combined (:func:`combined_seed`), and ``base_round`` is
    the combined chain's.
    """

    base_round: int
    mac: bytes
    both: bool = False

    def encode(self) -> bytes:
        tag = TAG_BOTH if self.both else TAG_ACK
        return Writer().u8(tag).u64(self.base_round).fixed(self.mac, HASH_LEN).bytes()

    @classmethod
    def decode(cls, raw: bytes) -> RekeyAck:
        r = Reader(raw)
        tag = r.u8()
        if tag not in (TAG_ACK, TAG_BOTH):
            raise DecodeError("not a channel re-key acknowledgement")
        out = cls(r.u64(), r.fixed(HASH_LEN), both=tag == TAG_BOTH)
        r.end()
        return out


def _ack_mac(seed: bytes, channel_id: bytes, base_round: int) -> bytes:
    key = hkdf(seed, salt=channel_id, info=labels.CHANNEL_REKEY_ACK)
    return hmac_sha256(key, labels.CHANNEL_REKEY_ACK, channel_id, base_round.to_bytes(8, "big"))


def make_ack(seed: bytes, channel_id: bytes, base_round: int, both: bool = False) -> RekeyAck:
    return RekeyAck(base_round, _ack_mac(seed, channel_id, base_round), both)


def verify_ack(ack: RekeyAck, seed: bytes, channel_id: bytes) -> None:
    if len(channel_id) != CHANNEL_ID_LEN or not equal(
        ack.mac, _ack_mac(seed, channel_id, ack.base_round)
    ):
        raise AuthenticationError("a channel re-key acknowledgement does not verify")


@dataclass(frozen=True, slots=True)
class ChannelResume:
    """The peer's answer to a takeover (``protocol-v1.md`` §7.8): it reads the
    direction taken over from ``read_from`` on, and holds ``seq`` messages of it,
    the last with transcript hash ``head``. MACed under the takeover's seed,
    which only the officers who stay and the peer's officers can open."""

    read_from: int
    seq: int
    head: bytes
    mac: bytes

    def encode(self) -> bytes:
        w = Writer().u8(TAG_RESUME).u64(self.read_from).u64(self.seq)
        return w.fixed(self.head, HASH_LEN).fixed(self.mac, HASH_LEN).bytes()

    @classmethod
    def decode(cls, raw: bytes) -> ChannelResume:
        r = Reader(raw)
        if r.u8() != TAG_RESUME:
            raise DecodeError("not an answer to a takeover of a channel")
        out = cls(r.u64(), r.u64(), r.fixed(HASH_LEN), r.fixed(HASH_LEN))
        r.end()
        return out


def _resume_mac(seed: bytes, channel_id: bytes, read_from: int, seq: int, head: bytes) -> bytes:
    key = hkdf(seed, salt=channel_id, info=labels.CHANNEL_RESUME)
    return hmac_sha256(
        key,
        labels.CHANNEL_RESUME,
        channel_id,
        read_from.to_bytes(8, "big"),
        seq.to_bytes(8, "big"),
        head,
    )


def make_resume(
    seed: bytes, channel_id: bytes, read_from: int, seq: int, head: bytes
) -> ChannelResume:
    return ChannelResume(read_from, seq, head, _resume_mac(seed, channel_id, read_from, seq, head))


def verify_resume(resume: ChannelResume, seed: bytes, channel_id: bytes) -> None:
    want = _resume_mac(seed, channel_id, resume.read_from, resume.seq, resume.head)
    if len(channel_id) != CHANNEL_ID_LEN or not equal(resume.mac, want):
        raise AuthenticationError("an answer to a takeover of the channel does not verify")


def seed_part(seed: bytes, channel_id: bytes) -> bytes:
    """What of a seed goes into crossed re-keys' combined seed: one-way, so a
    device that keeps it (to answer a crossing it may learn of later) keeps
    nothing that derives that seed's chain."""
    return sha256(labels.CHANNEL_REKEY_BOTH, channel_id, seed)


def combined_seed(
    own_part: bytes, peer_part: bytes, out_direction: int, channel_id: bytes
) -> bytes:
    """The seed both directions end on when two re-keys cross, from the two
    seeds' parts (:func:`seed_part`). Each removed officer had one of the two
    seeds sealed to him (the other side did not yet know he was gone), never
    the other, which his own mission derived without him."""
    first, second = (own_part, peer_part) if out_direction == 0 else (peer_part, own_part)
    return hkdf(first + second, salt=channel_id, info=labels.CHANNEL_REKEY_BOTH)


def tag_of(raw: bytes) -> int:
    """Which control object ``raw`` is: ``TAG_REKEY``, ``TAG_ACK``, ``TAG_BOTH``,
    ``TAG_KEYS``, ``TAG_ANCHOR``, ``TAG_RESUME``."""
    if not raw or raw[0] not in (TAG_REKEY, TAG_ACK, TAG_BOTH, TAG_KEYS, TAG_ANCHOR, TAG_RESUME):
        raise DecodeError("unknown control object in a channel's stream")
    return raw[0]


def control_fragments(raw: bytes, cell_size: int) -> list[Fragment]:
    """A control object cut into the channel's cells (flagged control)."""
    mid = sha256(b"control", raw)[:16]
    return fragment(raw, mid, fragment_capacity(cell_size), control=True)
