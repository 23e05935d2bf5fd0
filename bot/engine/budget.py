"""A per-minute allowance of Cloud Logging reads, so the bot leaves most of the project's quota to people.

Cloud Logging's read quota is per project (https://cloud.google.com/logging/quotas); engineers reading logs in the
console during an incident share it with the bot, and so do all of the bot's instances. So the bucket
(`bot.domain.budget`) is kept where every instance sees it: a row of the database (`BudgetStore`), changed under
its lock, so three instances together spend one `per_minute`, not three. `LocalBuckets` keeps it in this
process's memory instead, for tools and tests that run one collector alone.

The methods are synchronous because the signal collector asks between two awaits; each is one short transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from bot.domain import budget
from bot.domain.budget import Bucket

T = TypeVar("T")

LOGGING = "cloud-logging-reads"
"""The bucket of Cloud Logging's `entries.list` quota."""


class Buckets(Protocol):
    def change(self, name: str, per_minute: int, now: datetime, step: Callable[[Bucket], tuple[Bucket, T]]) -> T:
        """Apply `step` to the named bucket (made full if there is none yet) under a lock, keep what it returns."""
        ...


class LocalBuckets:
    """Buckets in this process's memory: enough for one process, wrong for several sharing one quota."""

    def __init__(self) -> None:
        self._buckets: dict[str, Bucket] = {}
        self._lock = threading.Lock()

    def change(self, name: str, per_minute: int, now: datetime, step: Callable[[Bucket], tuple[Bucket, T]]) -> T:
        with self._lock:
            bucket, result = step(self._buckets.get(name) or budget.full(per_minute, now))
            self._buckets[name] = bucket
            return result


def utcnow() -> datetime:
    return datetime.now(UTC)


class ReadBudget:
    def __init__(self, per_minute: int, *, buckets: Buckets | None = None, name: str = LOGGING,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.per_minute = per_minute
        self.name = name
        self._buckets: Buckets = buckets if buckets is not None else LocalBuckets()
        self._clock = clock

    def _change(self, step: Callable[[Bucket, datetime], tuple[Bucket, T]]) -> T:
        now = self._clock()
        return self._buckets.change(self.name, self.per_minute, now, lambda bucket: step(bucket, now))

    def available(self) -> int:
        return self._change(lambda b, now: (b, budget.available(b, self.per_minute, now)))

    def take(self, reads: int = 1) -> bool:
        """Spend `reads` if they are there; False (and nothing spent) if not."""
        return self._change(lambda b, now: budget.take(b, self.per_minute, now, reads))

    def charge(self, reads: int) -> None:
        """Reads made beyond what `take` reserved (more pages than expected): they count all the same."""
        if reads > 0:
            self._change(lambda b, now: (budget.charge(b, self.per_minute, now, reads), None))

    def exhausted(self) -> None:
        """Google said the quota is spent: no instance reads until a minute has passed."""
        self._change(lambda b, now: (budget.exhausted(b, self.per_minute, now), None))

    @property
    def spent(self) -> int:
        """Reads spent from this bucket so far, by every instance sharing it."""
        return self._change(lambda b, now: (b, b.spent))
