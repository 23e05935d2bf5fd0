"""Cloud Monitoring v3 `timeSeries.list` over REST, serving the request metrics Cloud Run publishes.

Query parameters are read into the API's own protobuf request, as Google's front end binds them: a
field by its JSON or proto name, an enum by name or number (REST clients send `perSeriesAligner=18`
with `$alt=json;enum-encoding=int`), and an unknown parameter is refused. Responses go through the
protobuf response type, so they have Google's JSON shape and honour `enum-encoding=int`.

Metrics, computed from the traffic simulator's request records as Cloud Run writes them, on resource
`cloud_run_revision` (project_id, service_name, revision_name, location, configuration_name) with
metric labels `response_code` and `response_code_class` (Cloud Run's `route` label is always empty and
left out):
- `run.googleapis.com/request_count`: DELTA INT64, unit "1";
- `run.googleapis.com/request_latencies`: DELTA DISTRIBUTION in ms, exponential buckets (below).

Sampling and latency, as https://cloud.google.com/monitoring/api/metrics_gcp states for both metrics:
"Sampled every 60 seconds. After sampling, data is not visible for up to 180 seconds." A raw point is the
DELTA over one sample interval [t, t + 60 s), t on a whole minute, and it is not returned until a delay after
its end that varies from one sample interval to the next, up to 180 s: "up to" is a bound, not a constant, so
a client that assumes every point takes exactly 180 s (or less than that) is wrong either way. The delay of
each interval is drawn uniformly from [min_visibility_delay_s, visibility_delay_s] by a hash of `delay_seed`
and the interval, so it is the same in every run with the same seed (MonitoringLimits). All series of one
interval appear together; Google does not say whether they do, and series appearing apart is not modelled.
Aligned periods end at `interval.endTime` and step back by
`alignmentPeriod` until they cover `interval.startTime`; a point counts in the period its end falls in,
(end - period, end]. An alignment period under 60 s is refused (MonitoringLimits).

The caller must hold monitoring.timeSeries.list on the project it names ("Authorization requires the following
IAM permission on the specified resource name: monitoring.timeSeries.list",
https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.timeSeries/list).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import grpc
from aiohttp import web
from google.cloud import monitoring_v3
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from sandbox.access_tokens import AccessTokens, authenticated
from sandbox.faults import Faults
from sandbox.google_errors import GoogleError, google_errors
from sandbox.iam import Authorize, allow_all
from sandbox.monitoring_filter import FilterError, MonitoringFilter, Subject, compile_filter
from sandbox.traffic import RequestRecord

# Cloud Run does not publish its latency bucket layout; these cover 1 ms to ~19 minutes at 15% steps.
NUM_FINITE_BUCKETS = 100
GROWTH_FACTOR = 1.15
SCALE_MS = 1.0
MAX_PAGE_SIZE = 100_000
MAX_ALIGNMENT_PERIOD = 104 * 7 * 86_400
RESOURCE_TYPE = "cloud_run_revision"

_REQUEST = type(monitoring_v3.ListTimeSeriesRequest.pb(monitoring_v3.ListTimeSeriesRequest()))
_RESPONSE = type(monitoring_v3.ListTimeSeriesResponse.pb(monitoring_v3.ListTimeSeriesResponse()))
_SYSTEM_PARAMETERS = frozenset({"$alt", "alt", "prettyPrint", "$prettyPrint", "key", "fields", "$fields",
                                "quotaUser"})
_WELL_KNOWN = frozenset({"google.protobuf.Timestamp", "google.protobuf.Duration"})
_SCALAR_TYPES = {FieldDescriptor.TYPE_INT32: "TYPE_INT32", FieldDescriptor.TYPE_STRING: "TYPE_STRING"}

CALLS = web.AppKey("calls", list[list[tuple[str, str]]])  # the query of every request, as sent
METHODS = ("ListTimeSeries",)
"""MetricService's RPC name for `timeSeries.list`, as `POST /faults` takes it (REST and gRPC alike)."""


