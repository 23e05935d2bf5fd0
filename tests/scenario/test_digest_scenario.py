"""Scheduled digests with two bot instances on one PostgreSQL: one post per fire time, and after a downtime that
spans a fire time, one late digest from whichever instance comes back (not every missed one); each with the week's
chart in its thread, once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.config import Config, Digest
from sandbox.blockkit_text import text_of
from sandbox.world import World, WorldOptions
from tests.postgres_schema import fresh_schema
from tests.scenario.harness import fast, free_socket, serving


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    with fresh_schema("chatops_digest") as url:
        yield url


def minutely(config: Config) -> Config:
    """One digest a minute to #platform; sweeps rare, so the digest probes the fleet itself."""
    alerts = config.defaults.alerts.model_copy(update={"interval": 3600.0})
    return config.model_copy(update={
        "digests": (Digest(name="minutely", channel="platform", cron="* * * * *", timezone="UTC"),),
        "defaults": config.defaults.model_copy(update={"alerts": alerts})})


def digests_in(world: World) -> list[str]:
    return [text_of(m) for m in world.workspace.seen_by(world.workspace.channel_named("platform").id, "U07ONCALL01")
            if m.get("kind") == "message" and "Health digest" in text_of(m)]


def week_charts(world: World) -> list[str]:
    """The week's charts shared in the digests' threads (bot/engine/digests.py), by the digest they answer."""
    return [str(m["thread_ts"]) for m in world.workspace.seen_by(world.workspace.channel_named("platform").id,
                                                                  "U07ONCALL01")
            if m.get("kind") == "reply" and any(f["title"].startswith("The week") for f in m.get("files") or [])]


async def until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.2)


async def test_two_instances_post_each_fire_time_once_and_a_restart_catches_up_once_late(
        example_config: Config, postgres_schema: str) -> None:
    config = minutely(fast(example_config))
    sockets = [free_socket(), free_socket()]
    urls = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    world = World(config, WorldOptions(bot_urls=urls, start_ms=60, route_ms=20))
    await world.start()
    try:
        async with serving(world, config, postgres_schema, sockets[0], owner="bot-a"), \
                serving(world, config, postgres_schema, sockets[1], owner="bot-b"):
            await until(lambda: digests_in(world), 75, "the first digest")
            first = datetime.now(UTC)
            await asyncio.sleep(4)
            assert len(digests_in(world)) == 1, "two instances fired; one posted"
            await until(lambda: len(week_charts(world)) == 1, 15, "the week's chart in the digest's thread")
        # Both instances are down across the next fire time (the next minute).
        await asyncio.sleep(62 - first.second)
        back = free_socket()
        async with serving(world, config, postgres_schema, back, owner="bot-c"):
            await until(lambda: len(digests_in(world)) >= 2, 20, "the catch-up digest")
            await asyncio.sleep(3)
            posted = digests_in(world)
        back.close()
    finally:
        for sock in sockets:
            sock.close()
        await world.stop()
    assert len(posted) == 2, "one late digest, not one per missed fire time"
    assert len(set(week_charts(world))) == len(week_charts(world)) == 2, "one chart in each digest's thread"
    assert "Late" in posted[1] and "Late" not in posted[0]
