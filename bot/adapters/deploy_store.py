"""Deploy requests, their approvals and the queues' holds, in the store.

Each transition is a conditional UPDATE from the state the request was read in, made in one transaction with what
it tells Slack (outbox rows) and its audit row: whichever instance wins says it, the others change nothing. An
approval is a row whose primary key is (request, person), so a person counts once however often they click; the
request's row is locked while approvals are counted, so two approvers at once move it to the queue once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.adapters.outbox import Message, enqueue
from bot.adapters.store import AuditRow, RolloutRow, Store
from bot.adapters.tables import DeployApprovalRow, DeployRequestRow, QueueHoldRow
from bot.domain.deploy_queue import CHATOPS, LastRollout, QueuedDeploy, RequestState, tag_of

Compose = Callable[[QueuedDeploy], Sequence[Message]]
"""What a request's transition tells Slack, given the request as it is after it."""

_REQUEST = "deploy_request:"


def request_thread(request_id: int) -> str:
    """The thread of a request's message: its post, its redraws and what happens to it."""
    return f"{_REQUEST}{request_id}"


class Stale(Exception):
    """The request was no longer in the state the transition expected: another instance or person came first."""


def _request(row: DeployRequestRow, approvals: Sequence[str] = ()) -> QueuedDeploy:
    return QueuedDeploy(id=row.id, service=row.service, image=row.image, strategy=row.strategy,
                        requested_by=row.requested_by, channel=row.channel, created_at=row.created_at,
                        state=RequestState(row.state), needed=row.needed, approvers=row.approvers,
                        approvals=tuple(approvals), queued_at=row.queued_at, expires_at=row.expires_at,
                        rollout_id=row.rollout_id, decided_by=row.decided_by, reason=row.reason, plan=row.plan,
                        override=row.override)


def _with_approvals(session: Session, rows: Sequence[DeployRequestRow]) -> list[QueuedDeploy]:
    given: dict[int, list[str]] = {}
    if rows:
        query = (select(DeployApprovalRow).where(DeployApprovalRow.request_id.in_([r.id for r in rows]))
                 .order_by(DeployApprovalRow.at, DeployApprovalRow.user_id))
        for approval in session.scalars(query):
            given.setdefault(approval.request_id, []).append(approval.user_id)
    return [_request(row, given.get(row.id, ())) for row in rows]


def _audit(session: Session, user: str, action: str, service: str, detail: str, now: datetime) -> None:
    """The audit row of a decision the bot makes itself, or of a person's, written with the decision."""
    session.add(AuditRow(at=now, user_id=user, user_name="", channel_id="", command="deploy-queue", text="",
                         action=action, service=service, outcome="ok", detail=detail[:500]))


def _new_row(request: QueuedDeploy) -> DeployRequestRow:
    return DeployRequestRow(service=request.service, state=request.state.value, image=request.image,
                            strategy=request.strategy, requested_by=request.requested_by, channel=request.channel,
                            created_at=request.created_at, needed=request.needed, approvers=request.approvers,
                            queued_at=request.queued_at, expires_at=request.expires_at, decided_by=request.decided_by,
                            reason=request.reason, rollout_id=request.rollout_id, plan=request.plan,
                            override=request.override, held="")


_QUEUE_ORDER = (DeployRequestRow.queued_at, DeployRequestRow.id)