@dataclass
class MonitoringLimits:
    """Cloud Monitoring's figures, registered by the world as the limit group `monitoring`."""

    # Aggregation.alignment_period: "The value must be at least 60 seconds."
    # (https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.timeSeries/list#Aggregation)
    min_alignment_period_s: float = 60.0
    # run.googleapis.com/request_count and request_latencies: "Sampled every 60 seconds. After sampling, data
    # is not visible for up to 180 seconds." (https://cloud.google.com/monitoring/api/metrics_gcp, run)
    sample_period_s: float = 60.0
    visibility_delay_s: float = 180.0
    # The shortest delay: Google publishes none; 0 lets the variation span the whole documented range.
    min_visibility_delay_s: float = 0.0
    # What the per-interval delays are drawn from, so tests and benches see the same delays each run.
    delay_seed: int = 0

    def visible_after(self, interval_end: float) -> float:
        """When the sample interval that ended at `interval_end` becomes visible."""
        digest = hashlib.sha256(f"{self.delay_seed}:{interval_end:.0f}".encode()).digest()
        share = int.from_bytes(digest[:8], "big") / 2**64
        low = min(self.min_visibility_delay_s, self.visibility_delay_s)
        return interval_end + low + share * (self.visibility_delay_s - low)


def _period_words(seconds: float) -> str:
    """As Google writes the minimum in its refusal: "1 minute" for 60 s."""
    if seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} seconds"


def _invalid(message: str) -> GoogleError:
    return GoogleError("INVALID_ARGUMENT", message)


# --- values -------------------------------------------------------------------------------------------


def _bucket_bounds(index: int) -> tuple[float, float]:
    """[lower, upper) of a bucket: 0 is the underflow (latencies are never negative), N+1 the overflow,
    whose percentile is its lower bound since it has no upper one."""
    if index == 0:
        return 0.0, SCALE_MS
    lower = SCALE_MS * GROWTH_FACTOR ** (index - 1)
    return lower, lower if index > NUM_FINITE_BUCKETS else lower * GROWTH_FACTOR


def _bucket(value: float) -> int:
    if value < SCALE_MS:
        return 0
    index = min(math.floor(math.log(value / SCALE_MS, GROWTH_FACTOR)) + 1, NUM_FINITE_BUCKETS + 1)
    lower, upper = _bucket_bounds(index)
    if value < lower:  # float rounding at a bucket boundary
        return index - 1
    return index + 1 if value >= upper and index <= NUM_FINITE_BUCKETS else index


@dataclass(frozen=True)
class Distribution:
    count: int
    mean: float
    sum_of_squared_deviation: float
    bucket_counts: tuple[int, ...]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Distribution:
        counts = [0] * (NUM_FINITE_BUCKETS + 2)
        for sample in samples:
            counts[_bucket(sample)] += 1
        mean = math.fsum(samples) / len(samples)
        return cls(len(samples), mean, math.fsum((s - mean) ** 2 for s in samples), tuple(counts))

    def merge(self, other: Distribution) -> Distribution:
        """Chan et al.'s parallel update, so merged sums of squares equal those of the pooled samples."""
        count = self.count + other.count
        delta = other.mean - self.mean
        return Distribution(
            count,
            self.mean + delta * other.count / count,
            self.sum_of_squared_deviation + other.sum_of_squared_deviation
            + delta * delta * self.count * other.count / count,
            tuple(a + b for a, b in zip(self.bucket_counts, other.bucket_counts, strict=True)),
        )

    def percentile(self, percent: float) -> float:
        """From the histogram alone, as Monitoring does: linear interpolation inside the bucket that holds
        the rank."""
        rank = percent / 100 * self.count
        seen = 0
        for index, count in enumerate(self.bucket_counts):
            if count and seen + count >= rank:
                lower, upper = _bucket_bounds(index)
                return lower + (upper - lower) * max(rank - seen, 0.0) / count
            seen += count
        return 0.0

    def json(self) -> dict[str, Any]:
        counts = list(self.bucket_counts)
        while counts and counts[-1] == 0:  # trailing zero buckets may be left out, and Google does
            counts.pop()
        return {
            "count": str(self.count),
            "mean": self.mean,
            "sumOfSquaredDeviation": self.sum_of_squared_deviation,
            "bucketOptions": {"exponentialBuckets": {
                "numFiniteBuckets": NUM_FINITE_BUCKETS, "growthFactor": GROWTH_FACTOR, "scale": SCALE_MS}},
            "bucketCounts": [str(count) for count in counts],
        }


Value = int | float | Distribution


def _value_json(value: Value) -> dict[str, Any]:
    if isinstance(value, Distribution):
        return {"distributionValue": value.json()}
    if isinstance(value, int):
        return {"int64Value": str(value)}
    return {"doubleValue": value}


@dataclass(frozen=True)
class Point:
    start: float
    end: float
    value: Value


