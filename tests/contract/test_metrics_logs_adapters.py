"""bot.adapters.metrics and bot.adapters.logs against the sandbox's Cloud Monitoring and Cloud Logging."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.adapters.cloudrun import ServiceView
from bot.adapters.logs import LogLine, LogsGateway, LogsUnavailable
from bot.adapters.metrics import MetricsGateway, MetricsUnavailable, RequestStats
from bot.adapters.prober import Prober
from bot.config import HealthPaths
from bot.domain.analysis import Requests, Tally, Thresholds
from bot.domain.rollout import Live, Plan, Rollout, State, make_split
from bot.engine.budget import ReadBudget
from bot.engine.signals import SignalCollector
from bot.environment import Environment
from sandbox.cloudrun import rfc3339
from sandbox.monitoring_api import Distribution, MonitoringGrpc
from sandbox.traffic import RequestRecord
from sandbox.world import World

PROJECT = "nba-props-platform"
REGION = "us-west2"
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
WORKER, STABLE, CANARY = "prediction-worker", "prediction-worker-00007-abc", "prediction-worker-00008-xyz"


def canary_latency(i: int) -> float:
    return 800.0 if i % 10 == 0 else 50.0 + i % 20


def traffic() -> list[RequestRecord]:
    """A minute from T0: the canary answers 2 req/s and every tenth is a slow 503; the stable 1 req/s, all 200."""
    start = T0.timestamp()
    records = [RequestRecord(start + i / 2 + 0.1, WORKER, CANARY, 503 if i % 10 == 0 else 200, canary_latency(i))
               for i in range(120)]
    records += [RequestRecord(start + i + 0.3, WORKER, STABLE, 200, 30.0) for i in range(60)]
    return records


RECORDS = traffic()


def anonymous(**endpoints: str) -> Environment:
    """For an emulator of its own, which asks for no credentials."""
    return Environment(google_credentials="anonymous", **endpoints)


def as_the_bot(world: World, **endpoints: str) -> Environment:
    """The bot's environment in the world: credentials from its metadata server."""
    return Environment(metadata_host=world.url("metadata").removeprefix("http://"), **endpoints)


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
async def monitoring() -> AsyncIterator[MonitoringGrpc]:
    """The emulator's gRPC MetricService: google-cloud-monitoring's client speaks nothing else."""
    server = MonitoringGrpc(lambda: RECORDS, PROJECT, "123456789012", REGION)
    await server.start()
    yield server
    await server.stop()


def endpoint(server: MonitoringGrpc) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def metrics(monitoring: MonitoringGrpc) -> MetricsGateway:
    return MetricsGateway(PROJECT, anonymous(monitoring_endpoint=endpoint(monitoring)))


# --- metrics ------------------------------------------------------------------------------------------


async def test_request_stats_of_a_revision(metrics: MetricsGateway) -> None:
    stats = await metrics.request_stats(WORKER, CANARY, T0, T0 + timedelta(minutes=1))
    p99 = Distribution.of([canary_latency(i) for i in range(120)]).percentile(99)
    assert stats == RequestStats(total=120, errors=12, p99_ms=pytest.approx(p99))
    assert stats.success_rate == 90.0
    assert 700 < p99 < 920  # the slow 503s are the top tenth


async def test_other_revisions_are_not_counted(metrics: MetricsGateway) -> None:
    stats = await metrics.request_stats(WORKER, STABLE, T0, T0 + timedelta(minutes=1))
    assert stats == RequestStats(total=60, errors=0, p99_ms=pytest.approx(Distribution.of([30.0]).percentile(99)))
    assert stats.success_rate == 100.0
    assert await metrics.request_stats("prediction-coordinator", CANARY, T0, T0 + timedelta(minutes=1)) == \
        RequestStats(0, 0, None)


