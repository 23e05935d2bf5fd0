"""An incident's timeline, for a postmortem draft: (the incident, what its thread said, the service's deploys) ->
the moments in order, each with the message that told it, and the durations people are asked about.

Built from records kept anyway: the incident (detection, acknowledgement, resolution times), the messages its
thread was sent (each written in the transaction of the event it tells, at that event's time: bot/engine/
incidents.py), and the service's rollouts from an hour before detection until the resolution (or now), since a
deploy is the first suspect. A thread reply is classed by the event whose time it carries (the acknowledgement,
the resolution) or by the words bot/domain/incidents.py starts it with; one it cannot class is kept as a note,
never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bot.domain.incidents import Incident

Kind = Literal["detected", "opened", "failure", "recovery", "alert", "acknowledged", "escalated", "resolved",
               "deploy", "rollback", "note"]
BEFORE = timedelta(hours=1)
"""How far before detection deploys and rollbacks of the service are listed."""


@dataclass(frozen=True)
class Said:
    """A message of the incident's thread as it was sent: `first` is the parent, the rest replies."""

    at: datetime
    text: str
    channel: str
    ts: str
    first: bool = False


@dataclass(frozen=True)
class Change:
    """A rollout of the service: started at `at`, and `ended_at` how it ended (`rolled_back`, `promoted`, ...)."""

    id: int
    at: datetime
    what: str  # e.g. "deploy of `svc-00042-new` by <@U1>"
    state: str
    ended_at: datetime | None
    restore: bool  # a rollback started as a rollout of its own (/rollback)
    channel: str
    ts: str


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: Kind
    text: str
    channel: str = ""
    ts: str = ""  # the message that told it; "" when none did


@dataclass(frozen=True)
class Timeline:
    service: str
    incident_id: int
    entries: tuple[Entry, ...]
    detected_at: datetime | None
    acknowledged_by: str
    time_to_acknowledge: timedelta | None
    time_to_resolve: timedelta | None
    resolved: bool


_STARTS: tuple[tuple[str, Kind], ...] = (
    ("escalating to", "escalated"),
    ("resolved:", "resolved"),
    ("acknowledged by", "acknowledged"),
    ("failing again", "failure"),
    ("the silence ended", "note"),
)


def _kind(said: Said, incident: Incident) -> Kind:
    if said.first:
        return "opened"
    if incident.acknowledged_at is not None and said.at == incident.acknowledged_at:
        return "acknowledged"
    if incident.resolved_at is not None and said.at == incident.resolved_at and said.text.startswith("resolved"):
        return "resolved"
    for start, kind in _STARTS:
        if said.text.startswith(start):
            return kind
    if said.text.endswith("recovered"):
        return "recovery"
    if "fails too" in said.text:
        return "alert" if said.text.startswith("`monitoring:") else "failure"
    return "note"


def _changes(changes: Sequence[Change], start: datetime, end: datetime) -> list[Entry]:
    entries: list[Entry] = []
    for change in changes:
        if start <= change.at <= end:
            kind: Kind = "rollback" if change.restore else "deploy"
            entries.append(Entry(change.at, kind, f"rollout #{change.id}: {change.what}", change.channel, change.ts))
        if (not change.restore and change.state == "rolled_back" and change.ended_at is not None
                and start <= change.ended_at <= end):
            entries.append(Entry(change.ended_at, "rollback", f"rollout #{change.id} rolled back", change.channel,
                                 change.ts))
    return entries


def build(incident: Incident, said: Sequence[Said], changes: Sequence[Change], now: datetime) -> Timeline:
    """The timeline in time order (ties keep the order they were said in)."""
    detected = incident.detected_at or (said[0].at if said else now)
    resolved = incident.state == "resolved" and incident.resolved_at is not None
    end = incident.resolved_at if resolved and incident.resolved_at is not None else now
    parent = next((s for s in said if s.first), None)
    checks = ", ".join(f"`{c.check}`" for c in incident.checks)
    entries = [Entry(detected, "detected", f"first failing sweep of {incident.service}" + (f" ({checks})" if checks
                                                                                           else ""),
                     parent.channel if parent else "", parent.ts if parent else "")]
    entries += [Entry(s.at, _kind(s, incident), s.text, s.channel, s.ts) for s in said]
    entries += _changes(changes, detected - BEFORE, end)
    ordered = sorted(entries, key=lambda e: e.at)
    to_ack = incident.acknowledged_at - detected if incident.acknowledged_at is not None else None
    to_resolve = end - detected if resolved else None
    return Timeline(incident.service, incident.id, tuple(ordered), detected, incident.acknowledged_by, to_ack,
                    to_resolve, resolved)


@dataclass(frozen=True)
class Span:
    """A check failing from `start` to `end` (its recovery, or the end of the incident or now)."""

    check: str
    start: datetime
    end: datetime


_NAMED = re.compile(r"^`([^`]+)`")


def check_spans(timeline: Timeline, now: datetime) -> tuple[Span, ...]:
    """Each check's failing spans, from the thread's lines: a check that recovers without a line saying it failed
    was failing from detection (the parent names the first checks, its lines do not)."""
    resolved_at = (timeline.detected_at + timeline.time_to_resolve
                   if timeline.detected_at is not None and timeline.time_to_resolve is not None else None)
    end = resolved_at or now
    started: dict[str, datetime] = {}
    spans: list[Span] = []
    for entry in timeline.entries:
        named = _NAMED.match(entry.text)
        if named is None:
            continue
        if entry.kind in ("failure", "alert"):
            started.setdefault(named.group(1), entry.at)
        elif entry.kind == "recovery":
            check = named.group(1)
            spans.append(Span(check, started.pop(check, timeline.detected_at or entry.at), entry.at))
    spans += [Span(check, since, end) for check, since in started.items()]
    return tuple(sorted(spans, key=lambda s: (s.start, s.check)))
