"""What a channel's scheduled health digest says, computed from the bot's own records: the fleet's state, the
period's deploys and rollbacks, the open incidents, and how fast incidents were acknowledged and resolved.

Pure: no Slack, Google, HTTP or database. The figures follow DORA's four keys (https://dora.dev/research/):
"Deployment frequency: How often does your organization deploy code to production", "Change failure rate: What
percentage of changes to production ... subsequently require remediation (e.g., require a hotfix, rollback, ...)"
and "Time to restore service". A deploy counts when it *ended* in the period (promoted, rolled back or failed):
one still in progress has no outcome yet, so counting it would flatter the failure rate. A failed deploy counts
as a failed change even when it never took traffic: the figure errs on the side of showing trouble.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.change_gate import Lock
from bot.domain.dora import Figures
from bot.domain.freeze import Window
from bot.domain.health import FleetHealth, ServiceHealth, Status
from bot.domain.rollout import MANUAL_ROLLBACK_IMAGE, Rollout, State

DEFAULT_MTTR_GOAL = timedelta(minutes=30)
MTTR_WINDOW = timedelta(days=7)
DEFAULT_GRACE = timedelta(minutes=5)
"""How long after its fire time a digest may go out before it says it is late: a scheduler that ticks every
minute or so is not "late", a bot that was down for an hour is."""

@dataclass(frozen=True)
class OpenIncident:
    """A problem the bot alerted on and nobody has resolved; `owners` are Slack user (U…) or user-group (S…)
    ids, as the config names them. Its age runs from `detected_at`, the first failure of its current cycle, as
    MTTR's durations do."""

    service: str
    checks: tuple[str, ...]
    detected_at: datetime
    acknowledged_by: str | None = None
    owners: tuple[str, ...] = ()

    def age(self, now: datetime) -> timedelta:
        return max(now - self.detected_at, timedelta(0))


@dataclass(frozen=True)
class ClosedIncident:
    """One open-resolve cycle: an incident that flapped is several of these, each counted."""

    service: str
    detected_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime

    def __post_init__(self) -> None:
        """A record out of order would make a negative duration that silently lowers the means."""
        if self.resolved_at < self.detected_at:
            raise ValueError(f"{self.service}: resolved at {self.resolved_at} before detected at {self.detected_at}")
        if self.acknowledged_at is not None and self.acknowledged_at < self.detected_at:
            raise ValueError(f"{self.service}: acknowledged at {self.acknowledged_at} before detected at "
                             f"{self.detected_at}")


@dataclass(frozen=True)
class Mttr:
    """Incidents resolved within `window` before the digest: how long, on average, from detection to a person's
    acknowledgement, and from detection to resolution, against `goal`. The incidents still open are not in the
    mean (they have no time to restore yet) but are said with it, at their age: a mean over the quick ones must
    not hide the one open for days."""

    resolved: int
    acknowledged: int
    mean_to_acknowledge: timedelta | None
    mean_to_resolve: timedelta | None
    goal: timedelta
    window: timedelta
    still_open: int = 0
    oldest_open: timedelta | None = None

    @property
    def within_goal(self) -> bool | None:
        """None when nothing was resolved: no incidents is not a time."""
        return None if self.mean_to_resolve is None else self.mean_to_resolve <= self.goal


@dataclass(frozen=True)
class Change:
    """A deploy that ended in the period; `failed` when it was rolled back or failed, or promoted and then
    rolled back by hand (`/rollback`) before the digest."""

    rollout: Rollout
    failed: bool

    @property
    def undone_by_hand(self) -> bool:
        return self.failed and self.rollout.state is State.PROMOTED


@dataclass(frozen=True)
class Deploys:
    changes: tuple[Change, ...]
    """Failed first, then newest first."""
    rollbacks: tuple[Rollout, ...]
    """`/rollback`s of the period, newest first."""
    in_progress: tuple[Rollout, ...]
    """Not ended yet, oldest first."""
    days: float

    @property
    def count(self) -> int:
        return len(self.changes)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.changes if c.failed)

    @property
    def change_failure_rate(self) -> float | None:
        """A share in [0, 1]; None without deploys, where 0 % would claim a success nobody had."""
        return self.failed / self.count if self.changes else None

    @property
    def per_day(self) -> float:
        return self.count / self.days


@dataclass(frozen=True)
class Digest:
    since: datetime
    now: datetime
    due_at: datetime
    """The fire time this digest was scheduled for."""
    late: bool
    services: int
    counts: tuple[tuple[Status, int], ...]
    """Every status, worst first, zeros included."""
    problems: tuple[ServiceHealth, ...]
    """Every service that is not healthy, worst first."""
    deploys: Deploys
    incidents: tuple[OpenIncident, ...]
    """Unacknowledged first, then oldest first."""
    mttr: Mttr
    dora: Figures | None = None
    """DORA's five figures over the last week (bot.domain.dora), when they were read."""
    locks: tuple[Lock, ...] = ()
    """The locks in force when the digest is made."""
    freeze: Window | None = None
    """The freeze window in force for the digest's services, if any."""
    next_freeze: Window | None = None

    @property
    def late_by(self) -> timedelta:
        return self.now - self.due_at

    def count(self, status: Status) -> int:
        return dict(self.counts)[status]


