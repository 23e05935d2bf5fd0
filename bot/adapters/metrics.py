"""Cloud Monitoring for a canary's request signals: counts by response class and p99 latency of one revision.

google-cloud-monitoring speaks only gRPC, so this is the one adapter that is not on REST. Pointed at an
emulator (CHATOPS_MONITORING_ENDPOINT=host:port) it uses a plaintext channel, as Google's emulators expect;
otherwise the library's default secure channel with Application Default Credentials.

Cloud Monitoring refuses alignment periods under 60 s, and Cloud Run's request metrics are "sampled every
60 seconds; after sampling, data is not visible for up to 180 seconds"
(https://cloud.google.com/monitoring/api/metrics_gcp#gcp-run). So a query covers whole minutes,
[ceil(start), floor(end)) on minute boundaries, in one alignment period as long as that; a window with no
whole minute in it gets None, and the caller asks only for minutes old enough to be visible. The request
logs are the canary's first evidence; this is the slower second opinion.
"""

from __future__ import annotations

import asyncio
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import google.auth.transport.requests
from google.api_core import exceptions
from google.api_core.retry import Retry, if_transient_error
from google.auth.credentials import Credentials

from bot.adapters.google_clients import credentials
from bot.environment import Environment
from bot.render.mrkdwn import escape

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"


@dataclass(frozen=True)
class RequestStats:
    total: int
    errors: int  # 5xx
    p99_ms: float | None  # None when there were no requests

    @property
    def success_rate(self) -> float | None:
        """Percent of requests that were not 5xx; None without requests, which is no evidence either way."""
        return None if self.total == 0 else 100.0 * (self.total - self.errors) / self.total


class MetricsUnavailable(Exception):
    """Cloud Monitoring could not be read; the message is one line fit for a Slack thread."""


def _quoted(value: str) -> str:
    """A string literal of the Monitoring filter language."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _with_bearer(channel: Any, found: Credentials) -> Any:
    """The channel, sending the access token as `authorization` metadata: gRPC attaches call credentials only to
    TLS channels, and an endpoint override (the sandbox) speaks plaintext. grpc is imported here, on first use,
    like the rest of the Monitoring client."""
    import collections

    import grpc

    class Details(collections.namedtuple("Details", ("method", "timeout", "metadata", "credentials",
                                                     "wait_for_ready", "compression")),
                  grpc.ClientCallDetails):
        pass

    class Bearer(grpc.UnaryUnaryClientInterceptor):
        def __init__(self) -> None:
            self._lock = threading.Lock()

        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            with self._lock:
                if not found.valid:
                    found.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
                token = found.token
            metadata = [*(details.metadata or ()), ("authorization", f"Bearer {token}")]
            return continuation(Details(details.method, details.timeout, metadata, details.credentials,
                                        details.wait_for_ready, details.compression), request)

    return grpc.intercept_channel(channel, Bearer())


class MetricsGateway:
    def __init__(self, project: str, env: Environment, *, timeout: float = 5.0) -> None:
        self.name = f"projects/{project}"
        self.env = env
        self.timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        """Built on first use: gRPC and the Monitoring types cost start-up time and memory no command needs."""
        with self._lock:
            if self._client is None:
                from google.cloud import monitoring_v3
                from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport

                endpoint = (self.env.monitoring_endpoint or "").removeprefix("http://")
                found = credentials(self.env)
                if endpoint:
                    import grpc

                    channel = grpc.insecure_channel(endpoint)
                    if found is not None and not self.env.anonymous_google:
                        channel = _with_bearer(channel, found)
                    transport = MetricServiceGrpcTransport(channel=channel)
                    self._client = monitoring_v3.MetricServiceClient(transport=transport)
                else:
                    self._client = monitoring_v3.MetricServiceClient(credentials=found)
            return self._client

    async def request_stats(self, service: str, revision: str, start: datetime,
                            end: datetime) -> RequestStats | None:
        """Requests the revision answered in the whole minutes of [start, end): how many, how many 5xx, and their
        p99 latency; None when the window holds no whole minute."""
        first = math.ceil(start.timestamp() / 60) * 60
        last = math.floor(end.timestamp() / 60) * 60
        if last - first < 60:
            return None
        period = last - first
        window = (service, revision, last, period)
        counts = self._request(REQUEST_COUNT, *window, "REDUCE_SUM", ["metric.labels.response_code_class"])
        # Distributions are merged across response codes before the percentile is taken: a p99 of per-series
        # p99s would not be the revision's p99.
        latencies = self._request(REQUEST_LATENCIES, *window, "REDUCE_PERCENTILE_99", [])
        by_class, p99 = await asyncio.gather(asyncio.to_thread(self._list, counts),
                                             asyncio.to_thread(self._list, latencies))
        total = errors = 0
        for series in by_class:
            count = sum(point.value.int64_value for point in series.points)
            total += count
            if series.metric.labels.get("response_code_class") == "5xx":
                errors += count
        values = [point.value.double_value for series in p99 for point in series.points]
        return RequestStats(total, errors, max(values) if total and values else None)

    def _request(self, metric: str, service: str, revision: str, last: int, period: int, reducer: str,
                 group_by: list[str]) -> dict[str, Any]:
        """One alignment period covering the window: ALIGN_DELTA sums counts and merges distributions."""
        selection = (f"metric.type = {_quoted(metric)} AND resource.type = \"cloud_run_revision\" AND "
                     f"resource.labels.service_name = {_quoted(service)} AND "
                     f"resource.labels.revision_name = {_quoted(revision)}")
        return {"name": self.name, "filter": selection,
                "interval": {"start_time": _at(last - period), "end_time": _at(last)},
                "aggregation": {"alignment_period": timedelta(seconds=period), "per_series_aligner": "ALIGN_DELTA",
                                "cross_series_reducer": reducer, "group_by_fields": group_by}}

    def _list(self, request: dict[str, Any]) -> list[Any]:
        """Every TimeSeries of a listing, the pager following page tokens; runs in a worker thread."""
        retry = Retry(initial=0.2, maximum=2.0, timeout=self.timeout, predicate=if_transient_error)
        try:
            return list(self.client().list_time_series(request=request, timeout=self.timeout, retry=retry))
        except (exceptions.RetryError, exceptions.ServiceUnavailable, exceptions.DeadlineExceeded) as exc:
            raise MetricsUnavailable(f"Cloud Monitoring did not answer ({_reason(exc)})") from None
        except exceptions.GoogleAPICallError as exc:
            raise MetricsUnavailable(f"Cloud Monitoring refused the query ({exc.code} {escape(exc.message)})") from None


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _reason(exc: BaseException) -> str:
    return escape((str(exc).splitlines() or [type(exc).__name__])[0][:200])