@dataclass(frozen=True)
class Series:
    metric_labels: dict[str, str]
    resource_labels: dict[str, str]
    kind: str
    value_type: str
    unit: str
    points: tuple[Point, ...]

    def order(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        return sorted(self.resource_labels.items()), sorted(self.metric_labels.items())


# --- aligners and reducers ----------------------------------------------------------------------------

NUMERIC = frozenset({"INT64", "DOUBLE"})
DISTRIBUTION = frozenset({"DISTRIBUTION"})
BOOL = frozenset({"BOOL"})
DELTA_OR_GAUGE = frozenset({"DELTA", "GAUGE"})
CHANGES = frozenset({"DELTA", "CUMULATIVE"})
GAUGE = frozenset({"GAUGE"})

Compute = Callable[[list[Value], str, float], Value]  # values in time order, their value type, the period


def _floats(values: list[Value]) -> list[float]:
    return [float(v) for v in values if not isinstance(v, Distribution)]


def _merged(values: list[Value]) -> Distribution:
    distributions = [v for v in values if isinstance(v, Distribution)]
    merged = distributions[0]
    for other in distributions[1:]:
        merged = merged.merge(other)
    return merged


def _total(values: list[Value], value_type: str, period: float = 0.0) -> Value:
    if value_type == "DISTRIBUTION":
        return _merged(values)
    if value_type == "INT64":
        return sum(v for v in values if isinstance(v, int))
    return math.fsum(_floats(values))


def _extreme(pick: Callable[[list[float]], float]) -> Compute:
    def compute(values: list[Value], value_type: str, period: float) -> Value:
        chosen = pick(_floats(values))
        return int(chosen) if value_type == "INT64" else chosen

    return compute


def _mean(values: list[Value], value_type: str, period: float) -> Value:
    return _merged(values).mean if value_type == "DISTRIBUTION" else statistics.fmean(_floats(values))


def _stddev(values: list[Value], value_type: str, period: float) -> Value:
    if value_type == "DISTRIBUTION":
        merged = _merged(values)
        return math.sqrt(merged.sum_of_squared_deviation / merged.count)
    return statistics.pstdev(_floats(values))


def _percentile(percent: float) -> Compute:
    """Of a distribution, from its merged histogram; of numbers, interpolated between the nearest ranks."""

    def compute(values: list[Value], value_type: str, period: float) -> Value:
        if value_type == "DISTRIBUTION":
            return _merged(values).percentile(percent)
        ordered = sorted(_floats(values))
        rank = percent / 100 * (len(ordered) - 1)
        low = math.floor(rank)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)

    return compute


@dataclass(frozen=True)
class Operation:
    """An aligner or reducer: which series it applies to (by metric kind and value type, as Google's
    reference states) and what it makes of them. `compute` is None for one the sandbox does not emulate."""

    kinds: frozenset[str]
    types: frozenset[str]
    compute: Compute | None
    kind: str | None = None  # of the output; None keeps the input's
    value_type: str | None = None
    unit: str | None = None


def _percentiles(prefix: str, kinds: frozenset[str]) -> dict[str, Operation]:
    return {f"{prefix}_PERCENTILE_{p:02d}": Operation(kinds, NUMERIC | DISTRIBUTION if prefix == "REDUCE"
                                                      else DISTRIBUTION, _percentile(p), "GAUGE", "DOUBLE")
            for p in (99, 95, 50, 5)}


