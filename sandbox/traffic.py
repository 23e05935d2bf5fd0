"""Simulated production traffic: each service receives requests at its rate, split by routed traffic.

Every request becomes a Cloud Run request log (and, when it fails, a line the service's own code logs), and a
RequestRecord for the metrics the Monitoring emulator serves. This is what a canary's analysis reads.

Entries are written as Cloud Run writes them (https://cloud.google.com/run/docs/logging): request logs to
`run.googleapis.com/requests` with `httpRequest`, container output to `run.googleapis.com/stdout` and
`.../stderr`, on resource `cloud_run_revision`. Logging stamps `receiveTimestamp` on arrival (LogStore).

Severity is what production would show, so a check counting `severity>=ERROR` sees only that:
- A plain-text line has none (DEFAULT), on stdout and on stderr alike: "Logs to standard output or standard
  error do not have an associated log level" (https://cloud.google.com/functions/docs/monitoring/logging,
  Cloud Run functions, which run on Cloud Run). A text line that starts with "ERROR" is still DEFAULT.
- A JSON line is a structured log: its `severity` field becomes the entry's severity and the rest its
  `jsonPayload`, `message` included (https://cloud.google.com/logging/docs/structured-logging; the Cloud Run
  sample prints `{"severity": "NOTICE", "message": ...}`, GoogleCloudPlatform/python-docs-samples
  run/logging-manual/main.py).
- A request log is ERROR for a 5xx answer, WARNING for a 4xx, INFO otherwise. Google's pages do not state
  this rule; it is what Cloud Run's request logs show (e.g. a 404 listed as WARNING in projects that
  document their Cloud Run noise, GoogleCloudPlatform/functions-framework-dart#80). An assumption.

A revision with `silent_errors` (sandbox/behaviour.py) fails the same way but its code writes no line: only the
request log, with its 5xx `httpRequest.status`, tells of the failure.

Which services log JSON: those whose operators query them as such in the fleet's own notes (the handoff
seeds: `jsonPayload.message=~'Heartbeat'` for nba-phase3-analytics-processors, `severity>=ERROR` for the
coordinator's batch errors). The rest print plain text through Python's logging module, whose default
handler writes "LEVEL message" lines to stderr; an assumption, changeable per simulator (`structured`).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.cloudrun import rfc3339
from sandbox.fleet import Fleet
from sandbox.logstore import LogStore

_APP_ERRORS: dict[str, str] = {
    "prediction-worker": "prediction failed for player_lookup={n}: CatBoostError: model output has NaN",
    "prediction-coordinator": "batch {n} failed: google.api_core.exceptions.DeadlineExceeded: 504 "
                              "Deadline Exceeded while publishing to prediction-request",
    "mlb-prediction-worker": "MLB prediction failed for game_pk={n}: KeyError: 'pitcher_id'",
    "nba-admin-dashboard": "request {n} failed: firestore.AbortedError: Too much contention",
    "nba-phase3-analytics-processors": "PlayerGameSummaryProcessor failed for game {n}: "
                                       "BigQuery MERGE failed: Query error: FLOAT64 cannot be NULL",
    "nba-phase4-precompute-processors": "VegasLineSummaryProcessor failed for {n}: partition filter required",
    "nba-grading-service": "grading run {n} failed: google.api_core.exceptions.NotFound: 404 Table "
                           "nba_predictions.prediction_accuracy not found",
}
_INFO_LOGS: dict[str, str] = {
    "nba-phase3-analytics-processors": "Heartbeat: PlayerGameSummaryProcessor alive",
    "prediction-coordinator": "batch dispatched: 412 players queued",
}
_MAX_CATCH_UP = 5.0  # seconds: a loop stalled longer (a suspended laptop) does not release a flood at once
STRUCTURED_LOGGING = frozenset({"nba-phase3-analytics-processors", "prediction-coordinator"})


def request_severity(status: int) -> str:
    """The severity Cloud Run gives the request log of an answer with this status (see the module notes)."""
    return "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO"


@dataclass(frozen=True)
class RequestRecord:
    at: float
    service: str
    revision: str
    status: int
    latency_ms: float


class TrafficSimulator:
    """Ticks every `tick` seconds; keeps `retention` seconds of request records."""

    def __init__(self, fleet: Fleet, logs: LogStore, *, tick: float = 0.5, retention: float = 900.0,
                 clock: Callable[[], float] | None = None,
                 structured: frozenset[str] = STRUCTURED_LOGGING) -> None:
        self.fleet = fleet
        self.logs = logs
        self.structured = structured  # services that log JSON lines; the others log plain text
        self.tick = tick
        self.retention = retention
        self.records: deque[RequestRecord] = deque()
        self.now = clock or time.time
        self._carry: dict[str, float] = {}
        self._last_info: dict[str, float] = {}
        self._serial = 0

    async def run(self) -> None:
        """Requests arrive on the wall clock, as a real fleet's do: a tick that a busy event loop wakes late
        carries the requests of the whole time it slept (up to `_MAX_CATCH_UP`), not the nominal tick's."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            self.step(min(now - last, _MAX_CATCH_UP))
            last = now

    def step(self, elapsed: float) -> None:
        now = self.now()
        for service in list(self.fleet.run.services):
            rate = self.fleet.spec(service).requests_per_s
            due = self._carry.get(service, 0.0) + rate * elapsed
            count = math.floor(due)
            self._carry[service] = due - count
            for index in range(count):
                self._request(service, now - elapsed + elapsed * (index + 1) / (count + 1))
            self._info_logs(service, now)
        horizon = now - self.retention
        while self.records and self.records[0].at < horizon:
            self.records.popleft()

    def _request(self, service: str, at: float) -> None:
        revision = self.fleet.pick_revision(service)
        if revision is None:
            return
        behaviour = self.fleet.behaviour(revision)
        rng = self.fleet.rng
        if behaviour.down:
            status, latency = 503, 10.0
        else:
            status = 500 if rng.random() < behaviour.error_rate else 200
            latency = max(1.0, behaviour.latency_ms * rng.lognormvariate(0.0, 0.25))
        self.records.append(RequestRecord(at, service, revision, status, latency))
        self._serial += 1
        trace = uuid.uuid4().hex
        url = f"{self.fleet.run.url_for(service)}/predict"
        self.logs.append(self._entry(service, revision, at, "requests", {
            "severity": request_severity(status),
            "trace": f"projects/{self.fleet.run.project}/traces/{trace}",
            "httpRequest": {"requestMethod": "POST", "requestUrl": url, "status": status,
                            "latency": f"{latency / 1000:.6f}s", "responseSize": "211",
                            "userAgent": "Google-Cloud-Scheduler", "remoteIp": "10.8.0.3",
                            "protocol": "HTTP/1.1"},
        }))
        if status >= 500 and not behaviour.down and not behaviour.silent_errors:
            usual = _APP_ERRORS.get(service, "request {n} failed: RuntimeError: upstream error")
            message = behaviour.error_message or usual.format(n=self._serial)
            self._app_line(service, revision, at, "ERROR", message)

    def _info_logs(self, service: str, now: float) -> None:
        message = _INFO_LOGS.get(service)
        if message is None or now - self._last_info.get(service, 0.0) < 1.0:
            return
        self._last_info[service] = now
        for revision in self.fleet.run.routed_share(service):
            self._app_line(service, revision, now, "INFO", message)

    def _app_line(self, service: str, revision: str, at: float, level: str, message: str) -> None:
        """A line the service's code logs at `level`, as Cloud Run turns it into an entry."""
        if service in self.structured:
            self.logs.append(self._entry(service, revision, at, "stdout", {
                "severity": level, "jsonPayload": {"message": message}}))
        else:
            self.logs.append(self._entry(service, revision, at, "stderr", {"textPayload": f"{level} {message}"}))

    def _entry(self, service: str, revision: str, at: float, log: str, extra: dict[str, Any]) -> dict[str, Any]:
        run = self.fleet.run
        return {
            "logName": f"projects/{run.project}/logs/run.googleapis.com%2F{log}",
            "resource": {"type": "cloud_run_revision", "labels": {
                "project_id": run.project, "service_name": service, "revision_name": revision,
                "location": run.region, "configuration_name": service}},
            "timestamp": rfc3339(at),
            "insertId": uuid.uuid4().hex[:16],
            "labels": {"instanceId": f"00{abs(hash(revision)) % 10**12:012d}"},
            **extra,
        }
