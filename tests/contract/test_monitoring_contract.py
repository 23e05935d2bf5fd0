"""The Cloud Monitoring emulator: over gRPC, driven by google-cloud-monitoring's own client (it has no REST
transport); over REST, by google-api-python-client's Monitoring v3 client and by raw calls whose JSON is
checked against the monitoring.v3 discovery document. Both protocols answer from the same engine.

The emulator runs with Google's figures: Cloud Run's request metrics are "Sampled every 60 seconds. After
sampling, data is not visible for up to 180 seconds." (https://cloud.google.com/monitoring/api/metrics_gcp),
and an alignment period "must be at least 60 seconds" (https://cloud.google.com/monitoring/api/ref_v3/rest/v3/
projects.timeSeries/list#Aggregation). The traffic below is days old, so all of it is visible.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import pytest
from aiohttp import web
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport
from googleapiclient import discovery

from sandbox.google_errors import GoogleError
from sandbox.monitoring_api import CALLS, MonitoringGrpc, MonitoringLimits, monitoring_app
from sandbox.serving import Listener, start, stop
from sandbox.traffic import RequestRecord
from tests.contract.schemas import assert_google

PROJECT = "nba-props-platform"
NUMBER = "123456789012"
REGION = "us-west2"
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC).timestamp()
WORKER, STABLE, CANARY = "prediction-worker", "prediction-worker-00007-abc", "prediction-worker-00008-xyz"
COORDINATOR, COORDINATOR_REVISION = "prediction-coordinator", "prediction-coordinator-00002-qrs"
COUNT = "run.googleapis.com/request_count"
LATENCIES = "run.googleapis.com/request_latencies"


def traffic() -> list[RequestRecord]:
    """Two minutes from T0: the stable worker answers 2 req/s (every 25th a 404), the canary 1 req/s with
    every fifth a slow 503, the coordinator one request every 2 s."""
    records = []
    for i in range(240):
        at = T0 + i * 0.5 + 0.25
        records.append(RequestRecord(at, WORKER, STABLE, 404 if i % 25 == 0 else 200, 20.0 + i % 10))
        if i % 2 == 0:
            failing = i % 10 == 0
            latency = 900.0 if failing else 40.0 + i % 7
            records.append(RequestRecord(at, WORKER, CANARY, 503 if failing else 200, latency))
        if i % 4 == 0:
            records.append(RequestRecord(at, COORDINATOR, COORDINATOR_REVISION, 200, 120.0 + i % 3))
    return records


RECORDS = traffic()


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def worker(metric: str = COUNT, extra: str = "") -> str:
    return f'metric.type = "{metric}" AND resource.labels.service_name = "{WORKER}" {extra}'.strip()


def query(metric: str = COUNT, start: float = T0, end: float = T0 + 120, **params: Any) -> dict[str, Any]:
    return {"filter": worker(metric), "interval.startTime": rfc3339(start), "interval.endTime": rfc3339(end),
            **params}


def aggregated(period: str, aligner: str, reducer: str | None = None, group_by: tuple[str, ...] = ()) -> dict[str, Any]:
    params: dict[str, Any] = {"aggregation.alignmentPeriod": period, "aggregation.perSeriesAligner": aligner}
    if reducer:
        params["aggregation.crossSeriesReducer"] = reducer
    if group_by:
        params["aggregation.groupByFields"] = list(group_by)
    return params


class Clock:
    """A clock a test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Emulator:
    url: str
    app: web.Application


@pytest.fixture(scope="module")
async def emulator() -> AsyncIterator[Emulator]:
    app = monitoring_app(lambda: RECORDS, PROJECT, NUMBER, REGION)
    listener = await start(Listener("monitoring", app))
    yield Emulator(listener.url, app)
    await stop(listener)


async def get(emulator: Emulator, params: dict[str, Any], project: str = PROJECT) -> httpx.Response:
    async with httpx.AsyncClient(base_url=emulator.url) as http:
        return await http.get(f"/v3/projects/{project}/timeSeries", params=params)


