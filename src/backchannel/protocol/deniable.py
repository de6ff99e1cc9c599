"""Deniable authentication on a channel: MACs under keys both sides hold.

On a channel for the record, a message carries ``k`` signatures of the
sending mission's officers: anyone can later check who sent it. A *deniable*
message carries instead one MAC under a key derived from the channel secret,
which the officers of **both** sides hold (``docs/spec/deniable-v1.md``). The
receiver knows the message came from the other side, because it did not
write it itself; a third party learns nothing, because either side could
have computed the same MAC, and the rest of a message (its sealing, its
header) needs no sender secret at all (:func:`backchannel.protocol.sealing.seal`
uses only the recipients' public keys). This is the message authentication of
Off-the-Record messaging (Borisov, Goldberg and Brewer, 2004), over the
channel's existing pairing.

Keys come from the channel's *MAC root* (:func:`mac_root`, from the channel
secret), per direction and per sequence number, so a key learnt for one
message forges no other message of the channel. Receipts get the same
treatment (:func:`receipt_tag`). What stays provable: that the channel
exists between the two sides (pairing is signed, and the relay's log proves
that cells existed); what either endpoint's device shows to whoever seizes
it.
"""

from __future__ import annotations

from backchannel.crypto import labels
from backchannel.crypto.primitives import HASH_LEN, KEY_LEN, equal, hkdf, hmac_sha256
from backchannel.errors import AuthenticationError, DecodeError, LocalProtocolError
from backchannel.protocol.channel import CHANNEL_ID_LEN
from backchannel.protocol.message import MAC_LEN, SealedMessage


def mac_root(channel_secret: bytes) -> bytes:
    """The root of a deniable channel's MAC keys; every officer of both sides derives it."""
    if len(channel_secret) != KEY_LEN:
        raise DecodeError("a channel secret is 32 bytes")
    return hkdf(channel_secret, salt=None, info=labels.DENIABLE_ROOT)


def _check(root: bytes, channel_id: bytes, direction: int) -> None:
    if len(root) != KEY_LEN or len(channel_id) != CHANNEL_ID_LEN:
        raise DecodeError("a MAC root is 32 bytes and a channel id 16")
    if direction not in (0, 1):
        raise DecodeError("a direction is 0 or 1")


def message_key(root: bytes, channel_id: bytes, direction: int, seq: int) -> bytes:
    """The MAC key of message ``seq`` in ``direction``: both sides can compute it."""
    _check(root, channel_id, direction)
    info = labels.DENIABLE_MESSAGE_KEY + channel_id + bytes([direction]) + seq.to_bytes(8, "big")
    return hkdf(root, salt=None, info=info)


def authenticate(msg: SealedMessage, root: bytes) -> SealedMessage:
    """The message with its deniable MAC (its header says its channel, direction, seq,
    and that it is deniable)."""
    h = msg.header
    if not h.deniable:
        raise LocalProtocolError("the message's header does not say it is deniable")
    key = message_key(root, h.channel_id, h.direction, h.seq)
    return msg.with_mac(hmac_sha256(key, labels.DENIABLE_MESSAGE, msg.digest))


def verify(msg: SealedMessage, root: bytes, channel_id: bytes, direction: int) -> None:
    """Raise unless ``msg`` is a deniable message of this channel and direction.

    A message for the record (signatures, no MAC) is refused here: a channel
    whose policy is deniable takes no signed messages, and the other way round.
    """
    h = msg.header
    if not msg.mac or msg.signatures or not h.deniable:
        raise AuthenticationError("this channel takes deniable messages only")
    if not equal(h.channel_id, channel_id) or h.direction != direction:
        raise AuthenticationError("the message belongs to another channel or direction")
    key = message_key(root, channel_id, direction, h.seq)
    if not equal(hmac_sha256(key, labels.DENIABLE_MESSAGE, msg.digest), msg.mac):
        raise AuthenticationError("the message's MAC does not verify")


def receipt_tag(
    root: bytes, channel_id: bytes, acked_direction: int, seq: int, head: bytes
) -> bytes:
    """The deniable form of a receipt: "we hold your messages up to ``seq``, whose
    transcript hash is ``head``", under a key both sides hold."""
    _check(root, channel_id, acked_direction)
    if len(head) != HASH_LEN:
        raise DecodeError("a transcript hash is 32 bytes")
    key = hkdf(
        root, salt=None,
        info=labels.DENIABLE_RECEIPT_KEY + channel_id + bytes([acked_direction]),
    )  # fmt: skip
    return hmac_sha256(key, labels.DENIABLE_RECEIPT, seq.to_bytes(8, "big"), head)


def receipt_field(tag: bytes) -> bytes:
    """A receipt tag in a receipt's 64-byte signature field (zero-padded)."""
    return tag + bytes(64 - MAC_LEN)


def verify_receipt(
    tag: bytes,
    root: bytes,
    channel_id: bytes,
    acked_direction: int,
    seq: int,
    head: bytes,
) -> None:
    """``tag`` as it stands in a receipt's signature field (:func:`receipt_field`)."""
    if len(tag) != 64 or any(tag[MAC_LEN:]):
        raise AuthenticationError("the receipt's MAC does not verify")
    if not equal(receipt_tag(root, channel_id, acked_direction, seq, head), tag[:MAC_LEN]):
        raise AuthenticationError("the receipt's MAC does not verify")
