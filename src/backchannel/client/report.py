"""What one round (or ``sync --rounds N``) did, for the CLI and the desk."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SyncReport:
    rounds: int = 0
    deposited: int = 0
    waiting: int = 0
    rounds_received: int = 0
    messages: list[str] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)
    joint_objects: int = 0
    alarms: list[str] = field(default_factory=list)
    relay_error: str | None = None
    #: Requests made to relays (four per round: deposit, fetch, intake, check).
    requests: int = 0
    #: Intake requests from the public opened this time.
    intake: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "deposited": self.deposited,
            "waiting": self.waiting,
            "rounds_received": self.rounds_received,
            "messages": self.messages,
            "delivered": self.delivered,
            "joint_objects": self.joint_objects,
            "alarms": self.alarms,
            "relay_error": self.relay_error,
            "requests": self.requests,
            "intake": self.intake,
        }