ALIGNERS: dict[str, Operation] = {
    "ALIGN_DELTA": Operation(CHANGES, NUMERIC | DISTRIBUTION, _total, "DELTA"),
    "ALIGN_RATE": Operation(CHANGES, NUMERIC, lambda v, t, p: math.fsum(_floats(v)) / p, "GAUGE", "DOUBLE"),
    "ALIGN_INTERPOLATE": Operation(GAUGE, NUMERIC, None),
    "ALIGN_NEXT_OLDER": Operation(GAUGE, NUMERIC | DISTRIBUTION | BOOL, lambda v, t, p: v[-1]),
    "ALIGN_MIN": Operation(DELTA_OR_GAUGE, NUMERIC, _extreme(min), "GAUGE"),
    "ALIGN_MAX": Operation(DELTA_OR_GAUGE, NUMERIC, _extreme(max), "GAUGE"),
    "ALIGN_MEAN": Operation(DELTA_OR_GAUGE, NUMERIC, _mean, "GAUGE", "DOUBLE"),
    "ALIGN_COUNT": Operation(DELTA_OR_GAUGE, NUMERIC | BOOL, lambda v, t, p: len(v), "GAUGE", "INT64", "1"),
    "ALIGN_SUM": Operation(DELTA_OR_GAUGE, NUMERIC | DISTRIBUTION, _total),
    "ALIGN_STDDEV": Operation(DELTA_OR_GAUGE, NUMERIC, _stddev, "GAUGE", "DOUBLE"),
    "ALIGN_COUNT_TRUE": Operation(GAUGE, BOOL, None),
    "ALIGN_COUNT_FALSE": Operation(GAUGE, BOOL, None),
    "ALIGN_FRACTION_TRUE": Operation(GAUGE, BOOL, None),
    **_percentiles("ALIGN", DELTA_OR_GAUGE),
    "ALIGN_PERCENT_CHANGE": Operation(DELTA_OR_GAUGE, NUMERIC, None),
}
REDUCERS: dict[str, Operation] = {
    "REDUCE_MEAN": Operation(DELTA_OR_GAUGE, NUMERIC | DISTRIBUTION, _mean, None, "DOUBLE"),
    "REDUCE_MIN": Operation(DELTA_OR_GAUGE, NUMERIC, _extreme(min)),
    "REDUCE_MAX": Operation(DELTA_OR_GAUGE, NUMERIC, _extreme(max)),
    "REDUCE_SUM": Operation(DELTA_OR_GAUGE, NUMERIC | DISTRIBUTION, _total),
    "REDUCE_STDDEV": Operation(DELTA_OR_GAUGE, NUMERIC | DISTRIBUTION, _stddev, None, "DOUBLE"),
    "REDUCE_COUNT": Operation(DELTA_OR_GAUGE, NUMERIC | DISTRIBUTION | BOOL | {"STRING"},
                              lambda v, t, p: len(v), None, "INT64", "1"),
    "REDUCE_COUNT_TRUE": Operation(DELTA_OR_GAUGE, BOOL, None),
    "REDUCE_COUNT_FALSE": Operation(DELTA_OR_GAUGE, BOOL, None),
    "REDUCE_FRACTION_TRUE": Operation(DELTA_OR_GAUGE, BOOL, None),
    **_percentiles("REDUCE", DELTA_OR_GAUGE),
}


@dataclass(frozen=True)
class Shape:
    """What a series is before or after an aggregation step."""

    kind: str
    value_type: str
    unit: str

    def after(self, operation: Operation, unit: str | None = None) -> Shape:
        return Shape(operation.kind or self.kind, operation.value_type or self.value_type,
                     unit or operation.unit or self.unit)


# --- the request --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aggregation:
    field: str  # "aggregation" or "secondaryAggregation", for error messages
    period: float  # seconds; 0 when not given
    aligner: str
    reducer: str
    group_by: tuple[tuple[str, str], ...]  # ("metric" | "resource", label key)

    @property
    def aligns(self) -> bool:
        return self.aligner != "ALIGN_NONE" or self.reducer != "REDUCE_NONE"

    @classmethod
    def from_proto(cls, field: str, message: Any, min_period: float) -> Aggregation:
        period = message.alignment_period.ToTimedelta().total_seconds()
        aggregation = cls(field, period, monitoring_v3.Aggregation.Aligner(message.per_series_aligner).name,
                          monitoring_v3.Aggregation.Reducer(message.cross_series_reducer).name,
                          tuple(filter(None, (_group_field(field, name) for name in message.group_by_fields))))
        if aggregation.reducer != "REDUCE_NONE" and aggregation.aligner == "ALIGN_NONE":
            raise _invalid(f'Field {field}.perSeriesAligner had an invalid value of "ALIGN_NONE": a '
                           f"cross-series reducer ({aggregation.reducer}) needs an aligner other than ALIGN_NONE.")
        if aggregation.aligns:
            text = message.alignment_period.ToJsonString()
            if period <= 0:
                raise _invalid(f'Field {field}.alignmentPeriod had an invalid value of "{text}": an alignment '
                               f"period is required with {aggregation.aligner}.")
            if period < min_period:  # Google's words: spinnaker/spinnaker#3025
                raise _invalid(f'Field {field}.alignmentPeriod had an invalid value of "{text}": The alignment '
                               f"period must be greater than or equal to {_period_words(min_period)}.")
            if period > MAX_ALIGNMENT_PERIOD:
                raise _invalid(f'Field {field}.alignmentPeriod had an invalid value of "{text}": it must be '
                               "at most 104 weeks.")
        return aggregation

    def shapes(self, before: Shape) -> tuple[Shape, Shape]:
        """The shapes after aligning and after reducing a series of shape `before`; refuses what Google
        refuses."""
        aligned = self._applied("perSeriesAligner", self.aligner, ALIGNERS, before)
        return aligned, self._applied("crossSeriesReducer", self.reducer, REDUCERS, aligned)

    def _applied(self, role: str, name: str, table: dict[str, Operation], shape: Shape) -> Shape:
        operation = table.get(name)
        if operation is None:  # REDUCE_NONE; ALIGN_NONE never aggregates
            return shape
        what = "aligner" if table is ALIGNERS else "reducer"
        if shape.kind not in operation.kinds or shape.value_type not in operation.types:
            raise _invalid(f'Field {self.field}.{role} had an invalid value of "{name}": The {what} cannot be '
                           f"applied to metrics with kind {shape.kind} and value type {shape.value_type}.")
        if operation.compute is None:
            raise GoogleError("UNIMPLEMENTED", f"The sandbox's Cloud Monitoring does not emulate {name}.")
        return shape.after(operation, f"{shape.unit}/s" if name == "ALIGN_RATE" else None)


