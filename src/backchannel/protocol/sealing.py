"""Epochs, forward-ratcheting share keys, sealing, co-signing and joint opening.

Per key epoch the sender draws one fresh 32-byte secret *per recipient
officer* and seals each to that officer's certified epoch key with HPKE
(ML-KEM-768 + X25519): the post-quantum cost (1,136 bytes a box) is paid once
per epoch, not per message. Officer ``i``'s secret roots a chain::

    ck[0]      = HKDF(E_i, info = label || epoch_id || officer_id)
    key[j]     = HMAC(ck[j], 0x01)      share key of message j
    ck[j + 1]  = HMAC(ck[j], 0x02)      the old ck is dropped

Each message draws a random content key ``K``, encrypts its payload under it
and splits ``K`` ``k``-of-``n`` (:mod:`backchannel.crypto.sharing`); officer
``i``'s share is encrypted under his ``key[j]``. One officer therefore opens
only his own share and learns nothing of ``K`` without ``k - 1`` others.

The author signs the message digest; ``k - 1`` other officers co-sign after
checking the plaintext themselves. The receiver accepts a message only with
``k`` valid Ed25519 signatures from distinct officers of the pinned roster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from backchannel.crypto import labels
from backchannel.crypto.primitives import (
    KEY_LEN,
    NONCE_LEN,
    aead_open,
    aead_seal,
    equal,
    hkdf,
    hmac_sha256,
    sha256,
)
from backchannel.crypto.sharing import Share, combine, split
from backchannel.errors import (
    AuthenticationError,
    DecodeError,
    LocalProtocolError,
    NotEnoughSignatures,
    SignatureError,
)
from backchannel.protocol.channel import CHANNEL_ID_LEN
from backchannel.protocol.codec import Reader, Writer, expect_version
from backchannel.protocol.constants import MAX_OFFICERS
from backchannel.protocol.identity import OFFICER_ID_LEN, EpochKey, EpochKeyCert, Officer, Rng
from backchannel.protocol.message import EPOCH_ID_LEN, Header, SealedMessage
from backchannel.protocol.payload import Payload
from backchannel.protocol.roster import Roster, signers

_ANNOUNCE_VERSION = 1
_ZERO_NONCE = bytes(NONCE_LEN)
#: How far ahead of its chain a recipient will derive keys for one message.
MAX_SKIP = 4096


# --- share key chains -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShareChain:
    """One officer's chain within one epoch, positioned at ``index``."""

    index: int
    chain_key: bytes

    def __repr__(self) -> str:
        return f"ShareChain(index={self.index}, <secret>)"

    @classmethod
    def root(cls, epoch_secret: bytes, epoch_id: bytes, officer_id: bytes) -> ShareChain:
        ck = hkdf(epoch_secret, salt=None, info=labels.SHARE_CHAIN + epoch_id + officer_id)
        return cls(0, ck)

    def key_at(self, index: int) -> tuple[bytes, ShareChain]:
        """The share key of message ``index`` and the chain positioned after it."""
        if index < self.index:
            raise LocalProtocolError("that share key was erased")
        if index - self.index > MAX_SKIP:
            raise DecodeError("chain index too far ahead")
        ck = self.chain_key
        for _ in range(index - self.index):
            ck = hmac_sha256(ck, labels.SHARE_CHAIN_NEXT)
        key = hmac_sha256(ck, labels.SHARE_CHAIN_KEY)
        return key, ShareChain(index + 1, hmac_sha256(ck, labels.SHARE_CHAIN_NEXT))


