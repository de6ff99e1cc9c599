"""Pairwise streams: joint objects between two colleagues under a ratcheted key.

Sealing every joint object with HPKE to the recipient's hybrid key costs an
encapsulation (1,120 bytes) per object: a co-signature of 150 bytes became
1.3 KB, a co-sign request 2.7 KB, and a mailbox cell held one and a half of
them. A *stream* pays it once in :data:`REOPEN` objects: every object of the
stream is sealed with the next key of a symmetric ratchet (each key used once,
then forgotten on both sides), and every :data:`REOPEN`-th, the first
included, also carries the chain key of its own position sealed with HPKE to
the recipient's epoch key, so a reader that lost the stream's beginning joins
it there::

    stream_obj = sender_id[16] | 0x02 | stream_id[16] | u32 n | opener | nonce[12]
               | AEAD(k_n, nonce, object || ed25519_sig("…/sig/joint", object), aad)
    opener   = u32 epoch | HPKE(kem_pk_recipient(epoch), ck_n, info)
               (when n is a multiple of 16; empty otherwise)
    info     = "…/hpke/stream" || mission_id || sender_id || recipient_id || stream_id || u32 n
    aad      = "…/stream/aad" || mission_id || recipient_id || stream_obj[0:37] || opener
    k_n      = HMAC(ck_n, "…/stream/key")
    ck_n+1   = HMAC(ck_n, "…/stream/chain")

The object inside is the one :mod:`backchannel.protocol.joint` defines,
signed by its sender as before: the stream hides it, the signature still says
who sent it. A reader keeps, per stream, the chain key of the next position
``n`` and the keys of the positions it passed over (at most
:data:`MAX_KEPT`): objects of one stream usually come in order, but a mailbox
that changes its secret reads the old and the new mailbox lane side by side, so a
later object may come first. An object at a position already read (a
replay) is refused; one further along advances the chain (at most
:data:`MAX_SKIP` positions), keeping the keys it passed. Nothing changes in
the reader's state unless the object opens and verifies. A sender begins a
new stream when the recipient's epoch key changes and after
:data:`STREAM_OBJECTS` objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from backchannel.crypto import labels
from backchannel.crypto.kem import ENC_LEN
from backchannel.crypto.primitives import (
    KEY_LEN,
    NONCE_LEN,
    TAG_LEN,
    aead_open,
    aead_seal,
    hmac_sha256,
)
from backchannel.crypto.signing import ED25519_SIG_LEN
from backchannel.errors import (
    AuthenticationError,
    DecodeError,
    ReplayDetected,
    SignatureError,
)
from backchannel.protocol.identity import OFFICER_ID_LEN, EpochKey, EpochKeyCert, Officer, Rng
from backchannel.protocol.joint import JointObject, signed, verified
from backchannel.protocol.roster import Roster

#: The form byte that follows the sender id (an HPKE-sealed object has none).
FORM = 0x02
STREAM_ID_LEN = 16
#: Objects a sender puts in one stream before it begins another.
STREAM_OBJECTS = 64
#: Every how many positions an object carries its chain key sealed with HPKE.
REOPEN = 16
#: The most objects a reader skips over to reach one further along a stream.
MAX_SKIP = 1024
#: The most keys of passed-over positions a reader keeps per stream.
MAX_KEPT = 256
_HEADER_LEN = OFFICER_ID_LEN + 1 + STREAM_ID_LEN + 4
_OPENER_LEN = 4 + ENC_LEN + KEY_LEN + TAG_LEN


@dataclass(frozen=True, slots=True)
class StreamOut:
    """The sending end of a stream: its id, the next chain key and position."""

    stream_id: bytes
    chain_key: bytes = field(repr=False)
    n: int
    #: The recipient's key epoch the stream's chain key is sealed to.
    epoch: int


@dataclass(frozen=True, slots=True)
class StreamIn:
    """The reading end of a stream: the chain key of position ``n``, the next not
    yet passed, and the keys of positions passed over without their object."""

    chain_key: bytes = field(repr=False)
    n: int
    #: (position, key), oldest first.
    skipped: tuple[tuple[int, bytes], ...] = field(default=(), repr=False)


def stream_for(stream: StreamOut | None, recipient: EpochKeyCert, rng: Rng) -> StreamOut:
    """``stream`` if it still serves ``recipient``, else a new one."""
    if stream is not None and stream.epoch == recipient.epoch and stream.n < STREAM_OBJECTS:
        return stream
    return StreamOut(rng(STREAM_ID_LEN), rng(KEY_LEN), 0, recipient.epoch)


def _step(chain_key: bytes) -> tuple[bytes, bytes]:
    """(the key of this position, the chain key of the next)."""
    return (
        hmac_sha256(chain_key, labels.JOINT_STREAM_KEY),
        hmac_sha256(chain_key, labels.JOINT_STREAM_CHAIN),
    )


def _info(mission_id: bytes, sender: bytes, recipient: bytes, stream_id: bytes, n: int) -> bytes:
    return (
        labels.HPKE_JOINT_STREAM
        + mission_id
        + sender
        + recipient
        + stream_id
        + n.to_bytes(4, "big")
    )


def _aad(mission_id: bytes, recipient: bytes, header: bytes, opener: bytes) -> bytes:
    return labels.JOINT_STREAM_AAD + mission_id + recipient + header + opener


def seal(
    obj: JointObject,
    sender: Officer,
    recipient: EpochKeyCert,
    mission_id: bytes,
    stream: StreamOut,
    rng: Rng,
) -> tuple[bytes, StreamOut]:
    """Sign ``obj``, seal it at ``stream``'s next position: (sealed, the stream after)."""
    if stream.epoch != recipient.epoch:
        raise DecodeError("stream was opened to another key of the recipient")
    plain = signed(obj, sender, recipient)
    header = obj.sender_id + bytes([FORM]) + stream.stream_id + stream.n.to_bytes(4, "big")
    opener = b""
    if stream.n % REOPEN == 0:
        info = _info(mission_id, obj.sender_id, obj.recipient_id, stream.stream_id, stream.n)
        box = recipient.public_key.seal(stream.chain_key, info)
        opener = stream.epoch.to_bytes(4, "big") + box
    key, nxt = _step(stream.chain_key)
    nonce = rng(NONCE_LEN)
    box = aead_seal(key, nonce, plain, _aad(mission_id, obj.recipient_id, header, opener))
    return header + opener + nonce + box, replace(stream, chain_key=nxt, n=stream.n + 1)


