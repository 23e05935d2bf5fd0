"""The bot killed with SIGKILL in the middle of a canary stage, then started again: the rollout carries on
from its row and the live service, and finishes as if nothing had happened."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bot.config import load_config
from sandbox.blockkit_text import text_of
from sandbox.runner import BotProcess, bot_environment, free_port, sandbox_config
from sandbox.world import World, WorldOptions
from tests.conftest import EXAMPLE_CONFIG

SERVICE = "prediction-coordinator"


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)


async def test_a_bot_killed_mid_stage_resumes_from_the_row_and_finishes(tmp_path: Path) -> None:
    config_path = sandbox_config(EXAMPLE_CONFIG, tmp_path, window_s=3.0)
    port = free_port()
    world = World(load_config(config_path), WorldOptions(bot_urls=[f"http://127.0.0.1:{port}"], requests_per_s=40,
                                                         start_ms=60, route_ms=20))
    await world.start()
    env = bot_environment(world, f"sqlite:///{tmp_path / 'chatops.db'}")
    bot = BotProcess(config_path, port, env, tmp_path / "bot.log")
    try:
        await bot.ready()
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(f"{world.url('slack_user')}/commands", json={
                "user": "oncall", "channel": "deploys", "command": "/deploy", "text": f"{SERVICE} tag=v3"})
            assert answer.json()["status"] == 200
            stable = world.run.routed_share(SERVICE)

            def candidate_share() -> int:
                return next((p for r, p in world.run.routed_share(SERVICE).items() if r not in stable), 0)

            await until(lambda: candidate_share() == 5, 20, "the candidate at 5%")
            os.kill(bot.process.pid, signal.SIGKILL)
            bot.process.wait()
            await asyncio.sleep(1.0)
            assert candidate_share() == 5, "traffic stays as the dead bot left it"

            bot.stop()
            bot = BotProcess(config_path, port, env, tmp_path / "bot.log")
            await bot.ready()
            await until(lambda: candidate_share() == 100 and not any(
                s.get("tag") for s in world.run.services[SERVICE].traffic_statuses), 40, "promotion after restart")

            seen: list[dict[str, object]] = []

            async def promoted_said() -> bool:
                """The message says promoted and its thread the promotion (Slack takes a post a second)."""
                seen[:] = (await http.get(f"{world.url('slack_user')}/messages",
                                          params={"channel": "deploys", "user": "oncall"})).json()
                return any(m["kind"] == "message" and "promoted" in str(m["text"]) for m in seen) and any(
                    "serves 100% of traffic" in str(m["text"]) for m in seen)

            deadline = time.monotonic() + 30
            while not await promoted_said():
                assert time.monotonic() < deadline, "the rollout message and thread never said promoted"
                await asyncio.sleep(0.05)
    finally:
        bot.stop()
        await world.stop()
    rollout_messages = [m for m in seen if m["kind"] == "message" and "rollout #" in text_of(m)]
    assert len(rollout_messages) == 1, "the restarted bot updates the same message instead of posting another"
    assert "promoted" in rollout_messages[0]["text"]
    parent = rollout_messages[0]["ts"]
    replies = [m["text"] for m in seen if m.get("thread_ts") == parent and m["ts"] != parent]
    assert sum(str(r).startswith("stage 5% passed") for r in replies) == 1, "no stage is reported twice"
    assert any(str(r).startswith("stage 100% passed") for r in replies)
    history = [split.get(r, 0) for split in world.run.traffic_history(SERVICE)
               for r in split if r not in stable]
    assert max(history) == 100