# --- epochs ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Announcement:
    """The per-epoch HPKE boxes, one per recipient officer."""

    channel_id: bytes
    direction: int
    epoch_no: int
    recipient_roster: int
    boxes: tuple[tuple[bytes, int, bytes], ...]  # (officer_id, key epoch, HPKE box)

    def encode(self) -> bytes:
        w = Writer().u8(_ANNOUNCE_VERSION).fixed(self.channel_id, CHANNEL_ID_LEN)
        w.u8(self.direction).u32(self.epoch_no).u32(self.recipient_roster).u8(len(self.boxes))
        for oid, key_epoch, box in self.boxes:
            w.fixed(oid, OFFICER_ID_LEN).u32(key_epoch).var(box)
        return w.bytes()

    @classmethod
    def decode(cls, raw: bytes) -> Announcement:
        r = Reader(raw)
        expect_version(r, _ANNOUNCE_VERSION, "epoch announcement")
        cid, direction, epoch_no, roster = r.fixed(CHANNEL_ID_LEN), r.u8(), r.u32(), r.u32()
        n = r.u8()
        if n > MAX_OFFICERS:
            raise DecodeError("too many epoch boxes")
        boxes = tuple((r.fixed(OFFICER_ID_LEN), r.u32(), r.var(2048)) for _ in range(n))
        r.end()
        return cls(cid, direction, epoch_no, roster, boxes)

    @property
    def epoch_id(self) -> bytes:
        return epoch_id_of(self.encode())


def epoch_id_of(encoded_announcement: bytes) -> bytes:
    return sha256(labels.EPOCH_ID, encoded_announcement)[:EPOCH_ID_LEN]


def _box_info(channel_id: bytes, direction: int, epoch_no: int, officer_id: bytes) -> bytes:
    return (
        labels.HPKE_EPOCH_SECRET
        + channel_id
        + bytes([direction])
        + epoch_no.to_bytes(4, "big")
        + officer_id
    )


@dataclass(frozen=True, slots=True)
class SendEpoch:
    """The sender's state for one epoch: every recipient officer's chain."""

    epoch_id: bytes
    announcement: bytes
    recipient_roster: int
    chains: tuple[ShareChain, ...]  # in recipient roster order
    next_index: int
    announced: bool = False

    def __repr__(self) -> str:
        return f"SendEpoch(next_index={self.next_index}, <secret>)"


def start_epoch(
    channel_id: bytes,
    direction: int,
    epoch_no: int,
    recipients: Roster,
    certs: Sequence[EpochKeyCert],
    rng: Rng,
) -> SendEpoch:
    """Open a new epoch towards ``recipients``; ``certs`` must be verified, one per officer."""
    by_officer = {c.officer_id: c for c in certs}
    boxes: list[tuple[bytes, int, bytes]] = []
    secrets: list[bytes] = []
    for officer in recipients.officers:
        cert = by_officer.get(officer.officer_id)
        if cert is None:
            raise LocalProtocolError("no epoch key for one of the recipient officers")
        secret = rng(KEY_LEN)
        info = _box_info(channel_id, direction, epoch_no, officer.officer_id)
        boxes.append((officer.officer_id, cert.epoch, cert.public_key.seal(secret, info)))
        secrets.append(secret)
    ann = Announcement(channel_id, direction, epoch_no, recipients.version, tuple(boxes)).encode()
    eid = epoch_id_of(ann)
    chains = tuple(
        ShareChain.root(s, eid, o.officer_id)
        for s, o in zip(secrets, recipients.officers, strict=True)
    )
    return SendEpoch(eid, ann, recipients.version, chains, 0)


@dataclass(frozen=True, slots=True)
class RecvEpoch:
    """One recipient officer's state for one sender epoch."""

    epoch_id: bytes
    officer_index: int  # 1-based in the recipient roster
    chain: ShareChain
    skipped: tuple[tuple[int, bytes], ...] = ()

    def __repr__(self) -> str:
        return f"RecvEpoch(officer_index={self.officer_index}, <secret>)"

    def share_key(self, index: int) -> tuple[bytes, RecvEpoch]:
        """Share key for message ``index``; the key is erased from the new state."""
        for i, key in self.skipped:
            if i == index:
                rest = tuple(s for s in self.skipped if s[0] != index)
                return key, replace(self, skipped=rest)
        if index < self.chain.index:
            raise LocalProtocolError("that share key was used and erased")
        skipped = list(self.skipped)
        chain = self.chain
        while chain.index < index:
            k, chain = chain.key_at(chain.index)
            skipped.append((chain.index - 1, k))
        if len(skipped) > MAX_SKIP:
            raise DecodeError("too many skipped messages in one epoch")
        key, chain = chain.key_at(index)
        return key, RecvEpoch(self.epoch_id, self.officer_index, chain, tuple(skipped))


