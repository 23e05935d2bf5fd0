"""A whole bot in a whole world, for scenario tests: signed Slack requests in, Slack messages and Cloud Run
traffic out. The bot is the real `bot.app.build` served by uvicorn; it reads its credentials from the
emulated Secret Manager and talks to every emulator over HTTP, as it would in production."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bot.adapters.secrets import fetch_slack_credentials
from bot.adapters.store import Store
from bot.app import Bot, build
from bot.config import Config
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

    async def behave(self, revision: str, **behaviour: Any) -> None:
        (await self.http.patch(f"{self.control}/revisions/{revision}", json=behaviour)).raise_for_status()

    def serving_revision(self, service: str) -> str:
        return str(self.world.run.services[service].traffic_statuses[0]["revision"])


def _free_port() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def scenario(config: Config, tmp: Path, **options: Any) -> AsyncIterator[Scenario]:
    sock = _free_port()
    port = sock.getsockname()[1]
    bot_url = f"http://127.0.0.1:{port}"
    world = World(config, WorldOptions(bot_urls=[bot_url], **{"start_ms": 60, "route_ms": 20, "slack_rate_per_s": 50,
                                                               "slack_burst": 50, **options}))
    await world.start()
    env = Environment.from_env(bot_environment(world, f"sqlite:///{tmp / 'chatops.db'}"))
    credentials = await asyncio.to_thread(fetch_slack_credentials, config, env)
    store = Store(str(env.database_url))
    await asyncio.to_thread(store.migrate)
    bot = build(config, env, credentials, store, runbooks_beside(ROOT / "chatops.example.yaml"), public_url=bot_url)
    server = _QuietServer(uvicorn.Config(bot.web, log_config=None, access_log=False))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            yield Scenario(world, bot, bot_url, http)
    finally:
        server.should_exit = True
        await serving
        sock.close()
        await world.stop()
