"""A whole bot in a whole world, for scenario tests: signed Slack requests in, Slack messages and Cloud Run
traffic out. The bot is the real `bot.app.build` served by uvicorn; it reads its credentials from the
emulated Secret Manager and talks to every emulator over HTTP, as it would in production."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bot.adapters.outbox import rollout_thread
from bot.adapters.secrets import fetch_credentials
from bot.adapters.store import Store, StoredRollout
from bot.app import Bot, build
from bot.config import Config
from bot.domain.monitoring_alert import OnAlert
from bot.environment import Environment
from bot.runbooks import runbooks_beside
from sandbox.runner import bot_environment
from sandbox.world import World, WorldOptions

ROOT = Path(__file__).resolve().parents[2]


class _QuietServer(uvicorn.Server):
    """uvicorn inside the test's event loop; the test runner owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Scenario:
    world: World
    bot: Bot
    bot_url: str
    http: httpx.AsyncClient

    @property
    def user_side(self) -> str:
        return self.world.url("slack_user")

    @property
    def control(self) -> str:
        return self.world.url("control")

    def channel(self, name: str) -> str:
        return self.world.workspace.channel_named(name).id

    async def command(self, user: str, text: str, channel: str = "deploys", **extra: Any) -> dict[str, Any]:
        """Type a slash command as `user`; returns Slack's view of the bot's HTTP answer."""
        command, _, rest = text.partition(" ")
        response = await self.http.post(f"{self.user_side}/commands", json={
            "user": user, "channel": channel, "command": command, "text": rest, **extra})
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    async def messages(self, user: str, channel: str = "deploys") -> list[dict[str, Any]]:
        response = await self.http.get(f"{self.user_side}/messages", params={"channel": channel, "user": user})
        response.raise_for_status()
        seen: list[dict[str, Any]] = response.json()
        return seen

    async def wait_for(self, user: str, found: Callable[[dict[str, Any]], bool], channel: str = "deploys",
                       timeout: float = 10.0, after: str = "0") -> dict[str, Any]:
        """The first message after ts `after` that `found` accepts, as soon as it appears."""
        deadline = time.monotonic() + timeout
        while True:
            for message in await self.messages(user, channel):
                if float(message["ts"]) > float(after) and found(message):
                    return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no such message in #{channel} within {timeout} s")
            await asyncio.sleep(0.05)

    async def latest_ts(self, user: str = "oncall", channel: str = "deploys") -> str:
        seen = await self.messages(user, channel)
        return str(seen[-1]["ts"]) if seen else "0"

    def runbook_link(self, text: str, runbook: str, step: str) -> str:
        """The signed link to a runbook step that a message carries (`<bot>/runbooks/<runbook>?sig=...#<step>`)."""
        found = re.search(rf"{re.escape(self.bot_url)}/runbooks/{re.escape(runbook)}\?sig=[\w-]+#{re.escape(step)}",
                          text)
        if found is None:
            raise AssertionError(f"no link to {runbook}#{step} in: {text[:500]}")
        return found.group(0)

    async def behave(self, revision: str, **behaviour: Any) -> None:
        (await self.http.patch(f"{self.control}/revisions/{revision}", json=behaviour)).raise_for_status()

    def serving_revision(self, service: str) -> str:
        return str(self.world.run.services[service].traffic_statuses[0]["revision"])

    def routed(self, service: str) -> dict[str, int]:
        """What Cloud Run routes now: revision -> percent, and the tags, as the sandbox serves them."""
        return self.world.run.routed_share(service)

    def tags(self, service: str) -> dict[str, str]:
        return {s["tag"]: s["revision"] for s in self.world.run.services[service].traffic_statuses if s.get("tag")}

    async def declare(self, image: str, **behaviour: Any) -> None:
        (await self.http.post(f"{self.control}/images", json={"image": image, **behaviour})).raise_for_status()

    async def until(self, found: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not await found():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what}")
            await asyncio.sleep(0.05)

    async def rollout_state(self, service: str, *states: str, timeout: float = 30.0) -> StoredRollout:
        """Wait until the service's latest rollout is in one of `states`; returns it."""
        latest: list[StoredRollout] = []

        async def reached() -> bool:
            latest[:] = await asyncio.to_thread(self.bot.runtime.store.rollouts, service=service, limit=1)
            return bool(latest) and latest[0].rollout.state.value in states and latest[0].rollout.pending is None

        await self.until(reached, timeout, f"{service}'s rollout reaching {states}")
        thread = rollout_thread(latest[0].rollout.id)

        async def told() -> bool:
            return await asyncio.to_thread(self.bot.outbox.outbox.pending, thread) == 0

        await self.until(told, timeout, f"the outbox sending what {service}'s rollout said")
        stored = await asyncio.to_thread(self.bot.runtime.store.rollout, latest[0].rollout.id)
        assert stored is not None
        return stored

    async def thread(self, stored: StoredRollout, user: str = "oncall") -> list[dict[str, Any]]:
        seen = await self.messages(user, "deploys")
        return [m for m in seen if m.get("thread_ts") == stored.message_ts and m["ts"] != stored.message_ts]

    async def rollout_message(self, stored: StoredRollout, user: str = "oncall") -> dict[str, Any]:
        seen = await self.messages(user, "deploys")
        return next(m for m in seen if m["ts"] == stored.message_ts)


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def fast(config: Config, window_s: float = 1.5, *, approvals: bool = False, **canary: Any) -> Config:
    """The same fleet with windows of seconds, checked often, so a whole canary takes a few seconds. A second
    person's approval (`services.*.approval`) is waived unless `approvals`: a test of something else would wait for
    that person forever."""
    defaults = config.defaults.model_copy(update={"canary": config.defaults.canary.model_copy(
        update={"window": window_s, "progress_deadline": 20.0, **canary})})
    waived: dict[str, Any] = {} if approvals else {"approval": None}
    services = {name: service.model_copy(update={"canary": service.canary.model_copy(update={"window": None}),
                                                 **waived})
                for name, service in config.services.items()}
    engine = config.engine.model_copy(update={"interval": 0.1, "lease": 5.0, "google_timeout": 2.0, "log_lag": 2.5})
    return config.model_copy(update={"defaults": defaults, "services": services, "engine": engine})