async def test_the_window_is_whole_minutes(metrics: MetricsGateway) -> None:
    """Monitoring refuses alignment periods under 60 s (https://cloud.google.com/monitoring/api/ref_v3/rest/v3/
    projects.timeSeries/list: "The value must be at least 60 seconds"): [07:59:30, 08:01:10) is read as its one
    whole minute, [08:00, 08:01), and a window with no whole minute is no query at all."""
    stats = await metrics.request_stats(WORKER, CANARY, T0 - timedelta(seconds=30), T0 + timedelta(seconds=70))
    assert stats is not None and (stats.total, stats.errors) == (120, 12)
    assert await metrics.request_stats(WORKER, CANARY, T0 + timedelta(seconds=10), T0 + timedelta(seconds=100)) is None


async def test_no_requests_is_no_evidence(metrics: MetricsGateway) -> None:
    stats = await metrics.request_stats(WORKER, CANARY, T0 - timedelta(minutes=5), T0)
    assert stats == RequestStats(0, 0, None)
    assert stats.success_rate is None


async def test_the_window_is_one_alignment_period_per_query(metrics: MetricsGateway,
                                                         monitoring: MonitoringGrpc) -> None:
    before = len(monitoring.calls)
    await metrics.request_stats(WORKER, CANARY, T0, T0 + timedelta(seconds=150))
    calls: list[Any] = monitoring.calls[before:]
    assert len(calls) == 2
    assert {(c.aggregation.per_series_aligner, c.aggregation.cross_series_reducer) for c in calls} == {
        (1, 4), (1, 9)}  # ALIGN_DELTA with REDUCE_SUM, and with REDUCE_PERCENTILE_99
    assert {c.aggregation.alignment_period.seconds for c in calls} == {120}
    assert {(c.interval.start_time.ToSeconds(), c.interval.end_time.ToSeconds()) for c in calls} == {
        (int(T0.timestamp()), int(T0.timestamp()) + 120)}


async def test_monitoring_refusing_or_absent_is_unavailable(monitoring: MonitoringGrpc) -> None:
    elsewhere = MetricsGateway("someone-else", anonymous(monitoring_endpoint=endpoint(monitoring)))
    with pytest.raises(MetricsUnavailable, match=r"^Cloud Monitoring refused the query \(403 Permission "
                                                 r"monitoring\.timeSeries\.list denied"):
        await elsewhere.request_stats(WORKER, CANARY, T0, T0 + timedelta(minutes=1))
    absent = MetricsGateway(PROJECT, anonymous(monitoring_endpoint=closed_port()))
    with pytest.raises(MetricsUnavailable, match=r"^Cloud Monitoring did not answer \(") as caught:
        await absent.request_stats(WORKER, CANARY, T0, T0 + timedelta(minutes=1))
    assert "\n" not in str(caught.value)


async def test_request_stats_from_the_worlds_traffic(world: World) -> None:
    """The world's Monitoring shows a minute only after its delay, up to 180 s (https://cloud.google.com/monitoring/
    api/metrics_gcp, run: "After sampling, data is not visible for up to 180 seconds"): ten minutes ago is. The
    gateway authenticates as the bot does, with the metadata server's access token over gRPC."""
    minute = (math.floor(time.time() / 60) - 10) * 60
    revision = "prediction-worker-00077-mon"
    records = [RequestRecord(minute + i / 3, WORKER, revision, 500 if i % 9 == 0 else 200, 40.0) for i in range(180)]
    world.traffic.records.extendleft(reversed(records))
    gateway = MetricsGateway(world.config.project, as_the_bot(world, monitoring_endpoint=world.endpoints()[
        "monitoring_endpoint"]))
    stats = await gateway.request_stats(WORKER, revision, datetime.fromtimestamp(minute, UTC),
                                        datetime.fromtimestamp(minute + 60, UTC))
    assert stats is not None and (stats.total, stats.errors) == (180, 20)
    last_minute = (math.floor(time.time() / 60) - 1) * 60
    world.traffic.records.extend(RequestRecord(last_minute + i, WORKER, revision, 200, 40.0) for i in range(30))
    world.monitoring_limits.min_visibility_delay_s = 60.0  # every delay at least a minute, for a certain answer
    try:
        young = await gateway.request_stats(WORKER, revision, datetime.fromtimestamp(last_minute, UTC),
                                            datetime.fromtimestamp(last_minute + 60, UTC))
    finally:
        world.monitoring_limits.min_visibility_delay_s = 0.0
    assert young == RequestStats(0, 0, None), "the last minute is younger than the delay: not visible yet"


