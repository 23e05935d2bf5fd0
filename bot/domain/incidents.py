"""An incident's life: (incident, what a sweep or Cloud Monitoring saw, now) -> the next incident and what to say.

One incident per service at a time. Each failing check is counted sweep by sweep: a check joins the incident
once it has failed `open_after` sweeps in a row (one bad sweep is noise), and the incident resolves once every
check has passed `resolve_after` sweeps in a row. A check that Cloud Monitoring reports failing is in at once
(its policy already waited its own duration) and stays until Monitoring closes it; the same Monitoring
incident reported twice changes nothing. A service that fails again within `cooldown_s` of its resolution
reopens the same incident, so the thread keeps the story; each open-resolve cycle is still its own record
(`Step.cycle`, kept by the store), so a flap counts twice for MTTR instead of its last cycle overwriting the first.

What to say is decided here and rendered elsewhere: the parent message is redrawn (`parent`) whenever what it
shows changed, and the thread gets a reply only when something happened: a check failed or recovered, someone
acknowledged, the incident escalated or resolved. During a silence the incident still counts, but says
nothing in the thread; when the silence ends an incident that is still open is announced then. A parent message
already drawn is still redrawn during a silence (an edit in place notifies nobody), so an incident that resolves
while silenced turns green instead of staying red forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from bot.domain.health import ServiceHealth, Status

Source = Literal["sweep", "monitoring"]
IncidentState = Literal["watching", "open", "resolved"]


@dataclass(frozen=True)
class AlertPolicy:
    open_after: int = 3
    resolve_after: int = 2
    cooldown_s: float = 900.0
    escalate_after_s: float = 900.0
    escalation: tuple[str, ...] = ()  # Slack user or group ids, the next one mentioned at each escalation


@dataclass(frozen=True)
class Failure:
    """A check failing now, as a sweep or Cloud Monitoring saw it."""

    check: str
    detail: str
    source: Source = "sweep"
    external_id: str = ""  # Cloud Monitoring's incident id


@dataclass(frozen=True)
class CheckState:
    check: str
    since: datetime  # first failure of this run of failures
    failures: int  # consecutive failed sweeps (Monitoring's count as open_after at once)
    detail: str
    source: Source = "sweep"
    external_id: str = ""

    def counted(self, policy: AlertPolicy) -> bool:
        return self.source == "monitoring" or self.failures >= policy.open_after


@dataclass(frozen=True)
class Incident:
    service: str
    id: int = 0
    state: IncidentState = "watching"
    checks: tuple[CheckState, ...] = ()  # failing now
    recovered: tuple[str, ...] = ()  # counted during this incident, passing now
    passes: int = 0  # consecutive sweeps with nothing failing, while open
    detected_at: datetime | None = None
    opened_at: datetime | None = None
    acknowledged_by: str = ""
    acknowledged_at: datetime | None = None
    escalations: int = 0
    resolved_at: datetime | None = None
    reopened: int = 0
    announced: bool = False  # its parent message exists (not while silenced from the start)
    monitoring_seen: tuple[str, ...] = ()  # Cloud Monitoring (incident id, state) pairs already handled, "id:state"

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    def counted(self, policy: AlertPolicy) -> tuple[CheckState, ...]:
        return tuple(c for c in self.checks if c.counted(policy))


@dataclass(frozen=True)
class Cycle:
    """One open-resolve cycle of an incident: what MTTR is made of. An incident that flaps has several."""

    service: str
    number: int  # the incident's `reopened` count when this cycle opened: 0 for the first
    detected_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime


@dataclass(frozen=True)
class Step:
    """The incident after an event (None: nothing worth keeping), whether its parent message must be drawn
    (created if not announced yet, else updated), the thread replies, in order, and the cycle the event closed."""

    incident: Incident | None
    parent: bool = False
    replies: tuple[str, ...] = field(default_factory=tuple)
    cycle: Cycle | None = None


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _start(service: str, previous: Incident | None, now: datetime, policy: AlertPolicy) -> Incident:
    """A fresh incident, or the last one again when the service flaps within the cooldown."""
    if previous is not None and previous.state == "resolved" and previous.resolved_at is not None \
            and now - previous.resolved_at <= timedelta(seconds=policy.cooldown_s):
        return replace(previous, state="watching", checks=(), passes=0, reopened=previous.reopened + 1)
    return Incident(service)


def observe(previous: Incident | None, service: str, failures: Sequence[Failure], now: datetime,
            policy: AlertPolicy, *, silenced: bool = False) -> Step:
    """One sweep's verdict on the service: the checks failing now (empty: all pass)."""
    failing = {f.check: f for f in failures if f.source == "sweep"}
    if previous is None or previous.state == "resolved":
        if not failing:
            return Step(previous)
        previous = _start(service, previous, now, policy)
    counted_before = {c.check for c in previous.counted(policy)}
    checks: list[CheckState] = []
    for state in previous.checks:
        if state.source == "monitoring":
            checks.append(state)
        elif state.check in failing:
            seen = failing.pop(state.check)
            checks.append(replace(state, failures=state.failures + 1, detail=seen.detail))
    checks += [CheckState(f.check, now, 1, f.detail) for f in failing.values()]
    return _after_change(replace(previous, checks=tuple(checks)), counted_before, now, policy, silenced=silenced,
                         swept=True)


