"""DORA's five software delivery figures, computed from the bot's own rollouts.

The definitions are DORA's (https://dora.dev/guides/dora-metrics-four-keys/, "DORA's software delivery performance
metrics"; the fifth, rework rate, since the 2024 report, https://dora.dev/research/2024/dora-report/):
- change lead time: "The amount of time it takes for a change to go from committed to version control to deployed
  in production";
- deployment frequency: "The number of deployments over a given period or the time between deployments";
- change fail rate: "The ratio of deployments that require immediate intervention following a deployment. Likely
  resulting in a rollback of the changes or a 'hotfix' to quickly remediate any issues";
- failed deployment recovery time: "The time it takes to recover from a deployment that fails and requires
  immediate intervention";
- deployment rework rate: "The ratio of deployments that are unplanned but happen as a result of an incident in
  production".
DORA reports medians for the two durations (its surveys ask for typical times), so these are medians too.

What chatops records forces some readings, stated here and in the README:
- A *deploy* is a rollout that ended (promoted, rolled back or failed) and is not a `/rollback` restore row
  (`Rollout.is_restore`). It counts in the period it ended in; one still running has no outcome yet. A deploy
  queued or awaiting approval is no rollout yet: it counts once it ran and ended, and its wait is part of its lead
  time. A deploy made with an override (a lock or a freeze broken) counts like any other.
- *Lead time* runs from the image's upload to Artifact Registry (the nearest the bot sees to "committed": CI builds
  and pushes on commit) to the promotion (the rollout's end). An image the registry could not tell about, or whose
  upload it reports after the promotion (its tag moved since), leaves that deploy's lead time unknown: said, never
  taken as 0.
- A deploy *failed* when it was rolled back or failed, or was promoted and then undone by a `/rollback` restore (the
  restore undoes its service's latest deploy promoted before it). The post-deploy watch's warning alone is not a
  failure (it asks a person, who may find nothing wrong); its Roll back button makes a restore, which is.
- *Recovery* of a failed deploy runs from its start to the moment a good revision serves all traffic again: the
  rollback's write routed (the rollout's `progress_at` when that came after its end), the rollout's end when there
  was nothing to route back, or the restore's write routed for a deploy undone after promotion. A failure not
  recovered yet has no time; it is counted as still failing.
- A deploy is *rework* (unplanned) when it starts within `rework_window` (24 h by default) after a failure of the
  same service (a failed deploy's end, a restore) or while one of its incidents is open. Restores themselves are
  remediation, not deploys: they are in neither the frequency nor the rework rate.
An empty period has no rates: "no deploys", never 0 %.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.rollout import Rollout, State

REWORK_WINDOW = timedelta(hours=24)
PERIODS = {"7d": timedelta(days=7), "30d": timedelta(days=30)}


@dataclass(frozen=True)
class Deploy:
    """A closed rollout as the figures see it: `restore` for a `/rollback` outside a rollout. `restored_at` is when
    a good revision served again after it ended (None when that is not known); `uploaded_at` its image's upload time
    in Artifact Registry (None: unknown)."""

    id: int
    service: str
    image: str
    state: State
    started_at: datetime
    ended_at: datetime
    restore: bool = False
    restored_at: datetime | None = None
    uploaded_at: datetime | None = None


@dataclass(frozen=True)
class Incident:
    """An incident of a service: open from `detected_at` until `resolved_at` (None: still open)."""

    service: str
    detected_at: datetime
    resolved_at: datetime | None = None


def deploy_of(rollout: Rollout, uploaded_at: datetime | None = None) -> Deploy | None:
    """The record of a rollout the reconciler is done with; None while it still has work (or a write pending)."""
    if rollout.open or rollout.ended_at is None:
        return None
    restored: datetime | None = rollout.ended_at
    if rollout.state is State.PROMOTED:
        restored = None
    elif rollout.progress_at is not None and rollout.progress_at >= rollout.ended_at:
        restored = rollout.progress_at
    elif rollout.is_restore:
        restored = None  # its write was never seen routed: someone else changed the service meanwhile
    return Deploy(rollout.id, rollout.service, rollout.image, rollout.state, rollout.created_at, rollout.ended_at,
                  restore=rollout.is_restore, restored_at=restored, uploaded_at=uploaded_at)


@dataclass(frozen=True)
class Figures:
    """The five figures over [since, now) for one service, or the fleet (`service` None)."""

    service: str | None
    since: datetime
    now: datetime
    deploys: int
    failed: int
    promoted: int
    lead_times: tuple[timedelta, ...]
    """Of the promoted deploys whose image's upload time is known."""
    recoveries: tuple[timedelta, ...]
    """Of the failed deploys recovered from."""
    rework: int

    @property
    def days(self) -> float:
        return (self.now - self.since) / timedelta(days=1)

    @property
    def per_day(self) -> float | None:
        """None without deploys: "no deploys" is said, not 0 a day."""
        return self.deploys / self.days if self.deploys else None

    @property
    def lead_time(self) -> timedelta | None:
        return _median(self.lead_times)

    @property
    def lead_unknown(self) -> int:
        return self.promoted - len(self.lead_times)

    @property
    def change_failure_rate(self) -> float | None:
        return self.failed / self.deploys if self.deploys else None

    @property
    def recovery_time(self) -> timedelta | None:
        return _median(self.recoveries)

    @property
    def still_failing(self) -> int:
        return self.failed - len(self.recoveries)

    @property
    def rework_rate(self) -> float | None:
        return self.rework / self.deploys if self.deploys else None


