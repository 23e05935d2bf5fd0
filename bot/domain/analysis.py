"""The signals of one stage window -> pass, fail, inconclusive (or pending), with the reasons.

The rules are Flagger's, with the complaints about it fixed: a failure ends the window early (no one
waits a full window to roll back a canary that is already failing); too few requests to judge is said as
such and never counted as a pass; a source that could not be read is "no evidence", never success.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.domain.health import ServiceHealth, Status

Outcome = Literal["pass", "fail", "insufficient", "unavailable", "waiting"]


@dataclass(frozen=True)
class Thresholds:
    min_requests: int
    min_success_rate: float
    max_p99_ms: float
    max_error_logs: int


@dataclass(frozen=True)
class Requests:
    total: int
    errors: int
    p99_ms: float | None

    @property
    def success_rate(self) -> float | None:
        return None if self.total == 0 else 100.0 * (self.total - self.errors) / self.total


@dataclass(frozen=True)
class LogCheckResult:
    name: str
    count: int | None  # None: Cloud Logging could not be read
    at_least: int | None
    at_most: int | None
    detail: str = ""


@dataclass(frozen=True)
class HttpCheckResult:
    name: str
    path: str
    status: int | None
    expected: int
    detail: str = ""


@dataclass(frozen=True)
class Signals:
    complete: bool  # the window has run its full length
    health: ServiceHealth | None  # the candidate's tag URL; None when it could not be probed
    error_logs: int | None  # ERROR entries of the candidate; None when Logging could not be read
    requests: Requests | None  # None when Monitoring could not be read, or before any traffic
    log_checks: tuple[LogCheckResult, ...] = ()
    http_checks: tuple[HttpCheckResult, ...] = ()
    top_errors: tuple[str, ...] = ()
    unavailable: tuple[str, ...] = ()  # why a source could not be read, for the thread
    expects_traffic: bool = True  # before the first stage the candidate has 0%: no request metrics


@dataclass(frozen=True)
class Finding:
    check: str
    outcome: Outcome
    summary: str
    runbook_check: str | None = None  # the check name a runbook step is mapped to

    def line(self) -> str:
        return f"{self.check}: {self.summary}"


@dataclass(frozen=True)
class Verdict:
    outcome: Literal["pass", "fail", "inconclusive", "pending"]
    findings: tuple[Finding, ...]
    top_errors: tuple[str, ...] = ()

    @property
    def failures(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.outcome == "fail")

    def summary(self) -> str:
        shown = self.failures or tuple(f for f in self.findings if f.outcome != "waiting")
        return "; ".join(f.line() for f in shown)


def _health(health: ServiceHealth | None) -> list[Finding]:
    if health is None:
        return [Finding("probes", "unavailable", "the candidate's tag URL is not known yet")]
    if health.status is Status.UNREACHABLE:
        return [Finding("probes", "fail", f"the candidate's tag URL did not answer ({health.reason})")]
    failing = [c for c in health.checks if c.state == "fail"]
    if failing:
        return [Finding(f"check {c.name}", "fail", f"{c.detail or 'failed'} ({c.endpoint})", c.name)
                for c in failing]
    warned = [c.name for c in health.checks if c.state == "warn"]
    note = f"; warnings: {', '.join(warned)}" if warned else ""
    return [Finding("probes", "pass", f"{len(health.checks)} checks pass on /health, /ready, /health/deep{note}")]


def _requests(signals: Signals, limits: Thresholds) -> list[Finding]:
    requests = signals.requests
    if not signals.expects_traffic:
        return []
    if requests is None:
        return [Finding("requests", "unavailable", "Cloud Monitoring could not be read")]
    if requests.total < limits.min_requests:
        return [Finding("requests", "insufficient", f"only {requests.total} requests (< {limits.min_requests}): "
                        "success rate and p99 not judged")]
    findings = []
    rate = requests.success_rate or 0.0
    ok = rate >= limits.min_success_rate
    findings.append(Finding("success rate", "pass" if ok else "fail",
                            f"{rate:.1f}% of {requests.total} requests "
                            f"({'≥' if ok else '<'} {limits.min_success_rate:g}%)"))
    if requests.p99_ms is None:
        findings.append(Finding("p99 latency", "unavailable", "no latency distribution"))
    else:
        ok = requests.p99_ms <= limits.max_p99_ms
        findings.append(Finding("p99 latency", "pass" if ok else "fail",
                                f"{requests.p99_ms:.0f} ms ({'≤' if ok else '>'} {limits.max_p99_ms:g} ms)"))
    return findings


def _error_logs(signals: Signals, limits: Thresholds) -> list[Finding]:
    if signals.error_logs is None:
        return [Finding("error logs", "unavailable", "Cloud Logging could not be read")]
    count, most = signals.error_logs, limits.max_error_logs
    ok = count <= most
    shown = f"{count}+" if count > most else str(count)
    return [Finding("error logs", "pass" if ok else "fail", f"{shown} ERROR entries ({'≤' if ok else '>'} {most})")]


def _log_check(result: LogCheckResult, complete: bool) -> Finding:
    if result.count is None:
        return Finding(result.name, "unavailable", result.detail or "Cloud Logging could not be read", result.name)
    if result.at_most is not None and result.count > result.at_most:
        return Finding(result.name, "fail", f"{result.count} matching entries (> {result.at_most})", result.name)
    if result.at_least is not None and result.count < result.at_least:
        outcome: Outcome = "fail" if complete else "waiting"
        return Finding(result.name, outcome, f"{result.count} matching entries (< {result.at_least})", result.name)
    return Finding(result.name, "pass", f"{result.count} matching entries", result.name)


def _http_check(result: HttpCheckResult) -> Finding:
    got = f"HTTP {result.status}" if result.status is not None else (result.detail or "no answer")
    ok = result.status == result.expected
    return Finding(result.name, "pass" if ok else "fail", f"{result.path} answered {got} (expected {result.expected})",
                   result.name)


def analyse(signals: Signals, limits: Thresholds) -> Verdict:
    findings = [
        *_health(signals.health),
        *_error_logs(signals, limits),
        *_requests(signals, limits),
        *(_log_check(r, signals.complete) for r in signals.log_checks),
        *(_http_check(r) for r in signals.http_checks),
    ]
    if any(f.outcome == "fail" for f in findings):
        return Verdict("fail", tuple(findings), signals.top_errors)
    if not signals.complete:
        return Verdict("pending", tuple(findings), signals.top_errors)
    if any(f.outcome in ("unavailable", "waiting") for f in findings):
        return Verdict("inconclusive", tuple(findings), signals.top_errors)
    return Verdict("pass", tuple(findings), signals.top_errors)