def monitoring(previous: Incident | None, service: str, alert: Failure, closed: bool, now: datetime,
               policy: AlertPolicy, *, silenced: bool = False) -> Step:
    """A Cloud Monitoring notification about the service: open or closed, deduplicated by incident id."""
    seen = f"{alert.external_id}:{'closed' if closed else 'open'}"
    if previous is not None and seen in previous.monitoring_seen:
        return Step(previous)
    if previous is None or previous.state == "resolved":
        if closed:
            return Step(previous)
        previous = _start(service, previous, now, policy)
    incident = replace(previous, monitoring_seen=(*previous.monitoring_seen, seen)[-50:])
    counted_before = {c.check for c in incident.counted(policy)}
    others = tuple(c for c in incident.checks if c.check != alert.check)
    if closed:
        incident = replace(incident, checks=others)
    else:
        incident = replace(incident, checks=(*others, CheckState(alert.check, now, policy.open_after, alert.detail,
                                                                  "monitoring", alert.external_id)))
    return _after_change(incident, counted_before, now, policy, silenced=silenced, swept=False)


def _after_change(incident: Incident, counted_before: set[str], now: datetime, policy: AlertPolicy, *,
                  silenced: bool, swept: bool) -> Step:
    counted = incident.counted(policy)
    names = {c.check for c in counted}
    if incident.state == "watching":
        if not incident.checks:  # it never opened: a flap goes back to resolved, anything else is forgotten
            return Step(replace(incident, state="resolved") if incident.opened_at is not None else None)
        if not counted:
            return Step(incident)
        detected = min(c.since for c in incident.checks)
        opened = replace(incident, state="open", opened_at=now, detected_at=detected, passes=0, recovered=(),
                         acknowledged_by="", acknowledged_at=None, escalations=0, resolved_at=None)
        if silenced:  # held back; a parent drawn in an earlier cycle turns red again, quietly
            return Step(opened, parent=opened.announced)
        replies: tuple[str, ...] = ()
        if incident.reopened and incident.announced:
            replies = (f"failing again ({_checks(counted)}), {_duration(now - (incident.resolved_at or now))} "
                       "after it resolved",)
        return Step(replace(opened, announced=True), parent=True, replies=replies)
    # open
    joined = [c for c in counted if c.check not in counted_before]
    left = sorted(counted_before - names)
    recovered = tuple(dict.fromkeys((*incident.recovered, *left)))
    passes = incident.passes + 1 if swept and not incident.checks else 0
    incident = replace(incident, recovered=recovered, passes=passes)
    lines = [f"`{c.check}` fails too: {c.detail}" for c in joined] + [f"`{name}` recovered" for name in left]
    if not incident.checks and (passes >= policy.resolve_after or not swept):  # Monitoring closing needs no sweeps
        resolved = replace(incident, state="resolved", resolved_at=now, checks=())
        detected = incident.detected_at or incident.opened_at or now
        took = _duration(now - detected)
        lines.append(f"resolved: every check passes again, {took} after it was first detected")
        cycle = Cycle(incident.service, incident.reopened, detected, incident.acknowledged_at, now)
        return replace(_said(resolved, lines, silenced), cycle=cycle)
    return _said(incident, lines, silenced)


def _said(incident: Incident, lines: Sequence[str], silenced: bool) -> Step:
    """During a silence the thread hears nothing, but a parent already drawn is redrawn: it must not show a state
    that is over."""
    if not lines:
        return Step(incident)
    if silenced:
        return Step(incident, parent=incident.announced)
    if not incident.announced:
        return Step(replace(incident, announced=True), parent=True, replies=tuple(lines))
    return Step(incident, parent=True, replies=tuple(lines))


def _checks(counted: Sequence[CheckState]) -> str:
    return ", ".join(f"`{c.check}`" for c in counted)


def acknowledge(incident: Incident, user: str, now: datetime) -> Step:
    if not incident.is_open:
        return Step(incident)
    if incident.acknowledged_by:
        return Step(incident)
    acked = replace(incident, acknowledged_by=user, acknowledged_at=now)
    waited = _duration(now - (incident.opened_at or now))
    return Step(acked, parent=incident.announced, replies=(f"acknowledged by <@{user}> after {waited}",)
                if incident.announced else ())


def tick(incident: Incident, now: datetime, policy: AlertPolicy, *, silenced: bool = False) -> Step:
    """Time passing: an unacknowledged incident escalates to the next group; a silence that ended announces an
    incident it held back."""
    if not incident.is_open:
        return Step(incident)
    if not silenced and not incident.announced:
        return Step(replace(incident, announced=True), parent=True,
                    replies=("the silence ended and this is still failing",))
    if incident.acknowledged_by or incident.opened_at is None or incident.escalations >= len(policy.escalation):
        return Step(incident)
    due = incident.opened_at + timedelta(seconds=policy.escalate_after_s * (incident.escalations + 1))
    if now < due or silenced:
        return Step(incident)
    who = policy.escalation[incident.escalations]
    mention = f"<!subteam^{who}>" if who.startswith("S") else f"<@{who}>"
    text = (f"escalating to {mention}: unacknowledged for {_duration(now - incident.opened_at)}. "
            "Acknowledge it (button or `/ack " + incident.service + "`) to stop this.")
    return Step(replace(incident, escalations=incident.escalations + 1), parent=True, replies=(text,))


def failures_of(health: ServiceHealth) -> tuple[Failure, ...]:
    """What a sweep's probes say is failing: nothing answering at all, or each failing check. Warnings are not
    incidents."""
    if health.status is Status.UNREACHABLE:
        return (Failure("unreachable", health.reason or "no answer"),)
    return tuple(Failure(c.name, c.detail or f"the {c.endpoint} check fails") for c in health.checks
                 if c.state == "fail")
