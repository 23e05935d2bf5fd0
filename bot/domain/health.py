"""Probe results -> a service's status and its failing checks.

The distinctions matter to whoever is on call: *unreachable* (nothing answered: look at Cloud Run and
the network), *unhealthy* (it answers but cannot serve: a readiness dependency fails), *degraded* (it
serves, but a deep data-quality check or a warning says something is off), *healthy*.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Endpoint = Literal["liveness", "readiness", "deep"]


class Status(enum.IntEnum):
    """Ordered worst first, so sorting a fleet puts what needs attention on top."""

    UNREACHABLE = 0
    UNHEALTHY = 1
    DEGRADED = 2
    HEALTHY = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Probe:
    """One HTTP request to one health endpoint. `status` is None when no HTTP answer came back; `error` says
    why there is no usable answer: none came, or Cloud Run refused the bot (then `status` is its 401 or 403)."""

    endpoint: Endpoint
    path: str
    url: str
    status: int | None
    latency_ms: float
    body: Mapping[str, Any] | None = None
    error: str = ""


@dataclass(frozen=True)
class Check:
    name: str
    state: Literal["pass", "warn", "fail"]
    endpoint: Endpoint
    detail: str = ""
    duration_ms: float | None = None


@dataclass(frozen=True)
class ServiceHealth:
    service: str
    status: Status
    reason: str
    checks: tuple[Check, ...]
    revision: str = ""
    latency_ms: float = 0.0

    @property
    def problems(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.state != "pass")


_PASS = {"pass", "ok", "healthy", "ready", "up", "success", "passed"}
_WARN = {"warn", "warning", "degraded", "skipped"}


def _state(raw: Any) -> Literal["pass", "warn", "fail"]:
    text = str(raw).lower()
    if text in _PASS:
        return "pass"
    if text in _WARN:
        return "warn"
    return "fail"


def _detail(entry: Mapping[str, Any]) -> str:
    for key in ("detail", "error", "message", "details"):
        value = entry.get(key)
        if value:
            if isinstance(value, Mapping):
                return ", ".join(f"{k}={v}" for k, v in value.items())
            return str(value)
    return ""


def checks_of(probe: Probe) -> list[Check]:
    """The checks a health body lists; the seeds' services name them `name` or `check`."""
    if probe.body is None:
        return []
    listed = probe.body.get("checks")
    if isinstance(listed, Mapping):
        listed = [{"name": k, **(v if isinstance(v, Mapping) else {"status": v})} for k, v in listed.items()]
    if not isinstance(listed, list):
        return []
    checks = []
    for entry in listed:
        if not isinstance(entry, Mapping):
            continue
        name = str(entry.get("name") or entry.get("check") or "unnamed")
        duration = entry.get("duration_ms")
        checks.append(Check(name, _state(entry.get("status", "fail")), probe.endpoint, _detail(entry),
                            float(duration) if isinstance(duration, int | float) else None))
    return checks


def _probe_problem(probe: Probe) -> Check:
    """A probe that failed without naming a check still needs a line in the report."""
    if probe.error:
        detail = probe.error
    elif probe.status is None:
        detail = "no answer"
    elif probe.body is None:
        detail = f"HTTP {probe.status} without a JSON body"
    else:
        detail = f"HTTP {probe.status}: {probe.body.get('status', 'failed')}"
    return Check(probe.path, "fail", probe.endpoint, detail)


def classify(service: str, probes: Sequence[Probe]) -> ServiceHealth:
    by_endpoint = {p.endpoint: p for p in probes}
    liveness = by_endpoint.get("liveness")
    # An answer with an error is Cloud Run's front end refusing the bot: the service itself said nothing.
    answered = [p for p in probes if p.status is not None and not p.error]
    latency = max((p.latency_ms for p in probes), default=0.0)
    revision = next((str(p.body["revision"]) for p in answered if p.body and p.body.get("revision")), "")
    if liveness is None or liveness.status is None or liveness.error:
        why = liveness.error if liveness is not None and liveness.error else "no answer"
        if not answered:
            return ServiceHealth(service, Status.UNREACHABLE, why, (), revision, latency)
    checks: list[Check] = []
    seen: set[tuple[str, Endpoint]] = set()
    for probe in probes:
        listed = checks_of(probe)
        for check in listed:
            seen.add((check.name, check.endpoint))
        checks.extend(listed)
        failed_without_check = not (probe.status is not None and 200 <= probe.status < 300) and not any(
            c.state != "pass" for c in listed)
        if failed_without_check:
            checks.append(_probe_problem(probe))
    # A check that both /ready and /health/deep report is one problem, not two.
    unique: dict[str, Check] = {}
    for check in checks:
        kept = unique.get(check.name)
        if kept is None or _rank(check) < _rank(kept):
            unique[check.name] = check
    merged = tuple(unique.values())
    hard = [c for c in merged if c.state == "fail" and c.endpoint in ("liveness", "readiness")]
    soft = [c for c in merged if c.state == "warn" or (c.state == "fail" and c.endpoint == "deep")]
    if hard:
        status, reason = Status.UNHEALTHY, _reason(hard)
    elif soft:
        status, reason = Status.DEGRADED, _reason(soft)
    else:
        status, reason = Status.HEALTHY, f"{len(merged)} checks pass" if merged else "answers"
    return ServiceHealth(service, status, reason, merged, revision, latency)


def _rank(check: Check) -> tuple[int, int]:
    severity = {"fail": 0, "warn": 1, "pass": 2}[check.state]
    where = {"liveness": 0, "readiness": 1, "deep": 2}[check.endpoint]
    return severity, where


def _reason(problems: Sequence[Check]) -> str:
    names = ", ".join(c.name for c in problems[:3])
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    return f"{names}{more} failing"


@dataclass(frozen=True)
class FleetHealth:
    services: tuple[ServiceHealth, ...]

    def ordered(self) -> list[ServiceHealth]:
        return sorted(self.services, key=lambda s: (s.status, s.service))

    def count(self, status: Status) -> int:
        return sum(1 for s in self.services if s.status == status)