def accept_announcement(
    raw: bytes,
    channel_id: bytes,
    direction: int,
    roster: Roster,
    officer: Officer,
    epoch_keys: Sequence[EpochKey],
) -> RecvEpoch:
    """Open this officer's box of an epoch announcement."""
    ann = Announcement.decode(raw)
    if not equal(ann.channel_id, channel_id) or ann.direction != direction:
        raise AuthenticationError("decryption failed")
    index = roster.index_of(officer.officer_id)
    for oid, key_epoch, box in ann.boxes:
        if not equal(oid, officer.officer_id):
            continue
        for ek in epoch_keys:
            if ek.epoch == key_epoch:
                info = _box_info(channel_id, direction, ann.epoch_no, oid)
                secret = ek.private_key.open(box, info)
                eid = epoch_id_of(raw)
                return RecvEpoch(eid, index, ShareChain.root(secret, eid, oid))
        raise LocalProtocolError("the epoch key this message needs is no longer held")
    raise AuthenticationError("decryption failed")


# --- sealing -----------------------------------------------------------------


def _content_aad(header: Header) -> bytes:
    return labels.CONTENT_AAD + header.encode()


def _share_aad(header: Header, index: int) -> bytes:
    return labels.SHARE_AAD + header.encode() + bytes([index])


def seal(
    header: Header,
    payload: Payload,
    epoch: SendEpoch,
    recipients: Roster,
    rng: Rng,
    ahead: Sequence[SealedMessage] = (),
) -> tuple[SealedMessage, bytes, SendEpoch]:
    """Encrypt ``payload`` for ``recipients``; return the unsigned message, its
    content key (kept only for co-signers to check), and the advanced epoch.

    ``header`` must carry this epoch's id and next chain index. ``ahead``: the
    messages this one cannot go out before (drafts it chains on); if one of
    them carries the epoch's announcement, this one need not (were that one
    never to go, this one would be drafted again).
    """
    if not equal(header.epoch_id, epoch.epoch_id) or header.chain_index != epoch.next_index:
        raise LocalProtocolError("header does not match the epoch state")
    if header.kind != payload.kind or recipients.version != epoch.recipient_roster:
        raise LocalProtocolError("header and payload disagree")
    content_key = rng(KEY_LEN)
    content = aead_seal(content_key, _ZERO_NONCE, payload.encode(), _content_aad(header))
    shares = split(content_key, recipients.threshold, recipients.n, rng)
    share_cts: list[bytes] = []
    chains: list[ShareChain] = []
    for i, (share, chain) in enumerate(zip(shares, epoch.chains, strict=True), start=1):
        key, nxt = chain.key_at(epoch.next_index)
        share_cts.append(aead_seal(key, _ZERO_NONCE, share.encode(), _share_aad(header, i)))
        chains.append(nxt)
    carried = any(m.announcement and equal(m.header.epoch_id, epoch.epoch_id) for m in ahead)
    announcement = b"" if epoch.announced or carried else epoch.announcement
    msg = SealedMessage(header, announcement, content, tuple(share_cts))
    new_epoch = replace(epoch, chains=tuple(chains), next_index=epoch.next_index + 1)
    return msg, content_key, new_epoch


def mark_sent(epoch: SendEpoch, msg: SealedMessage) -> SendEpoch:
    """Call once ``msg`` is queued: later messages of the epoch then omit the
    announcement. Until then every message carries it, so a draft that is
    rejected never leaves the recipients without it."""
    if msg.announcement and equal(msg.header.epoch_id, epoch.epoch_id):
        return replace(epoch, announced=True)
    return epoch


def sign(msg: SealedMessage, officer: Officer, roster: Roster) -> SealedMessage:
    """Add ``officer``'s signature (author or co-signer)."""
    if not roster.contains(officer.officer_id):
        raise LocalProtocolError("only an officer of the sending roster can sign")
    sig = officer.signing_key.sign_ed25519(labels.SIG_MESSAGE, msg.digest)
    return msg.with_signature(officer.officer_id, sig)


