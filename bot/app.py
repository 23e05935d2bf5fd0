"""Composition root: config + adapters + Bolt app + web app, and nothing else."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from starlette.applications import Starlette

from bot.adapters.cloudrun import CloudRunGateway
from bot.adapters.prober import Prober
from bot.adapters.secrets import SlackCredentials
from bot.adapters.slack import SlackGateway
from bot.adapters.store import Store
from bot.config import Config
from bot.environment import Environment
from bot.runbooks import Runbooks
from bot.web import web_app
from commands.framework import Command, Runtime, handle
from commands.registry import all_commands

log = logging.getLogger(__name__)


@dataclass
class Bot:
    runtime: Runtime
    bolt: AsyncApp
    web: Starlette

    async def aclose(self) -> None:
        await self.runtime.prober.aclose()
        await self.runtime.slack.aclose()
        self.runtime.store.close()


def _listener(command: Command[Any], runtime: Runtime) -> Any:
    async def listener(ack: AsyncAck, body: dict[str, Any]) -> None:
        await handle(command, body, ack, runtime)

    return listener


def build(config: Config, env: Environment, credentials: SlackCredentials, store: Store, runbooks: Runbooks,
          *, public_url: str) -> Bot:
    slack = SlackGateway(credentials.bot_token, base_url=env.slack_api_url)
    runtime = Runtime(
        config=config,
        slack=slack,
        prober=Prober(concurrency=config.defaults.probe_concurrency),
        cloudrun=CloudRunGateway(config.project, config.region, env),
        store=store,
        runbooks=runbooks,
        runbook_base_url=(config.runbook_base_url or public_url).rstrip("/"),
    )
    bolt = AsyncApp(signing_secret=credentials.signing_secret, client=slack.client, process_before_response=False)
    commands = all_commands()
    for command in commands:
        bolt.command(command.slash)(_listener(command, runtime))

    async def unknown(ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack(text=f":grey_question: I don't know `{command.get('command', '')}`. `/help` lists what I can do.")

    bolt.command(re.compile(r"^/.+"))(unknown)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await bot.aclose()

    bot = Bot(runtime, bolt, web_app(bolt, runbooks, config.project, lifespan))
    return bot
