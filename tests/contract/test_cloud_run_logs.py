"""What the traffic simulator writes to Cloud Logging is what Cloud Run writes (https://cloud.google.com/run/docs/
logging): request logs, and the services' own lines with the severity production gives them, read back through
google-cloud-logging so a check counting `severity>=ERROR` sees what it would see in production."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import logging

from sandbox.behaviour import Behaviour, Behaviours
from sandbox.cloudrun import CloudRun
from sandbox.fleet import Fleet, ServiceSpec
from sandbox.logging_api import logging_app
from sandbox.logstore import LoggingLimits, LogStore
from sandbox.serving import Listener, start, stop
from sandbox.traffic import STRUCTURED_LOGGING, TrafficSimulator, request_severity

PROJECT = "nba-props-platform"
REGION = "us-west2"
TEXT, JSON = "prediction-worker", "prediction-coordinator"  # one service of each logging style


@dataclass
class Production:
    store: LogStore
    traffic: TrafficSimulator
    client: logging.Client


@pytest.fixture
async def production() -> AsyncIterator[Production]:
    """Both services failing every request for ten seconds, read through an emulator with no ingestion delay."""
    behaviours = Behaviours(default=Behaviour(error_rate=1.0, latency_ms=20.0))
    run = CloudRun(PROJECT, REGION, url_for=lambda host: f"https://{host}.a.run.app", behaviour_of=behaviours.of)
    for name in (TEXT, JSON):
        run.seed_service(name, [f"us-west2-docker.pkg.dev/{PROJECT}/cloud-run/{name}:v1"])
    fleet = Fleet(run, behaviours, {name: ServiceSpec(requests_per_s=2.0) for name in (TEXT, JSON)},
                  verify=lambda token: {}, may_invoke=lambda service, email: True)  # traffic skips the front door
    store = LogStore(limits=LoggingLimits(ingestion_delay_s=0.0))
    traffic = TrafficSimulator(fleet, store)
    traffic.step(10.0)
    listener = await start(Listener("logging", logging_app(store, consumer_number=run.project_number)))
    client = logging.Client(project=PROJECT, credentials=AnonymousCredentials(), _use_grpc=False,
                            client_options={"api_endpoint": listener.url})
    yield Production(store, traffic, client)
    await stop(listener)
    run.close()


async def listed(client: logging.Client, text: str) -> list[Any]:
    return await asyncio.to_thread(lambda: list(client.list_entries(filter_=text, page_size=1000)))


def of(service: str) -> str:
    return f'resource.type="cloud_run_revision" resource.labels.service_name="{service}"'


def test_the_fleet_services_that_log_json_are_those_the_seeds_query_as_json() -> None:
    """The handoff notes query nba-phase3-analytics-processors by `jsonPayload.message` and the coordinator's
    batch errors by `severity>=ERROR`; everything else prints plain text (an assumption)."""
    assert frozenset({"nba-phase3-analytics-processors", "prediction-coordinator"}) == STRUCTURED_LOGGING


@pytest.mark.parametrize(("status", "severity"), [(200, "INFO"), (302, "INFO"), (404, "WARNING"),
                                                  (429, "WARNING"), (500, "ERROR"), (503, "ERROR")])
def test_a_request_log_is_as_severe_as_its_status(status: int, severity: str) -> None:
    """An assumption: Cloud Run's request logs are ERROR for 5xx and WARNING for 4xx, as they show in practice;
    https://cloud.google.com/run/docs/logging does not state the rule."""
    assert request_severity(status) == severity


async def test_a_plain_text_error_line_has_no_severity(production: Production) -> None:
    """"Logs to standard output or standard error do not have an associated log level"
    (https://cloud.google.com/functions/docs/monitoring/logging): the worker's "ERROR ..." lines are DEFAULT, so
    `severity>=ERROR` finds only its request logs."""
    lines = await listed(production.client, f'{of(TEXT)} logName:"run.googleapis.com%2Fstderr"')
    errors = await listed(production.client, f"{of(TEXT)} severity>=ERROR")
    requests = [r for r in production.traffic.records if r.service == TEXT]
    assert len(lines) == len(requests) >= 18
    assert all(isinstance(line, logging.TextEntry) and line.payload.startswith("ERROR prediction failed")
               and line.severity is None for line in lines)
    assert len(errors) == len(requests)
    assert all(entry.log_name.endswith("run.googleapis.com%2Frequests") for entry in errors)
    assert all(entry.http_request["status"] == 500 and entry.severity == "ERROR" for entry in errors)


