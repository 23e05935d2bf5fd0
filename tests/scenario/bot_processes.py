"""The bot as its own process (`chatops serve`) in a sandbox world, for the tests that kill it, stop it, restart
its database or start it against a failing Secret Manager: what another instance sees of a rollout's row, and
the figures those tests count."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import select

from bot.adapters.store import RolloutRow, Store
from bot.config import load_config
from bot.domain.rollout import Rollout
from sandbox.blockkit_text import text_of
from sandbox.runner import BotProcess, bot_environment, free_port, sandbox_config
from sandbox.world import World, WorldOptions
from tests import figures
from tests.conftest import EXAMPLE_CONFIG

STAGES = (5, 100)
"""Two canary stages rather than the example's three: every state a fault meets is still there (a stage at 5%, the
last at 100%, the promotion), in two thirds of the time."""


INJECTED = "faults injected into Google and Slack calls (POST /faults)"
HIT = "calls that met an injected fault"
CONVERGED = "rollouts that converged through faults, kills and restarts"



def hits(world: World, fault_id: int) -> int:
    """How many calls the fault has hit so far."""
    return next(int(f["hits"]) for f in world.faults.listing() if f["id"] == fault_id)


WRITES = ("CreateService", "UpdateService", "DeleteService", "DeleteRevision")


@dataclass(frozen=True)
class Row:
    """A rollout's row as another instance sees it: the rollout, who holds it until when, and its message."""

    rollout: Rollout
    open: bool
    lease_owner: str | None
    lease_expires_at: datetime | None
    message_ts: str | None

    @classmethod
    def of(cls, row: RolloutRow) -> Row:
        return cls(row.stored().rollout, row.open, row.lease_owner, row.lease_expires_at, row.message_ts)

    @property
    def state(self) -> str:
        return self.rollout.state.value


