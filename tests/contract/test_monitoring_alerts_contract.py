"""The sandbox's Cloud Monitoring sends alert notifications as Google documents them, to a receiver that records
what arrives:
- schema version 1.2, Google's fields (https://cloud.google.com/monitoring/support/notification-options#webhooks),
  on a `cloud_run_revision` (https://cloud.google.com/monitoring/api/resources#tag_cloud_run_revision), ended_at
  null while open (https://support.stackdriver.com/customer/en/portal/articles/1491775-configuring-webhooks);
- token authentication in the query string, Basic authentication after a 401 with WWW-Authenticate
  (https://docs.cloud.google.com/error-reporting/docs/notifications);
- limits of a policy's documentation (https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.alertPolicies
  #documentation)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from google.cloud import secretmanager_v1

from bot.config import Config
from sandbox.serving import Listener, start, stop
from sandbox.world import World, WorldOptions
from tests.conftest import client_options, google_credentials

SERVICE = "prediction-worker"


@dataclass
class Arrival:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """Where the bot would be: records each request, answers with `answer(request)`."""

    arrivals: list[Arrival] = field(default_factory=list)
    answer: Callable[[Arrival], web.Response] = lambda _: web.Response(status=200)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query: dict[str, list[str]] = {}
        for key, value in request.query.items():
            query.setdefault(key, []).append(value)
        arrival = Arrival(request.path, query, dict(request.headers), json.loads(await request.read()))
        self.arrivals.append(arrival)
        return self.answer(arrival)


@dataclass
class Channel:
    world: World
    receiver: Receiver
    http: httpx.AsyncClient

    async def fire(self, **spec: Any) -> httpx.Response:
        return await self.http.post(f"{self.world.url('control')}/alerts/monitoring",
                                    json={"policy": "Cloud Run 5xx", "condition": "5xx rate above 1%",
                                          "service": SERVICE, **spec})

    async def token(self) -> str:
        return await asyncio.to_thread(self._read_token)

    def _read_token(self) -> str:
        """Read as an operator with secretAccessor would: the world keeps it in Secret Manager."""
        client = secretmanager_v1.SecretManagerServiceClient(
            transport="rest", credentials=google_credentials(self.world),
            client_options=client_options(self.world.url("secret_manager")))
        name = (f"projects/{self.world.config.project}/secrets/{self.world.config.secrets.monitoring_webhook_token}"
                "/versions/latest")
        return str(client.access_secret_version(name=name).payload.data.decode())

    @contextlib.contextmanager
    def configured(self, **changes: Any) -> Iterator[None]:
        limits = self.world.channel_limits
        before = {key: getattr(limits, key) for key in changes}
        self.world.limits.patch("monitoring_webhook", changes)
        try:
            yield
        finally:
            self.world.limits.patch("monitoring_webhook", before)


@pytest.fixture(scope="module")
async def channel(example_config: Config) -> AsyncIterator[Channel]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/alerts/monitoring", receiver.handle)
    listener = await start(Listener("receiver", app))
    world = World(example_config, WorldOptions(bot_urls=[listener.url], start_ms=60, route_ms=20))
    await world.start()
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            yield Channel(world, receiver, http)
    finally:
        await world.stop()
        await stop(listener)


@pytest.fixture(autouse=True)
def fresh(channel: Channel) -> None:
    channel.receiver.arrivals.clear()
    channel.receiver.answer = lambda _: web.Response(status=200)


async def test_an_incident_opens_and_closes_with_one_id_in_schema_1_2(channel: Channel) -> None:
    opened = (await channel.fire(state="open", documentation="Check the worker's model file.")).json()
    closed = (await channel.fire(state="closed")).json()
    assert (opened["status"], closed["status"]) == (200, 200)
    first, second = (arrival.body for arrival in channel.receiver.arrivals)
    assert first["version"] == second["version"] == "1.2"
    incident, end = first["incident"], second["incident"]
    assert incident["incident_id"] == end["incident_id"] == opened["incident_id"] == closed["incident_id"]
    assert set(incident) >= {
        "incident_id", "scoping_project_id", "scoping_project_number", "url", "started_at", "ended_at", "state",
        "summary", "resource", "resource_type_display_name", "resource_name", "resource_display_name", "metric",
        "metadata", "policy_name", "policy_user_labels", "condition_name", "condition", "documentation"}
    world = channel.world
    assert (incident["scoping_project_id"], incident["scoping_project_number"]) == (
        world.config.project, int(world.run.project_number))
    assert (incident["state"], incident["ended_at"]) == ("open", None)
    assert (end["state"], end["started_at"]) == ("closed", incident["started_at"])
    assert isinstance(incident["started_at"], int) and isinstance(end["ended_at"], int)
    assert end["ended_at"] >= end["started_at"]
    assert (incident["policy_name"], incident["condition_name"]) == ("Cloud Run 5xx", "5xx rate above 1%")
    assert incident["resource"] == {"type": "cloud_run_revision", "labels": {
        "project_id": world.config.project, "service_name": SERVICE,
        "revision_name": str(world.run.services[SERVICE].traffic_statuses[0]["revision"]),
        "location": world.config.region, "configuration_name": SERVICE}}
    assert incident["documentation"] == {"content": "Check the worker's model file.", "mime_type": "text/markdown"}
    assert incident["url"] == (f"https://console.cloud.google.com/monitoring/alerting/incidents/"
                               f"{incident['incident_id']}?project={world.config.project}")
    assert opened["payload"] == first


async def test_token_authentication_puts_the_token_in_the_query_string_only(channel: Channel) -> None:
    await channel.fire(state="open", incident_id="0.tokenonly001")
    (arrival,) = channel.receiver.arrivals
    assert arrival.path == "/alerts/monitoring"
    assert arrival.query == {"auth_token": [await channel.token()]}
    assert "Authorization" not in arrival.headers
    assert arrival.headers["Content-Type"] == "application/json"


async def test_basic_authentication_answers_the_challenge_with_the_token_as_password(channel: Channel) -> None:
    def challenge(arrival: Arrival) -> web.Response:
        if "Authorization" not in arrival.headers:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="bot"'})
        return web.Response(status=200)

    channel.receiver.answer = challenge
    with channel.configured(token_auth=False, basic_auth=True):
        sent = (await channel.fire(state="open", incident_id="0.basicauth001")).json()
    assert (sent["status"], sent["attempts"]) == (200, 2)
    first, second = channel.receiver.arrivals
    assert "Authorization" not in first.headers and first.query == second.query == {}
    scheme, _, credentials = second.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode().partition(":")[2] == await channel.token()
    assert first.body == second.body


async def test_no_challenge_no_credentials(channel: Channel) -> None:
    """"Cloud Monitoring requires your server to return a 401 response with the proper WWW-Authenticate header"."""
    channel.receiver.answer = lambda _: web.Response(status=401)
    with channel.configured(token_auth=False, basic_auth=True):
        sent = (await channel.fire(state="open", incident_id="0.nochallenge1")).json()
    assert (sent["status"], sent["attempts"]) == (401, 1)
    assert "WWW-Authenticate" in sent["error"]
    assert all("Authorization" not in arrival.headers for arrival in channel.receiver.arrivals)


async def test_preemptive_basic_sends_the_credentials_at_once(channel: Channel) -> None:
    with channel.configured(token_auth=False, basic_auth=True, preemptive_basic=True):
        sent = (await channel.fire(state="open", incident_id="0.preemptive01")).json()
    assert (sent["status"], sent["attempts"]) == (200, 1)
    assert channel.receiver.arrivals[0].headers["Authorization"].startswith("Basic ")


async def test_a_notification_is_sent_once_and_a_refusal_is_reported(channel: Channel) -> None:
    channel.receiver.answer = lambda _: web.Response(status=503)
    sent = (await channel.fire(state="open", incident_id="0.refused00001")).json()
    assert (sent["status"], sent["attempts"]) == (503, 1)
    assert len(channel.receiver.arrivals) == 1
    record = (await channel.http.get(f"{channel.world.url('control')}/state")).json()["monitoring_notifications"][-1]
    assert (record["incident_id"], record["status"], record["delivered"]) == ("0.refused00001", 503, False)


async def test_a_bot_slower_than_the_channel_waits_gets_status_0(channel: Channel) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/alerts/monitoring", slow)
    listener = await start(Listener("slow", app))
    alerts = channel.world.monitoring_alerts
    original = alerts._next_url
    alerts._next_url = iter([listener.url])
    try:
        with channel.configured(timeout_s=0.2):
            sent = (await channel.fire(state="open", incident_id="0.slowbot00001")).json()
    finally:
        alerts._next_url = original
        await stop(listener)
    assert sent["status"] == 0 and "0.2 s" in sent["error"]


async def test_the_world_records_notifications_without_the_token(channel: Channel) -> None:
    await channel.fire(state="open", incident_id="0.recorded0001")
    state = (await channel.http.get(f"{channel.world.url('control')}/state")).text
    assert "0.recorded0001" in state
    assert await channel.token() not in state


@pytest.mark.parametrize(("spec", "status", "says"), [
    ({"state": "open", "service": "no-such-service"}, 404, "no service named"),
    ({"state": "closed", "incident_id": "0.neveropened1"}, 409, "no open incident"),
    ({"state": "acknowledged"}, 400, "state must be"),
    ({"state": "open", "severity": "critical"}, 400, "unknown field"),
    ({"state": "open", "documentation": "x" * 8193}, 400, "8192 characters"),
    ({"state": "open", "documentation": "é" * 5121}, 400, "10240 bytes"),
    ({"state": "open", "documentation": {"content": "x", "mime_type": "text/html"}}, 400, "text/markdown"),
    ({"state": "open", "documentation": {"content": "x", "subject": "s" * 256}}, 400, "255 characters"),
])
async def test_what_google_would_never_send_is_refused(channel: Channel, spec: dict[str, Any], status: int,
                                                       says: str) -> None:
    answer = await channel.fire(**spec)
    assert answer.status_code == status and says in answer.json()["error"]
    assert channel.receiver.arrivals == []


async def test_a_closed_incident_is_not_reopened(channel: Channel) -> None:
    await channel.fire(state="open", incident_id="0.closedonce01")
    await channel.fire(state="closed", incident_id="0.closedonce01")
    again = await channel.fire(state="open", incident_id="0.closedonce01")
    assert again.status_code == 409 and "opens a new incident" in again.json()["error"]
