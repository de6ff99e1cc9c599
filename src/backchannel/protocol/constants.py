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
