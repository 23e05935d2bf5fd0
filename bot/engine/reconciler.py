"""Each tick: claim due rollouts, read the live service, decide, make at most one write, persist, report.

Every instance runs one; leases and fencing generations in the store make sure only one acts on a given
rollout, and a rollout's next state is persisted with its write marked pending *before* the write, so a
crash at any point resumes from the row and the live service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.adapters.cloudrun import CloudRunGateway, CloudRunUnavailable, Conflict
from bot.adapters.store import Store, StoredRollout, StoreUnavailable
from bot.domain.analysis import analyse
from bot.domain.rollout import Decision, State, decide
from bot.engine.reporter import RolloutReporter
from bot.engine.signals import SignalCollector

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    def __init__(self, *, store: Store, cloudrun: CloudRunGateway, collector: SignalCollector,
                 reporter: RolloutReporter, owner: str, interval_s: float, lease_s: float,
                 clock: Callable[[], datetime] = utcnow, concurrency: int = 20, batch: int = 50) -> None:
        self.store = store
        self.cloudrun = cloudrun
        self.collector = collector
        self.reporter = reporter
        self.owner = owner
        self.interval_s = interval_s
        self.lease_s = lease_s
        self.clock = clock
        self.batch = batch
        self.claimed = 0  # rollouts the last tick took: benches read it
        self._due: list[datetime] = []
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)

    def wake(self) -> None:
        """Look now rather than at the next interval: a person just asked for something."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            pause = self.interval_s
            try:
                pause = await self.tick()
            except StoreUnavailable as exc:
                log.error("reconciler: %s", exc)
            except Exception:
                log.exception("reconciler tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            self._wake.clear()

    async def tick(self) -> float:
        """One pass over the due rollouts; returns how long to wait before the next pass.

        That is the interval, or less when one of this instance's rollouts is due sooner (a check inside a
        window should not wait for the next interval), or nothing when there were more due than one batch.
        """
        claims = await asyncio.to_thread(self.store.claim_due, self.owner, self.clock(), self.lease_s, self.batch)
        self.claimed = len(claims)
        self._due = []
        await asyncio.gather(*(self._guarded(claim) for claim in claims))
        if len(claims) == self.batch:
            return 0.0
        soonest = min(self._due, default=None)
        if soonest is None:
            return self.interval_s
        return max(0.0, min(self.interval_s, (soonest - self.clock()).total_seconds()))

    async def _guarded(self, claim: StoredRollout) -> None:
        async with self._slots:
            try:
                await self.advance(claim)
            except CloudRunUnavailable as exc:
                log.warning("rollout %s of %s waits: %s", claim.rollout.id, claim.rollout.service, exc)
                later = replace(claim.rollout, next_check_at=self.clock() + timedelta(seconds=self.interval_s))
                await asyncio.to_thread(self.store.save, claim, later)
            except Exception:
                log.exception("rollout %s of %s: tick failed", claim.rollout.id, claim.rollout.service)

    async def advance(self, claim: StoredRollout) -> None:
        rollout = claim.rollout
        deploying = rollout.state is State.DEPLOYING or (
            rollout.pending is not None and rollout.pending.kind != "set_traffic")
        view = await self.cloudrun.read(rollout.service, rollout.candidate if deploying else None)
        now = self.clock()
        decision: Decision = decide(rollout, view.live, now)
        if decision.analyse:
            signals = await self.collector.collect(rollout, view, now)
            decision = decide(rollout, view.live, now, analyse(signals, rollout.plan.thresholds))
        after = decision.rollout
        if decision.write is not None:
            if not await asyncio.to_thread(self.store.save, claim, after):
                log.warning("rollout %s: lease lost before writing; another instance has it", rollout.id)
                return
            try:
                traffic, etag = await self.cloudrun.apply(after, decision.write, view)
            except Conflict as exc:
                log.warning("rollout %s: %s; looking again", rollout.id, exc)
                after = replace(after, next_check_at=now)
            except CloudRunUnavailable as exc:
                log.warning("rollout %s: write failed, retrying: %s", rollout.id, exc)
                after = replace(after, next_check_at=now + timedelta(seconds=self.interval_s))
            else:
                after = replace(after, pending=None, traffic=traffic, etag=etag)
        if await asyncio.to_thread(self.store.save, claim, after, release=after.state.ended):
            self.reporter.publish(claim, after, decision.notes)
            if not after.state.ended or after.pending is not None:
                self._due.append(after.next_check_at)
        else:
            log.warning("rollout %s: lease lost; another instance has it", rollout.id)
