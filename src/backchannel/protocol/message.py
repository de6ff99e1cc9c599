"""Sealed messages: header, epoch announcement, content, key shares, signatures.

Byte layout (all integers big-endian; ``var`` = u32 length + bytes)::

    header    = version u8 | flags_kind u8 | channel_id [16] | direction u8 | seq u64
              | prev_hash [32] | peer_seq u64 | peer_hash [32]
              | sender_roster u32 | recipient_roster u32
              | epoch_id [16] | chain_index u32 | created_at u64
    message   = var(header) | var(announcement) | var(content_ct)
              | u8 n | n * var(share_ct) | authenticator
    authenticator = u8 s | s * (officer_id [16] | ed25519 sig [64])   (for the record)
                  | 0xFF | mac [32]                                   (deniable)

``flags_kind`` is the message kind, with bit 7 set for a deniable message (so
the officers' signatures bind the choice). ``digest = SHA-256(label || message
without its authenticator)`` is what the
officers sign (or what the deniable MAC covers, :mod:`.deniable`) and what the
transcript chains.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from backchannel.crypto import labels
from backchannel.crypto.primitives import HASH_LEN, sha256
from backchannel.crypto.signing import ED25519_SIG_LEN
from backchannel.errors import DecodeError
from backchannel.protocol.channel import CHANNEL_ID_LEN
from backchannel.protocol.codec import Reader, Writer, expect_version
from backchannel.protocol.constants import MAX_OFFICERS
from backchannel.protocol.identity import OFFICER_ID_LEN
from backchannel.protocol.payload import MESSAGE_KINDS, MessageKind

_HEADER_VERSION = 1
EPOCH_ID_LEN = 16
MAX_ANNOUNCEMENT = 16 * 1024
MAX_CONTENT = 300 * 1024
MAX_SHARE_CT = 128
MESSAGE_ID_LEN = 16
#: The authenticator byte that marks a deniable message (a MAC, no signatures).
DENIABLE_MARK = 0xFF
#: The header's kind byte carries this bit for a deniable message.
DENIABLE_KIND_BIT = 0x80
MAC_LEN = 32


@dataclass(frozen=True, slots=True)
class Header:
    kind: MessageKind
    channel_id: bytes
    direction: int
    seq: int
    prev_hash: bytes
    peer_seq: int
    peer_hash: bytes
    sender_roster: int
    recipient_roster: int
    epoch_id: bytes
    chain_index: int
    created_at: int
    #: Sent deniably (a MAC instead of signatures, ``deniable-v1.md``): chosen by the
    #: author, approved with the rest of the header by every co-signer.
    deniable: bool = False
    _encoded: bytes = field(default=b"", init=False, repr=False, compare=False)

    def encode(self) -> bytes:
        if not self._encoded:
            object.__setattr__(self, "_encoded", self._encode())
        return self._encoded

    def _encode(self) -> bytes:
        return (
            Writer()
            .u8(_HEADER_VERSION)
            .u8(int(self.kind) | (DENIABLE_KIND_BIT if self.deniable else 0))
            .fixed(self.channel_id, CHANNEL_ID_LEN)
            .u8(self.direction)
            .u64(self.seq)
            .fixed(self.prev_hash, HASH_LEN)
            .u64(self.peer_seq)
            .fixed(self.peer_hash, HASH_LEN)
            .u32(self.sender_roster)
            .u32(self.recipient_roster)
            .fixed(self.epoch_id, EPOCH_ID_LEN)
            .u32(self.chain_index)
            .u64(self.created_at)
            .bytes()
        )

    @classmethod
    def decode(cls, raw: bytes) -> Header:
        r = Reader(raw)
        expect_version(r, _HEADER_VERSION, "message header")
        flags_kind = r.u8()
        kind_raw = flags_kind & ~DENIABLE_KIND_BIT
        if kind_raw not in {int(k) for k in MESSAGE_KINDS}:
            raise DecodeError("unknown message kind")
        h = cls(
            MessageKind(kind_raw),
            r.fixed(CHANNEL_ID_LEN),
            r.u8(),
            r.u64(),
            r.fixed(HASH_LEN),
            r.u64(),
            r.fixed(HASH_LEN),
            r.u32(),
            r.u32(),
            r.fixed(EPOCH_ID_LEN),
            r.u32(),
            r.u64(),
            bool(flags_kind & DENIABLE_KIND_BIT),
        )
        r.end()
        if h.direction not in (0, 1) or h.seq == 0:
            raise DecodeError("message header out of range")
        return h


@dataclass(frozen=True, slots=True)
class SealedMessage:
    header: Header
    announcement: bytes
    content: bytes
    shares: tuple[bytes, ...]
    signatures: tuple[tuple[bytes, bytes], ...] = ()
    #: A deniable message's MAC (:mod:`.deniable`); such a message has no signatures.
    mac: bytes = field(default=b"", repr=False)
    _digest: bytes = field(default=b"", init=False, repr=False, compare=False)

    @property
    def digest(self) -> bytes:
        """What the officers sign and the transcript chains (signatures excluded)."""
        if not self._digest:
            object.__setattr__(self, "_digest", sha256(labels.MESSAGE_DIGEST, self.unsigned()))
        return self._digest

    def __repr__(self) -> str:
        return f"SealedMessage(seq={self.header.seq}, kind={self.header.kind.name})"

    def unsigned(self) -> bytes:
        w = Writer().var(self.header.encode()).var(self.announcement).var(self.content)
        w.u8(len(self.shares))
        for s in self.shares:
            w.var(s)
        return w.bytes()

    @property
    def message_id(self) -> bytes:
        return sha256(labels.MESSAGE_ID, self.digest)[:MESSAGE_ID_LEN]

    @property
    def deniable(self) -> bool:
        return bool(self.mac)

    def encode(self) -> bytes:
        if self.mac:
            if self.signatures or len(self.mac) != MAC_LEN:
                raise DecodeError("a deniable message carries one MAC and no signatures")
            return self.unsigned() + bytes([DENIABLE_MARK]) + self.mac
        w = Writer().u8(len(self.signatures))
        for oid, sig in self.signatures:
            w.fixed(oid, OFFICER_ID_LEN).fixed(sig, ED25519_SIG_LEN)
        return self.unsigned() + w.bytes()

    @classmethod
    def decode(cls, raw: bytes) -> SealedMessage:
        r = Reader(raw)
        header = Header.decode(r.var(256))
        announcement = r.var(MAX_ANNOUNCEMENT)
        content = r.var(MAX_CONTENT)
        n = r.u8()
        if n > MAX_OFFICERS:
            raise DecodeError("too many key shares")
        shares = tuple(r.var(MAX_SHARE_CT) for _ in range(n))
        s = r.u8()
        if s == DENIABLE_MARK:
            mac = r.fixed(MAC_LEN)
            r.end()
            return cls(header, announcement, content, shares, (), mac)
        if s > MAX_OFFICERS:
            raise DecodeError("too many signatures")
        sigs = tuple((r.fixed(OFFICER_ID_LEN), r.fixed(ED25519_SIG_LEN)) for _ in range(s))
        r.end()
        return cls(header, announcement, content, shares, sigs)

    def with_signature(self, officer_id: bytes, signature: bytes) -> SealedMessage:
        if self.mac:
            raise DecodeError("a deniable message carries no signatures")
        others = tuple(s for s in self.signatures if s[0] != officer_id)
        out = replace(self, signatures=(*others, (officer_id, signature)))
        object.__setattr__(out, "_digest", self.digest)  # signatures are not digested
        return out

    def with_mac(self, mac: bytes) -> SealedMessage:
        """The same message, authenticated deniably (its signatures, if any, dropped)."""
        if len(mac) != MAC_LEN:
            raise DecodeError("a deniable message's MAC is 32 bytes")
        out = replace(self, signatures=(), mac=mac)
        object.__setattr__(out, "_digest", self.digest)
        return out