async def test_a_json_line_carries_its_own_severity(production: Production) -> None:
    """A structured log's `severity` becomes the entry's, its other fields the jsonPayload
    (https://cloud.google.com/logging/docs/structured-logging)."""
    errors = await listed(production.client, f'{of(JSON)} severity>=ERROR logName:"run.googleapis.com%2Fstdout"')
    info = await listed(production.client, f'{of(JSON)} severity=INFO jsonPayload.message:"batch dispatched"')
    requests = [r for r in production.traffic.records if r.service == JSON]
    assert len(errors) == len(requests) >= 18
    assert all(isinstance(entry, logging.StructEntry) and entry.severity == "ERROR" for entry in errors)
    assert all(set(entry.payload) == {"message"} and "DeadlineExceeded" in entry.payload["message"]
               for entry in errors)
    assert info and all(entry.payload == {"message": "batch dispatched: 412 players queued"} for entry in info)


async def test_request_logs_have_cloud_runs_fields_and_logging_stamps_their_arrival(production: Production) -> None:
    """Resource cloud_run_revision with its five labels, httpRequest and trace, as in Cloud Run's request logs
    (https://cloud.google.com/run/docs/logging)."""
    before = time.time()
    production.traffic.step(1.0)
    [newest] = (await asyncio.to_thread(lambda: list(production.client.list_entries(
        filter_=f'{of(TEXT)} logName="projects/{PROJECT}/logs/run.googleapis.com%2Frequests"',
        order_by=logging.DESCENDING, max_results=1, page_size=5))))
    raw = newest.to_api_repr()
    assert raw["resource"] == {"type": "cloud_run_revision", "labels": {
        "project_id": PROJECT, "service_name": TEXT, "revision_name": raw["resource"]["labels"]["revision_name"],
        "location": REGION, "configuration_name": TEXT}}
    assert set(raw["httpRequest"]) >= {"requestMethod", "requestUrl", "status", "latency", "responseSize"}
    assert raw["trace"].startswith(f"projects/{PROJECT}/traces/")
    # receiveTimestamp is "The time the log entry was received by Logging" (LogEntry reference): the store's
    # clock when the simulator handed the entry over, after the request it describes
    assert newest.received_timestamp >= newest.timestamp
    assert newest.received_timestamp.timestamp() >= before - 1e-6


async def test_a_revision_whose_500s_log_nothing_leaves_only_its_request_logs(production: Production) -> None:
    """`silent_errors`: the code writes no line, yet Cloud Run writes a request log for each request it serves
    (https://cloud.google.com/run/docs/logging) with the answer's status in `httpRequest.status`
    (https://cloud.google.com/logging/docs/reference/v2/rest/v2/LogEntry#HttpRequest): the request logs are the
    only evidence of the failures."""
    revision = production.traffic.fleet.run.routed_share(TEXT).popitem()[0]
    production.traffic.fleet.behaviours.patch_revision(revision, "", {"silent_errors": True})
    requests = f'{of(TEXT)} logName:"run.googleapis.com%2Frequests"'
    lines = f'{of(TEXT)} NOT logName:"run.googleapis.com%2Frequests"'
    before = (len(await listed(production.client, requests)), len(await listed(production.client, lines)))
    production.traffic.step(10.0)
    logged = await listed(production.client, requests)
    assert len(logged) - before[0] >= 18, "every request still has its request log"
    assert len(await listed(production.client, lines)) == before[1], "the code logged nothing"
    assert all(entry.http_request["status"] == 500 and entry.severity == "ERROR" for entry in logged)
