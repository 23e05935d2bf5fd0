"""Scale-out: three instances of `chatops serve`, each its own process under its own
CHATOPS_INSTANCE_ID, on one PostgreSQL schema, with Slack's user side sending round-robin over all of them (as a
load balancer in front of Cloud Run's instances would). What a user depends on must not change with the number of
instances: every rollout step is written to Cloud Run once, every rollout, incident and digest has one message,
and a rollout whose instance dies is carried on by another once its lease runs out, and not before.

The instances run the sandbox's bot config (windows of 2 s) with two canary stages, a 4 s lease, sweeps every
second and a digest every minute. The tests of one instance count share one set of instances, in order: the kill
test replaces the instance it killed (as Cloud Run starts a new one, under a new instance id at the same URL), and
the incident and digest test runs last, so the minutely digest has had the whole module to fire.

Three, not also two: with three, a command meets an instance that holds nothing as well as one that holds the rollout,
and a killed instance leaves two that race for its lease, which is everything two instances would show and more;
two as well cost a minute and a half of the suite's ten.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from bot.adapters.store import RolloutRow, Store
from bot.adapters.tables import ScheduleRunRow
from bot.config import load_config
from sandbox.blockkit_text import text_of
from sandbox.runner import BotProcess, bot_environment, free_port, sandbox_config
from sandbox.world import World, WorldOptions
from tests import figures
from tests.conftest import EXAMPLE_CONFIG
from tests.postgres_schema import fresh_schema
from tests.scenario.bot_processes import Row

STAGES = (5, 100)
LEASE_S = 4.0
WRITES = ("CreateService", "UpdateService", "DeleteService", "DeleteRevision")
DEPLOYED = ("prediction-coordinator", "nba-admin-dashboard")
"""Two rollouts at once, not more: their threads share #deploys, which Slack takes a post a second, so each more
rollout costs the file about ten seconds a run."""
BROKEN, BROKEN_CHANNEL, BROKEN_CHECK = "prediction-worker", "predictions", "gcs_model_file"
KILLED = "mlb-prediction-worker"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def cluster_config(tmp: Path) -> Path:
    """The sandbox's bot config with two stages, a short lease, a sweep a second and a digest a minute."""
    path = sandbox_config(EXAMPLE_CONFIG, tmp, window_s=2.0)
    data = yaml.safe_load(path.read_text())
    data["defaults"]["canary"].update({"stages": list(STAGES), "min_requests": 3})  # 5% of 40/s for 2 s: 4
    data["defaults"]["alerts"].update({"interval": "1s", "escalate_after": "10m"})
    data["engine"].update({"lease": LEASE_S, "google_timeout": LEASE_S / 2.5})
    data["digests"] = [{"name": "minutely", "channel": "platform", "cron": "* * * * *", "timezone": "UTC"}]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Cluster:
    world: World
    store: Store
    http: httpx.AsyncClient
    bots: list[BotProcess]
    config: Path
    env: dict[str, str]
    tmp: Path
    full: list[tuple[datetime, datetime | None]]
    """The periods in which every instance was up (from all answering /healthz to one being killed)."""

    @property
    def n(self) -> int:
        return len(self.bots)

    def alive(self) -> list[BotProcess]:
        return [bot for bot in self.bots if bot.process.poll() is None]

    def all_up_at(self, moment: datetime) -> bool:
        return any(start <= moment and (end is None or moment < end) for start, end in self.full)

    def killed(self, bot: BotProcess) -> None:
        """SIGKILL: no shutdown, no lease given up, nothing flushed."""
        os.kill(bot.process.pid, signal.SIGKILL)
        bot.process.wait()
        start, _ = self.full[-1]
        self.full[-1] = (start, datetime.now(UTC))

    async def replace(self, dead: BotProcess) -> BotProcess:
        """A new instance at the dead one's URL (so Slack's round-robin reaches it) under a new instance id."""
        port = int(dead.url.rsplit(":", 1)[1])
        new = BotProcess(self.config, port, self.env, self.tmp / f"bot-{port}-2.log",
                         instance=f"sandbox-bot:{port}:{uuid.uuid4().hex[:6]}")
        self.bots[self.bots.index(dead)] = new
        dead.stop()
        await new.ready(timeout=60)
        self.full.append((datetime.now(UTC), None))
        return new

    async def command(self, text: str) -> dict[str, Any]:
        """Type a slash command in #deploys; Slack's user side delivers it to the next instance in turn."""
        command, _, rest = text.partition(" ")
        answer: dict[str, Any] = (await self.http.post(f"{self.world.url('slack_user')}/commands", json={
            "user": "oncall", "channel": "deploys", "command": command, "text": rest})).json()
        assert answer["status"] == 200, answer
        return answer

    async def control(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.request(method, f"{self.world.url('control')}{path}", json=body)
        assert response.status_code in (200, 201), response.text
        found: dict[str, Any] = response.json()
        return found

    async def messages(self, channel: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self.http.get(f"{self.world.url('slack_user')}/messages",
                                                           params={"channel": channel, "user": "oncall"})).json()
        return found

    async def rows(self, service: str) -> list[Row]:
        """The service's rollouts, newest first."""
        def read() -> list[Row]:
            query = select(RolloutRow).where(RolloutRow.service == service).order_by(RolloutRow.id.desc())
            with self.store.reading() as session:
                return [Row.of(r) for r in session.scalars(query)]

        return await asyncio.to_thread(read)

    async def reach(self, service: str, check: Callable[[Row], bool], what: str, timeout: float = 60) -> Row:
        deadline = time.monotonic() + timeout
        while True:
            found = await self.rows(service)
            if found and check(found[0]):
                return found[0]
            assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
            await asyncio.sleep(0.05)

    async def runs(self, job: str, since: datetime) -> list[tuple[datetime, str]]:
        """(fire time, instance) of every run of `job` claimed for a fire time at or after `since`."""
        def read() -> list[tuple[datetime, str]]:
            query = (select(ScheduleRunRow.fire_time, ScheduleRunRow.claimed_by)
                     .where(ScheduleRunRow.job == job, ScheduleRunRow.fire_time >= since)
                     .order_by(ScheduleRunRow.fire_time))
            with self.store.reading() as session:
                return [(fire, owner) for fire, owner in session.execute(query)]

        return await asyncio.to_thread(read)

    def writes(self) -> int:
        """Admin API writes Cloud Run has served (a faulted call never reaches it)."""
        return sum(self.world.run.counts[method] for method in WRITES)

    def share(self, service: str, revision: str) -> int:
        return self.world.run.routed_share(service).get(revision, 0)

    def history(self, service: str, candidate: str) -> list[int]:
        """The candidate's percent in every traffic Cloud Run was asked for, in order: one entry a write."""
        return [split.get(candidate, 0) for split in self.world.run.traffic_history(service)]

    async def settled(self, channel: str, done: Callable[[list[dict[str, Any]]], bool], what: str,
                      timeout: float = 45.0, quiet: float = 2.0) -> list[dict[str, Any]]:
        """The channel once `done` holds of it and nothing more has come for `quiet` seconds: Slack takes about a
        post a second per channel, and the bot waits out its 429s, so a thread fills in over seconds, and anything
        said twice would come in that time."""
        deadline = time.monotonic() + timeout
        seen = await self.messages(channel)
        while not done(seen):
            assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
            await asyncio.sleep(0.2)
            seen = await self.messages(channel)
        still = time.monotonic()
        while time.monotonic() - still < quiet:
            await asyncio.sleep(0.25)
            now = await self.messages(channel)
            if now != seen:
                seen, still = now, time.monotonic()
        return seen


def parents_of(messages: list[dict[str, Any]], rollout_id: int) -> list[dict[str, Any]]:
    """The channel messages (not replies, not ephemerals) that are rollout #id's message."""
    return [m for m in messages if m["kind"] == "message" and f"rollout #{rollout_id}" in text_of(m)]


def replies_to(messages: list[dict[str, Any]], parent_ts: str) -> list[str]:
    return [str(m["text"]) for m in messages if m.get("thread_ts") == parent_ts and m["ts"] != parent_ts]


def hits(world: World, fault_id: int) -> int:
    return next(int(f["hits"]) for f in world.faults.listing() if f["id"] == fault_id)


def no_secret_in_logs(world: World, tmp: Path) -> None:
    for log in tmp.glob("bot-*.log"):
        said = log.read_text(errors="replace")
        assert world.bot_token not in said and world.signing_secret not in said, "a secret in a log"


@contextlib.asynccontextmanager
async def running_cluster(config: Path, tmp: Path, n: int, *, schema: str, start_ms: float = 60,
                          route_ms: float = 20) -> AsyncIterator[Cluster]:
    """`n` instances of `chatops serve` on one fresh PostgreSQL schema, in a world that sends Slack round-robin to
    them; afterwards their logs are searched for the world's secrets."""
    ports = [free_port() for _ in range(n)]
    world = World(load_config(config), WorldOptions(bot_urls=[f"http://127.0.0.1:{p}" for p in ports],
                                                    requests_per_s=40, start_ms=start_ms, route_ms=route_ms))
    await world.start()
    bots: list[BotProcess] = []
    try:
        with fresh_schema(schema) as database_url:
            env = bot_environment(world, database_url)
            bots = [BotProcess(config, port, env, tmp / f"bot-{port}.log") for port in ports]
            store = Store(database_url)
            try:
                await asyncio.gather(*(bot.ready(timeout=60) for bot in bots))
                async with httpx.AsyncClient(timeout=10) as http:
                    running = Cluster(world, store, http, bots, config, env, tmp, [(datetime.now(UTC), None)])
                    yield running
                    bots = running.bots
                no_secret_in_logs(world, tmp)
            finally:
                for bot in bots:
                    bot.stop()
                store.close()
    finally:
        await world.stop()


@pytest.fixture(scope="module", params=[3], ids=lambda n: f"{n}-instances")
async def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> AsyncIterator[Cluster]:
    n: int = request.param
    tmp = tmp_path_factory.mktemp(f"scale-out-{n}")
    async with running_cluster(cluster_config(tmp), tmp, n, schema="chatops_scale") as running:
        yield running


async def test_concurrent_deploys_at_every_instance_each_promote_with_each_write_once(cluster: Cluster) -> None:
    """Two services deployed at once, and one of them twice at once: the three commands arrive at different
    instances (round-robin), the twin is queued behind the other by the database's one-open-rollout-per-service rule
    whichever instance took it, and starts once that one is promoted; each rollout makes exactly its four Admin API
    writes (the revision at 0%, 5%, 100%, the promotion) and has one message in #deploys whose thread says each
    stage once."""
    writes = cluster.writes()
    first, *rest = DEPLOYED
    answers = await asyncio.gather(*(cluster.command(f"/deploy {s} tag=v3") for s in (first, first, *rest)))
    assert all(a["status"] == 200 for a in answers), answers
    done = {s: await cluster.reach(s, lambda r: not r.open, f"{s}'s rollout ended") for s in rest}
    deadline = time.monotonic() + 60
    while not ((found := await cluster.rows(first)) and len(found) == 2 and not found[0].open):
        assert time.monotonic() < deadline, f"not within 60 s: {first}'s queued twin ended"
        await asyncio.sleep(0.05)
    rows = {s: await cluster.rows(s) for s in DEPLOYED}
    assert len(rows[first]) == 2, f"{first}: the twin ran after the first, however many instances were asked"
    earlier, twin = rows[first][1], rows[first][0]
    assert earlier.rollout.ended_at is not None and twin.rollout.created_at >= earlier.rollout.ended_at
    every = [*done.values(), earlier, twin]
    for row in done.values():
        assert cluster.history(row.rollout.service, row.rollout.candidate) == [0, 5, 100, 100], (
            f"{row.rollout.service}: each write made once")
    assert [row.state for row in every] == ["promoted"] * len(every)
    assert cluster.history(first, earlier.rollout.candidate)[:4] == [0, 5, 100, 100], f"{first}: each write once"
    assert cluster.history(first, twin.rollout.candidate)[4:] == [0, 5, 100, 100], f"{first}: the twin's, after"
    assert cluster.world.run.routed_share(first) == {twin.rollout.candidate: 100}
    for service in rest:
        assert len(rows[service]) == 1, f"{service}: one rollout, however many instances were asked"
        assert cluster.world.run.routed_share(service) == {done[service].rollout.candidate: 100}
    assert cluster.writes() - writes == 4 * len(every), "no write made twice, none other made"
    figures.count(f"rollouts promoted by {cluster.n} instances on one PostgreSQL, each write once", len(every))

    def promoted_in_every_thread(seen: list[dict[str, Any]]) -> bool:
        return all(any("serves 100% of traffic" in r for p in parents_of(seen, row.rollout.id)
                       for r in replies_to(seen, p["ts"])) for row in every)

    seen = await cluster.settled("deploys", promoted_in_every_thread, "every rollout's promotion in its thread")
    queued = [m for m in seen if m["kind"] == "ephemeral" and f"{first}: queued #2 behind" in text_of(m)]
    assert len(queued) == 1, "the twin /deploy was told whose rollout it waits for"
    for row in every:
        (parent,) = parents_of(seen, row.rollout.id)
        assert parent["ts"] == row.message_ts and "promoted" in text_of(parent).lower()
        replies = replies_to(seen, parent["ts"])
        for stage in STAGES:
            assert sum(r.startswith(f"stage {stage}% passed") for r in replies) == 1, (row.rollout.service, replies)
        assert sum("serves 100% of traffic" in r for r in replies) == 1, f"{row.rollout.service}: {replies}"


async def test_an_instance_killed_holding_a_lease_is_taken_over_by_a_running_one_after_the_lease(
        cluster: Cluster) -> None:
    """SIGKILL, with the 100% stage's write in flight (it never answers), of whichever instance holds the rollout:
    the instances already running wait out its lease, then one of them makes the write the dead one never got
    through, once, and finishes the rollout. The thread is held to "nothing said twice", not "nothing lost": what
    the dead instance had queued for Slack went with it (the rollout reporter keeps it in memory)."""
    writes = cluster.writes()
    await cluster.command(f"/deploy {KILLED} tag=v3")
    at_five = await cluster.reach(KILLED, lambda r: r.state == "analysing" and cluster.share(
        KILLED, r.rollout.candidate) == 5, "analysing at 5%")
    candidate = at_five.rollout.candidate
    hang = (await cluster.control("POST", "/faults", {"method": "UpdateService", "hang": True}))["id"]
    held = await cluster.reach(KILLED, lambda r: r.rollout.pending is not None and hits(cluster.world, hang) >= 1,
                               "the 100% write in flight")
    assert held.lease_owner is not None and held.lease_expires_at is not None
    (holder,) = [bot for bot in cluster.bots if bot.instance == held.lease_owner]
    await asyncio.to_thread(cluster.killed, holder)
    killed, expiry = time.time(), held.lease_expires_at.timestamp()
    cluster.world.faults.clear()
    survivors = {bot.instance for bot in cluster.alive()}
    assert len(survivors) == cluster.n - 1
    taken = await cluster.reach(KILLED, lambda r: r.lease_owner in survivors or not r.open, "another instance's claim")
    took = time.time()
    assert took >= expiry, f"taken over {expiry - took:.2f} s before the dead instance's lease ran out"
    assert took - expiry < 10.0, f"taken over {took - expiry:.1f} s after the lease ran out"
    early = [c for c in cluster.world.run.calls if c.method in WRITES and killed < c.at < expiry]
    assert not early, f"Cloud Run written while the dead instance's lease held: {early}"
    await cluster.replace(holder)  # as Cloud Run would; the tests after this one want every instance up
    done = await cluster.reach(KILLED, lambda r: not r.open, "the rollout finished")
    assert taken.rollout.id == done.rollout.id == at_five.rollout.id
    assert done.state == "promoted" and cluster.world.run.routed_share(KILLED) == {candidate: 100}
    assert not any(s.get("tag") for s in cluster.world.run.services[KILLED].traffic_statuses)
    assert cluster.history(KILLED, candidate) == [0, 5, 100, 100], "each write made once"
    assert cluster.writes() - writes == 4, "the hung write reached Cloud Run never, then once"
    figures.count(f"bot instances killed (SIGKILL) holding a lease, taken over by one of {cluster.n - 1} running")

    def promoted(seen: list[dict[str, Any]]) -> bool:
        return any("serves 100% of traffic" in r for p in parents_of(seen, done.rollout.id)
                   for r in replies_to(seen, p["ts"]))

    seen = await cluster.settled("deploys", promoted, "the promotion in the rollout's thread")
    (parent,) = parents_of(seen, done.rollout.id)
    assert parent["ts"] == done.message_ts and "promoted" in text_of(parent).lower(), "one message, redrawn"
    replies = replies_to(seen, parent["ts"])
    assert sum("serves 100% of traffic" in r for r in replies) == 1
    for stage in STAGES:
        assert sum(r.startswith(f"stage {stage}% passed") for r in replies) <= 1, "nothing said twice"


DIGEST_PERIOD = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d) UTC → ")