def _group_field(field: str, name: str) -> tuple[str, str] | None:
    """("metric" | "resource", label key); None for resource.type, which every grouping implies."""
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] in ("metric", "resource") and parts[1] in ("label", "labels") and parts[2]:
        return parts[0], parts[2].strip('"')
    if name == "resource.type":
        return None
    raise _invalid(f'Field {field}.groupByFields had an invalid value of "{name}": group by '
                   "metric.labels.KEY, resource.labels.KEY or resource.type.")


@dataclass(frozen=True)
class Query:
    filter: MonitoringFilter
    start: float
    end: float
    aggregation: Aggregation | None
    secondary: Aggregation | None
    headers_only: bool
    page_size: int
    page_token: str
    digest: str  # what a page token is bound to: the request without its paging fields

    @classmethod
    def from_proto(cls, message: Any, limits: MonitoringLimits) -> Query:
        if not message.filter:
            raise _invalid('Field filter is required: name one metric type, e.g. metric.type = '
                           '"run.googleapis.com/request_count"')
        try:
            selected = compile_filter(message.filter)
        except FilterError as exc:
            raise _invalid(f'Field filter had an invalid value of "{message.filter}": {exc}') from None
        start, end = _interval(message.interval)
        if message.order_by:
            raise _invalid(f'Field orderBy had an invalid value of "{message.order_by}": ordering is not supported; '
                           "points are returned newest first.")
        if message.page_size < 0:
            raise _invalid(f'Field pageSize had an invalid value of "{message.page_size}": it must not be negative.')
        primary = None
        if message.HasField("aggregation"):
            primary = Aggregation.from_proto("aggregation", message.aggregation, limits.min_alignment_period_s)
        secondary = None
        if message.HasField("secondary_aggregation"):
            if primary is None or not primary.aligns:
                raise _invalid("Field secondaryAggregation may only be given after an aggregation.")
            secondary = Aggregation.from_proto("secondaryAggregation", message.secondary_aggregation,
                                               limits.min_alignment_period_s)
        unpaged = _REQUEST()
        unpaged.CopyFrom(message)
        unpaged.ClearField("page_size")
        unpaged.ClearField("page_token")
        return cls(selected, start, end, primary, secondary,
                   message.view == monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.HEADERS,
                   min(message.page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE), message.page_token,
                   hashlib.sha256(unpaged.SerializeToString(deterministic=True)).hexdigest()[:24])


def _interval(interval: Any) -> tuple[float, float]:
    """Start and end in seconds; the start defaults to the end, as Google's does."""
    if not interval.HasField("end_time"):
        raise _invalid("Field interval.endTime is required.")
    end: float = interval.end_time.ToNanoseconds() / 1e9
    start: float = interval.start_time.ToNanoseconds() / 1e9 if interval.HasField("start_time") else end
    if start > end:
        raise _invalid(f'Field interval.startTime had an invalid value of "{interval.start_time.ToJsonString()}": '
                       "the start time must not be later than the end time.")
    return start, end


def _field_of(name: str) -> tuple[FieldDescriptor, str]:
    """The request field a query parameter binds to, by JSON or proto name (e.g. aggregation.groupByFields),
    and its proto path for messages."""
    descriptor: Descriptor | None = _REQUEST.DESCRIPTOR
    field: FieldDescriptor | None = None
    path = []
    for segment in name.split("."):
        if descriptor is None or descriptor.full_name in _WELL_KNOWN:
            field = None
            break
        field = descriptor.fields_by_camelcase_name.get(segment) or descriptor.fields_by_name.get(segment)
        if field is None:
            break
        path.append(field.name)
        descriptor = field.message_type
    if field is None or (field.message_type is not None and field.message_type.full_name not in _WELL_KNOWN):
        raise _invalid(f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query parameter. '
                       f"Field '{name}' could not be found in request message.")
    return field, ".".join(path)


