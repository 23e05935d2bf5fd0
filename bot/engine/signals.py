"""Collect the signals of one stage window for the candidate revision only, all sources at once.

A source that cannot be read becomes "unavailable" with its reason, never a pass: the analysis decides
what missing evidence means.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from bot.adapters.cloudrun import ServiceView
from bot.adapters.logs import LogsGateway, LogsUnavailable
from bot.adapters.metrics import MetricsGateway, MetricsUnavailable
from bot.adapters.prober import Prober
from bot.config import HealthPaths
from bot.domain.analysis import HttpCheckResult, LogCheckResult, Requests, Signals
from bot.domain.health import ServiceHealth, classify
from bot.domain.rollout import TAG, HttpCheckSpec, LogCheckSpec, Rollout, State

_TOP_ERRORS = 5


class SignalCollector:
    def __init__(self, prober: Prober, logs: LogsGateway, metrics: MetricsGateway,
                 paths: dict[str, HealthPaths]) -> None:
        self.prober = prober
        self.logs = logs
        self.metrics = metrics
        self.paths = paths

    async def collect(self, rollout: Rollout, view: ServiceView, now: datetime) -> Signals:
        start = rollout.stage_started_at or rollout.created_at
        url = view.uri if rollout.new_service else view.tag_urls.get(TAG)
        audience = view.uri or None  # the service URL opens its tag URLs too
        analysing = rollout.state is State.ANALYSING
        complete = not analysing or now >= start + timedelta(seconds=rollout.plan.window_s)
        health, errors, requests, log_checks, http_checks = await asyncio.gather(
            self._health(rollout, url, audience),
            self._errors(rollout, start, now),
            self._requests(rollout, start, now, analysing),
            # A revision without traffic writes no application logs: log checks start with the first stage.
            asyncio.gather(*(self._log_check(rollout, spec, start, now) for spec in rollout.plan.log_checks
                             if analysing)),
            asyncio.gather(*(self._http_check(rollout, spec, url, audience) for spec in rollout.plan.http_checks)),
        )
        error_count, top, logs_problem = errors
        stats, metrics_problem = requests
        return Signals(complete=complete, health=health, error_logs=error_count, requests=stats,
                       log_checks=tuple(log_checks), http_checks=tuple(http_checks), top_errors=top,
                       unavailable=tuple(p for p in (logs_problem, metrics_problem) if p),
                       expects_traffic=analysing)

    async def _health(self, rollout: Rollout, url: str | None, audience: str | None) -> ServiceHealth | None:
        if not url:
            return None
        probes = await self.prober.probe_service(url, self.paths[rollout.service], audience=audience)
        return classify(rollout.service, probes)

    async def _errors(self, rollout: Rollout, start: datetime,
                      now: datetime) -> tuple[int | None, tuple[str, ...], str]:
        limit = max(rollout.plan.thresholds.max_error_logs + 1, _TOP_ERRORS)
        try:
            lines = await self.logs.errors(rollout.service, rollout.candidate, start, now, limit)
        except LogsUnavailable as exc:
            return None, (), str(exc)
        return len(lines), tuple(line.text for line in lines[:_TOP_ERRORS]), ""

    async def _requests(self, rollout: Rollout, start: datetime, now: datetime,
                        analysing: bool) -> tuple[Requests | None, str]:
        if not analysing:
            return None, ""
        try:
            stats = await self.metrics.request_stats(rollout.service, rollout.candidate, start, now)
        except MetricsUnavailable as exc:
            return None, str(exc)
        return Requests(stats.total, stats.errors, stats.p99_ms), ""

    async def _log_check(self, rollout: Rollout, spec: LogCheckSpec, start: datetime, now: datetime) -> LogCheckResult:
        cap = spec.at_most + 1 if spec.at_most is not None else max(spec.at_least or 1, 1)
        try:
            count: int | None = await self.logs.count(rollout.service, rollout.candidate, spec.filter, start, now, cap)
            detail = ""
        except LogsUnavailable as exc:
            count, detail = None, str(exc)
        return LogCheckResult(spec.name, count, spec.at_least, spec.at_most, detail)

    async def _http_check(self, rollout: Rollout, spec: HttpCheckSpec, url: str | None,
                          audience: str | None) -> HttpCheckResult:
        if not url:
            return HttpCheckResult(spec.name, spec.path, None, spec.expect_status, "no URL to call yet")
        probe = await self.prober.probe("deep", url, spec.path, self.paths[rollout.service].timeout,
                                        audience=audience)
        return HttpCheckResult(spec.name, spec.path, probe.status, spec.expect_status, probe.error)
