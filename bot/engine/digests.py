"""Scheduled health digests: at each fire time of a digest's cron line, one instance says how the fleet is.

The digest's message, and the week's chart in its thread, are written to the outbox in the same transaction as the
claim of (digest, fire time), so however many instances fire, exactly one digest is posted, and a crash between
deciding and sending loses nothing. The fleet is what the last sweep saw, when that is recent; otherwise it is probed
now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.adapters.incident_store import IncidentStore
from bot.adapters.lock_store import LockStore
from bot.adapters.outbox import Message
from bot.adapters.store import Store
from bot.config import Config, Digest
from bot.domain.change_gate import ALL
from bot.domain.digest import DEFAULT_MTTR_GOAL, ClosedIncident, OpenIncident, digest_of
from bot.domain.freeze import in_force, next_window
from bot.domain.health import FleetHealth
from bot.domain.week import week_of
from bot.engine.fleet_health import probe_fleet
from bot.engine.scheduler import Job, cron, latest_fire_time
from bot.engine.stats import Stats
from bot.engine.sweeper import Sweeper
from bot.render.chart_data import Week, WeekDay
from bot.render.digest import render_digest
from bot.render.incident import RunbookLink

MTTR_WINDOW = timedelta(days=7)
DORA_PERIOD = timedelta(days=7)


class Digests:
    def __init__(self, config: Config, store: Store, incidents: IncidentStore, sweeper: Sweeper,
                 runbook: RunbookLink, owner: str, *, sent: Callable[[], None] = lambda: None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), stats: Stats | None = None) -> None:
        self.config = config
        self.store = store
        self.incidents = incidents
        self.sweeper = sweeper
        self.runbook = runbook
        self.owner = owner
        self.sent = sent
        self.clock = clock
        self.stats = stats

    def jobs(self) -> list[Job]:
        return [self._job(digest) for digest in self.config.digests]

    def _job(self, digest: Digest) -> Job:
        name = f"digest:{digest.name}"
        trigger = cron(digest.cron, digest.timezone)

        async def run(fire: datetime, late: bool) -> None:
            await self.post(digest, trigger, fire, late)

        return Job(name, trigger, run, catch_up=True, last_run=lambda: self.incidents.last_run(name))

    def services_of(self, digest: Digest) -> list[str]:
        return list(self.config.services) if digest.services == "all" else list(digest.services)

    async def fleet(self, services: list[str]) -> FleetHealth:
        latest, at = self.sweeper.latest, self.sweeper.latest_at
        fresh = at is not None and self.clock() - at <= timedelta(seconds=2 * self.config.defaults.alerts.interval)
        if latest is not None and fresh:
            return FleetHealth(tuple(s for s in latest.services if s.service in services))
        return await probe_fleet(self.config, self.sweeper.cloudrun, self.sweeper.prober, services)

    async def render(self, digest: Digest, since: datetime, due: datetime,
                     late: bool = False) -> tuple[str, list[dict[str, object]]]:
        """`late`: a catch-up for a fire time missed while no instance ran, said as such however soon it comes."""
        services = self.services_of(digest)
        now = self.clock()
        fleet = await self.fleet(services)
        rollouts = [s.rollout for s in await asyncio.to_thread(self.store.rollouts, limit=500)
                    if s.rollout.service in services]
        open_incidents = [OpenIncident(s.incident.service, tuple(c.check for c in s.incident.checks),
                                       s.incident.detected_at or s.incident.opened_at or now,
                                       s.incident.acknowledged_by or None,
                                       self.config.services[s.incident.service].owners)
                          for s in await asyncio.to_thread(self.incidents.open_incidents)
                          if s.incident.service in services]
        closed = [ClosedIncident(c.service, c.detected_at, c.acknowledged_at, c.resolved_at)
                  for c in await asyncio.to_thread(self.incidents.cycles_since, now - MTTR_WINDOW)
                  if c.service in services]
        grace = {"grace": timedelta(0)} if late else {}
        dora = (await self.stats.report(services, DORA_PERIOD, now)).fleet if self.stats is not None else None
        locks = [lock for lock in await LockStore(self.store).locks(now) if lock.service in (ALL, *services)]
        freezes = [f for f in self.config.freeze_windows() if f.services is None or f.services & set(services)]
        made = digest_of(fleet, rollouts, open_incidents, closed, since=min(since, now - timedelta(seconds=1)),
                         now=now, due_at=due, dora=dora, **grace, locks=locks, freeze=in_force(freezes, None, now),
                         next_freeze=next_window(freezes, None, now))
        rendered = render_digest(made, self.runbook)
        return rendered.text, rendered.blocks

    async def post(self, digest: Digest, trigger: object, fire: datetime, late: bool) -> bool:
        """Post the digest of `fire` unless another instance has; True when this one did."""
        name = f"digest:{digest.name}"
        previous = latest_fire_time(trigger, fire - timedelta(days=8), fire - timedelta(microseconds=1))
        text, blocks = await self.render(digest, previous or fire - timedelta(days=1), fire, late)
        channel = self.config.slack.channels[digest.channel]
        key = f"{name}:{fire.isoformat()}"
        message = Message(key, "post", channel, text, blocks)
        chart = Message(key, "upload", channel, "", file={"filename": f"{digest.name}-week.png",
                                                           "title": "The week: deploys, failures, recovery times",
                                                           "chart": "week", "data": await self.week(digest)})
        claimed = await asyncio.to_thread(self.incidents.claim_run, name, fire, self.owner, self.clock(), late=late,
                                          messages=[message, chart])
        if claimed:
            self.sent()
        return claimed

    async def week(self, digest: Digest) -> dict[str, object]:
        """The figures of the week's chart, shared in the digest's thread (drawn when the outbox sends it)."""
        services, now = self.services_of(digest), self.clock()
        rollouts = [s.rollout for s in await asyncio.to_thread(self.store.rollouts, limit=500)
                    if s.rollout.service in services]
        closed = [ClosedIncident(c.service, c.detected_at, c.acknowledged_at, c.resolved_at)
                  for c in await asyncio.to_thread(self.incidents.cycles_since, now - MTTR_WINDOW)
                  if c.service in services]
        days = week_of(rollouts, closed, now)
        return Week(tuple(WeekDay(d.day.isoformat(), d.deploys, d.failed, d.recoveries_min) for d in days),
                    DEFAULT_MTTR_GOAL / timedelta(minutes=1)).to_json()

    async def now(self, digest: Digest) -> tuple[str, list[dict[str, object]]]:
        """`/digest`: the digest as it would be posted now, for one person."""
        trigger = cron(digest.cron, digest.timezone)
        now = self.clock()
        previous = latest_fire_time(trigger, now - timedelta(days=8), now)
        return await self.render(digest, previous or now - timedelta(days=1), now)
