"""Each tick: claim due rollouts, read their services, gather the evidence of all of them at once, decide, make
at most one write each, persist with what to report (the outbox sends it).

Every instance runs one; leases and fencing generations in the store make sure only one acts on a given
rollout, and a rollout's next state is persisted with its write marked pending *before* the write, so a
crash at any point resumes from the row and the live service. What a write came to (done, started,
refused, not answered) goes back through the domain (`after_write`) before it is persisted: a refusal
ends in a message, never in a write re-issued every tick.

Leases hold: the save before each write checks the lease on the database's clock and renews it for longer than
the write and its wait can take; a write whose lease ran out is not made. A write still in flight keeps its
lease when the instance shuts down. A write that raised something unexpected has an unknown outcome: the
rollout reads the service again, it never goes back to what it had before the decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.adapters.cloudrun import CloudRunGateway, CloudRunRefused, CloudRunUnavailable, ServiceView
from bot.adapters.lock_store import LockStore
from bot.adapters.outbox import Write
from bot.adapters.store import Store, StoredRollout, StoreUnavailable
from bot.domain.analysis import analyse
from bot.domain.change_gate import Lock, holding
from bot.domain.freeze import Freeze, Window, in_force
from bot.domain.rollout import Answer, Decision, Note, Rollout, State, WriteResult, after_write, decide, unreadable
from bot.domain.rollout import Write as PendingWrite
from bot.engine.reporter import RolloutReporter
from bot.engine.signals import Collected, SignalCollector, with_evidence
from bot.render.change_control import control_lines

log = logging.getLogger(__name__)

_WRITES_PER_TICK = 2
"""A write and, when Google refuses it, the write that restores traffic."""


_STORE_RETRY_S = 0.5


def utcnow() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    def __init__(self, *, store: Store, cloudrun: CloudRunGateway, collector: SignalCollector,
                 reporter: RolloutReporter, owner: str, interval_s: float, lease_s: float,
                 clock: Callable[[], datetime] = utcnow, concurrency: int = 20, batch: int = 50,
                 freezes: Sequence[Freeze] = (), locks: LockStore | None = None) -> None:
        """`freezes`: the config's freeze windows, which hold a rollout's stage advances; `locks`: where the locks
        its message shows are read."""
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
        self.writing: set[int] = set()  # rollouts whose Cloud Run write is in flight: their leases are kept
        self._due: list[datetime] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._slots = asyncio.Semaphore(concurrency)
        self.freezes = tuple(freezes)
        self.locks = locks
        self._held: list[Lock] = []  # the locks in force at this tick, for the rollouts' messages

    def wake(self) -> None:
        """Look now rather than at the next interval: a person just asked for something."""
        self._wake.set()

    def stop(self) -> None:
        """Claim nothing more: `run` returns once the tick in progress has persisted what it did."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
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
        claims = await asyncio.to_thread(self.store.claim_due, self.owner, None, self.lease_s, self.batch)
        self.claimed = len(claims)
        self._due = []
        views = await asyncio.gather(*(self._read(claim) for claim in claims))
        now = self.clock()
        if claims and self.locks is not None:
            self._held = await self.locks.locks(now)
        readable = [(claim, view) for claim, view in zip(claims, views, strict=True) if view is not None]
        wanting = [(claim, view) for claim, view in readable
                   if decide(claim.rollout, view.live, now, freeze=self._frozen(claim.rollout, now)).analyse]
        evidence: dict[int, Collected] = {}
        if wanting:
            try:
                gathered = await self.collector.collect([(c.rollout, v) for c, v in wanting], now)
            except Exception:
                log.exception("collecting the evidence of %d rollouts failed", len(wanting))
            else:
                evidence = {claim.rollout.id: found for (claim, _), found in zip(wanting, gathered, strict=True)}
        await asyncio.gather(*(self._guarded(claim, view, evidence.get(claim.rollout.id), now)
                               for claim, view in readable))
        if len(claims) == self.batch:
            return 0.0
        soonest = min(self._due, default=None)
        if soonest is None:
            return self.interval_s
        return max(0.0, min(self.interval_s, (soonest - self.clock()).total_seconds()))

    async def _read(self, claim: StoredRollout) -> ServiceView | None:
        """The service now; when Cloud Run cannot be read, the rollout says so and waits (None)."""
        rollout = claim.rollout
        deploying = rollout.state is State.DEPLOYING or (
            rollout.pending is not None and rollout.pending.kind != "set_traffic")
        try:
            async with self._slots:
                return await self.cloudrun.read(rollout.service, rollout.candidate if deploying else None)
        except CloudRunUnavailable as exc:
            log.warning("rollout %s of %s cannot read Cloud Run: %s", rollout.id, rollout.service, exc)
            if isinstance(exc, CloudRunRefused):
                result = WriteResult("refused", status=exc.status, message=str(exc), permission=exc.permission)
            else:
                result = WriteResult("retry", message=str(exc))
            await self._persist(claim, unreadable(rollout, result, self.clock()))
            return None

    async def _guarded(self, claim: StoredRollout, view: ServiceView, evidence: Collected | None,
                       now: datetime) -> None:
        async with self._slots:
            saved = [claim.rollout]
            try:
                await self.advance(claim, view, evidence, now, saved)
            except Exception:
                log.exception("rollout %s of %s: tick failed", claim.rollout.id, claim.rollout.service)
                # What was last saved, looked at again later: never the rollout as it was before a decision whose
                # write may already be pending.
                later = replace(saved[-1], next_check_at=self.clock() + timedelta(seconds=self.interval_s))
                with contextlib.suppress(StoreUnavailable):
                    await asyncio.to_thread(self.store.save, claim, later)

    async def advance(self, claim: StoredRollout, view: ServiceView, evidence: Collected | None,
                      now: datetime, saved: list[Rollout] | None = None) -> None:
        saved = [] if saved is None else saved
        rollout: Rollout = claim.rollout
        freeze = self._frozen(rollout, now)
        if evidence is not None:
            rollout = with_evidence(rollout, evidence)
            decision = decide(rollout, view.live, now, analyse(evidence.signals, rollout.plan.thresholds), freeze)
        else:
            decision = decide(rollout, view.live, now, freeze=freeze)
        notes: list[Note] = list(decision.notes)
        answers = list(decision.answers)
        for _ in range(_WRITES_PER_TICK):
            write = decision.write
            if write is None:
                break
            # What was decided so far is said with the save that marks the write pending: a crash during the write
            # loses none of it, and the rollout's message is redrawn once the write's outcome is known. The same
            # save renews the lease on the database's clock, or the write is not made.
            said = self.reporter.saying(claim, decision.rollout, notes, redraw=False,
                                        control=self._control(rollout, now))
            if not await asyncio.to_thread(self.store.save, claim, decision.rollout, answers=answers,
                                           renew_s=self.lease_s, also=said):
                log.warning("rollout %s: lease lost before writing; another instance has it", rollout.id)
                return
            saved.append(decision.rollout)
            self.reporter.sent()
            notes, answers = [], []
            result = await self._write(decision.rollout, write, view)
            decision = after_write(decision.rollout, result, self.clock())
            notes.extend(decision.notes)
            answers.extend(decision.answers)
        await self._persist(claim, Decision(decision.rollout, notes=tuple(notes), answers=tuple(answers)))

    def _frozen(self, rollout: Rollout, now: datetime) -> Window | None:
        return in_force(self.freezes, rollout.service, now)

    def _control(self, rollout: Rollout, now: datetime) -> list[str]:
        """What holds the service now (its locks, the freeze window in force), for the rollout's message."""
        return control_lines(holding(self._held, rollout.service, now), self._frozen(rollout, now), None, named=False)

    async def _write(self, rollout: Rollout, write: PendingWrite, view: ServiceView) -> WriteResult:
        """One Cloud Run write, its lease kept while it is in flight. Something unexpected (a token refresh that
        failed, a bug) leaves its outcome unknown: the rollout reads the service again before deciding."""
        self.writing.add(rollout.id)
        # The call runs on in its thread if this tick is cancelled (a shutdown): it stays in `writing` until the
        # call itself ends, so its lease is not given up while Cloud Run may still be taking it.
        call = asyncio.ensure_future(self.cloudrun.apply(rollout, write, view))
        call.add_done_callback(lambda _: self.writing.discard(rollout.id))
        try:
            result = await asyncio.shield(call)
        except Exception as exc:
            log.exception("rollout %s: the write's outcome is unknown", rollout.id)
            result = WriteResult("retry", message=f"the write's outcome is unknown ({type(exc).__name__}); "
                                                  "reading the service again")
        if result.outcome in ("refused", "retry"):
            log.warning("rollout %s: Cloud Run %s: %s %s", rollout.id,
                        "refused" if result.outcome == "refused" else "did not take the write",
                        result.status, result.message)
        return result

    async def _persist(self, claim: StoredRollout, decision: Decision) -> None:
        after = decision.rollout
        said = self.reporter.saying(claim, after, decision.notes, control=self._control(after, self.clock()))
        if await self._save_when_back(claim, after, release=not after.open, answers=decision.answers, said=said):
            self.reporter.sent()
            if after.open:
                self._due.append(after.next_check_at)
        else:
            log.warning("rollout %s: lease lost; another instance has it", after.id)

    async def _save_when_back(self, claim: StoredRollout, rollout: Rollout, *, release: bool,
                              answers: Sequence[Answer], said: Write) -> bool:
        """The fenced save, waiting out a database that is away for a moment (a restart, a failover) for up to a
        lease: what the tick learnt from Cloud Run, and what it has to tell the thread, is kept rather than dropped.
        Waiting is safe: once another instance holds the rollout, the save is refused."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.lease_s
        while True:
            try:
                return await asyncio.to_thread(self.store.save, claim, rollout, release=release, answers=answers,
                                               also=said)
            except StoreUnavailable as exc:
                if loop.time() >= give_up:
                    raise
                log.warning("rollout %s: cannot persist yet, trying again: %s", rollout.id, exc)
                await asyncio.sleep(_STORE_RETRY_S)
