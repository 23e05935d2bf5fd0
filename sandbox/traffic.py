"""Simulated production traffic: each service receives requests at its rate, split by routed traffic.

Every request becomes a Cloud Run request log (and, when it fails, an ERROR application log), and a
RequestRecord for the metrics the Monitoring emulator serves. This is what a canary's analysis reads.
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
                 clock: Callable[[], float] | None = None) -> None:
        self.fleet = fleet
        self.logs = logs
        self.tick = tick
        self.retention = retention
        self.records: deque[RequestRecord] = deque()
        self.now = clock or time.time
        self._carry: dict[str, float] = {}
        self._last_info: dict[str, float] = {}
        self._serial = 0

    async def run(self) -> None:
        while True:
            self.step(self.tick)
            await asyncio.sleep(self.tick)

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
        self.logs.append(self._entry(service, revision, at, "requests", trace, {
            "severity": "ERROR" if status >= 500 else "INFO",
            "httpRequest": {"requestMethod": "POST", "requestUrl": url, "status": status,
                            "latency": f"{latency / 1000:.6f}s", "responseSize": "211",
                            "userAgent": "Google-Cloud-Scheduler", "remoteIp": "10.8.0.3",
                            "protocol": "HTTP/1.1"},
        }))
        if status >= 500 and not behaviour.down:
            message = _APP_ERRORS.get(service, "request {n} failed: RuntimeError: upstream error")
            self.logs.append(self._entry(service, revision, at, "stderr", trace, {
                "severity": "ERROR",
                "textPayload": "ERROR " + message.format(n=self._serial),
            }))

    def _info_logs(self, service: str, now: float) -> None:
        message = _INFO_LOGS.get(service)
        if message is None or now - self._last_info.get(service, 0.0) < 1.0:
            return
        self._last_info[service] = now
        for revision in self.fleet.run.routed_share(service):
            self.logs.append(self._entry(service, revision, now, "stdout", uuid.uuid4().hex, {
                "severity": "INFO", "textPayload": message}))

    def _entry(self, service: str, revision: str, at: float, log: str, trace: str,
               extra: dict[str, Any]) -> dict[str, Any]:
        run = self.fleet.run
        return {
            "logName": f"projects/{run.project}/logs/run.googleapis.com%2F{log}",
            "resource": {"type": "cloud_run_revision", "labels": {
                "project_id": run.project, "service_name": service, "revision_name": revision,
                "location": run.region, "configuration_name": service}},
            "timestamp": rfc3339(at),
            "receiveTimestamp": rfc3339(at + 0.05),
            "insertId": uuid.uuid4().hex[:16],
            "trace": f"projects/{run.project}/traces/{trace}",
            "labels": {"instanceId": f"00{abs(hash(revision)) % 10**12:012d}"},
            **extra,
        }
