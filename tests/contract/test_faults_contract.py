"""Faults on demand (`POST /faults`), as the real client libraries meet them: Google's error for the status
(google.rpc.Code's HTTP mapping, https://cloud.google.com/apis/design/errors#error_codes), Slack's
`{"ok": false, ...}` with the status and, for 429, Retry-After (https://docs.slack.dev/apis/web-api/rate-limits),
a delay, or no answer at all."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
import requests
from google.api_core import exceptions
from google.cloud import monitoring_v3, run_v2, secretmanager_v1
from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport
from google.protobuf import field_mask_pb2
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox import cloudrun_api
from sandbox.world import World
from tests.conftest import also_granted, client_options, google_auth, google_credentials

PARENT = "projects/nba-props-platform/locations/us-west2"
SERVICE = f"{PARENT}/services/nba-grading-service"


@pytest.fixture(autouse=True)
async def no_faults_left(world: World) -> AsyncIterator[None]:
    yield
    world.faults.clear()


async def inject(world: World, **fault: Any) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{world.url('control')}/faults", json=fault)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def refused(world: World, **fault: Any) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{world.url('control')}/faults", json=fault)
    assert response.status_code == 400
    error: str = response.json()["error"]
    return error


async def test_an_unknown_method_is_refused_with_the_known_ones(world: World) -> None:
    error = await refused(world, method="UpdateServices", status=503)
    assert "unknown method 'UpdateServices'" in error
    for known in ("UpdateService", "AccessSecretVersion", "ListLogEntries", "ListTimeSeries", "chat.postMessage"):
        assert known in error


async def test_a_fault_that_cannot_be_is_refused_saying_why(world: World) -> None:
    assert "not both" in await refused(world, method="GetService", status=503, count=2, probability=0.5)
    assert "no status" in await refused(world, method="GetService", status=503, hang=True)
    assert "needs a status" in await refused(world, method="GetService")
    assert "none of Google's" in await refused(world, method="GetService", status=418)
    assert "names its error" in await refused(world, method="chat.postMessage", status=200)
    assert "unknown field 'statuss'" in await refused(world, method="GetService", statuss=503)
    assert "whole seconds" in await refused(world, method="GetService", status=503, retry_after=3)
    async with httpx.AsyncClient() as http:
        listed = (await http.get(f"{world.url('control')}/faults")).json()
    assert listed == {"faults": []}, "nothing refused was set"


async def test_cloud_run_answers_the_next_calls_with_google_unavailable_then_recovers(
        world: World, services_client: run_v2.ServicesClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "sandbox.faults")
    fault = await inject(world, method="GetService", status=503, count=2)
    assert fault["api"] == "google" and fault["error"] == "UNAVAILABLE"
    served = world.run.counts["GetService"]
    for _ in range(2):
        with pytest.raises(exceptions.ServiceUnavailable) as raised:
            await asyncio.to_thread(services_client.get_service, name=SERVICE, retry=None)
        assert raised.value.response.json()["error"] == {
            "code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}
    found = await asyncio.to_thread(services_client.get_service, name=SERVICE, retry=None)
    assert found.name == SERVICE
    assert world.run.counts["GetService"] == served + 1, "faulted calls never reached the emulator"
    async with httpx.AsyncClient() as http:
        (listed,) = (await http.get(f"{world.url('control')}/faults")).json()["faults"]
        assert listed["hits"] == 2 and listed["spent"]
        cleared = (await http.delete(f"{world.url('control')}/faults")).json()["cleared"]
    assert [c["hits"] for c in cleared] == [2]
    logged = [record.getMessage() for record in caplog.records]
    assert any(f"fault #{fault['id']} set: GetService: 503 UNAVAILABLE" in line for line in logged)
    assert sum(f"fault #{fault['id']} hits call" in line for line in logged) == 2


async def test_a_status_may_name_the_canonical_code_where_several_share_it(
        world: World, services_client: run_v2.ServicesClient) -> None:
    await inject(world, method="UpdateService", status="FAILED_PRECONDITION", count=1)
    service = run_v2.Service(name=SERVICE, traffic=[run_v2.TrafficTarget(
        type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, percent=100)])
    request = run_v2.UpdateServiceRequest(service=service, update_mask=field_mask_pb2.FieldMask(paths=["traffic"]),
                                          validate_only=True)
    with pytest.raises(exceptions.BadRequest) as raised:  # google-api-core maps REST errors by HTTP status
        await asyncio.to_thread(services_client.update_service, request=request)
    assert raised.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"


async def test_the_admin_api_methods_are_faulted_under_the_names_state_counts_them(
        world: World, services_client: run_v2.ServicesClient, revisions_client: run_v2.RevisionsClient) -> None:
    """A latency-only fault on every method sees exactly the calls `GET /state` counts, name for name."""
    for method in cloudrun_api.METHODS:
        await inject(world, method=method, latency_ms=1)
    before = dict(world.run.counts)

    def calls() -> None:
        list(services_client.list_services(parent=PARENT))
        service = services_client.get_service(name=SERVICE)
        list(revisions_client.list_revisions(parent=SERVICE))
        revisions_client.get_revision(name=f"{SERVICE}/revisions/{service.latest_ready_revision.rsplit('/', 1)[-1]}")
        services_client.get_iam_policy(request={"resource": SERVICE})
        services_client.test_iam_permissions(request={"resource": SERVICE, "permissions": ["run.services.get"]})

    await asyncio.to_thread(calls)
    counted = {m: n - before.get(m, 0) for m, n in world.run.counts.items() if n != before.get(m, 0)}
    hits = {f["method"]: f["hits"] for f in world.faults.listing() if f["hits"]}
    assert hits == counted and len(counted) == 6


async def test_secret_manager_access_is_refused_with_the_status_asked_for(world: World) -> None:
    client = secretmanager_v1.SecretManagerServiceClient(transport="rest", credentials=google_credentials(world),
                                                         client_options=client_options(world.url("secret_manager")))
    await inject(world, method="AccessSecretVersion", status=403)
    name = f"projects/nba-props-platform/secrets/{world.config.secrets.slack_bot_token}/versions/latest"
    with pytest.raises(exceptions.Forbidden):
        await asyncio.to_thread(client.access_secret_version, name=name, retry=None)
    with also_granted(world, "roles/secretmanager.viewer"):
        secret = await asyncio.to_thread(client.get_secret, name=name.rsplit("/versions", 1)[0])
    assert secret.name.endswith(world.config.secrets.slack_bot_token), "only the faulted method fails"


async def test_a_logging_read_faulted_in_front_is_not_charged_to_the_read_quota(world: World) -> None:
    await inject(world, method="ListLogEntries", status=429, count=1)
    served = world.logging_quota.served
    async with httpx.AsyncClient(headers=google_auth(world)) as http:
        response = await http.post(f"{world.url('logging')}/v2/entries:list",
                                   json={"resourceNames": ["projects/nba-props-platform"]})
    assert response.status_code == 429 and response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert world.logging_quota.served == served


async def test_monitoring_over_grpc_aborts_with_the_canonical_code(world: World) -> None:
    await inject(world, method="ListTimeSeries", status=503, count=1)
    client = monitoring_v3.MetricServiceClient(transport=MetricServiceGrpcTransport(
        channel=grpc.insecure_channel(f"127.0.0.1:{world.monitoring.port}")))
    now = int(time.time())
    request = {"name": "projects/nba-props-platform", "filter": 'metric.type = "run.googleapis.com/request_count"',
               "interval": {"start_time": {"seconds": now - 600}, "end_time": {"seconds": now}}}
    with pytest.raises(exceptions.ServiceUnavailable):
        await asyncio.to_thread(lambda: list(client.list_time_series(
            request=request, retry=None, metadata=[("authorization", f"Bearer {world.metadata.access_token()}")])))


async def test_slack_answers_429_with_retry_after_and_5xx_with_its_error(world: World) -> None:
    client = WebClient(token=world.bot_token, base_url=f"{world.url('slack_api')}/api/")
    client.retry_handlers = []
    channel = world.workspace.channel_named("deploys").id
    await inject(world, method="chat.postMessage", status=429, retry_after=7, count=1)
    await inject(world, method="chat.postMessage", status=500, count=1)
    with pytest.raises(SlackApiError) as limited:
        await asyncio.to_thread(client.chat_postMessage, channel=channel, text="one")
    assert limited.value.response.status_code == 429 and limited.value.response.headers["Retry-After"] == "7"
    assert limited.value.response.data == {"ok": False, "error": "ratelimited"}
    with pytest.raises(SlackApiError) as broken:
        await asyncio.to_thread(client.chat_postMessage, channel=channel, text="two")
    assert broken.value.response.status_code == 500 and broken.value.response["error"] == "internal_error"
    posted = await asyncio.to_thread(client.chat_postMessage, channel=channel, text="three")
    assert posted["ok"], "both faults are spent"


async def test_latency_delays_the_answer_and_hang_never_answers(
        world: World, services_client: run_v2.ServicesClient) -> None:
    await inject(world, method="GetService", latency_ms=400, count=1)
    started = time.monotonic()
    await asyncio.to_thread(services_client.get_service, name=SERVICE, retry=None)
    assert time.monotonic() - started >= 0.4
    await inject(world, method="GetService", hang=True, count=1)
    with pytest.raises((exceptions.DeadlineExceeded, requests.exceptions.Timeout)):
        await asyncio.to_thread(services_client.get_service, name=SERVICE, retry=None, timeout=0.5)
    found = await asyncio.to_thread(services_client.get_service, name=SERVICE, retry=None, timeout=5)
    assert found.name == SERVICE, "a hang with a count takes only that many calls"


async def test_probability_faults_some_calls_and_not_others(world: World) -> None:
    fault = await inject(world, method="auth.test", status=503, probability=0.5)
    client = WebClient(token=world.bot_token, base_url=f"{world.url('slack_api')}/api/")
    client.retry_handlers = []

    def call() -> bool:
        try:
            return bool(client.auth_test()["ok"])
        except SlackApiError as exc:
            assert exc.response.status_code == 503 and exc.response["error"] == "service_unavailable"
            return False

    answered = [await asyncio.to_thread(call) for _ in range(40)]
    (listed,) = [f for f in world.faults.listing() if f["id"] == fault["id"]]
    assert 5 < listed["hits"] < 35 and answered.count(False) == listed["hits"]


async def test_a_slack_call_can_land_and_lose_its_answer(world: World) -> None:
    """`lands`: the post is made, then its answer is dropped (the connection closes) or replaced by a 500, whose
    `internal_error` Slack documents as "It's possible some aspect of the operation succeeded before the error was
    raised" (https://api.slack.com/methods/chat.postMessage#errors). Without `lands` a dropped call never lands."""
    client = WebClient(token=world.bot_token, base_url=f"{world.url('slack_api')}/api/")
    client.retry_handlers = []
    channel = world.workspace.channel_named("deploys").id
    for text, fault in (("landed, answer lost", {"lands": True, "drop": True}),
                        ("landed, answered 500", {"lands": True, "status": 500}), ("never landed", {"drop": True})):
        await inject(world, method="chat.postMessage", count=1, **fault)
        with pytest.raises((SlackApiError, requests.exceptions.ConnectionError, ConnectionError)):
            await asyncio.to_thread(client.chat_postMessage, channel=channel, text=text)
    shown = [m.text for m in world.workspace.parents(channel)]
    assert "landed, answer lost" in shown and "landed, answered 500" in shown and "never landed" not in shown
    assert "cannot land" in await refused(world, method="chat.postMessage", lands=True, status=429)
    assert "Slack" in await refused(world, method="UpdateService", drop=True)
    assert "not both" in await refused(world, method="chat.update", drop=True, hang=True)
