"""Wire constants shared by the protocol core and the relay."""

from __future__ import annotations

#: Every cell on the wire has exactly this many bytes (per-channel default).
CELL_SIZE = 4096
#: Slot addresses are 32 bytes (64 hex digits in URLs).
SLOT_LEN = 32
#: Default round length in seconds.
ROUND_SECONDS = 60
#: Largest number of officers in one mission.
MAX_OFFICERS = 7

#: The relay's public rendezvous tenant, where two missions pairing by a short
#: code meet. Everything deposited there is public by design: SPAKE2 messages,
#: then mission cards encrypted under the key the code authenticated.
RENDEZVOUS_TENANT = "rendezvous"
#: Its fetch credential is public (base64url of SHA-256("backchannel/v1/rendezvous")).
RENDEZVOUS_CREDENTIAL = "T5SsLSmRWVY-KTl95xoHjLxgTY1AP1vxtopdr_3Z30E"
RENDEZVOUS_QUOTA = 20_000

#: The shortest time a relay keeps a cell (seconds). A relay never stores a
#: second cell in a slot, nor says a slot is empty, within this long of the
#: batch that stored the slot's cell; proofs of misbehaviour rely on it
#: (``docs/spec/relay-log-v1.md`` §6).
MIN_RETENTION_SECONDS = 3600