def draft_payload(msg: SealedMessage, content_key: bytes) -> Payload:
    """What a sealed draft carries, opened with its content key (the co-signer's view)."""
    raw = aead_open(content_key, _ZERO_NONCE, msg.content, _content_aad(msg.header))
    return Payload.decode(raw)


def check_draft(msg: SealedMessage, content_key: bytes, payload: Payload) -> None:
    """A co-signer's check that ``msg`` carries exactly ``payload``."""
    got = aead_open(content_key, _ZERO_NONCE, msg.content, _content_aad(msg.header))
    if not equal(got, payload.encode()):
        raise AuthenticationError("the sealed message does not carry the draft shown")


def valid_signers(msg: SealedMessage, roster: Roster) -> set[bytes]:
    digest = msg.digest
    return signers(
        roster, msg.signatures, lambda vk, sig: vk.verify_ed25519(sig, labels.SIG_MESSAGE, digest)
    )


def verify_signatures(msg: SealedMessage, roster: Roster) -> None:
    """Raise unless ``k`` distinct officers of the sender's roster signed ``msg``."""
    if msg.header.sender_roster != roster.version:
        raise SignatureError("message is signed under another roster version")
    unknown = [oid for oid, _ in msg.signatures if not roster.contains(oid)]
    if unknown:
        raise SignatureError("a signer is not on the sender's pinned roster")
    n = len(valid_signers(msg, roster))
    if n < roster.threshold:
        raise SignatureError(f"message needs {roster.threshold} officers' signatures; {n} verify")


def ready_to_send(msg: SealedMessage, roster: Roster, threshold: int | None = None) -> None:
    """The sender's own check before any cell leaves: ``k`` signatures (or ``threshold``,
    the mission policy's for a deniable message to a Track II contact)."""
    k = roster.threshold if threshold is None else threshold
    n = len(valid_signers(msg, roster))
    if n < k:
        raise NotEnoughSignatures(
            f"{n} of the {k} officers needed have signed; ask a colleague to co-sign"
        )


def decrypt_share(msg: SealedMessage, epoch: RecvEpoch) -> tuple[Share, RecvEpoch]:
    """This officer's share of ``msg``'s content key; the share key is then erased."""
    if not equal(msg.header.epoch_id, epoch.epoch_id):
        raise LocalProtocolError("message belongs to another epoch")
    i = epoch.officer_index
    if i > len(msg.shares):
        raise AuthenticationError("decryption failed")
    key, new_epoch = epoch.share_key(msg.header.chain_index)
    raw = aead_open(key, _ZERO_NONCE, msg.shares[i - 1], _share_aad(msg.header, i))
    share = Share.decode(raw)
    if share.index != i:
        raise AuthenticationError("decryption failed")
    return share, new_epoch


def content_key_of(shares: Sequence[Share], roster: Roster) -> bytes:
    """The content key ``k`` officers' shares give: it opens this one message only."""
    return combine(shares, roster.threshold, roster.n)


def open_with_key(msg: SealedMessage, content_key: bytes) -> Payload:
    """Decrypt ``msg``'s content with its content key; the payload is of the header's kind."""
    raw = aead_open(content_key, _ZERO_NONCE, msg.content, _content_aad(msg.header))
    payload = Payload.decode(raw)
    if payload.kind != msg.header.kind:
        raise AuthenticationError("decryption failed")
    return payload


def open_message(msg: SealedMessage, shares: Sequence[Share], roster: Roster) -> Payload:
    """Combine ``k`` officers' shares and decrypt (the joint opening)."""
    return open_with_key(msg, content_key_of(shares, roster))


def verify_on_record(msg: SealedMessage, content_key: bytes, roster: Roster) -> Payload:
    """What a third party checks of a message put on the record: ``k`` officers of the
    sender's roster (``roster``, the version the header names) signed it, and its
    content key opens it; the payload. Raises otherwise (a deniable message carries no
    signatures, so it never holds)."""
    if msg.deniable:
        raise SignatureError("a deniable message carries no signatures to put on the record")
    verify_signatures(msg, roster)
    return open_with_key(msg, content_key)
