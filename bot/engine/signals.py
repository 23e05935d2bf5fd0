"""Collect the signals of the due rollouts' windows, for their candidate revisions only, all at once.

Evidence comes from where it is near real time and cheap to read:
- probes of the candidate's tag URL and the service's HTTP checks, every tick, once Cloud Run routes the tag
  URL (and, in a stage, the candidate's share): until then nothing is judged and the verdict is pending;
- the candidates' request logs and error lines, read for every due rollout in one batched Cloud Logging
  query, incrementally (each entry once: the tally of what was read lives in the rollout), sampled when
  there are many, and within a per-minute budget of reads so the project's quota holds;
- the service's own log checks, once the window's logs are all in;
- Cloud Monitoring as a slower second opinion, for the minutes of the window old enough to be visible; the
  stable revision's figures over the same minutes come with it, to be drawn beside the candidate's (a stage's
  chart), never judged: a candidate is held to the thresholds, not to the stable revision.

A source that cannot be read becomes "unavailable" with its reason, never a pass: the analysis decides
what missing evidence means. A window is complete only when its logs have been read to its end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bot.adapters.cloudrun import ServiceView
from bot.adapters.logs import DEFAULT_ERRORS, EvidenceWindow, LogsGateway, LogsQuotaExceeded, LogsUnavailable
from bot.adapters.metrics import MetricsGateway, MetricsUnavailable
from bot.adapters.prober import Prober
from bot.config import HealthPaths
from bot.domain.analysis import HttpCheckResult, LogCheckResult, Requests, Signals, Tally
from bot.domain.health import ServiceHealth, classify
from bot.domain.rollout import TAG, HttpCheckSpec, LogCheckSpec, Rollout, State, spoken
from bot.engine.budget import ReadBudget

log = logging.getLogger(__name__)

TARGET_ENTRIES = 800
"""Request logs one batched read aims to return: under one page of 1,000, so a read costs one call."""
MAX_PAGES = 2
MAX_QUERY_CHARS = 18_000
"""Under Logging's 20,000-character limit on a query, with room for the sampling clause's digits."""


@dataclass(frozen=True)
class Collected:
    signals: Signals
    evidence: Tally


@dataclass
class _Window:
    rollout: Rollout
    view: ServiceView
    start: datetime
    end: datetime  # the window's end, or far ahead while verifying
    tally: Tally
    until: datetime  # how far this tick may read: the window's end, or now minus the ingestion lag
    needed: datetime  # how far the logs must be read for the window to be judged
    problem: str = ""

    @property
    def analysing(self) -> bool:
        return self.rollout.state is State.ANALYSING


class SignalCollector:
    def __init__(self, prober: Prober, logs: LogsGateway, metrics: MetricsGateway, paths: dict[str, HealthPaths],
                 *, budget: ReadBudget, log_lag_s: float, metrics_delay_s: float,
                 error_filters: Mapping[str, str] | None = None) -> None:
        self.prober = prober
        self.logs = logs
        self.metrics = metrics
        self.paths = paths
        self.budget = budget
        self.log_lag = timedelta(seconds=log_lag_s)
        self.metrics_delay = timedelta(seconds=metrics_delay_s)
        self.error_filters = dict(error_filters or {})
        self._second: dict[tuple[int, int], _Opinion] = {}
        self._early_every = timedelta(seconds=120 / budget.per_minute)
        self._last_read = datetime.min.replace(tzinfo=UTC)

    async def collect(self, due: Sequence[tuple[Rollout, ServiceView]], now: datetime) -> list[Collected]:
        windows = [self._window(rollout, view, now) for rollout, view in due]
        await self._read_evidence(windows, now)
        return list(await asyncio.gather(*(self._signals(window, now) for window in windows)))

    def _window(self, rollout: Rollout, view: ServiceView, now: datetime) -> _Window:
        analysing = rollout.state is State.ANALYSING
        start = (rollout.stage_started_at if analysing else None) or rollout.created_at
        end = rollout.window_end if analysing else now + timedelta(days=1)
        tally = rollout.evidence if rollout.evidence is not None else Tally(read_until=start)
        needed = end if analysing else (rollout.progress_at or rollout.created_at)
        return _Window(rollout, view, start, end, tally, min(end, now - self.log_lag), needed)

    async def _read_evidence(self, windows: list[_Window], now: datetime) -> None:
        """One query for every window with something new to read, when the budget allows a read.

        A read that lets a window finish goes first, whenever there is budget; a read that only looks early for
        trouble waits its turn (twice the budget's pace) and leaves one read in reserve for the next finish.
        """
        wanted = [w for w in windows if w.until > w.tally.read_until]
        finishing = any(w.tally.read_until < w.needed <= w.until for w in wanted)
        early = now - self._last_read >= self._early_every and self.budget.available() >= 2
        if not wanted or not (finishing or early):
            return
        self._last_read = now
        for batch in self._batches(wanted):
            if not self.budget.take():
                return
            await self._read_batch(batch)

    def _batches(self, windows: list[_Window]) -> list[list[_Window]]:
        """Windows grouped so that each query stays within Logging's limit on a query's length (20,000
        characters, https://cloud.google.com/logging/quotas); those about to finish first."""
        ordered = sorted(windows, key=lambda w: w.needed > w.until)
        batches: list[list[_Window]] = [[]]
        for window in ordered:
            candidate = [*batches[-1], window]
            if batches[-1] and len(self.logs.evidence_filter(self._query(candidate), 0.5)) > MAX_QUERY_CHARS:
                batches.append([window])
            else:
                batches[-1] = candidate
        return batches

    def _query(self, windows: list[_Window]) -> list[EvidenceWindow]:
        return [EvidenceWindow(w.rollout.service, w.rollout.candidate, w.tally.read_until, w.until,
                               self.error_filters.get(w.rollout.service, DEFAULT_ERRORS)) for w in windows]

    async def _read_batch(self, wanted: list[_Window]) -> None:
        fraction = _fraction(wanted)
        try:
            found = await self.logs.evidence(self._query(wanted), fraction=fraction, max_pages=MAX_PAGES)
        except LogsUnavailable as exc:
            if isinstance(exc, LogsQuotaExceeded):
                self.budget.exhausted()
            for window in wanted:
                window.problem = str(exc)
            return
        self.budget.charge(found.pages - 1)
        for window in wanted:
            # A page limit stops the whole batch at one moment, which may come before this window's own cursor
            # (its read went no further than where it already was): the cursor never moves back.
            stopped = min(window.until, found.read_until) if found.read_until else window.until
            until = max(window.tally.read_until, stopped)
            revision = window.rollout.candidate
            window.tally = window.tally.add(until=until, fraction=fraction,
                                            statuses=tuple(found.requests.get(revision, ())),
                                            error_lines=tuple(found.errors.get(revision, ())))

    async def _signals(self, window: _Window, now: datetime) -> Collected:
        rollout = window.rollout
        url, unrouted = _routed(rollout, window.view)
        audience = window.view.uri or None  # the service URL opens its tag URLs too
        logs_in = window.tally.read_until >= window.needed
        gave_up = bool(window.problem) and now >= window.end + self.log_lag
        checks_due = window.analysing and logs_in and not window.problem and not unrouted
        health, log_checks, http_checks, second = await asyncio.gather(
            self._health(rollout, url, audience),
            asyncio.gather(*(self._log_check(rollout, spec, window) for spec in rollout.plan.log_checks
                             if checks_due)),
            asyncio.gather(*(self._http_check(rollout, spec, url, audience) for spec in rollout.plan.http_checks
                             if url)),
            self._second_opinion(window, now),
        )
        checks_read = all(result.count is not None or result.detail for result in log_checks)
        complete = (logs_in and checks_read) or gave_up
        tally = window.tally
        requests = None if gave_up or not window.analysing else tally.requests_seen()
        signals = Signals(
            complete=complete, health=health, error_logs=None if gave_up else tally.error_logs,
            requests=requests, log_checks=tuple(r for r in log_checks if r.count is not None or r.detail),
            http_checks=tuple(http_checks), top_errors=tally.top_errors,
            unavailable=(window.problem,) if window.problem else (), expects_traffic=window.analysing,
            second_opinion=second.candidate, second_opinion_note=second.note, unrouted=unrouted,
            baseline=second.stable)
        return Collected(signals, tally)

    async def _health(self, rollout: Rollout, url: str, audience: str | None) -> ServiceHealth | None:
        if not url:
            return None
        return classify(rollout.service, await self.prober.probe_service(url, self.paths[rollout.service],
                                                                         audience=audience))

    async def _log_check(self, rollout: Rollout, spec: LogCheckSpec, window: _Window) -> LogCheckResult:
        """Once per window, when its logs are all in; waits (count None, no detail) for the read budget."""
        if not self.budget.take():
            return LogCheckResult(spec.name, None, spec.at_least, spec.at_most)
        cap = spec.at_most + 1 if spec.at_most is not None else max(spec.at_least or 1, 1)
        try:
            count: int | None = await self.logs.count(rollout.service, rollout.candidate, spec.filter, window.start,
                                                      window.end, cap)
            detail = ""
        except LogsUnavailable as exc:
            if isinstance(exc, LogsQuotaExceeded):
                self.budget.exhausted()
            count, detail = None, str(exc)
        return LogCheckResult(spec.name, count, spec.at_least, spec.at_most, detail)

    async def _http_check(self, rollout: Rollout, spec: HttpCheckSpec, url: str,
                          audience: str | None) -> HttpCheckResult:
        probe = await self.prober.probe("deep", url, spec.path, self.paths[rollout.service].timeout,
                                        audience=audience)
        return HttpCheckResult(spec.name, spec.path, probe.status, spec.expect_status, probe.error)

    async def _second_opinion(self, window: _Window, now: datetime) -> _Opinion:
        """Cloud Monitoring over the minutes of the window it can show by now, asked at most once a minute, for the
        candidate and, over the same minutes, the stable revision (if there is one)."""
        if not window.analysing:
            return _Opinion(now)
        rollout = window.rollout
        visible = min(now, window.end) - self.metrics_delay
        key = (rollout.id, rollout.stage)
        cached = self._second.get(key)
        if cached is not None and now - cached.at < timedelta(seconds=60):
            return cached
        if visible - window.start < timedelta(seconds=60):
            return _Opinion(now, note=f"Cloud Monitoring has no whole minute of this window yet (Cloud Run's metrics "
                                      f"are visible up to {spoken(self.metrics_delay.total_seconds())} after the fact)")
        stable = rollout.stable if rollout.stable and rollout.stable != rollout.candidate else ""
        candidate, baseline = await asyncio.gather(
            self._stats(rollout.service, rollout.candidate, window.start, visible, "Cloud Monitoring"),
            self._stats(rollout.service, stable, window.start, visible, "stable, Cloud Monitoring"))
        if isinstance(candidate, str):
            found = _Opinion(now, note=candidate)
        else:
            found = _Opinion(now, candidate, "" if candidate is not None else "no whole minute of data yet",
                             baseline if isinstance(baseline, Requests) else None)
        self._second = {k: v for k, v in self._second.items() if now - v.at < timedelta(minutes=30)}
        self._second[key] = found
        return found

    async def _stats(self, service: str, revision: str, start: datetime, end: datetime,
                     source: str) -> Requests | str | None:
        """A revision's request figures, None without a whole minute (or a revision), or why Monitoring failed."""
        if not revision:
            return None
        try:
            stats = await self.metrics.request_stats(service, revision, start, end)
        except MetricsUnavailable as exc:
            return str(exc)
        return None if stats is None else Requests(stats.total, stats.errors, stats.p99_ms, source)


@dataclass(frozen=True)
class _Opinion:
    """What Cloud Monitoring said at `at`: the candidate's figures (or why there are none) and the stable's."""

    at: datetime
    candidate: Requests | None = None
    note: str = ""
    stable: Requests | None = None


def _routed(rollout: Rollout, view: ServiceView) -> tuple[str, str]:
    """(the URL the candidate's checks call, "") when Cloud Run routes what they are to judge; otherwise ("", what
    it does not route yet). Cloud Run takes seconds to route a change: a tag URL appears in `trafficStatuses`
    only once routed, and until a stage's share is routed the candidate's requests are not the stage's."""
    if rollout.new_service:
        return (view.uri, "") if view.uri else ("", "Cloud Run has not given the service a URL yet")
    url = view.tag_urls.get(TAG)
    if not url or view.live.tags.get(TAG) != rollout.candidate:
        return "", f"Cloud Run does not route the candidate's tag URL (`{TAG}`) yet"
    if rollout.state is State.ANALYSING and 0 <= rollout.stage < len(rollout.plan.stages):
        share, routed = rollout.plan.stages[rollout.stage], dict(view.live.traffic).get(rollout.candidate, 0)
        if routed != share:
            return "", f"Cloud Run routes {routed}% to the candidate, not yet the stage's {share}%"
    return url, ""


def _fraction(windows: Sequence[_Window]) -> float:
    """The share of request logs to read so that one read stays near TARGET_ENTRIES, from the rates seen so far."""
    expected = 0.0
    for window in windows:
        seen = (window.tally.read_until - window.start).total_seconds()
        if window.tally.requests and seen > 0:
            expected += window.tally.requests / seen * (window.until - window.tally.read_until).total_seconds()
    if expected <= TARGET_ENTRIES:
        return 1.0
    return max(0.001, round(TARGET_ENTRIES / expected, 4))


def with_evidence(rollout: Rollout, collected: Collected) -> Rollout:
    return replace(rollout, evidence=collected.evidence)
