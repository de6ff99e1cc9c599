"""Officers' new epoch keys, announced to the peer in the channel's own cells.

An officer's device draws a new epoch key on the mission policy's schedule
(``client/missions.py``); his colleagues learn its certificate through the
mission mailbox, and the device that sends on each channel announces it to
the peer as a control object (cell flag 0x08, ``docs/spec/protocol-v1.md``
§7.6). The peer's devices check each certificate against the officer's
signing key in the roster they hold, and seal to the newer key from their
next send epoch, so a copy of a device's state taken before the rotation
opens nothing sealed to that officer after it. Without this, the peer
learned a new key only from the next mission card, which officers hand over
by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from backchannel.errors import DecodeError
from backchannel.protocol.codec import Reader, Writer
from backchannel.protocol.constants import MAX_OFFICERS
from backchannel.protocol.identity import EpochKeyCert
from backchannel.protocol.rekey import TAG_KEYS
from backchannel.protocol.roster import Roster

_MAX_CERT = 8192


@dataclass(frozen=True, slots=True)
class KeyAnnouncement:
    """Epoch-key certificates of officers of the sending mission."""

    certs: tuple[EpochKeyCert, ...]

    def encode(self) -> bytes:
        w = Writer().u8(TAG_KEYS).u8(len(self.certs))
        for c in self.certs:
            w.var(c.encode())
        return w.bytes()

    @classmethod
    def decode(cls, raw: bytes) -> KeyAnnouncement:
        r = Reader(raw)
        if r.u8() != TAG_KEYS:
            raise DecodeError("not an announcement of epoch keys")
        count = r.u8()
        if not 1 <= count <= MAX_OFFICERS:
            raise DecodeError(f"an announcement of epoch keys names 1 to {MAX_OFFICERS} officers")
        certs = tuple(EpochKeyCert.decode(r.var(_MAX_CERT)) for _ in range(count))
        r.end()
        return cls(certs)


def checked(announcement: KeyAnnouncement, roster: Roster) -> tuple[EpochKeyCert, ...]:
    """The certificates of officers of ``roster`` (the peer's, as held here), each
    signed by its officer (``SignatureError`` otherwise: only a device holding the
    channel's keys could have placed it). Certificates of officers the roster
    does not name are left for the card that adds them."""
    out = []
    for cert in announcement.certs:
        if roster.contains(cert.officer_id):
            cert.verify(roster.officer(cert.officer_id))
            out.append(cert)
    return tuple(out)
