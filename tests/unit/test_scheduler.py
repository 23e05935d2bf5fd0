"""The scheduler fires each job at its trigger's times, and never starts a job again on this instance while its
previous run is still going (APScheduler's default `max_instances=1`,
https://apscheduler.readthedocs.io/en/3.x/userguide.html#limiting-the-number-of-concurrently-executing-instances-of-a-job)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import datetime

from bot.engine.scheduler import Job, Scheduler, every


async def test_a_run_longer_than_the_interval_skips_fire_times_instead_of_piling_up() -> None:
    running: list[datetime] = []
    most = 0
    finished: list[datetime] = []

    async def sweep(fire: datetime, late: bool) -> None:
        nonlocal most
        running.append(fire)
        most = max(most, len(running))
        await asyncio.sleep(0.25)  # a sweep of a large fleet, five intervals long
        running.remove(fire)
        finished.append(fire)

    scheduler = Scheduler([Job("sweep", every(0.05), sweep)])
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.9)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert most == 1, "one run at a time"
    assert len(finished) >= 2, "it kept running"
    assert scheduler.skipped >= 2 * len(finished), "the fire times that came during a run were skipped"
    assert finished == sorted(finished)


async def test_a_quick_job_runs_at_every_fire_time() -> None:
    fired: list[datetime] = []

    async def tick(fire: datetime, late: bool) -> None:
        fired.append(fire)

    scheduler = Scheduler([Job("tick", every(0.05), tick)])
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(fired) >= 5 and scheduler.skipped == 0
    gaps = [(b - a).total_seconds() / 0.05 for a, b in itertools.pairwise(fired)]
    assert all(gap >= 1 and abs(gap - round(gap)) < 1e-6 for gap in gaps), "on the trigger's own fire times"