async def listed(emulator: Emulator, params: dict[str, Any]) -> dict[str, Any]:
    response = await get(emulator, params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    if "enum-encoding=int" not in params.get("$alt", ""):
        assert_google("monitoring.v3", "ListTimeSeriesResponse", body)
    return body


def by_label(body: dict[str, Any], label: str) -> dict[str, Any]:
    """The single point's value of each series, keyed by a metric or resource label."""
    values = {}
    for series in body.get("timeSeries", []):
        labels = {**series["resource"].get("labels", {}), **series["metric"].get("labels", {})}
        [point] = series["points"]
        value = point["value"]
        values[labels[label]] = int(value["int64Value"]) if "int64Value" in value else value["doubleValue"]
    return values


def histogram_percentile(latencies: list[float], options: dict[str, Any], percent: float) -> float:
    """What a percentile of these samples is, read from a histogram with the layout the API declared."""
    layout = options["exponentialBuckets"]
    count, growth, scale = layout["numFiniteBuckets"], layout["growthFactor"], layout["scale"]
    bounds = [0.0] + [scale * growth**i for i in range(count + 1)]
    buckets = [0] * (count + 2)
    for latency in latencies:
        buckets[bisect.bisect_right(bounds, latency) - 1] += 1
    rank, seen = percent / 100 * len(latencies), 0
    for index, members in enumerate(buckets):
        if members and seen + members >= rank:
            lower = bounds[index]
            upper = bounds[index + 1] if index + 1 < len(bounds) else lower
            return lower + (upper - lower) * (rank - seen) / members
        seen += members
    raise AssertionError("empty histogram")


def latencies_of(revision: str) -> list[float]:
    return [r.latency_ms for r in RECORDS if r.revision == revision]


async def test_request_counts_by_response_class(emulator: Emulator) -> None:
    body = await listed(emulator, query(**aggregated("120s", "ALIGN_DELTA", "REDUCE_SUM",
                                                     ("metric.labels.response_code_class",))))
    assert by_label(body, "response_code_class") == {"2xx": 326, "4xx": 10, "5xx": 24}
    series = body["timeSeries"][0]
    assert series["metricKind"] == "DELTA" and series["valueType"] == "INT64" and body["unit"] == "1"
    assert series["resource"] == {"type": "cloud_run_revision", "labels": {"project_id": PROJECT}}
    assert series["points"][0]["interval"] == {"startTime": "2026-11-25T08:00:00Z", "endTime": "2026-11-25T08:02:00Z"}


async def test_enums_as_numbers_when_the_client_asks(emulator: Emulator) -> None:
    """What a GAPIC REST transport sends and expects: `$alt=json;enum-encoding=int`, enums as numbers."""
    by_revision = aggregated("120s", "1", "4", ("resource.labels.revision_name",))  # ALIGN_DELTA, REDUCE_SUM
    params = query(**by_revision, **{"$alt": "json;enum-encoding=int"})
    body = await listed(emulator, params)
    assert {(s["metricKind"], s["valueType"]) for s in body["timeSeries"]} == {(2, 2)}  # DELTA, INT64
    parsed = monitoring_v3.ListTimeSeriesResponse.from_json(httpx.Response(200, json=body).text)
    assert {s.resource.labels["revision_name"]: s.points[0].value.int64_value for s in parsed.time_series} == {
        STABLE: 240, CANARY: 120}


async def test_discovery_client_reads_merged_latency_percentiles_per_revision(emulator: Emulator) -> None:
    def call(reducer: str) -> dict[str, Any]:
        client = discovery.build("monitoring", "v3", credentials=AnonymousCredentials(), static_discovery=True,
                                 cache_discovery=False, client_options={"api_endpoint": f"{emulator.url}/"})
        body: dict[str, Any] = client.projects().timeSeries().list(
            name=f"projects/{PROJECT}", filter=worker(LATENCIES), interval_startTime=rfc3339(T0),
            interval_endTime=rfc3339(T0 + 120), aggregation_alignmentPeriod="120s",
            aggregation_perSeriesAligner="ALIGN_DELTA", aggregation_crossSeriesReducer=reducer,
            aggregation_groupByFields=["resource.labels.revision_name"]).execute()
        return body

    raw = await listed(emulator, query(LATENCIES, **{"view": "FULL", "pageSize": "1"}))
    options = raw["timeSeries"][0]["points"][0]["value"]["distributionValue"]["bucketOptions"]
    for reducer, percent in (("REDUCE_PERCENTILE_99", 99), ("REDUCE_PERCENTILE_50", 50)):
        body = await asyncio.to_thread(call, reducer)
        assert_google("monitoring.v3", "ListTimeSeriesResponse", body)
        assert {(s["metricKind"], s["valueType"], s["unit"]) for s in body["timeSeries"]} == {("GAUGE", "DOUBLE", "ms")}
        found = by_label(body, "revision_name")
        for revision in (STABLE, CANARY):
            samples = latencies_of(revision)
            assert found[revision] == pytest.approx(histogram_percentile(samples, options, percent))
            exact = sorted(samples)[math.ceil(percent / 100 * len(samples)) - 1]
            assert abs(found[revision] - exact) <= exact * (options["exponentialBuckets"]["growthFactor"] - 1)


async def test_percentile_aligner_gives_one_gauge_per_series(emulator: Emulator) -> None:
    body = await listed(emulator, query(LATENCIES, **aggregated("120s", "ALIGN_PERCENTILE_95")))
    keys = {(s["resource"]["labels"]["revision_name"], s["metric"]["labels"]["response_code"])
            for s in body["timeSeries"]}
    assert keys == {(STABLE, "200"), (STABLE, "404"), (CANARY, "200"), (CANARY, "503")}
    failing = next(s for s in body["timeSeries"] if s["metric"]["labels"]["response_code"] == "503")
    assert failing["points"][0]["value"]["doubleValue"] == pytest.approx(900, rel=0.15)


def test_the_defaults_are_the_published_figures() -> None:
    """metrics_gcp, run: "Sampled every 60 seconds. After sampling, data is not visible for up to 180 seconds.";
    Aggregation.alignment_period: "The value must be at least 60 seconds."."""
    assert MonitoringLimits() == MonitoringLimits(min_alignment_period_s=60.0, sample_period_s=60.0,
                                                  visibility_delay_s=180.0, min_visibility_delay_s=0.0,
                                                  delay_seed=0)


async def test_raw_points_are_one_per_minute_newest_first(emulator: Emulator) -> None:
    """Cloud Run samples request metrics every 60 s (https://cloud.google.com/monitoring/api/metrics_gcp): a raw
    point is the DELTA of one minute, however many requests it holds."""
    filter_text = worker(LATENCIES, f'AND resource.labels.revision_name = "{CANARY}" '
                                    'AND metric.labels.response_code = "503"')
    body = await listed(emulator, query(LATENCIES, filter=filter_text))
    [series] = body["timeSeries"]
    assert series["metricKind"] == "DELTA" and series["valueType"] == "DISTRIBUTION"
    assert [point["interval"] for point in series["points"]] == [
        {"startTime": "2026-11-25T08:01:00Z", "endTime": "2026-11-25T08:02:00Z"},
        {"startTime": "2026-11-25T08:00:00Z", "endTime": "2026-11-25T08:01:00Z"}]
    distribution = series["points"][0]["value"]["distributionValue"]
    assert distribution["count"] == "12" and distribution["mean"] == 900  # one slow 503 every 5 s
    extra = f'AND resource.labels.revision_name = "{STABLE}" AND metric.labels.response_code = "200"'
    [counts] = (await listed(emulator, query(filter=worker(extra=extra))))["timeSeries"]
    assert [(p["interval"]["startTime"], p["value"]["int64Value"]) for p in counts["points"]] == [
        ("2026-11-25T08:01:00Z", "115"), ("2026-11-25T08:00:00Z", "115")]


async def when_each_minute_appears(seed: int) -> dict[str, float]:
    """Seconds after its end at which each minute of traffic is first returned, polled every 10 s for 200 s."""
    clock = Clock(T0)
    app = monitoring_app(lambda: RECORDS, PROJECT, NUMBER, REGION, clock=clock,
                         limits=MonitoringLimits(delay_seed=seed))
    listener = await start(Listener("monitoring", app))
    params = query(start=T0, end=T0 + 600, filter=worker(extra=f'AND resource.labels.revision_name = "{STABLE}"'),
                   **aggregated("60s", "ALIGN_DELTA", "REDUCE_SUM"))
    appeared: dict[str, float] = {}
    try:
        for step in range(0, 201, 10):
            clock.now = T0 + 120 + step
            body = await listed(Emulator(listener.url, app), params)
            ends = {p["interval"]["endTime"] for s in body.get("timeSeries", []) for p in s["points"]}
            assert set(appeared) <= ends, "a point once shown stays shown"
            for end in ends - set(appeared):
                appeared[end] = clock.now - datetime.fromisoformat(end).timestamp()
    finally:
        await stop(listener)
    return appeared


async def test_a_minute_appears_after_a_delay_that_varies_up_to_180_seconds() -> None:
    """"After sampling, data is not visible for up to 180 seconds" (https://cloud.google.com/monitoring/api/
    metrics_gcp): up to, so each minute takes its own delay, never more than 180 s; the same seed gives the same
    delays, so a test is deterministic."""
    delays = [await when_each_minute_appears(seed) for seed in range(6)]
    assert all(set(found) == {"2026-11-25T08:01:00Z", "2026-11-25T08:02:00Z"} for found in delays)
    everyone = [delay for found in delays for delay in found.values()]
    assert all(0 <= delay <= 180 + 10 for delay in everyone), "polled every 10 s: at most one poll late"
    assert min(everyone) < 150 and len(set(everyone)) > 3, "the delay varies within the bound"
    assert await when_each_minute_appears(3) == delays[3]


async def test_rates_means_and_cross_series_reducers(emulator: Emulator) -> None:
    rates = await listed(emulator, query(**aggregated("60s", "ALIGN_RATE", "REDUCE_SUM",
                                                      ("resource.labels.revision_name",))))
    for series in rates["timeSeries"]:
        assert series["unit"] == "1/s" and series["metricKind"] == "GAUGE" and len(series["points"]) == 2
    assert {s["resource"]["labels"]["revision_name"]: [p["value"]["doubleValue"] for p in s["points"]]
            for s in rates["timeSeries"]} == {STABLE: [2.0, 2.0], CANARY: [1.0, 1.0]}
    two_minutes = {"aggregation.alignmentPeriod": "120s", "aggregation.groupByFields": "resource.labels.revision_name"}
    counts = await listed(emulator, query(**two_minutes, **{"aggregation.perSeriesAligner": "ALIGN_COUNT",
                                                           "aggregation.crossSeriesReducer": "REDUCE_SUM"}))
    assert by_label(counts, "revision_name") == {STABLE: 2 + 2, CANARY: 2 + 2}  # sample points, not requests
    means = await listed(emulator, query(**two_minutes, **{"aggregation.perSeriesAligner": "ALIGN_MEAN",
                                                          "aggregation.crossSeriesReducer": "REDUCE_MAX"}))
    # per series, the mean of its two one-minute counts; then the largest series of each revision
    assert by_label(means, "revision_name") == {STABLE: 115.0, CANARY: 48.0}
    series_count = await listed(emulator, query(**aggregated("120s", "ALIGN_DELTA", "REDUCE_COUNT")))
    assert by_label(series_count, "project_id") == {PROJECT: 4}
    mean = await listed(emulator, query(LATENCIES, **aggregated("120s", "ALIGN_DELTA", "REDUCE_MEAN")))
    samples = latencies_of(STABLE) + latencies_of(CANARY)
    assert by_label(mean, "project_id")[PROJECT] == pytest.approx(sum(samples) / len(samples))


async def test_secondary_aggregation_applies_to_the_first_ones_output(emulator: Emulator) -> None:
    params = query(**aggregated("60s", "ALIGN_DELTA", "REDUCE_SUM"), **{
        "secondaryAggregation.alignmentPeriod": "120s", "secondaryAggregation.perSeriesAligner": "ALIGN_MAX"})
    [series] = (await listed(emulator, params))["timeSeries"]
    assert series["metricKind"] == "GAUGE" and series["valueType"] == "INT64"
    assert [p["value"]["int64Value"] for p in series["points"]] == ["180"]  # the busier minute, not their sum


@pytest.mark.parametrize(("condition", "revisions"), [
    ("", {STABLE, CANARY}),
    (f'AND resource.labels.revision_name = "{CANARY}"', {CANARY}),
    ('AND resource.labels.revision_name = ends_with("-abc")', {STABLE}),
    ('AND metric.labels.response_code_class = one_of("4xx", "5xx")', {STABLE, CANARY}),
    ('AND metric.labels.response_code >= 500', {CANARY}),
    ('AND NOT metric.labels.response_code = "200" AND metric.label."response_code" != "404"', {CANARY}),
    ('AND resource.labels.revision_name = monitoring.regex.full_match(".*-0000[78]-.*") '
     'AND resource.type = "cloud_run_revision"', {STABLE, CANARY}),
    (f'AND project = "{NUMBER}" AND resource.labels.location = "{REGION}"', {STABLE, CANARY}),
    ('AND resource.type = "gce_instance"', set()),
    ('AND (resource.labels.service_name = "nope" OR resource.labels.revision_name = has_substring("xyz"))', {CANARY}),
])
async def test_filters_select_series(emulator: Emulator, condition: str, revisions: set[str]) -> None:
    body = await listed(emulator, query(filter=worker(extra=condition), view="HEADERS"))
    assert all("points" not in series for series in body.get("timeSeries", []))
    assert {s["resource"]["labels"]["revision_name"] for s in body.get("timeSeries", [])} == revisions


async def test_series_without_points_in_the_interval_are_left_out(emulator: Emulator) -> None:
    assert await listed(emulator, query(start=T0 - 600, end=T0 - 60)) == {}
    assert await listed(emulator, query(start=T0 + 120, end=T0 + 600)) == {}  # the last minute ended at 08:02


async def test_paging_counts_points_and_continues_a_series(emulator: Emulator) -> None:
    base = query(filter=worker(extra=f'AND resource.labels.revision_name = "{CANARY}"'))
    whole = await listed(emulator, base)
    pages, token = [], ""
    while True:
        page = await listed(emulator, {**base, "pageSize": "3", **({"pageToken": token} if token else {})})
        pages.append(page)
        token = page.get("nextPageToken", "")
        if not token:
            break
    assert [[len(s["points"]) for s in page["timeSeries"]] for page in pages] == [[2, 1], [1]]
    merged: dict[str, list[Any]] = {}
    for page in pages:
        for series in page["timeSeries"]:
            merged.setdefault(series["metric"]["labels"]["response_code"], []).extend(series["points"])
    assert merged == {s["metric"]["labels"]["response_code"]: s["points"] for s in whole["timeSeries"]}

    headers = await listed(emulator, {**query(), "view": "HEADERS", "pageSize": "3"})
    assert len(headers["timeSeries"]) == 3 and headers["nextPageToken"]
    rest = await listed(emulator, {**query(), "view": "HEADERS", "pageSize": "3",
                                   "pageToken": headers["nextPageToken"]})
    assert len(rest["timeSeries"]) == 1 and "nextPageToken" not in rest

    elsewhere = await get(emulator, {**query(filter=worker(LATENCIES)), "pageToken": pages[0]["nextPageToken"]})
    assert elsewhere.status_code == 400 and "does not match the request" in elsewhere.json()["error"]["message"]


async def test_a_project_is_named_by_id_or_number(emulator: Emulator) -> None:
    by_number = await get(emulator, query(**aggregated("120s", "ALIGN_DELTA", "REDUCE_SUM")), project=NUMBER)
    assert by_label(by_number.json(), "project_id") == {PROJECT: 360}
    elsewhere = await get(emulator, query(), project="someone-else")
    assert elsewhere.status_code == 403
    assert elsewhere.json()["error"]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize(("params", "status", "fragment"), [
    (aggregated("60s", "ALIGN_PERCENTILE_99"), "INVALID_ARGUMENT",
     'perSeriesAligner had an invalid value of "ALIGN_PERCENTILE_99": The aligner cannot be applied to metrics '
     "with kind DELTA and value type INT64."),
    ({"filter": worker(LATENCIES), **aggregated("60s", "ALIGN_RATE")}, "INVALID_ARGUMENT",
     "kind DELTA and value type DISTRIBUTION"),
    ({"filter": worker(LATENCIES), **aggregated("60s", "ALIGN_DELTA", "REDUCE_MIN")}, "INVALID_ARGUMENT",
     "The reducer cannot be applied to metrics with kind DELTA and value type DISTRIBUTION"),
    ({"aggregation.perSeriesAligner": "ALIGN_DELTA"}, "INVALID_ARGUMENT", "an alignment period is required"),
    ({"aggregation.crossSeriesReducer": "REDUCE_SUM"}, "INVALID_ARGUMENT", "needs an aligner other than ALIGN_NONE"),
    (aggregated("59s", "ALIGN_DELTA"), "INVALID_ARGUMENT",
     'Field aggregation.alignmentPeriod had an invalid value of "59s": The alignment period must be greater than '
     "or equal to 1 minute."),  # Google's words, spinnaker/spinnaker#3025
    ({**aggregated("60s", "ALIGN_DELTA"), "secondaryAggregation.alignmentPeriod": "30s",
      "secondaryAggregation.perSeriesAligner": "ALIGN_MAX"}, "INVALID_ARGUMENT",
     'Field secondaryAggregation.alignmentPeriod had an invalid value of "30s"'),
    ({"aggregation.perSeriesAligner": "ALIGN_FASTEST"}, "INVALID_ARGUMENT",
     "Invalid value at 'aggregation.per_series_aligner' "
     "(type.googleapis.com/google.monitoring.v3.Aggregation.Aligner)"),
    ({"aggregation.crossSeriesReducer": "99"}, "INVALID_ARGUMENT",
     "Invalid value at 'aggregation.cross_series_reducer'"),
    ({"interval.endTime": "yesterday"}, "INVALID_ARGUMENT", "Invalid value at 'interval.end_time'"),
    ({"interval.endTime": None}, "INVALID_ARGUMENT", "Field interval.endTime is required"),
    ({"interval.startTime": rfc3339(T0 + 600)}, "INVALID_ARGUMENT", "must not be later than the end time"),
    ({"filter": None}, "INVALID_ARGUMENT", "Field filter is required"),
    ({"filter": worker(extra="AND resource.labels.service_name ==")}, "INVALID_ARGUMENT",
     "Field filter had an invalid value of"),
    ({"filter": 'resource.type = "cloud_run_revision"'}, "INVALID_ARGUMENT", "does not name a metric type"),
    ({"filter": 'metric.type = "run.googleapis.com/container/cpu/utilizations"'}, "NOT_FOUND",
     'Cannot find metric(s) that match type = "run.googleapis.com/container/cpu/utilizations"'),
    ({"aggregation.groupBy": "x"}, "INVALID_ARGUMENT", 'Unknown name "aggregation.groupBy"'),
    ({"orderBy": "timestamp desc"}, "INVALID_ARGUMENT", "ordering is not supported"),
    ({"pageSize": "-1"}, "INVALID_ARGUMENT", "must not be negative"),
    ({"pageSize": "lots"}, "INVALID_ARGUMENT", "Invalid value at 'page_size' (TYPE_INT32)"),
    ({"pageToken": "not-a-token"}, "INVALID_ARGUMENT", "Field pageToken had an invalid value"),
    (aggregated("60s", "ALIGN_DELTA", "REDUCE_SUM", ("response_code",)), "INVALID_ARGUMENT",
     'groupByFields had an invalid value of "response_code"'),
    ({"secondaryAggregation.perSeriesAligner": "ALIGN_MAX", "secondaryAggregation.alignmentPeriod": "60s"},
     "INVALID_ARGUMENT", "secondaryAggregation may only be given after an aggregation"),
    (aggregated("60s", "ALIGN_PERCENT_CHANGE"), "UNIMPLEMENTED", "does not emulate ALIGN_PERCENT_CHANGE"),
])
async def test_refusals_are_googles_errors(emulator: Emulator, params: dict[str, Any], status: str,
                                           fragment: str) -> None:
    sent = {key: value for key, value in {**query(), **params}.items() if value is not None}
    response = await get(emulator, sent)
    error = response.json()["error"]
    assert (response.status_code, error["status"]) == ({"NOT_FOUND": 404, "UNIMPLEMENTED": 501}.get(status, 400),
                                                       status)
    assert fragment in error["message"]
    assert set(error) == {"code", "message", "status"} and error["code"] == response.status_code


async def test_only_get_is_served(emulator: Emulator) -> None:
    async with httpx.AsyncClient(base_url=emulator.url) as http:
        response = await http.post(f"/v3/projects/{PROJECT}/timeSeries", json={})
    assert response.json()["error"]["status"] == "UNIMPLEMENTED"


async def test_every_request_is_recorded(emulator: Emulator) -> None:
    before = len(emulator.app[CALLS])
    await get(emulator, query(**{"$alt": "json;enum-encoding=int"}))
    await get(emulator, query(), project="someone-else")
    calls = emulator.app[CALLS][before:]
    assert len(calls) == 2
    assert ("$alt", "json;enum-encoding=int") in calls[0] and ("filter", worker()) in calls[0]


def grpc_client(port: int) -> monitoring_v3.MetricServiceClient:
    return monitoring_v3.MetricServiceClient(
        transport=MetricServiceGrpcTransport(channel=grpc.insecure_channel(f"127.0.0.1:{port}")))


async def test_the_real_grpc_client_gets_what_rest_answers(emulator: Emulator) -> None:
    server = MonitoringGrpc(lambda: RECORDS, PROJECT, NUMBER, REGION)
    port = await server.start()
    try:
        client = grpc_client(port)
        request = {
            "name": f"projects/{PROJECT}", "filter": worker(),
            "interval": {"start_time": datetime.fromtimestamp(T0, UTC),
                         "end_time": datetime.fromtimestamp(T0 + 120, UTC)},
            "aggregation": {"alignment_period": {"seconds": 60}, "per_series_aligner": "ALIGN_DELTA",
                            "cross_series_reducer": "REDUCE_SUM",
                            "group_by_fields": ["metric.labels.response_code_class"]},
        }
        over_grpc = await asyncio.to_thread(lambda: list(client.list_time_series(request=request)))
        async with httpx.AsyncClient(base_url=emulator.url) as http:
            over_rest = (await http.get(f"/v3/projects/{PROJECT}/timeSeries", params=query(
                **aggregated("60s", "ALIGN_DELTA", "REDUCE_SUM", ("metric.labels.response_code_class",))))).json()
        by_class = {s.metric.labels["response_code_class"]: sum(p.value.int64_value for p in s.points)
                    for s in over_grpc}
        rest_by_class = {s["metric"]["labels"]["response_code_class"]: sum(int(p["value"]["int64Value"])
                                                                           for p in s["points"])
                         for s in over_rest["timeSeries"]}
        assert by_class == rest_by_class
        expected: dict[str, int] = {}
        for record in RECORDS:
            if record.service == WORKER and T0 <= record.at < T0 + 120:
                code_class = f"{record.status // 100}xx"
                expected[code_class] = expected.get(code_class, 0) + 1
        assert by_class == expected
        with pytest.raises(exceptions.PermissionDenied, match=r"monitoring\.timeSeries\.list denied"):
            await asyncio.to_thread(lambda: list(client.list_time_series(request={**request, "name": "projects/x"})))
        short = {**request, "aggregation": {**request["aggregation"], "alignment_period": {"seconds": 30}}}
        refusal = ('Field aggregation.alignmentPeriod had an invalid value of "30s": The alignment period must be '
                   "greater than or equal to 1 minute.")
        with pytest.raises(exceptions.InvalidArgument, match=re.escape(refusal)):
            await asyncio.to_thread(lambda: list(client.list_time_series(request=short)))
    finally:
        await server.stop()


async def test_a_caller_without_monitoring_time_series_list_is_refused_on_both_protocols() -> None:
    """timeSeries.list needs monitoring.timeSeries.list on the project named (https://cloud.google.com/monitoring/
    api/ref_v3/rest/v3/projects.timeSeries/list); the refusal reaches the gRPC client as PermissionDenied and a
    REST caller as 403 PERMISSION_DENIED."""
    asked: list[tuple[str, str]] = []

    def nobody(permission: str, resource: str) -> None:
        asked.append((permission, resource))
        raise GoogleError("PERMISSION_DENIED", f"Permission {permission} denied (or the resource may not exist).")

    server = MonitoringGrpc(lambda: RECORDS, PROJECT, NUMBER, REGION, authorize=nobody)
    port = await server.start()
    app = monitoring_app(lambda: RECORDS, PROJECT, NUMBER, REGION, authorize=nobody)
    listener = await start(Listener("monitoring", app))
    request = {"name": f"projects/{NUMBER}", "filter": worker(),
               "interval": {"end_time": datetime.fromtimestamp(T0 + 120, UTC)}}
    try:
        with pytest.raises(exceptions.PermissionDenied, match=r"monitoring\.timeSeries\.list denied"):
            await asyncio.to_thread(lambda: list(grpc_client(port).list_time_series(request=request)))
        over_rest = await get(Emulator(listener.url, app), query())
    finally:
        await server.stop()
        await stop(listener)
    assert (over_rest.status_code, over_rest.json()["error"]["status"]) == (403, "PERMISSION_DENIED")
    assert asked == [("monitoring.timeSeries.list", f"projects/{NUMBER}"),
                     ("monitoring.timeSeries.list", f"projects/{PROJECT}")]