@contextlib.asynccontextmanager
async def serving(world: World, config: Config, database_url: str, sock: socket.socket, *, owner: str,
                  on_alert: OnAlert | None = None) -> AsyncIterator[Bot]:
    """One instance of the bot in the world, on `sock`: built by the real `build`, with its own store connection."""
    port = sock.getsockname()[1]
    env = Environment.from_env(bot_environment(world, database_url))
    credentials = await asyncio.to_thread(fetch_credentials, config, env)
    store = Store(str(env.database_url))
    await asyncio.to_thread(store.migrate)
    bot = build(config, env, credentials, store, runbooks_beside(ROOT / "chatops.example.yaml"),
                public_url=f"http://127.0.0.1:{port}", owner=owner, on_alert=on_alert)
    server = _QuietServer(uvicorn.Config(bot.web, log_config=None, access_log=False))
    running = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    try:
        yield bot
    finally:
        server.should_exit = True
        await running


@contextlib.asynccontextmanager
async def scenario(config: Config, tmp: Path, on_alert: OnAlert | None = None,
                   **options: Any) -> AsyncIterator[Scenario]:
    """`on_alert`, when given, receives the bot's Cloud Monitoring alerts instead of its incident engine."""
    sock = free_socket()
    port = sock.getsockname()[1]
    bot_url = f"http://127.0.0.1:{port}"
    # Cloud Run's revisions start and its routes settle in milliseconds instead of seconds; every published limit
    # (IAM, quotas, delays, Slack's rate tiers) stays at its default.
    world = World(config, WorldOptions(bot_urls=[bot_url], **{"start_ms": 60, "route_ms": 20, **options}))
    await world.start()
    try:
        async with serving(world, config, f"sqlite:///{tmp / 'chatops.db'}", sock, owner=f"test:{port}",
                           on_alert=on_alert) as bot, httpx.AsyncClient(timeout=10) as http:
            yield Scenario(world, bot, bot_url, http)
    finally:
        sock.close()
        await world.stop()
