"""Freeze windows: when deploys and forward traffic moves wait, from the config's `freezes:`.

A window recurs (each fire time of a cron line in an IANA zone starts one, lasting `duration` of elapsed time) or
is fixed (`start` to `end`). Fire times are APScheduler's CronTrigger's, computed in the zone, so a window at 18:00
in New York starts at 18:00 local on both sides of a DST change (22:00 UTC in summer time, 23:00 in winter).
Pure: no I/O and no clock; the instant is always given.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Window:
    """One occurrence of a freeze: [starts_at, ends_at), shown in its zone."""

    name: str
    starts_at: datetime
    ends_at: datetime
    zone: str
    reason: str = ""
    services: frozenset[str] | None = None  # None: every service

    def local(self, moment: datetime) -> str:
        """`Sat 22:00 EST (2026-12-06 03:00 UTC)`: the zone's time people plan by, and UTC, which the bot logs."""
        return f"{moment.astimezone(ZoneInfo(self.zone)):%a %H:%M %Z} ({moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"

    def spoken(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"freeze window `{self.name}`{why}, until {self.local(self.ends_at)}"


@dataclass(frozen=True)
class Freeze:
    """A freeze as configured: recurring (`cron` and `duration`) or fixed (`start` and `end`, aware datetimes).
    `services` None: every service."""

    name: str
    zone: str
    services: frozenset[str] | None = None
    reason: str = ""
    cron: str = ""
    duration: timedelta = timedelta(0)
    start: datetime | None = None
    end: datetime | None = None

    def covers(self, service: str | None) -> bool:
        """Whether the freeze applies to `service`; None asks about any service (the fleet's view)."""
        return self.services is None or service is None or service in self.services

    @functools.cached_property
    def _trigger(self) -> CronTrigger:
        return CronTrigger.from_crontab(self.cron, timezone=ZoneInfo(self.zone))

    def _window(self, start: datetime, end: datetime) -> Window:
        return Window(self.name, start.astimezone(UTC), end.astimezone(UTC), self.zone, self.reason, self.services)

    def around(self, now: datetime) -> Window | None:
        """The occurrence in force at `now` (the one that ends last, if they overlap)."""
        if not self.cron:
            assert self.start is not None and self.end is not None
            return self._window(self.start, self.end) if self.start <= now < self.end else None
        found: datetime | None = None
        moment = self._trigger.get_next_fire_time(None, now - self.duration + _TICK)
        while moment is not None and moment <= now:
            found = moment
            moment = self._trigger.get_next_fire_time(moment, moment + _TICK)
        return None if found is None else self._window(found, found + self.duration)

    def after(self, now: datetime) -> Window | None:
        """The next occurrence that starts after `now`; None when there is none (a fixed window in the past)."""
        if not self.cron:
            assert self.start is not None and self.end is not None
            return self._window(self.start, self.end) if self.start > now else None
        start = self._trigger.get_next_fire_time(None, now + _TICK)
        return None if start is None else self._window(start, start + self.duration)


def in_force(freezes: Iterable[Freeze], service: str | None, now: datetime) -> Window | None:
    """The window holding `service` at `now`; of several, the one that ends last (it is the one to wait for)."""
    windows = [w for f in freezes if f.covers(service) and (w := f.around(now)) is not None]
    return max(windows, key=lambda w: w.ends_at, default=None)


def next_window(freezes: Iterable[Freeze], service: str | None, now: datetime) -> Window | None:
    """The window that starts next for `service` (any service, when None)."""
    windows = [w for f in freezes if f.covers(service) and (w := f.after(now)) is not None]
    return min(windows, key=lambda w: w.starts_at, default=None)