async def test_a_stage_brings_the_stable_revisions_figures_over_the_same_minutes_to_be_shown_not_judged(
        monitoring: MonitoringGrpc) -> None:
    """The signal collector asks Monitoring for the candidate and, over the same whole minutes, the stable revision:
    the stage's chart draws both. The stable's figures ride apart from the candidate's and no verdict weighs them
    (tests/unit/test_analysis.py); a new service has no stable revision to ask about."""
    collector = SignalCollector(Prober(), LogsGateway(PROJECT, REGION, anonymous(logging_endpoint=closed_port())),
                                MetricsGateway(PROJECT, anonymous(monitoring_endpoint=endpoint(monitoring))),
                                {WORKER: HealthPaths()}, budget=ReadBudget(60), log_lag_s=5, metrics_delay_s=180)
    plan = Plan(stages=(5, 50, 100), window_s=300, progress_deadline_s=900, interval_s=5,
                thresholds=Thresholds(20, 99, 500, 0))
    stage = Rollout(id=1, service=WORKER, image="r/w:v8", stable=STABLE, candidate=CANARY, plan=plan,
                    requested_by="U1", created_at=T0, next_check_at=T0, state=State.ANALYSING, stage=0,
                    stage_started_at=T0, traffic=make_split({STABLE: 95, CANARY: 5}),
                    evidence=Tally(read_until=T0 + timedelta(minutes=5)))
    view = ServiceView(Live(True, stage.traffic, {}), "", {}, None)
    [seen] = await collector.collect([(stage, view)], T0 + timedelta(minutes=10))
    canary = Distribution.of([canary_latency(i) for i in range(120)]).percentile(99)
    assert seen.signals.second_opinion == Requests(120, 12, pytest.approx(canary), "Cloud Monitoring")
    assert seen.signals.baseline == Requests(60, 0, pytest.approx(Distribution.of([30.0]).percentile(99)),
                                             "stable, Cloud Monitoring")
    new = replace(stage, id=2, stable="", traffic=make_split({CANARY: 100}))
    [alone] = await collector.collect([(new, view)], T0 + timedelta(minutes=10))
    assert alone.signals.second_opinion is not None and alone.signals.baseline is None
    await collector.prober.aclose()


# --- logs ---------------------------------------------------------------------------------------------

LOGGED = "prediction-worker-00099-lgs"


def entry(revision: str, at: datetime, log: str, serial: int, **fields: Any) -> dict[str, Any]:
    return {
        "logName": f"projects/{PROJECT}/logs/run.googleapis.com%2F{log}",
        "resource": {"type": "cloud_run_revision", "labels": {
            "project_id": PROJECT, "service_name": WORKER, "revision_name": revision, "location": REGION,
            "configuration_name": WORKER}},
        "timestamp": rfc3339(at.timestamp()),
        "receiveTimestamp": rfc3339(at.timestamp() + 0.05),
        "insertId": f"adapter{serial:06d}{revision[-3:]}",
        **fields,
    }


@dataclass
class Logged:
    start: datetime
    end: datetime
    errors: list[LogLine]  # of LOGGED in [start, end), newest first