def _request_message(project: str, parameters: Iterable[tuple[str, str]]) -> Message:
    message = _REQUEST(name=f"projects/{project}")
    for name, value in parameters:
        if name in _SYSTEM_PARAMETERS:
            continue
        field, path = _field_of(name)
        nested: Any = [value] if field.is_repeated else value
        for segment in reversed(name.split(".")):
            nested = {segment: nested}
        part = _REQUEST()
        enum = field.enum_type
        try:
            json_format.ParseDict(nested, part)
            if enum is not None and value not in enum.values_by_name and int(value) not in enum.values_by_number:
                raise ValueError(value)
        except (json_format.ParseError, ValueError):
            target = enum or field.message_type
            kind = f"type.googleapis.com/{target.full_name}" if target else _SCALAR_TYPES.get(field.type, "TYPE")
            raise _invalid(f"Invalid value at '{path}' ({kind}), \"{value}\"") from None
        message.MergeFrom(part)
    return message


# --- series -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Metric:
    value_type: str
    unit: str


METRICS = {
    "run.googleapis.com/request_count": _Metric("INT64", "1"),
    "run.googleapis.com/request_latencies": _Metric("DISTRIBUTION", "ms"),
}


class _Source:
    """Turns request records into the series a query asks for."""

    def __init__(self, records: Callable[[], Iterable[RequestRecord]], project: str, project_number: str,
                 region: str, limits: MonitoringLimits, authorize: Authorize, clock: Callable[[], float]) -> None:
        self.records = records
        self.project = project
        self.project_number = project_number
        self.region = region
        self.limits = limits
        self.authorize = authorize
        self.clock = clock

    def answer(self, message: Message) -> dict[str, Any]:
        """One ListTimeSeries request, as its protobuf, to the response's JSON."""
        name = str(getattr(message, "name", ""))
        self.authorize("monitoring.timeSeries.list", name)
        if name.removeprefix("projects/") not in (self.project, self.project_number):
            raise GoogleError("PERMISSION_DENIED", "Permission monitoring.timeSeries.list denied (or the resource "
                              "may not exist).")
        query = Query.from_proto(message, self.limits)
        return _page(query, self.series(query))

    def series(self, query: Query) -> list[Series]:
        metric_type = query.filter.metric_type
        metric = METRICS.get(metric_type)
        if metric is None:
            raise GoogleError("NOT_FOUND", f'Cannot find metric(s) that match type = "{metric_type}". If a metric '
                              "was created recently, it could take up to 10 minutes to become available. "
                              "Please try again soon.")
        shape = Shape("DELTA", metric.value_type, metric.unit)
        plan: list[tuple[Aggregation, Shape, Shape]] = []
        for step in (query.aggregation, query.secondary):
            if step is not None and step.aligns:
                aligned, shape = step.shapes(shape)
                plan.append((step, aligned, shape))
        if not plan:
            since = query.start if query.start < query.end else query.end - self.limits.sample_period_s
            return sorted(self._raw(query, metric, since), key=Series.order)
        first = plan[0][0]
        series = self._raw(query, metric, query.end - self._periods(query, first) * first.period)
        for step, aligned, reduced in plan:
            series = _align(series, step, aligned, query.end, self._periods(query, step))
            if step.reducer != "REDUCE_NONE":
                series = _reduce(series, step, reduced)
        return sorted(series, key=Series.order)

    @staticmethod
    def _periods(query: Query, step: Aggregation) -> int:
        return max(1, math.ceil(round((query.end - query.start) / step.period, 9)))

    def _raw(self, query: Query, metric: _Metric, since: float) -> list[Series]:
        """Raw points with end in (since, query.end], one per series and sample interval with requests, of
        the intervals whose visibility delay has passed."""
        period = self.limits.sample_period_s
        now = self.clock()
        shown: dict[int, bool] = {}
        selected: dict[tuple[str, str, int], bool] = {}
        samples: dict[tuple[str, str, int], dict[int, list[float]]] = {}
        for record in self.records():
            index = math.floor(record.at / period)
            end = (index + 1) * period
            if not since < end <= query.end:
                continue
            if index not in shown:
                shown[index] = self.limits.visible_after(end) <= now
            if not shown[index]:
                continue
            key = (record.service, record.revision, record.status)
            if key not in selected:
                selected[key] = query.filter(self._subject(key, query.filter.metric_type))
            if selected[key]:
                samples.setdefault(key, {}).setdefault(index, []).append(record.latency_ms)
        result = []
        for key, by_index in samples.items():
            subject = self._subject(key, query.filter.metric_type)
            points = tuple(Point(i * period, (i + 1) * period,
                                 len(latencies) if metric.value_type == "INT64" else Distribution.of(latencies))
                           for i, latencies in by_index.items())
            result.append(Series(dict(subject.metric_labels), dict(subject.resource_labels), "DELTA",
                                 metric.value_type, metric.unit, points))
        return result

    def _subject(self, key: tuple[str, str, int], metric_type: str) -> Subject:
        service, revision, status = key
        return Subject(
            projects=(self.project, self.project_number),
            metric_type=metric_type,
            metric_labels={"response_code": str(status), "response_code_class": f"{status // 100}xx"},
            resource_type=RESOURCE_TYPE,
            resource_labels={"project_id": self.project, "service_name": service, "revision_name": revision,
                             "location": self.region, "configuration_name": service},
        )


