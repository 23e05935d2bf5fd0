"""The figures a chart is drawn from, as plain data that fits in an outbox row (JSON), apart from the drawing
(charts.py) so that what queues a chart does not import matplotlib."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Measured:
    """One source's figures for a revision over the window."""

    source: str
    total: int
    errors: int
    p99_ms: float | None

    @property
    def success_rate(self) -> float | None:
        return None if self.total == 0 else 100.0 * (self.total - self.errors) / self.total

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "total": self.total, "errors": self.errors, "p99_ms": self.p99_ms}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measured:
        p99 = data.get("p99_ms")
        return cls(str(data["source"]), int(data["total"]), int(data["errors"]), None if p99 is None else float(p99))


@dataclass(frozen=True)
class StageEvidence:
    service: str
    candidate: str
    stable: str
    percent: int
    outcome: str  # pass, fail
    min_success_rate: float
    max_p99_ms: float
    min_requests: int
    measured: tuple[Measured, ...]
    baseline: Measured | None = None
    """The stable revision over the same minutes, drawn beside the candidate; None when it was not measured (a new
    service, Cloud Monitoring without a whole minute yet or not answering, or a row queued before it was kept)."""

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "candidate": self.candidate, "stable": self.stable, "percent": self.percent,
                "outcome": self.outcome, "min_success_rate": self.min_success_rate, "max_p99_ms": self.max_p99_ms,
                "min_requests": self.min_requests, "measured": [m.to_json() for m in self.measured],
                "baseline": self.baseline.to_json() if self.baseline else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageEvidence:
        baseline = data.get("baseline")
        return cls(str(data["service"]), str(data["candidate"]), str(data["stable"]), int(data["percent"]),
                   str(data["outcome"]), float(data["min_success_rate"]), float(data["max_p99_ms"]),
                   int(data["min_requests"]), tuple(Measured.from_json(m) for m in data["measured"]),
                   Measured.from_json(baseline) if isinstance(baseline, dict) else None)


@dataclass(frozen=True)
class IncidentHistory:
    """An incident's checks, each failing span as ISO times, and the moments marked on it (ack, escalations,
    resolution)."""

    service: str
    incident_id: int
    spans: tuple[tuple[str, str, str], ...]  # (check, start, end)
    marks: tuple[tuple[str, str], ...]  # (label, at)

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "incident_id": self.incident_id, "spans": [list(s) for s in self.spans],
                "marks": [list(m) for m in self.marks]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IncidentHistory:
        return cls(str(data["service"]), int(data["incident_id"]),
                   tuple((str(c), str(a), str(b)) for c, a, b in data["spans"]),
                   tuple((str(label), str(at)) for label, at in data["marks"]))


@dataclass(frozen=True)
class WeekDay:
    day: str  # ISO date
    deploys: int
    failed: int
    recoveries_min: tuple[float, ...]


@dataclass(frozen=True)
class Week:
    days: tuple[WeekDay, ...]
    goal_min: float  # the MTTR goal, drawn across the recovery times

    def to_json(self) -> dict[str, Any]:
        return {"goal_min": self.goal_min, "days": [{"day": d.day, "deploys": d.deploys, "failed": d.failed,
                                                     "recoveries_min": list(d.recoveries_min)} for d in self.days]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Week:
        return cls(tuple(WeekDay(str(d["day"]), int(d["deploys"]), int(d["failed"]),
                                 tuple(float(m) for m in d["recoveries_min"])) for d in data["days"]),
                   float(data["goal_min"]))