def _median(durations: Sequence[timedelta]) -> timedelta | None:
    """The middle one, or the mean of the middle two."""
    if not durations:
        return None
    ordered = sorted(durations)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _undone(deploys: Sequence[Deploy], restores: Sequence[Deploy]) -> dict[int, Deploy]:
    """deploy id -> the first restore that undid it: each restore undoes its service's latest deploy promoted before
    the restore started."""
    undone: dict[int, Deploy] = {}
    for restore in sorted(restores, key=lambda r: r.started_at):
        earlier = [d for d in deploys if d.service == restore.service and d.state is State.PROMOTED
                   and d.ended_at <= restore.started_at]
        if earlier:
            undone.setdefault(max(earlier, key=lambda d: (d.ended_at, d.id)).id, restore)
    return undone


def _reactive(deploy: Deploy, deploys: Sequence[Deploy], restores: Sequence[Deploy], incidents: Sequence[Incident],
              window: timedelta) -> bool:
    """Whether a deploy started within `window` after a failure of its service (another deploy's failed end, a
    restore) or while an incident of its service was open: a reaction, not a plan."""
    start = deploy.started_at
    failures = [d.ended_at for d in deploys if d.service == deploy.service and d.id != deploy.id
                and d.state is not State.PROMOTED]
    failures += [r.started_at for r in restores if r.service == deploy.service]
    if any(at <= start <= at + window for at in failures):
        return True
    return any(i.service == deploy.service and i.detected_at <= start
               and (i.resolved_at is None or start <= i.resolved_at) for i in incidents)


def figures(records: Sequence[Deploy], *, since: datetime, now: datetime, service: str | None = None,
            incidents: Sequence[Incident] = (), rework_window: timedelta = REWORK_WINDOW) -> Figures:
    """The figures of the deploys that ended in [since, now), of `service` or of every service. `records` should
    reach back past `since` (a rework window, a restore undoing an earlier deploy): only the period's deploys are
    counted, but what came before decides what they were."""
    if now <= since:
        raise ValueError(f"figures need a period: since {since} is not before now {now}")
    deploys = [d for d in records if not d.restore]
    restores = [d for d in records if d.restore and d.started_at < now]
    undone = _undone(deploys, restores)
    counted = [d for d in deploys if since <= d.ended_at < now and (service is None or d.service == service)]
    failed, rework = 0, 0
    leads: list[timedelta] = []
    recoveries: list[timedelta] = []
    for deploy in counted:
        if deploy.state is State.PROMOTED and deploy.id not in undone:
            if deploy.uploaded_at is not None and deploy.uploaded_at <= deploy.ended_at:
                leads.append(deploy.ended_at - deploy.uploaded_at)
        else:
            failed += 1
            restored = undone[deploy.id].restored_at if deploy.id in undone else deploy.restored_at
            if restored is not None and restored < now:
                recoveries.append(restored - deploy.started_at)
        if _reactive(deploy, deploys, restores, incidents, rework_window):
            rework += 1
    promoted = sum(1 for d in counted if d.state is State.PROMOTED and d.id not in undone)
    return Figures(service, since, now, len(counted), failed, promoted, tuple(leads), tuple(recoveries), rework)


def fleet_and_services(records: Sequence[Deploy], services: Sequence[str], *, since: datetime, now: datetime,
                       incidents: Sequence[Incident] = ()) -> tuple[Figures, tuple[Figures, ...]]:
    """The fleet's figures and each service's, services with deploys in the period first (most deploys first)."""
    fleet = figures([r for r in records if r.service in services], since=since, now=now, incidents=incidents)
    each = [figures(records, since=since, now=now, service=s, incidents=incidents) for s in services]
    each.sort(key=lambda f: (-f.deploys, f.service or ""))
    return fleet, tuple(each)


def images_to_read(rollouts: Sequence[Rollout], since: datetime) -> list[str]:
    """The images whose upload times a period's lead time needs: those of deploys promoted since `since`."""
    return sorted({r.image for r in rollouts if r.state is State.PROMOTED and not r.is_restore
                   and r.ended_at is not None and r.ended_at >= since})


def records_of(rollouts: Sequence[Rollout], uploads: Mapping[str, datetime | None]) -> list[Deploy]:
    found = (deploy_of(r, uploads.get(r.image)) for r in rollouts)
    return [d for d in found if d is not None]
