"""Two rosters of one version: a fork of the mission's roster, refused and named.

A roster change names the version it follows. A device signs only a change
that follows the roster it holds, and refuses to adopt a second, different
roster of a version it adopted already, with an alarm about each officer of
the roster before it who signed that second one: officers who sign two
rosters of one version split the mission (each half would hold a relay
credential and a card the peer believes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from backchannel.crypto.primitives import equal
from backchannel.errors import RosterError
from backchannel.protocol import roster as rs

if TYPE_CHECKING:
    from backchannel.client.mission import MissionState
    from backchannel.client.roster_change import RosterChange
    from backchannel.client.service import Client


def follows(current: rs.Roster, new: rs.Roster) -> bool:
    """Whether ``new`` is the next roster after ``current``."""
    return new.version == current.version + 1 and equal(new.prev_hash, current.hash)


def refuse(client: Client, m: MissionState, change: RosterChange) -> None:
    """Refuse, with an alarm naming its signers, a change of a version this device
    adopted another roster for (adopting the same one again does nothing)."""
    chain = m.signed_chain()
    held = next((s.roster for s in chain if s.roster.version == change.new.version), None)
    if held is None or equal(held.hash, change.new.hash):
        return
    before = next((s.roster for s in chain if s.roster.version == change.new.version - 1), None)
    if before is not None:
        valid = rs.roster_signers(change.new, change.signatures, before)
        if valid:
            client.raise_roster_fork(sorted(valid), change.new.version)
    raise RosterError(
        f"this mission adopted another roster of version {change.new.version}: this change "
        "forks its roster and is refused"
    )