def digest_fire_times(seen: list[dict[str, Any]]) -> Counter[datetime]:
    """The fire time each minutely digest in a channel was posted for: the minute after its period starts (the
    period runs from the previous fire time)."""
    found: Counter[datetime] = Counter()
    for m in seen:
        if m["kind"] == "message" and str(m["text"]).startswith("Health digest"):
            period = DIGEST_PERIOD.search(text_of(m))
            assert period is not None, text_of(m)
            found[datetime.strptime(period.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC) + timedelta(minutes=1)] += 1
    return found


async def test_a_broken_service_gets_one_incident_thread_and_each_digest_is_posted_once(cluster: Cluster) -> None:
    """Every instance fires every sweep and every digest; one claims each fire time. Over many sweeps the broken
    service's incident opens once, its thread hears the recovery and the resolution once each, and each minute's
    digest is posted once."""
    revision = str(cluster.world.run.services[BROKEN].traffic_statuses[0]["revision"])
    await cluster.control("PATCH", f"/revisions/{revision}", {"failing_checks": [BROKEN_CHECK]})

    def about(m: dict[str, Any]) -> bool:
        return m["kind"] == "message" and str(m["text"]).startswith(f"{BROKEN}:")

    await cluster.settled(BROKEN_CHANNEL, lambda seen: any(about(m) for m in seen), "the incident's message",
                          timeout=20, quiet=0)
    opened_at = datetime.now(UTC)
    # More sweeps with the incident open, by whichever instances claim them, and a digest fire time with every
    # instance up (the module's earlier tests have usually seen one).
    deadline = time.monotonic() + 75
    while True:
        sweeps = await cluster.runs("sweep", opened_at)
        digests = [fire for fire, _ in await cluster.runs("digest:minutely", EPOCH) if cluster.all_up_at(fire)]
        if len(sweeps) >= 6 and digests:
            break
        assert time.monotonic() < deadline, f"{len(sweeps)} sweeps and {len(digests)} digests within 75 s"
        await asyncio.sleep(0.25)
    await cluster.control("PATCH", f"/revisions/{revision}", {"failing_checks": []})

    def resolved(seen: list[dict[str, Any]]) -> bool:
        return any(r.startswith("resolved") for m in seen if about(m) for r in replies_to(seen, m["ts"]))

    seen = await cluster.settled(BROKEN_CHANNEL, resolved, "the resolution in the incident's thread", timeout=20)
    (parent,) = [m for m in seen if about(m)]
    assert str(parent["text"]).startswith(f"{BROKEN}: resolved incident #"), "one parent, redrawn in place"
    replies = replies_to(seen, parent["ts"])
    assert len(replies) == 2 and replies[0].startswith(f"`{BROKEN_CHECK}` recovered") and \
        replies[1].startswith("resolved: every check passes"), f"the thread hears each change once: {replies}"
    # Every sweep since the instances now running were all up (twenty or so): more than one of them claimed some.
    sweepers = Counter(owner for _, owner in await cluster.runs("sweep", cluster.full[-1][0]))
    assert set(sweepers) <= {bot.instance for bot in cluster.bots} and len(sweepers) >= 2, \
        f"the sweeps were claimed by several instances: {sweepers}"

    claimed = [fire for fire, _ in await cluster.runs("digest:minutely", EPOCH)]
    due = [fire for fire in claimed if fire <= datetime.now(UTC) - timedelta(seconds=2)]
    platform = await cluster.settled("platform", lambda seen: set(due) <= set(digest_fire_times(seen)),
                                     "a digest for every fire time claimed", timeout=20)
    posted = digest_fire_times(platform)
    assert due and all(count == 1 for count in posted.values()), f"a fire time posted twice: {posted}"
    claimed = [fire for fire, _ in await cluster.runs("digest:minutely", EPOCH)]  # a minute may have come meanwhile
    assert set(posted) <= set(claimed), "nothing posted that was not claimed"
