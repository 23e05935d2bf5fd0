"""Cloud Monitoring's alert notifications reach the bot through its real route: the sandbox's channel sends them
as Google does (schema version 1.2, https://cloud.google.com/monitoring/support/notification-options#webhooks;
`?auth_token=` or Basic after a 401 challenge, https://docs.cloud.google.com/error-reporting/docs/notifications),
the bot admits only the channel's token from Secret Manager, parses the payload into a MonitoringAlert and hands
it to `on_alert`. Anything else gets 401 with nothing to learn from, a malformed body 400, and a bot whose config
does not take the webhook answers 404 without ever reading the token."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from google.cloud import secretmanager_v1

from bot.adapters.secrets import SecretsUnavailable, fetch_credentials
from bot.config import Config, load_config
from bot.domain.monitoring_alert import Documentation, MonitoringAlert
from bot.environment import Environment
from bot.log import REDACTED
from sandbox.runner import BotProcess, bot_environment, free_port
from sandbox.world import World, WorldOptions
from tests import figures
from tests.conftest import EXAMPLE_CONFIG, client_options, google_credentials
from tests.contract.test_serve_startup import config_with
from tests.scenario.harness import Scenario, scenario

SERVICE = "prediction-worker"
POLICY = "prediction-worker 5xx"
CONDITION = "5xx responses above 1%"


def webhook_on(config: Config) -> Config:
    alerts = config.defaults.alerts.model_copy(update={"monitoring_webhook": True})
    return config.model_copy(update={"defaults": config.defaults.model_copy(update={"alerts": alerts})})


def read_token(world: World) -> str:
    """As an operator with secretAccessor reads it; the world keeps it in Secret Manager and the channel."""
    client = secretmanager_v1.SecretManagerServiceClient(transport="rest", credentials=google_credentials(world),
                                                         client_options=client_options(world.url("secret_manager")))
    name = f"projects/{world.config.project}/secrets/{world.config.secrets.monitoring_webhook_token}/versions/latest"
    return str(client.access_secret_version(name=name).payload.data.decode())


@dataclass
class Fleet:
    running: Scenario
    received: list[MonitoringAlert]
    token: str

    @property
    def webhook(self) -> str:
        return f"{self.running.bot_url}/alerts/monitoring"

    async def fire(self, **spec: Any) -> dict[str, Any]:
        """Cloud Monitoring notifies the bot; what the bot answered."""
        response = await self.running.http.post(f"{self.running.control}/alerts/monitoring", json={
            "policy": POLICY, "condition": CONDITION, "service": SERVICE, **spec})
        response.raise_for_status()
        sent: dict[str, Any] = response.json()
        return sent

    @contextlib.asynccontextmanager
    async def channel(self, **changes: Any) -> AsyncIterator[None]:
        """The channel reconfigured through the control API, as a bench would."""
        url = f"{self.running.control}/limits/monitoring_webhook"
        before = (await self.running.http.get(f"{self.running.control}/limits")).json()["monitoring_webhook"]
        (await self.running.http.patch(url, json=changes)).raise_for_status()
        try:
            yield
        finally:
            (await self.running.http.patch(url, json={key: before[key] for key in changes})).raise_for_status()


@pytest.fixture(scope="module")
async def fleet(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Fleet]:
    received: list[MonitoringAlert] = []

    async def on_alert(alert: MonitoringAlert) -> None:
        received.append(alert)

    async with scenario(webhook_on(example_config), tmp_path_factory.mktemp("monitoring-alerts"),
                        on_alert=on_alert) as running:
        yield Fleet(running, received, await asyncio.to_thread(read_token, running.world))


@pytest.fixture(autouse=True)
def nothing_received_yet(request: pytest.FixtureRequest) -> None:
    if "fleet" in request.fixturenames:
        request.getfixturevalue("fleet").received.clear()


async def test_an_alert_opens_and_closes_and_reaches_on_alert_parsed(fleet: Fleet) -> None:
    opened = await fleet.fire(state="open", summary="5xx rate for prediction-worker is 4.2%",
                              documentation={"content": "Roll back the last deploy.", "subject": "Worker failing"})
    closed = await fleet.fire(state="closed")
    assert (opened["status"], closed["status"]) == (200, 200)
    first, second = fleet.received
    incident = opened["payload"]["incident"]
    assert first == MonitoringAlert(
        incident_id=opened["incident_id"], policy=POLICY, condition=CONDITION, service=SERVICE, state="open",
        started_at=first.started_at, ended_at=None, summary="5xx rate for prediction-worker is 4.2%",
        documentation=Documentation("Roll back the last deploy.", "text/markdown", "Worker failing"),
        url=incident["url"])
    assert first.started_at.timestamp() == incident["started_at"]
    assert (second.incident_id, second.state, second.started_at) == (first.incident_id, "closed", first.started_at)
    assert second.ended_at is not None
    assert second.ended_at.timestamp() == closed["payload"]["incident"]["ended_at"]


async def test_basic_authentication_reaches_the_bot_after_its_challenge(fleet: Fleet) -> None:
    async with fleet.channel(token_auth=False, basic_auth=True):
        sent = await fleet.fire(state="open", incident_id="0.basicviabot1")
    assert (sent["status"], sent["attempts"], sent["error"]) == (200, 2, None)
    assert [alert.incident_id for alert in fleet.received] == ["0.basicviabot1"]


async def test_a_channel_configured_without_authentication_is_refused(fleet: Fleet) -> None:
    async with fleet.channel(token_auth=False, basic_auth=False):
        sent = await fleet.fire(state="open", incident_id="0.noauthatall1")
    assert sent["status"] == 401
    assert fleet.received == []


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as the bot wrote it, before the redactor: a secret here was logged, hidden or not."""
    return "\n".join(f"{record.getMessage()} {record.exc_text or ''}" for record in caplog.records)


