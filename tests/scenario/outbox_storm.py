"""A storm for the outbox: several instances of the bot on one PostgreSQL schema, Slack answering 429 to a
share of all posts and redraws and losing the answer to some posts that landed, while incidents open and resolve
and rollouts run. Then the outbox is let drain, and Slack's channels are counted against the outbox table: each
post carries its row's id as message metadata, so every row has exactly one message, or it was lost or doubled.

Shared by the scenario test (seconds) and bench/outbox_429.py (minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from bot.adapters.slack import MARKER_EVENT
from bot.adapters.store import RolloutRow, Store
from bot.adapters.tables import OutboxRow
from bot.config import load_config
from sandbox.world import World, WorldOptions
from tests.postgres_schema import fresh_schema
from tests.scenario.harness import free_socket, serving
from tests.scenario.test_scale_out_scenario import cluster_config

DEPLOYED = ("prediction-coordinator", "nba-admin-dashboard")
"""Deployed over and over, one rollout of each at a time (their threads share #deploys)."""
BROKEN = {"prediction-worker": "gcs_model_file", "nba-grading-service": "bigquery"}
"""Broken and mended in turn: an incident thread each, in #predictions and #alerts."""
FLAP_S = 8.0
"""How long each broken service stays broken, then mended: long enough to open (3 failed sweeps a second apart)
and to resolve (2 passes)."""


@dataclass(frozen=True)
class Figures:
    rows: int
    """Outbox rows written (posts, replies and redraws)."""
    expected: int
    """Messages the rows ask for: posts and replies (a redraw changes one)."""
    posted: int
    """Of those, the rows whose message is in Slack (once or more)."""
    duplicates: int
    """Messages beyond the first with the same row id."""
    lost: int
    """Post and reply rows with no message in Slack."""
    unsent: int
    """Rows not marked sent when the outbox had drained (given up, or still pending at the deadline)."""
    stale: int
    """Threads whose first message does not show what was last drawn for it."""
    rate_limited: int
    """429s Slack answered by the fault (Slack's own rate limits answer more)."""
    answers_lost: int
    """Posts that landed and whose answer was lost."""
    rollouts: int
    incidents_flapped: int
    storm_s: float
    drain_s: float

    def lines(self) -> list[str]:
        return [f"messages expected           {self.expected}",
                f"messages posted             {self.posted}",
                f"duplicates                  {self.duplicates}",
                f"lost                        {self.lost}",
                f"rows not sent               {self.unsent}",
                f"threads drawn stale         {self.stale}",
                f"429s answered (fault)       {self.rate_limited}",
                f"answers lost after landing  {self.answers_lost}",
                f"outbox rows (incl. redraws) {self.rows}",
                f"rollouts started            {self.rollouts}",
                f"incident flaps              {self.incidents_flapped}",
                f"storm / drain               {self.storm_s:.0f} s / {self.drain_s:.0f} s"]


class Storm:
    def __init__(self, world: World, store: Store, http: httpx.AsyncClient) -> None:
        self.world = world
        self.store = store
        self.http = http
        self.rollouts = 0
        self.flaps = 0
        self._tags = itertools.count(1)

    async def control(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.request(method, f"{self.world.url('control')}{path}", json=body)
        assert response.status_code in (200, 201), response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def deploy(self, service: str) -> None:
        answer = (await self.http.post(f"{self.world.url('slack_user')}/commands", json={
            "user": "oncall", "channel": "deploys", "command": "/deploy",
            "text": f"{service} tag=storm{next(self._tags)}"})).json()
        assert answer["status"] == 200, answer
        self.rollouts += 1

    async def open_rollouts(self) -> set[str]:
        def read() -> set[str]:
            with self.store.reading() as session:
                return set(session.scalars(select(RolloutRow.service).where(RolloutRow.open)))

        return await asyncio.to_thread(read)

    async def set_broken(self, service: str, broken: bool) -> None:
        revision = str(self.world.run.services[service].traffic_statuses[0]["revision"])
        await self.control("PATCH", f"/revisions/{revision}", {"failing_checks": [BROKEN[service]] if broken else []})

    async def rollouts_loop(self, until: float) -> None:
        """Each deployed service is deployed again as soon as its last rollout has ended."""
        while time.monotonic() < until:
            running = await self.open_rollouts()
            for service in DEPLOYED:
                if service not in running:
                    await self.deploy(service)
            await asyncio.sleep(0.5)

    async def incidents_loop(self, until: float) -> None:
        broken = False
        while time.monotonic() < until:
            broken = not broken
            for service in BROKEN:
                await self.set_broken(service, broken)
            self.flaps += broken
            await asyncio.sleep(FLAP_S)
        for service in BROKEN:
            await self.set_broken(service, False)

    async def drained(self, timeout_s: float) -> None:
        """Every rollout ended, every incident resolved, and nothing left in the outbox, for a few seconds running
        (an incident resolves a few sweeps after it is mended, and a rollout's last reply comes after it ends)."""
        deadline = time.monotonic() + timeout_s
        quiet_since: float | None = None
        while True:
            busy = bool(await self.open_rollouts()) or await asyncio.to_thread(self.unsent_rows) > 0
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= 3.0:
                return
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.25)

    def unsent_rows(self) -> int:
        with self.store.reading() as session:
            return int(session.scalar(select(func.count()).select_from(OutboxRow)
                                      .where(OutboxRow.state.in_(("pending", "sending")))) or 0)

    def count(self, faults: dict[str, int], storm_s: float, drain_s: float) -> Figures:
        """The outbox table against every message in every channel, threads included."""
        with self.store.reading() as session:
            rows = list(session.execute(select(OutboxRow.id, OutboxRow.thread_key, OutboxRow.action,
                                               OutboxRow.state, OutboxRow.text).order_by(OutboxRow.id)))
        workspace = self.world.workspace
        marked: Counter[int] = Counter()
        text_of_first: dict[int, str] = {}
        for channel in workspace.channels:
            for parent in workspace.parents(channel):
                for message in (parent, *parent.replies):
                    metadata = message.metadata or {}
                    if metadata.get("event_type") == MARKER_EVENT:
                        marked[int(metadata["event_payload"]["id"])] += 1
                        text_of_first[int(metadata["event_payload"]["id"])] = message.text
        messages = [row for row in rows if row.action in ("post", "reply")]
        drawn: dict[str, str] = {}
        first_row: dict[str, int] = {}
        for row in rows:
            if row.action in ("post", "update"):
                drawn[row.thread_key] = row.text
            if row.action == "post":
                first_row.setdefault(row.thread_key, row.id)
        stale = sum(1 for key, first in first_row.items() if text_of_first.get(first, drawn[key]) != drawn[key])
        return Figures(
            rows=len(rows), expected=len(messages), posted=sum(1 for row in messages if marked[row.id]),
            duplicates=sum(n - 1 for n in marked.values() if n > 1),
            lost=sum(1 for row in messages if not marked[row.id]),
            unsent=sum(1 for row in rows if row.state != "sent"), stale=stale,
            rate_limited=faults.get("429", 0), answers_lost=faults.get("lost", 0), rollouts=self.rollouts,
            incidents_flapped=self.flaps, storm_s=storm_s, drain_s=drain_s)


async def storm(tmp: Path, *, duration_s: float, instances: int = 3, limited: float = 0.5, lost: float = 0.05,
                lost_first: int = 1, drain_timeout_s: float = 120.0,
                say: Callable[[str], None] = lambda line: None) -> Figures:
    """Start `instances` bots (the real `build`, each with its own store connection, outbox sender and instance id,
    served on its own port) on a fresh PostgreSQL schema in a new world; storm for `duration_s`, drain, count.
    Slack answers 429 to `limited` of posts and redraws; of the posts it takes, the first `lost_first` and then
    `lost` of them land and lose their answer."""
    config = load_config(cluster_config(tmp))
    sockets = [free_socket() for _ in range(instances)]
    world = World(config, WorldOptions(bot_urls=[f"http://127.0.0.1:{s.getsockname()[1]}" for s in sockets],
                                       requests_per_s=40, start_ms=60, route_ms=20))
    await world.start()
    try:
        with fresh_schema("chatops_storm") as database_url:
            store = Store(database_url)
            await asyncio.to_thread(store.migrate)
            try:
                async with contextlib.AsyncExitStack() as bots, httpx.AsyncClient(timeout=10) as http:
                    for n, sock in enumerate(sockets):
                        await bots.enter_async_context(serving(world, config, database_url, sock,
                                                               owner=f"storm-{n}:{sock.getsockname()[1]}"))
                    say(f"{instances} instances up; Slack answers 429 to {limited:.0%} of posts and redraws")
                    running = Storm(world, store, http)
                    faults = [await running.control("POST", "/faults", {
                        "method": method, "status": 429, "retry_after": 1, "probability": limited})
                        for method in ("chat.postMessage", "chat.update")]
                    dropped = [await running.control("POST", "/faults", {
                        "method": "chat.postMessage", "lands": True, "drop": True, **often})
                        for often in ({"count": lost_first}, {"probability": lost})]
                    started = time.monotonic()
                    until = started + duration_s
                    await asyncio.gather(running.rollouts_loop(until), running.incidents_loop(until))
                    storm_s = time.monotonic() - started
                    say(f"storm over after {storm_s:.0f} s; draining the outbox")
                    await running.drained(drain_timeout_s)
                    drain_s = time.monotonic() - started - storm_s
                    hits = {f["id"]: int(f["hits"]) for f in world.faults.listing()}
                    world.faults.clear()
                    struck = {"429": sum(hits[f["id"]] for f in faults), "lost": sum(hits[f["id"]] for f in dropped)}
                    return await asyncio.to_thread(running.count, struck, storm_s, drain_s)
            finally:
                store.close()
    finally:
        for sock in sockets:
            sock.close()
        await world.stop()