def stream_of(sealed: bytes) -> tuple[bytes, bytes, int] | None:
    """(sender_id, stream_id, n) of a stream object; None for an object sealed with HPKE alone."""
    if len(sealed) < _HEADER_LEN or sealed[OFFICER_ID_LEN] != FORM:
        return None
    stream_id = sealed[OFFICER_ID_LEN + 1 : OFFICER_ID_LEN + 1 + STREAM_ID_LEN]
    n = int.from_bytes(sealed[_HEADER_LEN - 4 : _HEADER_LEN], "big")
    return sealed[:OFFICER_ID_LEN], stream_id, n


def open_stream(
    sealed: bytes,
    me: Officer,
    keys: Sequence[EpochKey],
    roster: Roster,
    mission_id: bytes,
    stream: StreamIn | None,
) -> tuple[JointObject, StreamIn]:
    """Open a stream object sent to ``me``, given the stream's reading end so far
    (None: a stream not read yet, joined at an object that carries its chain
    key). Returns the object and the reading end after it; the caller keeps
    that only once it has acted on the object."""
    found = stream_of(sealed)
    if found is None:
        raise DecodeError("not a stream object")
    sender_id, stream_id, n = found
    if not roster.contains(sender_id):
        raise SignatureError("joint object from an officer not on our roster")
    header, rest = sealed[:_HEADER_LEN], sealed[_HEADER_LEN:]
    opener = b""
    if n % REOPEN == 0:
        if len(rest) < _OPENER_LEN:
            raise DecodeError("joint object too short")
        opener, rest = rest[:_OPENER_LEN], rest[_OPENER_LEN:]
    if len(rest) < NONCE_LEN + TAG_LEN + ED25519_SIG_LEN:
        raise DecodeError("joint object too short")
    if stream is None:
        if not opener:
            raise AuthenticationError("joint object on a stream whose opening never arrived")
        chain_key = _open_opener(opener, me, keys, mission_id, sender_id, stream_id, n)
        key, nxt = _step(chain_key)
        after = StreamIn(nxt, n + 1)
    elif n < stream.n:
        kept = dict(stream.skipped)
        if n not in kept:
            raise ReplayDetected("joint object arrived again")
        key = kept[n]
        after = StreamIn(stream.chain_key, stream.n, tuple(p for p in stream.skipped if p[0] != n))
    else:
        if n - stream.n > MAX_SKIP:
            raise DecodeError("joint object too far along its stream")
        chain_key = stream.chain_key
        passed = list(stream.skipped)
        for i in range(stream.n, n):
            skipped_key, chain_key = _step(chain_key)
            passed.append((i, skipped_key))
        key, nxt = _step(chain_key)
        after = StreamIn(nxt, n + 1, tuple(passed[-MAX_KEPT:]))
    aad = _aad(mission_id, me.officer_id, header, opener)
    plain = aead_open(key, rest[:NONCE_LEN], rest[NONCE_LEN:], aad)
    return verified(plain, sender_id, me, roster), after


def _open_opener(
    opener: bytes,
    me: Officer,
    keys: Sequence[EpochKey],
    mission_id: bytes,
    sender_id: bytes,
    stream_id: bytes,
    n: int,
) -> bytes:
    epoch = int.from_bytes(opener[:4], "big")
    key = next((k for k in keys if k.epoch == epoch), None)
    if key is None:
        raise AuthenticationError("joint stream sealed to a key epoch this device does not hold")
    info = _info(mission_id, sender_id, me.officer_id, stream_id, n)
    chain_key = key.private_key.open(opener[4:], info)
    if len(chain_key) != KEY_LEN:
        raise DecodeError("joint stream key has the wrong length")
    return chain_key
