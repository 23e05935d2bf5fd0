"""The post-deploy watch: for `canary.watch` after a promotion, the service is held against its pre-deploy
baseline, and a degradation is told once in the rollout's thread, with a Roll back button.

Each run of the watch is claimed like a sweep, (`post-deploy-watch`, fire time) in the store, so exactly one
instance runs it however many there are. A watched rollout costs at most two Cloud Logging reads a run (its
baseline once, kept in the store for whichever instance runs next; then the error lines since promotion), taken
from the read budget every instance shares with canary analysis. The warning is written to the outbox together
with a claim of (`watch:<rollout id>`), so it is said once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.adapters.cloudrun import CloudRunGateway, CloudRunUnavailable
from bot.adapters.incident_store import IncidentStore
from bot.adapters.logs import LogsGateway, LogsUnavailable
from bot.adapters.outbox import Message
from bot.adapters.prober import Prober
from bot.adapters.store import Store, StoredRollout
from bot.adapters.watch_store import WatchStore
from bot.config import Config
from bot.domain.health import classify
from bot.domain.rollout import State
from bot.domain.watch import WatchReading, degraded
from bot.engine.budget import ReadBudget
from bot.engine.scheduler import EPOCH
from bot.render.watch import watch_warning

log = logging.getLogger(__name__)

JOB = "post-deploy-watch"
BASELINE = timedelta(hours=1)
_CAP = 600  # error lines counted per read: one page, and plenty to tell a degradation


class PostDeployWatch:
    def __init__(self, config: Config, store: Store, incidents: IncidentStore, logs: LogsGateway,
                 budget: ReadBudget, cloudrun: CloudRunGateway, prober: Prober, owner: str, *,
                 log_lag_s: float, sent: Callable[[], None] = lambda: None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.store = store
        self.incidents = incidents
        self.logs = logs
        self.budget = budget
        self.cloudrun = cloudrun
        self.prober = prober
        self.owner = owner
        self.log_lag = timedelta(seconds=log_lag_s)
        self.sent = sent
        self.clock = clock
        self.measured = WatchStore(store)
        self.warned = 0

    def watched(self, now: datetime) -> list[StoredRollout]:
        found = []
        for stored in self.store.rollouts(limit=100):
            rollout = stored.rollout
            if rollout.state is not State.PROMOTED or rollout.ended_at is None or not rollout.stable \
                    or rollout.service not in self.config.services or stored.message_ts is None:
                continue
            window = timedelta(seconds=self.config.canary_for(rollout.service).watch)
            if now - rollout.ended_at <= window:
                found.append(stored)
        return found

    async def run(self, fire: datetime, late: bool) -> None:
        now = self.clock()
        watched = await asyncio.to_thread(self.watched, now)
        if not watched or not await asyncio.to_thread(self.incidents.claim_run, JOB, fire, self.owner, now):
            return  # nothing to watch, or another instance runs this fire time
        for stored in watched:
            try:
                await self.check(stored, now)
            except (LogsUnavailable, CloudRunUnavailable) as exc:
                log.info("post-deploy watch of rollout %s waits: %s", stored.rollout.id, exc)

    async def check(self, stored: StoredRollout, now: datetime) -> bool:
        """Look at one promoted rollout; True when it was found degraded and said so (by this instance)."""
        rollout = stored.rollout
        assert rollout.ended_at is not None
        errors_filter = self.config.canary_for(rollout.service).error_filter
        baseline = await asyncio.to_thread(self.measured.baseline, rollout.id)
        if baseline is None:
            if not await asyncio.to_thread(self.budget.take):
                return False
            before = await self.logs.count(rollout.service, rollout.stable, errors_filter,
                                           rollout.created_at - BASELINE, rollout.created_at, _CAP)
            baseline = before / (BASELINE.total_seconds() / 60)
            await asyncio.to_thread(self.measured.keep_baseline, rollout.id, baseline, now)
        until = now - self.log_lag
        if until <= rollout.ended_at or not await asyncio.to_thread(self.budget.take):
            return False
        errors = await self.logs.count(rollout.service, rollout.candidate, errors_filter, rollout.ended_at, until,
                                       _CAP)
        url = (await self.cloudrun.service_urls()).get(rollout.service)
        failing: tuple[str, ...] = ()
        if url:
            health = classify(rollout.service, await self.prober.probe_service(
                url, self.config.health_for(rollout.service), audience=url))
            failing = tuple(c.name for c in health.checks if c.state == "fail") or (
                ("unreachable",) if health.status.name == "UNREACHABLE" else ())
        reading = WatchReading(baseline, errors, (until - rollout.ended_at).total_seconds() / 60,
                               failing)
        reason = degraded(reading)
        if reason is None:
            return False
        text, blocks = watch_warning(rollout, reason)
        warning = Message(f"rollout:{rollout.id}", "reply", stored.channel, text, blocks,
                          thread_ts=stored.message_ts or "")
        claimed = await asyncio.to_thread(self.incidents.claim_run, f"watch:{rollout.id}", EPOCH, self.owner, now,
                                          messages=[warning])
        if claimed:
            self.warned += 1
            self.sent()
        return claimed