def worst_first(health: ServiceHealth) -> tuple[Status, int, int, str]:
    """By status, then by more failing checks, then by more warnings: what needs attention most comes first."""
    failing = warning = 0
    for check in health.checks:
        if check.state == "fail":
            failing += 1
        elif check.state == "warn":
            warning += 1
    return health.status, -failing, -warning, health.service


def is_manual_rollback(rollout: Rollout) -> bool:
    return rollout.state is State.ROLLED_BACK and rollout.image.startswith(MANUAL_ROLLBACK_IMAGE)


def _undone(deploys: Sequence[Rollout], rollbacks: Sequence[Rollout]) -> set[int]:
    """Positions in `deploys` of the promoted ones a `/rollback` undid: each rollback undoes its service's latest
    deploy promoted before it."""
    undone: set[int] = set()
    for rollback in rollbacks:
        when = rollback.ended_at or rollback.created_at
        earlier = [(r.ended_at, i) for i, r in enumerate(deploys) if r.service == rollback.service
                   and r.state is State.PROMOTED and r.ended_at is not None and r.ended_at <= when]
        if earlier:
            undone.add(max(earlier)[1])
    return undone


def deploys_of(rollouts: Sequence[Rollout], *, since: datetime, now: datetime) -> Deploys:
    def inside(rollout: Rollout) -> bool:
        return rollout.ended_at is not None and since <= rollout.ended_at < now

    rollbacks = [r for r in rollouts if is_manual_rollback(r)]
    deploys = [r for r in rollouts if r.state.ended and not is_manual_rollback(r)]
    undone = _undone(deploys, [r for r in rollbacks if (r.ended_at or r.created_at) < now])
    changes = [Change(r, r.state is not State.PROMOTED or i in undone) for i, r in enumerate(deploys) if inside(r)]
    changes.sort(key=lambda c: (not c.failed, -(c.rollout.ended_at or now).timestamp(), c.rollout.service))
    in_period = sorted((r for r in rollbacks if inside(r)), key=lambda r: -(r.ended_at or now).timestamp())
    active = sorted((r for r in rollouts if not r.state.ended), key=lambda r: (r.created_at, r.service))
    return Deploys(tuple(changes), tuple(in_period), tuple(active), (now - since) / timedelta(days=1))


def mttr_of(closed: Sequence[ClosedIncident], *, now: datetime, goal: timedelta = DEFAULT_MTTR_GOAL,
            window: timedelta = MTTR_WINDOW, still_open: Sequence[OpenIncident] = ()) -> Mttr:
    """Cycles count in the window they were resolved in, so a long one weighs on the week it ended."""
    recent = [i for i in closed if now - window < i.resolved_at <= now]
    acked = [i.acknowledged_at - i.detected_at for i in recent if i.acknowledged_at is not None]
    resolved = [i.resolved_at - i.detected_at for i in recent]
    oldest = max((i.age(now) for i in still_open), default=None)
    return Mttr(len(recent), len(acked), _mean(acked), _mean(resolved), goal, window, len(still_open), oldest)


def _mean(durations: Sequence[timedelta]) -> timedelta | None:
    return sum(durations, timedelta(0)) / len(durations) if durations else None


def digest_of(fleet: FleetHealth, rollouts: Sequence[Rollout], open_incidents: Sequence[OpenIncident],
              closed_incidents: Sequence[ClosedIncident], *, since: datetime, now: datetime, due_at: datetime,
              mttr_goal: timedelta = DEFAULT_MTTR_GOAL, grace: timedelta = DEFAULT_GRACE,
              dora: Figures | None = None, locks: Sequence[Lock] = (), freeze: Window | None = None,
              next_freeze: Window | None = None) -> Digest:
    """The digest of the period [since, now), posted at `now` for the fire time `due_at`. The fleet is as probed
    now, not as it was at `due_at`: a catch-up digest reports what is true when it is read, and says it is late."""
    if now <= since:
        raise ValueError(f"a digest needs a period: since {since} is not before now {now}")
    ordered = tuple(sorted((s for s in fleet.services if s.status is not Status.HEALTHY), key=worst_first))
    tally = Counter(s.status for s in fleet.services)
    counts = tuple((status, tally[status]) for status in Status)
    incidents = tuple(sorted(open_incidents, key=lambda i: (i.acknowledged_by is not None, i.detected_at,
                                                            i.service)))
    return Digest(since=since, now=now, due_at=due_at, late=now - due_at > grace, services=len(fleet.services),
                  counts=counts, problems=ordered, deploys=deploys_of(rollouts, since=since, now=now),
                  incidents=incidents, mttr=mttr_of(closed_incidents, now=now, goal=mttr_goal,
                                                    still_open=open_incidents), dora=dora,
                  locks=tuple(sorted((lock for lock in locks if lock.active(now)), key=lambda lock: lock.service)),
                  freeze=freeze, next_freeze=next_freeze)
