"""The digest's week, day by day, for its chart: deploys that ended, those that failed (the digest's own rule:
bot/domain/digest.py `deploys_of`), and the recovery time of each incident cycle resolved that day."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from bot.domain.digest import ClosedIncident, deploys_of
from bot.domain.rollout import Rollout

DAYS = 7


@dataclass(frozen=True)
class Day:
    day: date
    deploys: int
    failed: int
    recoveries_min: tuple[float, ...]


def week_of(rollouts: Sequence[Rollout], closed: Sequence[ClosedIncident], now: datetime) -> tuple[Day, ...]:
    """The last DAYS calendar days (UTC) up to today's, oldest first."""
    first = (now - timedelta(days=DAYS - 1)).date()
    days = [first + timedelta(days=n) for n in range(DAYS)]
    start = datetime.combine(first, datetime.min.time(), tzinfo=now.tzinfo)
    changes = deploys_of(rollouts, since=start, now=now).changes
    made = []
    for day in days:
        ended = [c for c in changes if c.rollout.ended_at is not None and c.rollout.ended_at.date() == day]
        recoveries = tuple(round((c.resolved_at - c.detected_at).total_seconds() / 60, 1) for c in closed
                           if c.resolved_at.date() == day and c.resolved_at <= now)
        made.append(Day(day, len(ended), sum(1 for c in ended if c.failed), recoveries))
    return tuple(made)
