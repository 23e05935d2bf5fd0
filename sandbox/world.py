"""The whole emulated world on 127.0.0.1, assembled from the bot's config.

Each emulator gets its own port, as each Google API and Slack has its own host. The Slack bot token
and signing secret are generated here and handed only to Secret Manager and to the emulated Slack:
the bot must fetch them from Secret Manager like it does in production. The key that signs runbook links is
generated here too and kept only in Secret Manager: nothing in the world needs it, and a test that wants it
reads it there, as an operator with secretAccessor would. So is the token of Cloud Monitoring's webhook channel,
which the channel (`monitoring_alerts`) holds as its configuration, as Google's does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config import Config
from sandbox import artifact_registry, cloudrun_api, logging_api, monitoring_api, secretmanager, slack_api
from sandbox.access_tokens import AccessTokens
from sandbox.artifact_registry import ArtifactRegistry, artifact_registry_app
from sandbox.behaviour import Behaviour, Behaviours
from sandbox.cloudrun import CloudRun
from sandbox.cloudrun_api import cloudrun_app
from sandbox.cloudrun_rules import CloudRunLimits
from sandbox.control import control_app
from sandbox.faults import Api, Faults
from sandbox.fleet import Fleet, ServiceSpec, fleet_app
from sandbox.iam import Iam
from sandbox.idtoken import IdentityLimits, IdTokenIssuer
from sandbox.limits import Limits
from sandbox.logging_api import ReadQuota, logging_app
from sandbox.logstore import LogStore
from sandbox.metadata import MetadataServer, metadata_app
from sandbox.monitoring_alerts import ChannelLimits, MonitoringAlerts
from sandbox.monitoring_api import MonitoringGrpc, MonitoringLimits, monitoring_app
from sandbox.secretmanager import SecretManager, secretmanager_app
from sandbox.serving import Listener, start, stop
from sandbox.slack_api import slack_api_app
from sandbox.slack_limits import SlackLimits
from sandbox.slack_scopes import manifest_bot_scopes
from sandbox.slack_socket import SocketMode, app_token
from sandbox.slack_user import slack_user_app
from sandbox.slack_workspace import Workspace
from sandbox.traffic import TrafficSimulator


@dataclass
class WorldOptions:
    ports: dict[str, int] = field(default_factory=dict)
    bot_urls: list[str] = field(default_factory=list)
    # Overrides of the cloud_run limit figures revision_start_ms / route_ms (None: the published defaults).
    start_ms: float | None = None
    route_ms: float | None = None
    latency_ms: float = 20.0
    requests_per_s: float = 4.0
    traffic_tick: float = 0.5
    slack_rate_per_s: float = 1.0
    slack_burst: int = 5
    # The app in Socket Mode: Slack delivers commands and clicks over the bot's WebSocket, never to bot_urls.
    socket_mode: bool = False


PUBLIC_SERVICES = frozenset({"nba-admin-dashboard"})
"""Services open to allUsers. The seeds do not say which services are public, so this is a realistic mix:
the admin dashboard is a web UI guarded by its own API key (seeds: ADMIN_DASHBOARD_API_KEY); the workers and
processors are triggered by Pub/Sub push or Cloud Scheduler and the coordinator checks "GCP identity
tokens", so they stay private, Cloud Run's default."""


def _bot_token() -> str:
    return f"xoxb-{secrets.randbelow(10**12):012d}-{secrets.randbelow(10**13):013d}-{secrets.token_urlsafe(18)}"


