"""A per-minute allowance of Cloud Logging reads, so the bot leaves most of the project's quota to people.

Cloud Logging's read quota is per project (https://cloud.google.com/logging/quotas); engineers reading
logs in the console during an incident share it with the bot. The bucket refills continuously at
`per_minute / 60` a second and holds at most a tenth of a minute's worth, so reads spread out instead of
bunching; a 429 from Google empties it until the minute is over.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ReadBudget:
    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.capacity = max(1.0, per_minute / 10)
        self._clock = clock
        self._tokens = self.capacity
        self._at = clock()
        self._blocked_until = 0.0
        self.spent = 0

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.per_minute / 60)
        self._at = now
        return now

    def available(self) -> int:
        now = self._refill()
        if now < self._blocked_until:
            return 0
        return int(self._tokens)

    def take(self, reads: int = 1) -> bool:
        """Spend `reads` if they are there; False (and nothing spent) if not."""
        if self.available() < reads:
            return False
        self._tokens -= reads
        self.spent += reads
        return True

    def charge(self, reads: int) -> None:
        """Reads made beyond what `take` reserved (more pages than expected): they count all the same."""
        self._refill()
        self._tokens -= reads
        self.spent += reads

    def exhausted(self) -> None:
        """Google said the quota is spent: no reads until a minute has passed."""
        now = self._refill()
        self._tokens = 0.0
        self._blocked_until = now + 60.0