@dataclass
class Processes:
    """A world and the bot in it as its own process. A bot that dies is replaced by one on another port, so under
    another CHATOPS_INSTANCE_ID (BotProcess names the instance after its port), as Cloud Run starts a new instance."""

    world: World
    config: Path
    env: dict[str, str]
    log: Path
    store: Store
    http: httpx.AsyncClient
    bot: BotProcess
    takeovers: list[float] = field(default_factory=list)  # seconds after the dead instance's lease ran out

    @property
    def owner(self) -> str:
        return f"sandbox-bot:{self.bot.url.rsplit(':', 1)[1]}"

    async def command(self, text: str) -> None:
        command, _, rest = text.partition(" ")
        answer = await self.http.post(f"{self.world.url('slack_user')}/commands", json={
            "user": "oncall", "channel": "deploys", "command": command, "text": rest})
        assert answer.json()["status"] == 200

    async def fault(self, **fault: Any) -> int:
        response = await self.http.post(f"{self.world.url('control')}/faults", json=fault)
        assert response.status_code == 201, response.text
        figures.count(INJECTED)
        fault_id: int = response.json()["id"]
        return fault_id

    async def row(self, service: str) -> Row | None:
        def read() -> Row | None:
            query = select(RolloutRow).where(RolloutRow.service == service).order_by(RolloutRow.id.desc()).limit(1)
            with self.store.reading() as session:
                found = session.scalars(query).first()
                return Row.of(found) if found else None

        return await asyncio.to_thread(read)

    async def reach(self, service: str, check: Callable[[Row], bool], what: str, timeout: float = 40) -> Row:
        deadline = time.monotonic() + timeout
        while True:
            found = await self.row(service)
            if found is not None and check(found):
                return found
            assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
            await asyncio.sleep(0.05)

    def share(self, service: str, candidate: str) -> int:
        return self.world.run.routed_share(service).get(candidate, 0)

    async def replace_bot(self) -> None:
        self.bot.stop()
        self.bot = BotProcess(self.config, free_port(), self.env, self.log)
        await self.bot.ready()

    async def kill_and_replace(self, service: str) -> str:
        """SIGKILL the bot; a new instance must wait out the lease the dead one held before it acts on the
        rollout. Returns the state the rollout was killed in."""
        held = await self.row(service)
        assert held is not None and held.lease_expires_at is not None and held.lease_owner == self.owner
        os.kill(self.bot.process.pid, signal.SIGKILL)
        self.bot.process.wait()
        figures.count("bot instances killed (SIGKILL) mid-rollout, then taken over by a new instance id")
        killed, expiry = time.time(), held.lease_expires_at.timestamp()
        figures.count(HIT, sum(fault.hits for fault in self.world.faults.clear()))
        await self.replace_bot()
        await self.reach(service, lambda r: r.lease_owner == self.owner or not r.open, "the new instance's claim")
        taken = time.time()
        assert taken >= expiry, f"taken over {expiry - taken:.2f} s before the dead instance's lease ran out"
        early = [c for c in self.world.run.calls if c.method in WRITES and killed < c.at < expiry]
        assert not early, f"Cloud Run written while the dead instance's lease held: {early}"
        self.takeovers.append(taken - expiry)
        return held.state

    async def messages(self) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = (await self.http.get(f"{self.world.url('slack_user')}/messages",
                                                          params={"channel": "deploys", "user": "oncall"})).json()
        return seen

    async def _thread_once_quiet(self, parent: str, quiet: float = 1.5) -> list[str]:
        """The thread's replies once nothing more has come for `quiet` seconds: what the living instance had
        queued is out (Slack takes a post a second)."""
        replies: list[str] = []
        still = time.monotonic()
        while time.monotonic() - still < quiet:
            await asyncio.sleep(0.25)
            now = [str(m["text"]) for m in await self.messages() if m.get("thread_ts") == parent and m["ts"] != parent]
            if now != replies:
                replies, still = now, time.monotonic()
        return replies

    async def reported(self, outcome: str, timeout: float = 40) -> list[str]:
        """The replies in the thread of the one rollout message, once that message shows `outcome` (Slack takes
        a post a second, so the thread may still be filling)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = await self.messages()
            parents = [m for m in seen if m["kind"] == "message" and "rollout #" in text_of(m)]
            assert len(parents) <= 1, "the rollout has one message, whichever instance reported it"
            if parents and outcome in str(parents[0]["text"]):
                return await self._thread_once_quiet(parents[0]["ts"])
            assert time.monotonic() < deadline, f"not within {timeout} s: the rollout message showing {outcome!r}"
            await asyncio.sleep(0.1)


def process_config(tmp: Path, lease_s: float) -> Path:
    """The sandbox's bot config (windows of 2 s) with STAGES, its lease shortened so a takeover is seconds away."""
    path = sandbox_config(EXAMPLE_CONFIG, tmp, window_s=2.0)
    data = yaml.safe_load(path.read_text())
    data["defaults"]["canary"]["stages"] = list(STAGES)
    data["engine"].update({"lease": lease_s, "google_timeout": lease_s / 2.5})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextlib.asynccontextmanager
async def processes(tmp: Path, *, lease_s: float, database_url: str | None = None) -> AsyncIterator[Processes]:
    config = process_config(tmp, lease_s)
    port = free_port()
    world = World(load_config(config), WorldOptions(bot_urls=[f"http://127.0.0.1:{port}"], requests_per_s=40,
                                                    start_ms=60, route_ms=20))
    await world.start()
    url = database_url or f"sqlite:///{tmp / 'chatops.db'}"
    env = bot_environment(world, url)
    bot = BotProcess(config, port, env, tmp / "bot.log")
    store = Store(url)
    running: Processes | None = None
    try:
        await bot.ready()
        async with httpx.AsyncClient(timeout=10) as http:
            running = Processes(world, config, env, tmp / "bot.log", store, http, bot)
            yield running
    finally:
        (running.bot if running else bot).stop()  # the instance running now, also when the test failed
        store.close()
        figures.count(HIT, sum(int(fault["hits"]) for fault in world.faults.listing()))
        await world.stop()


def candidate_history(p: Processes, service: str, candidate: str) -> list[int]:
    return [split.get(candidate, 0) for split in p.world.run.traffic_history(service)]


