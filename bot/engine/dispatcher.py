"""The deploy queue's loop: expire requests nobody approved in time, end locks whose time is up (saying so), and
start the head of each service's queue once `deploy_queue.next_start` says it may, or say once that the queue holds
and, to its requester, once what holds the head (a lock, a freeze window).

Starting is one transaction: the rollout's row and the request's conditional UPDATE from `queued` to `started`, so
an instance that loses either race (another started the request, or another rollout of the service is open: the
one-open-rollout-per-service index) creates nothing. A hold and an expiry are said once the same way. `start_rollout`
is also how /deploy starts a rollout at once, so both make the same row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from bot.adapters.cloudrun import CloudRunGateway
from bot.adapters.deploy_store import DeployRequests, Stale
from bot.adapters.lock_store import LockStore
from bot.adapters.outbox import Message, rollout_thread
from bot.adapters.store import RolloutConflict, Store, StoreUnavailable
from bot.config import Config
from bot.domain.change_gate import ALL, Lock, Refusal, gate
from bot.domain.deploy_queue import CHATOPS, Hold, QueuedDeploy, RequestState, Start, next_start
from bot.domain.rollout import spoken
from bot.engine.request_reporter import told
from commands.deploy import NotStarted, start_rollout

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, *, config: Config, store: Store, cloudrun: CloudRunGateway, interval_s: float,
                 sent: Callable[[], None] = lambda: None, started: Callable[[], None] = lambda: None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.store = store
        self.requests = DeployRequests(store)
        self.cloudrun = cloudrun
        self.interval_s = interval_s
        self.sent = sent  # wakes the outbox sender
        self.started = started  # wakes the reconciler
        self.clock = clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look now: a request was approved or queued, or a rollout may have ended."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except StoreUnavailable as exc:
                log.error("dispatcher: %s", exc)
            except Exception:
                log.exception("dispatcher tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()

    async def tick(self) -> None:
        now = self.clock()
        for request_id in await asyncio.to_thread(self.requests.due_to_expire, now):
            await self.expire(request_id, now)
        if await LockStore(self.store).end_expired(now, self.lock_ended):
            self.sent()
        heads: dict[str, QueuedDeploy] = {}
        for request in await asyncio.to_thread(self.requests.waiting):
            if request.state is RequestState.QUEUED:
                heads.setdefault(request.service, request)
        for service, head in heads.items():
            last = await asyncio.to_thread(self.requests.last_rollout, service)
            resumed = last is not None and last.failed and await asyncio.to_thread(
                self.requests.resumed, service, last.id)
            decision = next_start(head, last, resumed=resumed)
            if isinstance(decision, Start):
                await self.start(decision.request, now)
            elif isinstance(decision, Hold):
                await self.hold(decision)

    async def expire(self, request_id: int, now: datetime) -> None:
        request = await asyncio.to_thread(self.requests.get, request_id)
        if request is None:
            return
        rule = self.config.approval_for(request.service)
        waited = spoken(rule.expires) if rule is not None else "its time"
        reason = f"not approved within {waited}"
        ended = await asyncio.to_thread(
            self.requests.end, request_id, RequestState.EXPIRED, CHATOPS, reason, now,
            lambda r: told(r, f":hourglass: <@{r.requested_by}>, request #{r.id} expired: {reason}. "
                              f"`/deploy {r.service} image={r.image}` asks again."),
            only_from=(RequestState.AWAITING,))
        if ended is not None:
            self.sent()

    async def start(self, request: QueuedDeploy, now: datetime) -> None:
        """Start the queue's head, unless a lock or a freeze window holds it now: the change gate is asked again at
        the start, with the override the request was made with (if any), so a lock taken or a window begun while it
        waited holds it until the lock ends or the window closes (`/queue` says why it waits)."""
        locks = await LockStore(self.store).locks(now)
        go = gate(service=request.service, user=request.requested_by, now=now, locks=locks,
                  freezes=self.config.freeze_windows(), override=request.override,
                  may_override=bool(request.override))
        if isinstance(go, Refusal):
            await self.held(request, go, now)
            return
        try:
            result = await start_rollout(self.config, self.cloudrun, self.store, service=request.service,
                                         image=request.image, strategy=request.strategy,
                                         requested_by=request.requested_by, override=go.freeze,
                                         also=self.requests.claim_start(request, told))
        except (RolloutConflict, Stale):
            return  # another instance started it, or something else opened first: looked at again next tick
        if isinstance(result, NotStarted):
            if result.retry:
                return  # Cloud Run could not be read: the request stays queued
            await asyncio.to_thread(
                self.requests.end, request.id, RequestState.CANCELLED, CHATOPS, "it could not start", self.clock(),
                lambda r: told(r, f"<@{r.requested_by}>, request #{r.id} could not start: {result.text}"),
                only_from=(RequestState.QUEUED,))
            self.sent()
            return
        log.info("request %s of %s started as rollout %s", request.id, request.service, result.rollout.id)
        self.sent()
        self.started()

    async def held(self, request: QueuedDeploy, refusal: Refusal, now: datetime) -> None:
        """Tell the requester, once per cause, that their deploy is next but a lock or a freeze window holds it."""
        why = "\n".join(refusal.held)
        text = (f":hourglass_flowing_sand: <@{request.requested_by}>, request #{request.id} (`{request.tag}` to "
                f"{request.service}) is next in the queue, and waits:\n{why}\nIt starts by itself once nothing holds "
                f"it. `/queue cancel {request.id}` withdraws it; `/deploy {request.service} image={request.image} "
                "override=\"why\"` (with the `override` permission) goes ahead now.")
        if await asyncio.to_thread(self.requests.held, request, why, now, lambda r: told(r, text)):
            self.sent()

    def lock_ended(self, lock: Lock) -> list[Message]:
        """The deploy channel hears that a lock's time is up, as it heard it taken."""
        what = "every service" if lock.service == ALL else f"*{lock.service}*"
        channel = self.config.slack.channels[self.config.slack.deploy_channel]
        ended = f" at {lock.until.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if lock.until else ""
        text = (f":unlock: <@{lock.holder}>'s lock on {what} ended{ended} (it was for: "
                f"{lock.reason}). Deploys by others are no longer refused; `/lock {lock.service} ...` takes it again.")
        return [Message(f"lock:{lock.service}:{lock.since.timestamp():.6f}:ended", "post", channel, text)]

    async def hold(self, hold: Hold) -> None:
        """Said once, in the thread of the rollout that ended, to everyone waiting (they are mentioned)."""
        head = hold.request
        waiting = [r for r in await asyncio.to_thread(self.requests.waiting, head.service)
                   if r.state is RequestState.QUEUED]
        channel = self.config.slack.channels[self.config.slack.deploy_channel]
        text = (f":octagonal_sign: The deploy queue of {head.service} holds: {hold.reason}. Waiting: {_who(waiting)}. "
                f"`/queue resume {head.service}` starts the next; `/queue cancel <request#>` drops one.")
        if await asyncio.to_thread(self.requests.hold, head.service, hold.rollout_id, self.clock(),
                                   [Message(rollout_thread(hold.rollout_id), "reply", channel, text)],
                                   f"queue held after rollout #{hold.rollout_id} ({hold.reason})"):
            self.sent()


def _who(requests: Sequence[QueuedDeploy]) -> str:
    return ", ".join(f"#{r.id} `{r.tag}` by <@{r.requested_by}>" for r in requests)


def expiry(config: Config, service: str, now: datetime) -> datetime | None:
    rule = config.approval_for(service)
    return now + timedelta(seconds=rule.expires) if rule is not None else None