@pytest.fixture(scope="module")
def logged(world: World) -> Logged:
    """A minute of the LOGGED revision in the world's Cloud Logging: failed predictions on stderr, their
    request logs, and info lines; plus entries the queries must not see."""
    start = datetime.fromtimestamp(math.floor(time.time()) - 120, UTC)
    errors: list[LogLine] = []
    for k in range(6):
        at = start + timedelta(seconds=10 * k + 1)
        text = f"ERROR prediction failed for player_lookup={k}: CatBoostError: model output has NaN"
        world.logs.append(entry(LOGGED, at, "stderr", k, severity="ERROR", textPayload=text))
        errors.append(LogLine(at, "ERROR", text))
        if k % 2 == 0:
            request = {"requestMethod": "POST", "requestUrl": "https://prediction-worker.a.run.app/predict",
                       "status": 503, "latency": "0.800000s", "protocol": "HTTP/1.1"}
            world.logs.append(entry(LOGGED, at, "requests", 100 + k, severity="ERROR", httpRequest=request))
            errors.append(LogLine(at, "ERROR", "POST 503 0.800000s https://prediction-worker.a.run.app/predict"))
        world.logs.append(entry(LOGGED, at + timedelta(seconds=2), "stdout", 200 + k, severity="INFO",
                                jsonPayload={"message": "batch dispatched", "players": 412}))
    world.logs.append(entry(LOGGED, start + timedelta(seconds=30), "stderr", 300, severity="CRITICAL",
                            jsonPayload={"message": "worker out of memory"}))
    errors.append(LogLine(start + timedelta(seconds=30), "CRITICAL", "worker out of memory"))
    for serial, outside in ((301, start - timedelta(seconds=1)), (302, start + timedelta(seconds=60))):
        world.logs.append(entry(LOGGED, outside, "stderr", serial, severity="ERROR", textPayload="out of the window"))
    world.logs.append(entry("prediction-worker-00098-oth", start + timedelta(seconds=5), "stderr", 303,
                            severity="ERROR", textPayload="ERROR prediction failed elsewhere"))
    errors.sort(key=lambda line: line.at, reverse=True)
    return Logged(start, start + timedelta(seconds=60), errors)


@pytest.fixture(scope="module")
def logs(world: World) -> LogsGateway:
    return LogsGateway(PROJECT, REGION, as_the_bot(world, logging_endpoint=world.url("logging")))


async def test_errors_are_the_newest_first_of_that_revision_and_window(logs: LogsGateway, logged: Logged) -> None:
    found = await logs.errors(WORKER, LOGGED, logged.start, logged.end, limit=100)
    assert len(found) == 10
    assert [line.at for line in found] == [line.at for line in logged.errors]
    assert sorted(found, key=repr) == sorted(logged.errors, key=repr)  # same-second entries in either order


async def test_errors_stop_at_the_limit(logs: LogsGateway, logged: Logged) -> None:
    found = await logs.errors(WORKER, LOGGED, logged.start, logged.end, limit=2)
    assert [line.at for line in found] == [line.at for line in logged.errors[:2]]
    assert await logs.errors(WORKER, LOGGED, logged.start, logged.end, limit=0) == []


async def test_count_matches_the_users_query_within_the_revision(logs: LogsGateway, logged: Logged) -> None:
    window = (WORKER, LOGGED)
    assert await logs.count(*window, 'textPayload:"prediction failed"', logged.start, logged.end, cap=100) == 6
    assert await logs.count(*window, 'textPayload:"prediction failed"', logged.start, logged.end, cap=4) == 4
    assert await logs.count(*window, 'jsonPayload.message="batch dispatched"', logged.start, logged.end, cap=100) == 6
    # a trailing comment in the user's query must not comment out the revision and time restrictions
    assert await logs.count(*window, "severity>=ERROR -- all errors", logged.start, logged.end, cap=100) == 10
    assert await logs.count(*window, "", logged.start, logged.end, cap=100) == 10 + 6  # every entry


async def test_an_invalid_query_names_the_query_and_googles_complaint(logs: LogsGateway, logged: Logged) -> None:
    with pytest.raises(LogsUnavailable) as caught:
        await logs.count(WORKER, LOGGED, "severity>=LOUD", logged.start, logged.end, cap=10)
    message = str(caught.value)
    assert message.startswith("Cloud Logging refused the query 'severity>=LOUD': Unparseable filter: invalid "
                              "severity 'LOUD'")
    assert "\n" not in message


async def test_logging_absent_is_unavailable(logged: Logged) -> None:
    absent = LogsGateway(PROJECT, REGION, anonymous(logging_endpoint=closed_port()))
    with pytest.raises(LogsUnavailable, match=r"^Cloud Logging did not answer \("):
        await absent.errors(WORKER, LOGGED, logged.start, logged.end, limit=5)
