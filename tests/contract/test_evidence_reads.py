"""The signal collector (bot.engine.signals) through google-cloud-logging against the sandbox's Logging: a batched
read the page limit stops early never moves another window's cursor back, so no entry is counted twice; and a
stage is judged only once Cloud Run routes the candidate its share.

One query serves every due rollout, oldest entries first, at most two pages of 1,000
(https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list: `pageSize` at most 1000, `orderBy`
"timestamp asc"). When the pages run out, the read stops at one moment for all of them, which may come before a
window whose own cursor is already further on."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from bot.adapters.cloudrun import ServiceView
from bot.adapters.logs import LogsGateway
from bot.adapters.metrics import MetricsGateway
from bot.adapters.prober import Prober
from bot.config import HealthPaths
from bot.domain.analysis import Tally, Thresholds, analyse
from bot.domain.rollout import Live, Plan, Rollout, State, make_split
from bot.engine.budget import ReadBudget
from bot.engine.signals import SignalCollector, with_evidence
from bot.environment import Environment
from sandbox.cloudrun import rfc3339
from sandbox.logging_api import logging_app
from sandbox.logstore import LoggingLimits, LogStore
from sandbox.serving import Listener, start, stop

PROJECT, REGION = "nba-props-platform", "us-west2"
BUSY, QUIET = "prediction-worker", "nba-admin-dashboard"
PLAN = Plan(stages=(5, 50, 100), window_s=300, progress_deadline_s=900, interval_s=5,
            thresholds=Thresholds(20, 99, 500, 0))


def request_log(service: str, revision: str, at: float, status: int, serial: int) -> dict[str, Any]:
    return {
        "logName": f"projects/{PROJECT}/logs/run.googleapis.com%2Frequests",
        "resource": {"type": "cloud_run_revision", "labels": {
            "project_id": PROJECT, "service_name": service, "revision_name": revision, "location": REGION,
            "configuration_name": service}},
        "timestamp": rfc3339(at), "insertId": f"evidence{serial:08d}", "severity": "ERROR" if status >= 500 else "INFO",
        "httpRequest": {"requestMethod": "POST", "status": status, "latency": "0.020000s"},
    }


@pytest.fixture
async def logging_url() -> AsyncIterator[tuple[LogStore, str]]:
    store = LogStore(limits=LoggingLimits(ingestion_delay_s=0.0))
    listener = await start(Listener("logging", logging_app(store, consumer_number="123456789012")))
    yield store, listener.url
    await stop(listener)


def collector_for(logging_url: str) -> SignalCollector:
    env = Environment(google_credentials="anonymous", logging_endpoint=logging_url)
    return SignalCollector(Prober(), LogsGateway(PROJECT, REGION, env), MetricsGateway(PROJECT, env),
                           {BUSY: HealthPaths(), QUIET: HealthPaths()}, budget=ReadBudget(60), log_lag_s=5,
                           metrics_delay_s=180)


def rollout(n: int, service: str, start: datetime, evidence: Tally | None) -> Rollout:
    return Rollout(id=n, service=service, image=f"r/{service}:v2", stable=f"{service}-00001-old",
                   candidate=f"{service}-00002-new", plan=PLAN, requested_by="U1", created_at=start,
                   next_check_at=start, traffic=make_split({f"{service}-00001-old": 95, f"{service}-00002-new": 5}),
                   state=State.ANALYSING, stage=0, stage_started_at=start, evidence=evidence)


async def test_a_read_stopped_by_the_page_limit_moves_no_window_back_and_counts_no_entry_twice(
        logging_url: tuple[LogStore, str]) -> None:
    store, url = logging_url
    start = math.floor(time.time()) - 600
    # the busy candidate: 2,500 requests over its first 290 s, one in ten a 503: more than two pages
    store.extend(request_log(BUSY, f"{BUSY}-00002-new", start + i * 0.116, 503 if i % 10 == 0 else 200, i)
                 for i in range(2500))
    # the quiet one: 10 requests in [235 s, 250 s) already read by an earlier tick, then 50 failing ones
    store.extend(request_log(QUIET, f"{QUIET}-00002-new", start + 235 + i, 200, 10_000 + i) for i in range(10))
    store.extend(request_log(QUIET, f"{QUIET}-00002-new", start + 250 + i, 500, 20_000 + i) for i in range(50))
    began = datetime.fromtimestamp(start, UTC)
    already = Tally(read_until=began).add(until=began + timedelta(seconds=250), fraction=1.0,
                                          statuses=((200, 20.0),) * 10, error_lines=())
    collector = collector_for(url)
    rollouts = [rollout(1, BUSY, began, None), rollout(2, QUIET, began, already)]
    view = ServiceView(Live(True, (), {}), "", {}, None)  # no tag URL routed: only the logs are read
    now = began + timedelta(seconds=400)
    cursors = []
    for _ in range(3):
        found = await collector.collect([(r, view) for r in rollouts], now)
        rollouts = [with_evidence(r, c) for r, c in zip(rollouts, found, strict=True)]
        cursors.append([r.evidence.read_until for r in rollouts if r.evidence is not None])
    busy, quiet = (r.evidence for r in rollouts)
    assert busy is not None and quiet is not None
    assert cursors[0][0] < began + timedelta(seconds=250), "the first read was stopped by the page limit"
    assert cursors[0][1] == began + timedelta(seconds=250), "and left the quiet window's cursor where it was"
    assert all(a <= b for first, second in pairwise(cursors) for a, b in zip(first, second, strict=True))
    assert busy.read_until == quiet.read_until == began + timedelta(seconds=300)
    assert (busy.requests, busy.errors) == (2500, 250)
    assert (quiet.requests, quiet.errors) == (60, 50), "the 10 requests read before are counted once"
    await collector.prober.aclose()


async def test_a_stage_is_not_judged_until_cloud_run_routes_the_candidate_its_share(
        logging_url: tuple[LogStore, str]) -> None:
    """Routing takes seconds: the tag URL may answer while the stage's 5% is still on its way. The candidate's
    checks wait; a tag URL that does not answer then fails them (here nothing listens at it)."""
    collector = collector_for(logging_url[1])
    began = datetime.now(UTC) - timedelta(seconds=30)
    stage = rollout(3, BUSY, began, None)
    tagged = {"canary": f"{BUSY}-00002-new"}
    nowhere = {"canary": "http://127.0.0.1:9"}
    routing = ServiceView(Live(True, make_split({f"{BUSY}-00001-old": 100}), tagged), "", nowhere, None)
    [waiting] = await collector.collect([(stage, routing)], began + timedelta(seconds=10))
    assert waiting.signals.unrouted == "Cloud Run routes 0% to the candidate, not yet the stage's 5%"
    assert waiting.signals.health is None and analyse(waiting.signals, PLAN.thresholds).outcome == "pending"
    routed = replace(routing, live=replace(routing.live, traffic=stage.traffic))
    [judged] = await collector.collect([(stage, routed)], began + timedelta(seconds=10))
    assert not judged.signals.unrouted and analyse(judged.signals, PLAN.thresholds).outcome == "fail"
    await collector.prober.aclose()
