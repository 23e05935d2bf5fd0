"""The figures a chart is drawn from, as plain data that fits in an outbox row (JSON), apart from the drawing
(charts.py) so that what queues a chart does not import matplotlib."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Measured:
    """One source's figures for the candidate over the window."""

    source: str
    total: int
    errors: int
    p99_ms: float | None

    @property
    def success_rate(self) -> float | None:
        return None if self.total == 0 else 100.0 * (self.total - self.errors) / self.total


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

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "candidate": self.candidate, "stable": self.stable, "percent": self.percent,
                "outcome": self.outcome, "min_success_rate": self.min_success_rate, "max_p99_ms": self.max_p99_ms,
                "min_requests": self.min_requests,
                "measured": [{"source": m.source, "total": m.total, "errors": m.errors, "p99_ms": m.p99_ms}
                             for m in self.measured]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageEvidence:
        measured = tuple(Measured(str(m["source"]), int(m["total"]), int(m["errors"]),
                                  None if m.get("p99_ms") is None else float(m["p99_ms"])) for m in data["measured"])
        return cls(str(data["service"]), str(data["candidate"]), str(data["stable"]), int(data["percent"]),
                   str(data["outcome"]), float(data["min_success_rate"]), float(data["max_p99_ms"]),
                   int(data["min_requests"]), measured)
