"""Deploy requests: a second person's approval, and a queue per service instead of "already being deployed".

Every /deploy that is not a dry run is a request. One that needs approval waits (`awaiting_approval`) for `min`
people, none of them its requester and each counted once, who are approvers; then it joins its service's queue
(`queued`), as a request that needs none does when something is ahead of it. The head of a queue starts
(`started`, with its rollout) once no rollout of the service is open, unless the queue holds: the rollout that
ended since the head was queued was rolled back or failed, and nobody has resumed the queue since. A request
can also end `denied`, `expired` or `cancelled`. These are decisions only: the store claims each transition with a
conditional UPDATE, so any number of instances make it once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class RequestState(enum.StrEnum):
    AWAITING = "awaiting_approval"
    QUEUED = "queued"
    STARTED = "started"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def waiting(self) -> bool:
        return self in (RequestState.AWAITING, RequestState.QUEUED)


_ENDED = {RequestState.STARTED: "started", RequestState.DENIED: "denied", RequestState.EXPIRED: "expired",
          RequestState.CANCELLED: "cancelled"}


@dataclass(frozen=True)
class QueuedDeploy:
    """One /deploy as a request. `needed` approvals from members of `approvers` (0: none needed)."""

    id: int
    service: str
    image: str
    strategy: str
    requested_by: str
    channel: str
    created_at: datetime
    state: RequestState
    needed: int = 0
    approvers: str = ""
    approvals: tuple[str, ...] = ()
    queued_at: datetime | None = None
    expires_at: datetime | None = None
    rollout_id: int | None = None
    decided_by: str = ""
    reason: str = ""
    plan: str = ""  # the plan as dry-run shows it, for the request's message
    override: str = ""  # why /deploy went past a lock or freeze window, by someone with the permission ("": none)

    @property
    def tag(self) -> str:
        return tag_of(self.image)

    def ended(self) -> str:
        """How it ended, as a person would say it; empty while it waits."""
        if self.state.waiting:
            return ""
        who = f" by <@{self.decided_by}>" if self.decided_by and self.decided_by != CHATOPS else ""
        started = f" as rollout #{self.rollout_id}" if self.rollout_id else ""
        why = f": {self.reason}" if self.reason else ""
        return f"{_ENDED[self.state]}{started}{who}{why}"


def tag_of(image: str) -> str:
    """An image as people name it: its tag, or the start of its digest."""
    reference = image.rpartition("/")[2]
    return reference.split("@")[1][:19] if "@" in reference else reference.rpartition(":")[2]


CHATOPS = "chatops"
"""`decided_by` of what the bot decides itself (an expiry, a start)."""


@dataclass(frozen=True)
class LastRollout:
    """The newest rollout of a service, as far as the queue cares."""

    id: int
    state: str
    open: bool
    ended_at: datetime | None
    requested_by: str
    tag: str

    @property
    def failed(self) -> bool:
        return not self.open and self.state != "promoted"


def may_approve(request: QueuedDeploy, user: str, *, approver: bool) -> str | None:
    """Why `user` may not approve, or None. The requester never may; an approval counts once per person."""
    if request.state is not RequestState.AWAITING:
        return f"Request #{request.id} is already {request.ended() or 'approved'}; nothing to approve."
    if user == request.requested_by:
        return (f"You asked for request #{request.id}; someone else must approve it (a member of "
                f"{shown_approvers(request.approvers)}).")
    if not approver:
        return (f"Approving {request.service} deploys needs {shown_approvers(request.approvers)}; ask one of them, "
                "or the on-call.")
    if user in request.approvals:
        left = request.needed - len(request.approvals)
        return f"You already approved request #{request.id}; it needs {left} more, from someone else."
    return None


def may_deny(request: QueuedDeploy, user: str, *, approver: bool) -> str | None:
    """Why `user` may not deny: only approvers deny, and only what still waits for approval. A requester who changed
    their mind cancels instead."""
    if request.state is not RequestState.AWAITING:
        return f"Request #{request.id} is already {request.ended() or 'approved'}; nothing to deny."
    if user == request.requested_by:
        return f"It is your own request: `/queue cancel {request.id}` withdraws it."
    if not approver:
        return f"Denying {request.service} deploys needs {shown_approvers(request.approvers)}."
    return None


def may_cancel(request: QueuedDeploy, user: str, *, may_roll_back: bool) -> str | None:
    """Why `user` may not cancel: the requester may, and so may whoever may roll the service back."""
    if not request.state.waiting:
        return f"Request #{request.id} is already {request.ended()}; nothing to cancel."
    if user != request.requested_by and not may_roll_back:
        return (f"Only <@{request.requested_by}>, who asked for it, or someone who may roll back {request.service} "
                f"can cancel request #{request.id}.")
    return None


def approved(request: QueuedDeploy) -> bool:
    return len(set(request.approvals)) >= request.needed


def shown_approvers(approvers: str) -> str:
    """A role by name, a Slack user group as Slack draws a mention of it."""
    return f"<!subteam^{approvers}>" if approvers.startswith("S") and approvers.isupper() else f"the *{approvers}* role"


@dataclass(frozen=True)
class StartNow:
    """/deploy starts at once: nothing is open or queued ahead of it, and it needs no approval."""


@dataclass(frozen=True)
class Await:
    """/deploy waits for approval first."""


@dataclass(frozen=True)
class Enqueue:
    """/deploy joins the queue at `position` (the open rollout, if any, counts as #1)."""

    position: int


Arrival = StartNow | Await | Enqueue


def on_arrival(*, needs_approval: bool, ahead: int, rollout_open: bool) -> Arrival:
    """What a new /deploy becomes, given how many requests are queued ahead and whether a rollout is open."""
    if needs_approval:
        return Await()
    if ahead == 0 and not rollout_open:
        return StartNow()
    return Enqueue(ahead + (1 if rollout_open else 0) + 1)


@dataclass(frozen=True)
class Start:
    request: QueuedDeploy


@dataclass(frozen=True)
class Hold:
    """The queue waits for a person: `rollout_id` was rolled back or failed while `request` waited behind it."""

    request: QueuedDeploy
    rollout_id: int
    reason: str


@dataclass(frozen=True)
class Wait:
    reason: str


Dispatch = Start | Hold | Wait


def next_start(head: QueuedDeploy | None, last: LastRollout | None, *, resumed: bool) -> Dispatch:
    """Whether the head of a service's queue may start now. `last` is the service's newest rollout; `resumed`
    whether someone has resumed the queue since `last` ended."""
    if head is None:
        return Wait("nothing is queued")
    if last is not None and last.open:
        return Wait(f"rollout #{last.id} is in progress")
    queued_at = head.queued_at or head.created_at
    if (last is not None and last.failed and last.ended_at is not None and last.ended_at > queued_at
            and not resumed):
        return Hold(head, last.id, f"rollout #{last.id} (`{last.tag}`) {last.state.replace('_', ' ')}")
    return Start(head)


def queue_position(waiting: list[QueuedDeploy], request_id: int, rollout_open: bool) -> int:
    """Where a queued request stands, counting an open rollout as #1; 0 if it is not queued."""
    queued = [r.id for r in waiting if r.state is RequestState.QUEUED]
    if request_id not in queued:
        return 0
    return queued.index(request_id) + 1 + (1 if rollout_open else 0)