def _align(series: list[Series], step: Aggregation, shape: Shape, end: float, periods: int) -> list[Series]:
    """One point per alignment period that has data; a DELTA point spans its period, a GAUGE point is an
    instant at the period's end."""
    compute = ALIGNERS[step.aligner].compute
    assert compute is not None  # Aggregation.shapes refused the others
    aligned = []
    for one in series:
        by_period: dict[int, list[Point]] = {}
        for point in one.points:
            index = math.floor(round((end - point.end) / step.period, 9))
            if 0 <= index < periods:
                by_period.setdefault(index, []).append(point)
        points = []
        for index, members in by_period.items():
            period_end = end - index * step.period
            members.sort(key=lambda point: point.end)
            value = compute([point.value for point in members], one.value_type, step.period)
            points.append(Point(period_end if shape.kind == "GAUGE" else period_end - step.period, period_end, value))
        aligned.append(replace(one, kind=shape.kind, value_type=shape.value_type, unit=shape.unit,
                               points=tuple(points)))
    return aligned


def _reduce(series: list[Series], step: Aggregation, shape: Shape) -> list[Series]:
    """Series with equal group-by labels become one; only those labels (and the project) are kept."""
    compute = REDUCERS[step.reducer].compute
    assert compute is not None  # Aggregation.shapes refused the others
    groups: dict[tuple[str | None, ...], list[Series]] = {}
    for one in series:
        key = tuple((one.metric_labels if kind == "metric" else one.resource_labels).get(label)
                    for kind, label in step.group_by)
        groups.setdefault(key, []).append(one)
    reduced = []
    for members in groups.values():
        first = members[0]
        metric_labels = {label: first.metric_labels[label] for kind, label in step.group_by
                         if kind == "metric" and label in first.metric_labels}
        resource_labels = {"project_id": first.resource_labels["project_id"]} | {
            label: first.resource_labels[label] for kind, label in step.group_by
            if kind == "resource" and label in first.resource_labels}
        by_end: dict[float, list[Point]] = {}
        for member in members:
            for point in member.points:
                by_end.setdefault(point.end, []).append(point)
        points = tuple(Point(group[0].start if shape.kind != "GAUGE" else end, end,
                             compute([point.value for point in group], first.value_type, step.period))
                       for end, group in by_end.items())
        reduced.append(Series(metric_labels, resource_labels, shape.kind, shape.value_type, shape.unit, points))
    return reduced


# --- the response -------------------------------------------------------------------------------------


def _timestamp(seconds: float) -> str:
    stamp = Timestamp()
    stamp.FromNanoseconds(round(seconds * 1e9))
    text: str = stamp.ToJsonString()
    return text


def _series_json(series: Series, metric_type: str, points: Sequence[Point] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metric": {"type": metric_type, "labels": series.metric_labels},
        "resource": {"type": RESOURCE_TYPE, "labels": series.resource_labels},
        "metricKind": series.kind,
        "valueType": series.value_type,
        "unit": series.unit,
    }
    if points is not None:
        body["points"] = [{"interval": {"startTime": _timestamp(p.start), "endTime": _timestamp(p.end)},
                           "value": _value_json(p.value)} for p in points]
    return body


