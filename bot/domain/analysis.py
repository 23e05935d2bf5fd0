"""The signals of one stage window -> pass, fail, inconclusive (or pending), with the reasons.

The rules are Flagger's, with the complaints about it fixed: a failure ends the window early (no one
waits a full window to roll back a canary that is already failing); too few requests to judge is said as
such and never counted as a pass; a source that could not be read is "no evidence", never success.

Absence is never a pass. `min_success_rate` of `min_requests` allows at most
`floor(min_requests x (100 - min_success_rate) / 100)` failed requests (5xx) in a window; more than that fails
the stage however few requests there were, because no number of later successes could lift the rate back to
the threshold at `min_requests`. With min_requests 20 and 95%: 20 x 5 / 100 = 1 allowed, so 2 failures of 3
requests fail; with the default 99%: 20 x 1 / 100 = 0.2, so 0 allowed and any 5xx fails; 19 of 19 failing
always fails. The 5xx are counted from Cloud Run's request logs (`httpRequest.status`), which exist whether or
not the code logs anything at ERROR. Only a window with at most that many failures and fewer than
`min_requests` requests is "insufficient".
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, replace
from datetime import datetime
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
    source: str = "request logs"
    sampled: int = 0  # entries actually read when the figures are scaled up from a sample; 0: all were read

    @property
    def success_rate(self) -> float | None:
        return None if self.total == 0 else 100.0 * (self.total - self.errors) / self.total


LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(round(1.25 ** n, 1) for n in range(0, 50))
"""Upper bounds of the latency histogram: 1 ms to about 55 s, each 25% above the last. A p99 read from it is
the bound of its bucket: at most 25% above the true value, never below it."""


@dataclass(frozen=True)
class Tally:
    """What the candidate's request and error logs said so far in this window.

    Logs are read incrementally (each entry once, up to `read_until`) and possibly sampled, so counts are
    weighted by 1/fraction. It lives in the rollout row: a restarted instance carries on from it.

    `read_until` is the cursor of the reads: each reads [read_until, until), so it only ever moves forward,
    and an entry is counted by the one read whose span holds its timestamp, never twice.
    """

    read_until: datetime
    requests: float = 0.0
    errors: float = 0.0  # 5xx
    latency: tuple[float, ...] = ()  # weighted counts per LATENCY_BOUNDS_MS bucket
    sampled: int = 0  # request entries actually read
    fraction: float = 1.0  # the sample fraction of the last read; 1 when nothing was sampled
    error_logs: int = 0  # application entries at ERROR or above (request logs are counted as requests)
    top_errors: tuple[str, ...] = ()  # newest first

    def add(self, *, until: datetime, fraction: float, statuses: tuple[tuple[int, float], ...],
            error_lines: tuple[str, ...]) -> Tally:
        """The tally after one more read: (status, latency ms) of each sampled request, the new error lines."""
        weight = 1.0 / fraction
        if until < self.read_until:
            raise ValueError(f"a read up to {until} would move the window back from {self.read_until}: its "
                             "entries would be counted twice")
        buckets = list(self.latency or (0.0,) * len(LATENCY_BOUNDS_MS))
        errors = self.errors
        for status, latency_ms in statuses:
            buckets[min(bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms), len(buckets) - 1)] += weight
            if status >= 500:
                errors += weight
        return replace(self, read_until=until, requests=self.requests + weight * len(statuses), errors=errors,
                       latency=tuple(buckets), sampled=self.sampled + len(statuses), fraction=fraction,
                       error_logs=self.error_logs + len(error_lines),
                       top_errors=(*error_lines, *self.top_errors)[:5])

    def p99_ms(self) -> float | None:
        total = sum(self.latency)
        if total <= 0:
            return None
        seen = 0.0
        for bound, count in zip(LATENCY_BOUNDS_MS, self.latency, strict=True):
            seen += count
            if seen >= 0.99 * total:
                return bound
        return LATENCY_BOUNDS_MS[-1]

    def requests_seen(self) -> Requests:
        scaled = self.sampled != round(self.requests)
        return Requests(round(self.requests), round(self.errors), self.p99_ms(), "request logs",
                        self.sampled if scaled else 0)


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
    second_opinion: Requests | None = None  # Cloud Monitoring, once its data for the window is in
    second_opinion_note: str = ""  # why there is none yet
    unrouted: str = ""  # what Cloud Run does not route yet for the candidate (tag URL, share): nothing is judged
    baseline: Requests | None = None  # the stable revision over the same minutes (Cloud Monitoring): shown, not judged


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
    insufficient: str = ""  # a passing window with too few requests to judge them: why, for the policy to weigh
    measured: tuple[Requests, ...] = ()  # the request figures judged (request logs, Cloud Monitoring), for a chart
    baseline: Requests | None = None  # the stable revision's, drawn beside them; the verdict never weighs it

    @property
    def failures(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.outcome == "fail")

    def summary(self) -> str:
        shown = self.failures or tuple(f for f in self.findings if f.outcome != "waiting") or self.findings
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
        return [Finding("requests", "unavailable", "the candidate's request logs could not be read")]
    return _judged(requests, limits, "")


def allowed_failures(limits: Thresholds) -> int:
    """The failed requests `min_success_rate` tolerates in `min_requests` (see the module notes)."""
    return math.floor(limits.min_requests * (100.0 - limits.min_success_rate) / 100.0 + 1e-9)


def _judged(requests: Requests, limits: Thresholds, label: str) -> list[Finding]:
    """Success rate and p99 of one source; `label` names a second opinion's checks apart from the first's."""
    prefix = f"{label} " if label else ""
    if requests.total < limits.min_requests:
        allowed = allowed_failures(limits)
        if requests.errors > allowed:
            return [Finding(f"{prefix}success rate", "fail",
                            f"{requests.errors} of {requests.total} requests failed (5xx, {requests.source}); "
                            f"{limits.min_success_rate:g}% of {limits.min_requests} allows {allowed}")]
        return [Finding(f"{prefix}requests", "insufficient",
                        f"only {requests.total} requests (< {limits.min_requests}) in {requests.source}: "
                        "success rate and p99 not judged")]
    sample = f", from {requests.sampled} sampled" if requests.sampled else ""
    findings = []
    rate = requests.success_rate or 0.0
    ok = rate >= limits.min_success_rate
    findings.append(Finding(f"{prefix}success rate", "pass" if ok else "fail",
                            f"{rate:.1f}% of {requests.total} requests{sample} "
                            f"({'≥' if ok else '<'} {limits.min_success_rate:g}%, {requests.source})"))
    if requests.p99_ms is None:
        findings.append(Finding(f"{prefix}p99 latency", "unavailable", f"no latency distribution in {requests.source}"))
    else:
        ok = requests.p99_ms <= limits.max_p99_ms
        findings.append(Finding(f"{prefix}p99 latency", "pass" if ok else "fail",
                                f"{requests.p99_ms:.0f} ms ({'≤' if ok else '>'} {limits.max_p99_ms:g} ms, "
                                f"{requests.source})"))
    return findings


def _second_opinion(signals: Signals, limits: Thresholds) -> list[Finding]:
    """Cloud Monitoring, when its data for the window is in; until then it is named, and weighs nothing."""
    if not signals.expects_traffic:
        return []
    if signals.second_opinion is None:
        note = signals.second_opinion_note or "no data for this window yet"
        return [Finding("Cloud Monitoring", "insufficient", note)]
    return [f for f in _judged(signals.second_opinion, limits, "Monitoring")
            if f.outcome != "insufficient"] or [Finding("Cloud Monitoring", "insufficient",
                                                        f"only {signals.second_opinion.total} requests so far")]


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
    """Every check judges the candidate as Cloud Run routes it: until its tag URL (and, in a stage, its share) is
    routed, the verdict is pending, never a failure of a URL that does not answer yet."""
    if signals.unrouted:
        return Verdict("pending", (Finding("routing", "waiting", signals.unrouted),), signals.top_errors)
    requests = _requests(signals, limits)
    findings = [
        *_health(signals.health),
        *_error_logs(signals, limits),
        *requests,
        *_second_opinion(signals, limits),
        *(_log_check(r, signals.complete) for r in signals.log_checks),
        *(_http_check(r) for r in signals.http_checks),
    ]
    measured = tuple(r for r in (signals.requests, signals.second_opinion) if r is not None)
    baseline = signals.baseline
    if any(f.outcome == "fail" for f in findings):
        return Verdict("fail", tuple(findings), signals.top_errors, measured=measured, baseline=baseline)
    if not signals.complete:
        return Verdict("pending", tuple(findings), signals.top_errors, measured=measured, baseline=baseline)
    if any(f.outcome in ("unavailable", "waiting") for f in findings):
        return Verdict("inconclusive", tuple(findings), signals.top_errors, measured=measured, baseline=baseline)
    short = next((f.summary for f in requests if f.outcome == "insufficient"), "")
    return Verdict("pass", tuple(findings), signals.top_errors, insufficient=short, measured=measured,
                   baseline=baseline)