class DeployRequests:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, request: QueuedDeploy, compose: Compose) -> QueuedDeploy:
        """Insert a waiting request (its id is assigned here) with what it tells Slack."""
        with self.store.writing() as session:
            row = _new_row(request)
            session.add(row)
            session.flush()
            added = replace(request, id=row.id)
            enqueue(session, compose(added))
        return added

    def started_with(self, request: QueuedDeploy) -> Callable[[Session, int], None]:
        """For `Store.create_rollout`: record a request that starts at once as started with its rollout."""
        def write(session: Session, rollout_id: int) -> None:
            session.add(_new_row(replace(request, state=RequestState.STARTED, rollout_id=rollout_id,
                                         decided_by=CHATOPS)))

        return write

    def claim_start(self, request: QueuedDeploy, compose: Compose) -> Callable[[Session, int], None]:
        """For `Store.create_rollout`: the queued request becomes started with its rollout, or Stale is raised (and
        the rollout is not created) when someone else started, cancelled or held it first."""
        def write(session: Session, rollout_id: int) -> None:
            result = session.execute(
                update(DeployRequestRow).where(DeployRequestRow.id == request.id,
                                               DeployRequestRow.state == RequestState.QUEUED.value)
                .values(state=RequestState.STARTED.value, rollout_id=rollout_id, decided_by=CHATOPS,
                        decided_at=datetime.now(UTC)))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise Stale(f"request {request.id} is no longer queued")
            started = replace(request, state=RequestState.STARTED, rollout_id=rollout_id, decided_by=CHATOPS)
            enqueue(session, compose(started))
            _audit(session, CHATOPS, "queue-start", request.service,
                   f"request #{request.id} started as rollout #{rollout_id}", datetime.now(UTC))

        return write

    def get(self, request_id: int) -> QueuedDeploy | None:
        with self.store.reading() as session:
            row = session.get(DeployRequestRow, request_id)
            return _with_approvals(session, [row])[0] if row is not None else None

    def waiting(self, service: str | None = None) -> list[QueuedDeploy]:
        """Requests awaiting approval or queued, in queue order (approval still awaited last)."""
        waiting = (RequestState.AWAITING.value, RequestState.QUEUED.value)
        query = select(DeployRequestRow).where(DeployRequestRow.state.in_(waiting))
        if service is not None:
            query = query.where(DeployRequestRow.service == service)
        with self.store.reading() as session:
            rows = list(session.scalars(query))
            found = _with_approvals(session, rows)
        return sorted(found, key=lambda r: (r.state is not RequestState.QUEUED, r.queued_at or r.created_at, r.id))

    def approve(self, request_id: int, user: str, now: datetime,
                refusal: Callable[[QueuedDeploy], str | None], compose: Compose) -> QueuedDeploy | str:
        """Count `user`'s approval, unless `refusal` (asked of the request as locked now) says why not; with enough
        approvals the request joins its queue. Returns the request after, or the refusal."""
        with self.store.writing() as session:
            row = session.get(DeployRequestRow, request_id, with_for_update=True)
            if row is None:
                return f"Request #{request_id} is gone; nothing to approve."
            before = _with_approvals(session, [row])[0]
            why = refusal(before)
            if why is not None:
                return why
            session.add(DeployApprovalRow(request_id=request_id, user_id=user, at=now))
            after = replace(before, approvals=(*before.approvals, user))
            if len(set(after.approvals)) >= after.needed:
                row.state, row.queued_at = RequestState.QUEUED.value, now
                after = replace(after, state=RequestState.QUEUED, queued_at=now)
            enqueue(session, compose(after))
            _audit(session, user, "approve", row.service,
                   f"request #{request_id}: approval {len(after.approvals)} of {after.needed}", now)
            return after

    def end(self, request_id: int, state: RequestState, user: str, reason: str, now: datetime,
            compose: Compose, *, only_from: Sequence[RequestState] = (RequestState.AWAITING, RequestState.QUEUED)
            ) -> QueuedDeploy | None:
        """Deny, expire or cancel a request still in one of `only_from`; None when it had moved on already."""
        with self.store.writing() as session:
            result = session.execute(
                update(DeployRequestRow).where(DeployRequestRow.id == request_id,
                                               DeployRequestRow.state.in_([s.value for s in only_from]))
                .values(state=state.value, decided_by=user, decided_at=now, reason=reason))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = session.get(DeployRequestRow, request_id, populate_existing=True)
            assert row is not None
            ended = _with_approvals(session, [row])[0]
            enqueue(session, compose(ended))
            _audit(session, user, state.value, ended.service, f"request #{request_id} {ended.ended()}", now)
            return ended

    def held(self, request: QueuedDeploy, why: str, now: datetime, compose: Compose) -> bool:
        """Record that a lock or a freeze window (`why`) holds the queued `request`, saying so once: False when that
        was said already (by this instance or another), or the request has moved on."""
        with self.store.reading() as session:  # looked at every tick while it waits: the write lock only when it must
            if session.scalar(select(DeployRequestRow.held).where(DeployRequestRow.id == request.id)) == why:
                return False
        with self.store.writing() as session:
            result = session.execute(
                update(DeployRequestRow).where(DeployRequestRow.id == request.id,
                                               DeployRequestRow.state == RequestState.QUEUED.value,
                                               DeployRequestRow.held != why)
                .values(held=why))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return False
            enqueue(session, compose(request))
            _audit(session, CHATOPS, "queue-hold", request.service, f"request #{request.id} waits: {why}", now)
            return True

    def due_to_expire(self, now: datetime) -> list[int]:
        query = select(DeployRequestRow.id).where(DeployRequestRow.state == RequestState.AWAITING.value,
                                                  DeployRequestRow.expires_at <= now)
        with self.store.reading() as session:
            return list(session.scalars(query))

    def last_rollout(self, service: str) -> LastRollout | None:
        query = (select(RolloutRow).where(RolloutRow.service == service)
                 .order_by(RolloutRow.created_at.desc(), RolloutRow.id.desc()).limit(1))
        with self.store.reading() as session:
            row = session.scalars(query).first()
            if row is None:
                return None
            return LastRollout(row.id, row.state, row.open, row.ended_at, row.requested_by, tag_of(row.image))

    def resumed(self, service: str, rollout_id: int) -> bool:
        with self.store.reading() as session:
            hold = session.get(QueueHoldRow, (service, rollout_id))
            return hold is not None and hold.resumed_by is not None

    def hold(self, service: str, rollout_id: int, now: datetime, messages: Sequence[Message], detail: str) -> bool:
        """Record that the queue holds after `rollout_id`, saying so, once: False when it was recorded already (by
        this instance or another at the same moment: the primary key lets one insert win)."""
        try:
            with self.store.writing() as session:
                if session.get(QueueHoldRow, (service, rollout_id)) is not None:
                    return False
                session.add(QueueHoldRow(service=service, rollout_id=rollout_id, held_at=now))
                session.flush()
                enqueue(session, messages)
                _audit(session, CHATOPS, "queue-hold", service, detail, now)
        except IntegrityError:
            return False
        return True

    def resume(self, service: str, rollout_id: int, user: str, now: datetime) -> bool:
        """End the hold after `rollout_id` (recording it if the dispatcher had not yet); False if already resumed."""
        try:
            with self.store.writing() as session:
                hold = session.get(QueueHoldRow, (service, rollout_id), with_for_update=True)
                if hold is not None and hold.resumed_by is not None:
                    return False
                if hold is None:
                    session.add(QueueHoldRow(service=service, rollout_id=rollout_id, held_at=now))
                    session.flush()
                resumed = update(QueueHoldRow).where(QueueHoldRow.service == service,
                                                     QueueHoldRow.rollout_id == rollout_id,
                                                     QueueHoldRow.resumed_by.is_(None))
                done = session.execute(resumed.values(resumed_by=user, resumed_at=now))
                _audit(session, user, "queue-resume", service, f"queue resumed after rollout #{rollout_id}", now)
                return bool(done.rowcount == 1)  # type: ignore[attr-defined]
        except IntegrityError:
            return False
