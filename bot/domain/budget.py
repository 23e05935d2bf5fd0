"""A token bucket of reads a minute, as plain data: whoever keeps it (one process's memory, or a database row that
every instance shares) applies these functions to it under its own lock.

The bucket refills continuously at `per_minute / 60` a second and holds at most a tenth of a minute's worth, so
reads spread out instead of bunching; a quota refusal from Google empties it until a minute has passed. Time
that runs backwards (another instance's clock a little behind) refills nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

BLOCKED_FOR = timedelta(minutes=1)


def capacity(per_minute: int) -> float:
    return max(1.0, per_minute / 10)


@dataclass(frozen=True)
class Bucket:
    tokens: float
    at: datetime  # when `tokens` was last refilled
    blocked_until: datetime | None = None
    spent: int = 0  # reads spent since the bucket was made, by every instance sharing it


def full(per_minute: int, now: datetime) -> Bucket:
    return Bucket(capacity(per_minute), now)


def refilled(bucket: Bucket, per_minute: int, now: datetime) -> Bucket:
    elapsed = max((now - bucket.at).total_seconds(), 0.0)
    tokens = min(capacity(per_minute), bucket.tokens + elapsed * per_minute / 60)
    return replace(bucket, tokens=tokens, at=max(now, bucket.at))


def available(bucket: Bucket, per_minute: int, now: datetime) -> int:
    """Whole reads that may be made now."""
    if bucket.blocked_until is not None and now < bucket.blocked_until:
        return 0
    return int(refilled(bucket, per_minute, now).tokens)


def take(bucket: Bucket, per_minute: int, now: datetime, reads: int) -> tuple[Bucket, bool]:
    """Spend `reads` if they are there; (unchanged but refilled, False) if not."""
    fresh = refilled(bucket, per_minute, now)
    if available(fresh, per_minute, now) < reads:
        return fresh, False
    return replace(fresh, tokens=fresh.tokens - reads, spent=fresh.spent + reads), True


def charge(bucket: Bucket, per_minute: int, now: datetime, reads: int) -> Bucket:
    """Reads made beyond what `take` reserved (more pages than expected): they count all the same."""
    fresh = refilled(bucket, per_minute, now)
    return replace(fresh, tokens=fresh.tokens - reads, spent=fresh.spent + reads)


def exhausted(bucket: Bucket, per_minute: int, now: datetime) -> Bucket:
    """Google said the quota is spent: no reads until a minute has passed."""
    return replace(refilled(bucket, per_minute, now), tokens=0.0, blocked_until=now + BLOCKED_FOR)
