"""Runs the bot's periodic jobs (sweeps, digests, escalations) at their triggers' fire times.

APScheduler 3's triggers say when: an interval anchored at a fixed epoch, or a cron line in a time zone, so
every instance computes the same fire times. Who runs a fire time is not the scheduler's business: every
instance fires every job, and the job claims (job, fire time) in the store, so exactly one instance does the
work. APScheduler's job stores are not used for that: they promise no such thing across processes.

After downtime, a job that asks for it (`catch_up`) gets the most recent fire time it missed once, marked late;
older missed fire times are not replayed one by one. A fire time that comes while the job's previous run on this
instance is still going is skipped here, as APScheduler's `max_instances=1` does: sweeps of a large fleet on a
short interval would otherwise pile up and slow each other down (another instance may take that fire time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_LOOK_BACK = timedelta(days=8)


@dataclass(frozen=True)
class Job:
    name: str
    trigger: Any  # an APScheduler 3 trigger
    run: Callable[[datetime, bool], Awaitable[None]]  # (fire time, late)
    catch_up: bool = False
    last_run: Callable[[], datetime | None] = lambda: None  # when the job last ran anywhere (catch-up only)


def every(seconds: float) -> IntervalTrigger:
    return IntervalTrigger(seconds=seconds, start_date=EPOCH, timezone=UTC)


def cron(line: str, zone: str) -> CronTrigger:
    return CronTrigger.from_crontab(line, timezone=zone)


def latest_fire_time(trigger: Any, since: datetime, now: datetime) -> datetime | None:
    """The last fire time in (since, now], or None."""
    found: datetime | None = None
    moment: datetime | None = trigger.get_next_fire_time(None, since + timedelta(microseconds=1))
    while moment is not None and moment <= now:
        found = moment
        moment = trigger.get_next_fire_time(moment, moment + timedelta(microseconds=1))
    return found


def utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    def __init__(self, jobs: Sequence[Job], *, clock: Callable[[], datetime] = utcnow) -> None:
        self.jobs = list(jobs)
        self.clock = clock
        self._running: set[asyncio.Task[None]] = set()
        self._busy: dict[str, datetime] = {}  # job name -> the fire time of its run in progress
        self.skipped = 0

    async def run(self) -> None:
        now = self.clock()
        due: dict[str, datetime] = {}
        for job in self.jobs:
            if job.catch_up:
                await self._catch_up(job, now)
            first = job.trigger.get_next_fire_time(None, now)
            if first is not None:
                due[job.name] = first
        try:
            while due:
                name, fire = min(due.items(), key=lambda item: item[1])
                wait = (fire - self.clock()).total_seconds()
                if wait > 0:
                    await asyncio.sleep(min(wait, 60.0))
                    continue
                job = next(j for j in self.jobs if j.name == name)
                self._launch(job, fire, late=False)
                later = job.trigger.get_next_fire_time(fire, max(self.clock(), fire + timedelta(microseconds=1)))
                if later is None:
                    del due[name]
                else:
                    due[name] = later
        finally:
            for task in self._running:
                task.cancel()

    async def _catch_up(self, job: Job, now: datetime) -> None:
        last = await asyncio.to_thread(job.last_run)
        if last is None:
            return  # never ran anywhere: a new install owes no digest
        missed = latest_fire_time(job.trigger, max(last, now - _LOOK_BACK), now)
        if missed is not None and missed > last:
            log.info("%s missed its run of %s; running it now, late", job.name, missed.isoformat())
            self._launch(job, missed, late=True)

    def _launch(self, job: Job, fire: datetime, *, late: bool) -> None:
        running = self._busy.get(job.name)
        if running is not None:
            self.skipped += 1
            log.warning("%s for %s skipped: its run for %s is still going (it takes longer than its interval)",
                        job.name, fire.isoformat(), running.isoformat())
            return
        self._busy[job.name] = fire
        task = asyncio.create_task(self._guarded(job, fire, late), name=f"{job.name}@{fire.isoformat()}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _guarded(self, job: Job, fire: datetime, late: bool) -> None:
        try:
            await job.run(fire, late)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s for %s failed", job.name, fire.isoformat())
        finally:
            self._busy.pop(job.name, None)

    async def settle(self) -> None:
        """Wait for the jobs running now (tests, shutdown)."""
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._running)
