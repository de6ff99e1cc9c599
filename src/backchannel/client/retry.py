"""How often, and for how long, a request to a relay is tried (:class:`RetryPolicy`)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from backchannel.protocol.constants import ROUND_SECONDS


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most ``attempts`` tries, ``timeout_attempts`` of them unanswered, and ``budget``
    seconds in all (tries and waits); waits ``base * 2**n`` seconds (capped), jittered.

    A refused connection or a 5xx costs little and often passes: five tries. A relay
    that took the request and did not answer seldom answers it again: one more try,
    on a new connection (a kept one may have died on the way). A request lasts at
    most a round's length (60 s: two tries at the client's 30 s timeout), so a relay
    that hangs holds a device for a round at most; the round driver gives each
    request less still (``driver.py``: until the next request is due).
    """

    attempts: int = 5
    base_delay: float = 0.1
    max_delay: float = 5.0
    timeout_attempts: int = 2
    budget: float = float(ROUND_SECONDS)

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))

    def wait(self, attempt: int, rng: random.Random, retry_after: str = "") -> float:
        """The wait after try ``attempt`` (from 0); a relay's ``Retry-After``
        (seconds) is honoured up to ``max_delay``."""
        delay = self.delay(attempt, rng)
        if retry_after.isdigit():
            delay = max(delay, min(float(retry_after), self.max_delay))
        return delay

    def time_left(
        self, clock: Callable[[], float], due: Callable[[], float] | None = None
    ) -> Callable[[], float]:
        """Seconds left to a request that starts now: its budget, or what ``due()``
        says (the caller's schedule, on its own clock), whichever ends first."""
        end = clock() + self.budget
        return lambda: min(end - clock(), due() if due is not None else math.inf)