class World:
    def __init__(self, config: Config, options: WorldOptions | None = None) -> None:
        self.config = config
        self.options = options or WorldOptions()
        self.listeners: dict[str, Listener] = {}
        self.limits = Limits()
        self.faults = Faults([Api("Cloud Run Admin API v2", "google", cloudrun_api.METHODS),
                              Api("Secret Manager v1", "google", secretmanager.METHODS),
                              Api("Cloud Logging v2", "google", logging_api.METHODS),
                              Api("Cloud Monitoring v3", "google", monitoring_api.METHODS),
                              Api("Artifact Registry v1", "google", artifact_registry.METHODS),
                              Api("Slack Web API", "slack", slack_api.METHODS)])
        self._bot_token = _bot_token()
        self._signing_secret = secrets.token_hex(16)
        self.behaviours = Behaviours(default=Behaviour(latency_ms=self.options.latency_ms))
        self.logs = LogStore()
        self.limits.register("logging", self.logs.limits)
        self.monitoring_limits = MonitoringLimits()
        self.limits.register("monitoring", self.monitoring_limits)
        self.iam = Iam(config.project, config.region)
        self.service_account = self.iam.email
        self.identity_limits = IdentityLimits()
        self.limits.register("identity", self.identity_limits)
        self.id_tokens = IdTokenIssuer(self.identity_limits)
        self._tasks: list[asyncio.Task[None]] = []
        self._fleet_url = ""
        self.cloud_run_limits = CloudRunLimits()
        if self.options.start_ms is not None:
            self.cloud_run_limits.revision_start_ms = self.options.start_ms
        if self.options.route_ms is not None:
            self.cloud_run_limits.route_ms = self.options.route_ms
        self.limits.register("cloud_run", self.cloud_run_limits)
        self.run = CloudRun(config.project, config.region, url_for=lambda host: f"{self._fleet_url}/{host}",
                            behaviour_of=self.behaviours.of, limits=self.cloud_run_limits, iam=self.iam)
        self.fleet = Fleet(self.run, self.behaviours, {
            name: ServiceSpec(checks=tuple(service.checks) or ("bigquery",),
                              liveness=config.health_for(name).liveness,
                              readiness=config.health_for(name).readiness,
                              deep=config.health_for(name).deep,
                              requests_per_s=self.options.requests_per_s)
            for name, service in config.services.items()
        }, verify=self.id_tokens.verify, may_invoke=self.iam.may_invoke)
        # The access tokens the metadata server issues are the only credentials the Google APIs accept.
        self.access_tokens = AccessTokens(lifetime_s=lambda: self.identity_limits.access_token_lifetime_s)
        self.metadata = MetadataServer(config.project, self.run.project_number, config.region, self.service_account,
                                       self.id_tokens, self.access_tokens)
        self.registry = ArtifactRegistry(authorize=self.iam.authorize)
        self.secret_manager = SecretManager(config.project, self.run.project_number, authorize=self.iam.authorize)
        self.secret_manager.put(config.secrets.slack_bot_token, self._bot_token.encode())
        self.secret_manager.put(config.secrets.slack_signing_secret, self._signing_secret.encode())
        # 32 random bytes, base64url: what `openssl rand -base64 32` gives an operator, and RFC 2104's minimum
        # key length for SHA-256 (https://www.ietf.org/rfc/rfc2104, section 2).
        self.secret_manager.put(config.secrets.runbook_link_key, secrets.token_urlsafe(32).encode())
        webhook_token = secrets.token_urlsafe(32)
        self.secret_manager.put(config.secrets.monitoring_webhook_token, webhook_token.encode())
        # The app-level token (connections:write) a Socket Mode bot opens its WebSocket with.
        self._app_token = app_token()
        self.secret_manager.put(config.secrets.slack_app_token, self._app_token.encode())
        self.socket_mode = SocketMode(self._app_token, bot_token=self._bot_token, enabled=self.options.socket_mode)
        self.channel_limits = ChannelLimits()
        self.limits.register("monitoring_webhook", self.channel_limits)
        self.monitoring_alerts = MonitoringAlerts(config.project, self.run.project_number, config.region,
                                                  token=webhook_token, bot_urls=self.options.bot_urls,
                                                  revision_of=self._serving_revision, limits=self.channel_limits)
        self.workspace = Workspace(bot_token=self._bot_token, channels=config.slack.channels,
                                   scopes=manifest_bot_scopes(),
                                   limits=SlackLimits(post_per_channel_per_s=self.options.slack_rate_per_s,
                                                      post_burst=self.options.slack_burst))
        self.limits.register("slack", self.workspace.limits)
        self.traffic = TrafficSimulator(self.fleet, self.logs, tick=self.options.traffic_tick)
        self.logging_quota = ReadQuota(self.logs.limits, self.run.project_number)
        self.monitoring = MonitoringGrpc(lambda: self.traffic.records, config.project, self.run.project_number,
                                         config.region, limits=self.monitoring_limits, authorize=self.iam.authorize,
                                         faults=self.faults, tokens=self.access_tokens)

    @property
    def signing_secret(self) -> str:
        """For tests and benches that play Slack themselves; never printed or written anywhere."""
        return self._signing_secret

    @property
    def bot_token(self) -> str:
        return self._bot_token

    @property
    def app_token(self) -> str:
        return self._app_token

    def _seed(self) -> None:
        for name, service in self.config.services.items():
            images = [f"{service.image}:v1", f"{service.image}:v2"]
            self.run.seed_service(name, images, description=service.description)
            for index, image in enumerate(images):  # pushed an hour before each seeded deploy (seed_service's days)
                self.registry.push(image, upload_time=time.time() - 86400 * (len(images) - index) - 3600)
            if name in PUBLIC_SERVICES:
                self.iam.bind(name, "roles/run.invoker", "allUsers")
            else:
                # An operator grants the bot's account the invoker role on each private service it probes.
                self.iam.bind(name, "roles/run.invoker", self.iam.member)

    def _serving_revision(self, service: str) -> str | None:
        """The revision taking most of the service's traffic: the one an alert on the service is about."""
        if service not in self.run.services:
            return None
        shares = self.run.routed_share(service)
        return max(shares, key=lambda revision: shares[revision]) if shares else None

    def url(self, name: str) -> str:
        return self.listeners[name].url

    async def start(self) -> dict[str, Any]:
        """Start every emulator; returns what the endpoints file holds."""
        ports = self.options.ports
        fleet = await start(Listener("fleet", fleet_app(self.fleet), ports.get("fleet", 0)))
        self.listeners["fleet"] = fleet
        self._fleet_url = fleet.url
        self._seed()
        apps = {
            "cloud_run": cloudrun_app(self.run, self.faults, self.access_tokens),
            "secret_manager": secretmanager_app(self.secret_manager, self.faults, self.access_tokens),
            "artifact_registry": artifact_registry_app(self.registry, self.faults, self.access_tokens),
            "logging": logging_app(self.logs, consumer_number=self.run.project_number, authorize=self.iam.authorize,
                                   quota=self.logging_quota, faults=self.faults, tokens=self.access_tokens),
            "monitoring": monitoring_app(lambda: self.traffic.records, self.config.project, self.run.project_number,
                                         self.config.region, limits=self.monitoring_limits,
                                         authorize=self.iam.authorize, faults=self.faults, tokens=self.access_tokens),
            "slack_api": slack_api_app(self.workspace, self.faults, self.socket_mode),
            "metadata": metadata_app(self.metadata),
            "control": control_app(self.run, self.behaviours, self.fleet, self.limits, self._extra_state,
                                   iam=self.iam, alerts=self.monitoring_alerts, faults=self.faults,
                                   registry=self.registry),
        }
        for name, app in apps.items():
            self.listeners[name] = await start(Listener(name, app, ports.get(name, 0)))
        user_app = slack_user_app(self.workspace, signing_secret=self._signing_secret,
                                  bot_urls=self.options.bot_urls, api_url=self.url("slack_api"),
                                  socket_mode=self.socket_mode)
        self.listeners["slack_user"] = await start(Listener("slack_user", user_app, ports.get("slack_user", 0)))
        await self.monitoring.start(ports.get("monitoring_grpc", 0))
        self._tasks.append(asyncio.create_task(self.traffic.run(), name="traffic"))
        return self.endpoints()

    def _extra_state(self) -> dict[str, Any]:
        return {"log_entries": len(self.logs), "secret_accesses": len(self.secret_manager.accesses),
                "logging_reads": {"served": self.logging_quota.served, "refused": self.logging_quota.refused},
                "monitoring_queries": len(self.monitoring.calls),
                "artifact_registry_reads": len(self.registry.calls),
                "id_tokens_issued": self.metadata.identity_requests, "fleet_refused": self.fleet.refused,
                "slack_api": dict(self.workspace.calls),
                "monitoring_notifications": list(self.monitoring_alerts.sent[-500:])}

    def endpoints(self) -> dict[str, Any]:
        urls = {name: listener.url for name, listener in self.listeners.items()}
        return {
            "slack_api_url": f"{urls['slack_api']}/api/",
            "slack_user_url": urls["slack_user"],
            "cloud_run_endpoint": urls["cloud_run"],
            "secret_manager_endpoint": urls["secret_manager"],
            "artifact_registry_endpoint": urls["artifact_registry"],
            "logging_endpoint": urls["logging"],
            "monitoring_endpoint": f"127.0.0.1:{self.monitoring.port}",
            "monitoring_rest_endpoint": urls["monitoring"],
            "control_url": urls["control"],
            "fleet_url": urls["fleet"],
            "metadata_url": urls["metadata"],
            "project": self.config.project,
            "region": self.config.region,
            "channels": {c.name: c.id for c in self.workspace.channels.values()},
            "users": {u.name: u.id for u in self.workspace.users.values()},
            "socket_mode": self.options.socket_mode,
        }

    async def stop(self) -> None:
        self.faults.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.run.close()
        await self.socket_mode.stop()
        await self.monitoring.stop()
        for listener in reversed(list(self.listeners.values())):
            await stop(listener)


def write_endpoints(path: str | Path, endpoints: dict[str, Any]) -> None:
    """Write atomically, so a reader polling for the file never sees half of it."""
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(endpoints, indent=2) + "\n")
    os.replace(partial, target)
