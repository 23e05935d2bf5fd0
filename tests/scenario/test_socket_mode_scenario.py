"""The bot in Socket Mode, as a laptop or a network with no public URL runs it: the real `python -m bot serve
--socket-mode` as its own process, its app-level token read from Secret Manager, and Slack (the sandbox in Socket
Mode) delivering every command and click over the WebSocket the bot opened, never over HTTP
(https://docs.slack.dev/apis/events-api/using-socket-mode: "When you toggle Socket Mode on, you'll only receive
events and interactive payloads over your WebSocket connections—not over HTTP")."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from bot.config import load_config
from sandbox.blockkit_text import text_of
from sandbox.runner import BotProcess, bot_environment, free_port, sandbox_config
from sandbox.world import World, WorldOptions
from tests.conftest import EXAMPLE_CONFIG

SERVICE = "prediction-coordinator"


@dataclass
class Laptop:
    world: World
    bot: BotProcess
    http: httpx.AsyncClient

    async def command(self, text: str, user: str = "oncall") -> dict[str, Any]:
        command, _, rest = text.partition(" ")
        answer: dict[str, Any] = (await self.http.post(f"{self.world.url('slack_user')}/commands", json={
            "user": user, "channel": "deploys", "command": command, "text": rest})).json()
        return answer

    async def texts(self) -> list[str]:
        seen = (await self.http.get(f"{self.world.url('slack_user')}/messages",
                                    params={"channel": "deploys", "user": "oncall"})).json()
        return [text_of(m) for m in seen]


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
async def laptop(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Laptop]:
    tmp = tmp_path_factory.mktemp("socket")
    config = sandbox_config(EXAMPLE_CONFIG, tmp, window_s=2.0)
    data = yaml.safe_load(config.read_text())
    data["defaults"]["canary"]["stages"] = [5, 100]
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    port = free_port()
    # bot_urls names the bot's port: a user side that posted over HTTP would reach it, and be answered 404.
    world = World(load_config(config), WorldOptions(socket_mode=True, bot_urls=[f"http://127.0.0.1:{port}"],
                                                    requests_per_s=200, start_ms=60, route_ms=20))
    await world.start()
    bot = BotProcess(config, port, bot_environment(world, f"sqlite:///{tmp / 'chatops.db'}"), tmp / "bot.log",
                     args=["--socket-mode"])
    try:
        await bot.ready()
        async with httpx.AsyncClient(timeout=10) as http:
            yield Laptop(world, bot, http)
    finally:
        bot.stop()
        await world.stop()


async def test_deploy_over_socket_mode_with_the_http_route_closed(laptop: Laptop) -> None:
    assert laptop.world.socket_mode.connections == 1, "the bot opened its WebSocket before it said it was up"
    closed = await laptop.http.post(f"{laptop.bot.url}/slack/events", content=b"command=%2Fdeploy")
    assert closed.status_code == 404, "Slack's HTTP route is closed in Socket Mode"
    stable = laptop.world.run.services[SERVICE].traffic_statuses[0]["revision"]

    answer = await laptop.command(f"/deploy {SERVICE} tag=v3")
    assert answer["status"] == 200 and answer["error"] is None and "Deploying" in answer["body"], answer
    envelope = laptop.world.socket_mode.envelopes[-1]
    assert envelope["type"] == "slash_commands" and envelope["payload"]["command"] == "/deploy"

    def promoted() -> bool:
        routed = laptop.world.run.routed_share(SERVICE)
        return len(routed) == 1 and stable not in routed and laptop.world.run.services[SERVICE].traffic_statuses[
            0].get("tag") is None
    await until(promoted, 60, f"{SERVICE}:v3 serving 100%")
    texts = await laptop.texts()
    assert any("Deploying" in t for t in texts), "the ack's text, shown to the person who typed it"

    async def said(words: str) -> bool:
        return any(words in t for t in await laptop.texts())
    deadline = time.monotonic() + 20
    while not await said("serves 100% of traffic"):
        assert time.monotonic() < deadline, "the rollout's thread never said it was promoted"
        await asyncio.sleep(0.1)
    assert any("stage 5% passed" in t for t in await laptop.texts())


async def test_a_refresh_is_survived_and_the_next_command_answered(laptop: Laptop) -> None:
    socket = laptop.world.socket_mode
    told = (await laptop.http.post(f"{laptop.world.url('slack_user')}/socket/disconnect",
                                   json={"reason": "refresh_requested"})).json()
    assert told == {"ok": True, "told": 1}
    await until(lambda: socket.connections == 1, 20, "the bot's new connection")
    answer = await laptop.command(f"/health {SERVICE}")
    assert answer["status"] == 200 and answer["error"] is None, answer


async def test_a_command_missing_its_response_url_and_an_unroutable_click_are_answered_not_dropped(
        laptop: Laptop) -> None:
    """What the HTTP route refuses before Bolt (bot/slack_route.py) is answered over the socket too."""
    socket = laptop.world.socket_mode
    refused = await socket.deliver("slash_commands", {"command": "/health", "text": "all", "user_id": "U07ONCALL01",
                                                      "channel_id": laptop.world.workspace.channel_named("deploys").id,
                                                      "response_url": ""})
    assert refused.error is None and refused.payload is not None
    assert "this one has no response_url" in refused.payload["text"]
    click = await socket.deliver("interactive", {"type": "block_actions", "actions": [{"value": "no action_id"}],
                                                 "user": {"id": "U07ONCALL01"}})
    assert click.error is None, "a click Bolt cannot route is acknowledged, not left to time out"


async def test_sigterm_closes_the_socket_and_the_bot_exits_cleanly(laptop: Laptop) -> None:
    laptop.bot.process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then raises the signal again, so the exit status is SIGTERM's
    assert await asyncio.to_thread(laptop.bot.process.wait, 15) in (0, -signal.SIGTERM)
    await until(lambda: laptop.world.socket_mode.connections == 0, 5, "the WebSocket closed")
    text = await asyncio.to_thread(laptop.bot.log_path.read_text)
    log = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    stopping = next(i for i, line in enumerate(log) if line["message"] == "Waiting for application shutdown.")
    assert not [line for line in log[stopping:] if line["severity"] in ("WARNING", "ERROR", "CRITICAL")], (
        "a clean shutdown")
    assert any("gave up 0 rollout lease(s)" in line["message"] for line in log), "the hand-over ran"