def _page_token(query: Query, series: int, point: int) -> str:
    payload = json.dumps({"query": query.digest, "series": series, "point": point})
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _resume_at(query: Query) -> tuple[int, int]:
    if not query.page_token:
        return 0, 0
    try:
        padded = query.page_token + "=" * (-len(query.page_token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded))
        digest, series, point = payload["query"], payload["series"], payload["point"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise _invalid(f'Field pageToken had an invalid value of "{query.page_token}".') from None
    if digest != query.digest or not isinstance(series, int) or not isinstance(point, int):
        raise _invalid("The page token does not match the request: every field but pageSize and pageToken must be "
                       "those of the call that returned it.")
    return series, point


def _page(query: Query, series: list[Series]) -> dict[str, Any]:
    """pageSize counts points (series with view=HEADERS); a series may continue on the next page."""
    index, offset = _resume_at(query)
    taken = 0
    listed: list[dict[str, Any]] = []
    metric_type = query.filter.metric_type
    while index < len(series) and taken < query.page_size:
        one = series[index]
        if query.headers_only:
            listed.append(_series_json(one, metric_type, None))
            taken += 1
            index += 1
            continue
        newest_first = sorted(one.points, key=lambda point: point.end, reverse=True)
        chunk = newest_first[offset : offset + query.page_size - taken]
        listed.append(_series_json(one, metric_type, chunk))
        taken += len(chunk)
        offset += len(chunk)
        if offset == len(newest_first):
            index, offset = index + 1, 0
    body: dict[str, Any] = {}
    if listed:
        body["timeSeries"] = listed
        body["unit"] = series[0].unit
    if index < len(series):
        body["nextPageToken"] = _page_token(query, index, offset)
    return body


def _encode(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Through the response proto, so the JSON is what Google's front end writes, enums as numbers if asked."""
    message = _RESPONSE()
    json_format.ParseDict(body, message)
    numeric = "enum-encoding=int" in request.query.get("$alt", "")
    return web.json_response(json_format.MessageToDict(message, use_integers_for_enums=numeric))


_RPC = "google.monitoring.v3.MetricService.ListTimeSeries"


def monitoring_app(records: Callable[[], Iterable[RequestRecord]], project: str, project_number: str, region: str,
                   *, limits: MonitoringLimits | None = None, authorize: Authorize = allow_all,
                   clock: Callable[[], float] = time.time, faults: Faults | None = None,
                   tokens: AccessTokens | None = None) -> web.Application:
    source = _Source(records, project, project_number, region, limits or MonitoringLimits(), authorize, clock)
    injected = faults or Faults()

    async def list_time_series(request: web.Request) -> web.Response:
        await injected.google("ListTimeSeries")
        request.app[CALLS].append(list(request.query.items()))
        message = _request_message(request.match_info["project"], request.query.items())
        return _encode(request, source.answer(message))

    checks = [authenticated(tokens, "monitoring.googleapis.com", lambda request: _RPC)] if tokens is not None else []
    app = web.Application(middlewares=[google_errors, *checks])
    app[CALLS] = []
    app.router.add_get("/v3/projects/{project}/timeSeries", list_time_series)
    return app


class MonitoringGrpc:
    """MetricService.ListTimeSeries over gRPC, the only protocol google-cloud-monitoring's client speaks.

    The same engine as the REST route: a request arrives as the API's own protobuf, is answered as the
    JSON the REST route would write, and goes back as the response protobuf.
    """

    def __init__(self, records: Callable[[], Iterable[RequestRecord]], project: str, project_number: str,
                 region: str, *, limits: MonitoringLimits | None = None, authorize: Authorize = allow_all,
                 clock: Callable[[], float] = time.time, faults: Faults | None = None,
                 tokens: AccessTokens | None = None) -> None:
        self.source = _Source(records, project, project_number, region, limits or MonitoringLimits(), authorize,
                              clock)
        self.faults = faults or Faults()
        self.tokens = tokens
        self.calls: list[Message] = []
        self.server: grpc.aio.Server | None = None
        self.port = 0

    def answer(self, request: Message) -> Message:
        message = _RESPONSE()
        json_format.ParseDict(self.source.answer(request), message)
        return message

    async def _list_time_series(self, request: Message, context: grpc.aio.ServicerContext[Message, Message]) -> Message:
        self.calls.append(request)
        try:
            if self.tokens is not None:  # gRPC carries the bearer token as `authorization` metadata
                metadata = {key: str(value) for key, value in context.invocation_metadata() or ()}
                self.tokens.caller(metadata.get("authorization"), "monitoring.googleapis.com", _RPC)
            await self.faults.google("ListTimeSeries")
            return self.answer(request)
        except GoogleError as exc:
            await context.abort(grpc.StatusCode[exc.status], exc.message)
            raise  # abort raises; this line only tells the type checker so

    async def start(self, port: int = 0) -> int:
        handler = grpc.method_handlers_generic_handler("google.monitoring.v3.MetricService", {
            "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
                self._list_time_series, request_deserializer=_REQUEST.FromString,
                response_serializer=_RESPONSE.SerializeToString),
        })
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        await self.server.start()
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=None)
            self.server = None