async def test_forged_requests_get_401_and_nothing_to_learn_from(fleet: Fleet,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.web")
    real = await fleet.fire(state="open", incident_id="0.forgerybase1")
    fleet.received.clear()
    payload = real["payload"]
    tampered = json.loads(json.dumps(payload))
    tampered["incident"]["state"] = "closed"
    tampered["incident"]["ended_at"] = tampered["incident"]["started_at"]
    token = fleet.token
    changed = token[:-1] + ("A" if token[-1] != "A" else "B")
    forgeries: dict[str, tuple[dict[str, str], dict[str, str], Any]] = {
        "no token": ({}, {}, payload),
        "a wrong token": ({"auth_token": secrets.token_urlsafe(32)}, {}, payload),
        "a tampered body with a token one character off": ({"auth_token": changed}, {}, tampered),
        "half the token": ({"auth_token": token[: len(token) // 2]}, {}, payload),
        "a wrong Basic password": ({}, basic("cloud-monitoring", changed), payload),
        "the token as Basic username": ({}, basic(token, "x"), payload),
        "the token as a bearer token": ({}, {"Authorization": f"Bearer {token}"}, payload),
        "the token under another name": ({"token": token}, {}, payload),
    }
    for name, (params, headers, body) in forgeries.items():
        answer = await fleet.running.http.post(fleet.webhook, params=params, headers=headers, json=body)
        assert answer.status_code == 401, name
        assert answer.content == b"", name
        assert answer.headers["WWW-Authenticate"].startswith("Basic "), name
        figures.count("forged Cloud Monitoring notifications refused (401)")
    both = await fleet.running.http.post(f"{fleet.webhook}?auth_token={token}&auth_token={changed}", json=payload)
    assert both.status_code == 401
    figures.count("forged Cloud Monitoring notifications refused (401)")
    assert fleet.received == []
    assert "refused a Cloud Monitoring notification without valid credentials" in logged(caplog)
    assert "challenged a Cloud Monitoring notification that came without credentials" in logged(caplog)
    assert token not in logged(caplog) and changed not in logged(caplog)


async def test_a_malformed_body_with_the_right_token_gets_400(fleet: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    real = (await fleet.fire(state="open", incident_id="0.malformed001"))["payload"]
    fleet.received.clear()
    unclosed = json.loads(json.dumps(real))
    unclosed["incident"]["state"] = "closed"
    bodies: dict[str, bytes] = {
        "not JSON": b"state=open",
        "another schema version": json.dumps({**real, "version": "1.1"}).encode(),
        "closed without ended_at": json.dumps(unclosed).encode(),
    }
    for name, body in bodies.items():
        answer = await fleet.running.http.post(fleet.webhook, params={"auth_token": fleet.token}, content=body,
                                               headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, name
    huge = await fleet.running.http.post(fleet.webhook, params={"auth_token": fleet.token}, content=b" " * 300_000)
    assert huge.status_code == 413
    assert fleet.received == []
    assert "refused a malformed Cloud Monitoring notification: version must be '1.2'" in logged(caplog)
    assert fleet.token not in logged(caplog)


async def test_a_bot_that_does_not_take_the_webhook_answers_404_and_never_reads_the_token(
        example_config: Config, tmp_path: Path) -> None:
    alerts = example_config.defaults.alerts.model_copy(update={"monitoring_webhook": False})
    off = example_config.model_copy(update={"defaults": example_config.defaults.model_copy(update={"alerts": alerts})})
    async with scenario(off, tmp_path) as running:
        name = example_config.secrets.monitoring_webhook_token
        assert not any(name in accessed for _, accessed in running.world.secret_manager.accesses)
        sent = (await running.http.post(f"{running.control}/alerts/monitoring", json={
            "policy": POLICY, "condition": CONDITION, "service": SERVICE, "state": "open"})).json()
        assert sent["status"] == 404
        token = await asyncio.to_thread(read_token, running.world)
        direct = await running.http.post(f"{running.bot_url}/alerts/monitoring", params={"auth_token": token},
                                         json=sent["payload"])
        assert direct.status_code == 404


@contextlib.contextmanager
def enabled_config(tmp: Path) -> Iterator[Path]:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["defaults"]["alerts"]["monitoring_webhook"] = True
    yield config_with(tmp, yaml.safe_dump(data, sort_keys=False))


def everything_slack_shows(world: World) -> str:
    workspace = world.workspace
    return json.dumps([workspace.seen_by(channel, user)
                       for channel in workspace.channels for user in workspace.users])


async def test_the_token_never_reaches_the_bots_log_or_slack(tmp_path: Path) -> None:
    """`chatops serve` as Cloud Run runs it, JSON logs on stdout: alerts in, forgeries and a malformed body refused,
    and the token is nowhere in what it wrote or in what Slack shows."""
    with enabled_config(tmp_path) as config_path:
        port = free_port()
        world = World(load_config(config_path), WorldOptions(bot_urls=[f"http://127.0.0.1:{port}"], start_ms=60,
                                                             route_ms=20))
        await world.start()
        bot = BotProcess(config_path, port, bot_environment(world, f"sqlite:///{tmp_path / 'chatops.db'}"),
                         tmp_path / "bot.log")
        try:
            await bot.ready()
            token = await asyncio.to_thread(read_token, world)
            async with httpx.AsyncClient(timeout=10) as http:
                control = world.url("control")
                spec = {"policy": POLICY, "condition": CONDITION, "service": SERVICE}
                opened = (await http.post(f"{control}/alerts/monitoring", json={**spec, "state": "open"})).json()
                world.limits.patch("monitoring_webhook", {"token_auth": False, "basic_auth": True})
                closed = (await http.post(f"{control}/alerts/monitoring", json={**spec, "state": "closed"})).json()
                assert (opened["status"], closed["status"]) == (200, 200)
                webhook = f"{bot.url}/alerts/monitoring"
                forged = await http.post(webhook, params={"auth_token": token[:-1]}, json=opened["payload"])
                malformed = await http.post(webhook, params={"auth_token": token}, content=b"{")
                assert (forged.status_code, malformed.status_code) == (401, 400)
                for _ in range(200):  # the incident engine threads it in the service's alert channel
                    if f"{SERVICE}: open incident #" in everything_slack_shows(world) or \
                            f"{SERVICE}: resolved incident #" in everything_slack_shows(world):
                        break
                    await asyncio.sleep(0.05)
        finally:
            bot.stop()
            await world.stop()
        log = bot.log_path.read_text()
        assert f"{SERVICE}: " in everything_slack_shows(world) and "incident #" in everything_slack_shows(world), \
            "the alert reached its incident thread"
        assert "refused a Cloud Monitoring notification without valid credentials" in log
        assert token not in log
        assert REDACTED not in log, "nothing even tried to log a secret (the redactor would have hidden it)"
        assert token not in everything_slack_shows(world)


async def test_a_webhook_token_too_short_to_resist_guessing_stops_start_up(example_config: Config) -> None:
    """A new version of the secret is what the bot reads at its next start ("an alias to the most recently created
    SecretVersion", https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets.versions/access)."""
    config = webhook_on(example_config)
    world = World(config, WorldOptions())
    await world.start()
    try:
        env = Environment.from_env(bot_environment(world, "sqlite://"))
        assert (await asyncio.to_thread(fetch_credentials, config, env)).monitoring_webhook_token == \
            await asyncio.to_thread(read_token, world)
        world.secret_manager.put(config.secrets.monitoring_webhook_token, b"hunter2")
        with pytest.raises(SecretsUnavailable, match="too short to authenticate Cloud Monitoring's webhook"):
            await asyncio.to_thread(fetch_credentials, config, env)
    finally:
        await world.stop()
