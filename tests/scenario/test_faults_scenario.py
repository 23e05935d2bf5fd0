"""Faults the bot must survive, injected with the sandbox's `POST /faults` (sandbox/faults.py) or done to its
process and its database: Google errors at every rollout state, the Admin API down through a rollback,
SIGKILL and SIGTERM at every state, PostgreSQL restarted underneath, Secret Manager failing at start.

Google's transient errors are retried with backoff: UNAVAILABLE "is most likely a transient condition, which can
be corrected by retrying with a backoff" (google.rpc.Code, https://cloud.google.com/apis/design/errors#error_codes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from bot.adapters.store import RolloutRow, Store, StoredRollout
from bot.config import Config, load_config
from bot.domain.rollout import Rollout
from sandbox.blockkit_text import text_of
from sandbox.runner import BotProcess, bot_environment, free_port, sandbox_config
from sandbox.world import World, WorldOptions
from tests import figures
from tests.conftest import EXAMPLE_CONFIG
from tests.scenario.harness import Scenario, fast, scenario

# -- Google's errors inside one bot (the harness) -----------------------------------------------------------


STAGES = (5, 100)
"""Two canary stages rather than the example's three: every state a fault meets is still there (a stage at 5%, the
last at 100%, the promotion), and the file runs in about three minutes."""


@pytest.fixture(scope="module")
async def fleet(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    async with scenario(fast(example_config, min_requests=5, stages=STAGES), tmp_path_factory.mktemp("faults"),
                        requests_per_s=60) as running:
        yield running


INJECTED = "faults injected into Google and Slack calls (POST /faults)"
HIT = "calls that met an injected fault"
CONVERGED = "rollouts that converged through faults, kills and restarts"


async def inject(fleet: Scenario, **fault: Any) -> int:
    response = await fleet.http.post(f"{fleet.control}/faults", json=fault)
    assert response.status_code == 201, response.text
    figures.count(INJECTED)
    fault_id: int = response.json()["id"]
    return fault_id


async def clear(fleet: Scenario) -> dict[str, int]:
    """Take every fault away; returns how many calls each method's faults hit."""
    cleared = (await fleet.http.delete(f"{fleet.control}/faults")).json()["cleared"]
    by_method: dict[str, int] = {}
    for fault in cleared:
        by_method[fault["method"]] = by_method.get(fault["method"], 0) + fault["hits"]
    figures.count(HIT, sum(by_method.values()))
    return by_method


def hits(world: World, fault_id: int) -> int:
    """How many calls the fault has hit so far."""
    return next(int(f["hits"]) for f in world.faults.listing() if f["id"] == fault_id)


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)


async def latest(fleet: Scenario, service: str) -> StoredRollout | None:
    found = await asyncio.to_thread(fleet.bot.runtime.store.rollouts, service=service, limit=1)
    return found[0] if found else None


async def reaches(fleet: Scenario, service: str, state: str, percent: int | None = None) -> StoredRollout:
    """Wait until the service's rollout is in `state` (with the candidate routed `percent`, when given)."""
    seen: list[StoredRollout] = []

    async def there() -> bool:
        stored = await latest(fleet, service)
        if stored is None or stored.rollout.state.value != state:
            return False
        seen[:] = [stored]
        return percent is None or fleet.routed(service).get(stored.rollout.candidate, 0) == percent

    await fleet.until(there, 30, f"{service} in {state}" + (f" at {percent}%" if percent is not None else ""))
    return seen[0]


async def admin_api_down_for_a_while(fleet: Scenario, service: str, writes: int | None = None) -> dict[str, int]:
    """UpdateService answers 503 (fault `writes`, when already set) until the bot has tried its next write twice;
    then GetService too, until the bot has found it cannot read the service (its reads retry for
    `google_timeout` first); then both are cleared. Returns the calls each method's faults hit."""
    writes = writes or await inject(fleet, method="UpdateService", status=503)
    await until(lambda: hits(fleet.world, writes) >= 2, 20, "the bot's write refused twice")
    await inject(fleet, method="GetService", status=503)

    async def unreadable() -> bool:
        stored = await latest(fleet, service)
        return stored is not None and stored.rollout.unreadable_since is not None

    await fleet.until(unreadable, 20, f"the bot finding it cannot read {service}")
    return await clear(fleet)


async def converges(fleet: Scenario, service: str, *ends: str) -> tuple[StoredRollout, list[str]]:
    """The rollout ends in one of `ends`, all traffic on one revision, no tag of chatops' left; returns it and the
    replies in its thread."""
    done = await fleet.rollout_state(service, *ends, timeout=60)
    routed = fleet.routed(service)
    assert list(routed.values()) == [100], f"traffic left split: {routed}"
    assert "canary" not in fleet.tags(service)
    figures.count(f"{CONVERGED}: {done.rollout.state.value}")
    return done, [text_of(m) for m in await fleet.thread(done)]


def said(replies: list[str], words: str) -> int:
    """How many replies say `words`."""
    return sum(words in reply for reply in replies)


async def thread_says(fleet: Scenario, service: str, words: str, timeout: float = 20) -> str:
    """The text of the service's rollout thread once it holds `words` (Slack takes a post a second)."""
    said: list[str] = []

    async def holds() -> bool:
        stored = await latest(fleet, service)
        said[:] = ["\n".join(text_of(m) for m in await fleet.thread(stored))] if stored else []
        return bool(said) and words in said[0]

    await fleet.until(holds, timeout, f"{words!r} in the thread of {service}'s rollout")
    return said[0]


def image(fleet: Scenario, service: str, tag: str) -> str:
    return f"{fleet.world.config.services[service].image}:{tag}"


async def test_cloud_run_errors_while_deploying_delay_the_candidate_and_the_rollout_still_promotes(
        fleet: Scenario) -> None:
    service = "prediction-coordinator"
    writes = await inject(fleet, method="UpdateService", status=503)  # /deploy reads the service, never writes
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    stored = await reaches(fleet, service, "deploying")
    faulted = await admin_api_down_for_a_while(fleet, service, writes)
    done, replies = await converges(fleet, service, "promoted")
    assert done.rollout.id == stored.rollout.id and fleet.routed(service) == {done.rollout.candidate: 100}
    assert said(replies, f"Cloud Run did not take the new revision `{done.rollout.candidate}` (503") == 1
    assert said(replies, f"cannot read {service}") == 1
    assert faulted["UpdateService"] >= 2 and faulted["GetService"] >= 1


async def test_cloud_run_errors_while_verifying_hold_the_first_stage_until_they_pass(fleet: Scenario) -> None:
    service = "mlb-prediction-worker"
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    await reaches(fleet, service, "verifying")
    faulted = await admin_api_down_for_a_while(fleet, service)
    done, replies = await converges(fleet, service, "promoted")
    assert fleet.routed(service) == {done.rollout.candidate: 100}
    assert said(replies, "Cloud Run did not take the traffic change") == 1 and said(replies, f"cannot read {service}")
    assert tuple(s.percent for s in done.rollout.results) == STAGES, "every stage judged once"
    assert faulted["UpdateService"] >= 2 and faulted["GetService"] >= 1


async def test_cloud_run_errors_while_analysing_hold_the_next_stage_until_they_pass(fleet: Scenario) -> None:
    service = "nba-admin-dashboard"
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    at_five = await reaches(fleet, service, "analysing", percent=5)
    faulted = await admin_api_down_for_a_while(fleet, service)
    done, replies = await converges(fleet, service, "promoted")
    assert done.rollout.id == at_five.rollout.id and fleet.routed(service) == {done.rollout.candidate: 100}
    assert said(replies, "Cloud Run did not take the traffic change") == 1 and said(replies, f"cannot read {service}")
    history = [split.get(done.rollout.candidate, 0) for split in fleet.world.run.traffic_history(service)]
    assert history == [0, 5, 100, 100], "each stage asked for once, none skipped or repeated"
    assert faulted["UpdateService"] >= 2


async def test_cloud_run_errors_while_promoting_still_end_all_on_the_candidate(fleet: Scenario) -> None:
    service = "nba-phase3-analytics-processors"
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    await reaches(fleet, service, "analysing", percent=100)
    faulted = await admin_api_down_for_a_while(fleet, service)
    done, replies = await converges(fleet, service, "promoted")
    assert fleet.routed(service) == {done.rollout.candidate: 100}
    assert said(replies, "Cloud Run did not take the traffic change") == 1
    assert said(replies, "serves 100% of traffic") == 1, "promoted once"
    assert faulted["UpdateService"] >= 2


async def test_a_rollback_with_the_admin_api_down_is_retried_said_and_lands_once_it_is_back(fleet: Scenario) -> None:
    """Rolling back is never given up (README: "a rollback is never given up and the thread says so")."""
    service = "nba-phase4-precompute-processors"
    stable = fleet.serving_revision(service)
    await fleet.declare(image(fleet, service, "v3-broken"), error_rate=0.6)
    await fleet.command("oncall", f"/deploy {service} tag=v3-broken")
    at_ten = await reaches(fleet, service, "analysing", percent=10)
    candidate = at_ten.rollout.candidate
    writes = await inject(fleet, method="UpdateService", status=503)
    await until(lambda: hits(fleet.world, writes) >= 4, 30, "the rollback tried four times")
    rolling = await latest(fleet, service)
    assert rolling is not None and rolling.rollout.state.value == "rolled_back" and rolling.rollout.pending
    assert fleet.routed(service) == {stable: 90, candidate: 10}, "nothing lands while Cloud Run refuses"
    thread = await thread_says(fleet, service, "still trying")
    assert f"Traffic is {stable} 90%, {candidate} 10% until it does" in thread
    faulted = await admin_api_down_for_a_while(fleet, service, writes)
    done, replies = await converges(fleet, service, "rolled_back")
    assert done.rollout.id == at_ten.rollout.id and fleet.routed(service) == {stable: 100}
    assert fleet.world.run.traffic_history(service).count({stable: 100}) == 1, "the rollback landed exactly once"
    assert said(replies, "stage 10% failed") == 1 and said(replies, f"cannot read {service}") == 1
    assert faulted["UpdateService"] >= 4 and faulted["GetService"] >= 1


# -- the bot as its own process (`chatops serve`), killed, stopped, and its database restarted ------------------

WRITES = ("CreateService", "UpdateService", "DeleteService", "DeleteRevision")


@dataclass(frozen=True)
class Row:
    """A rollout's row as another instance sees it: the rollout, and who holds it until when."""

    rollout: Rollout
    open: bool
    lease_owner: str | None
    lease_expires_at: datetime | None

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
                return Row(found.stored().rollout, found.open, found.lease_owner, found.lease_expires_at) \
                    if found else None

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
    try:
        await bot.ready()
        async with httpx.AsyncClient(timeout=10) as http:
            running = Processes(world, config, env, tmp / "bot.log", store, http, bot)
            yield running
            bot = running.bot
    finally:
        bot.stop()
        store.close()
        figures.count(HIT, sum(int(fault["hits"]) for fault in world.faults.listing()))
        await world.stop()


def candidate_history(p: Processes, service: str, candidate: str) -> list[int]:
    return [split.get(candidate, 0) for split in p.world.run.traffic_history(service)]


async def test_a_bot_killed_at_every_rollout_state_is_taken_over_after_its_lease_and_finishes_once(
        tmp_path: Path) -> None:
    """Killed in deploying and promoting while its write hangs, in verifying and at 5% between writes. The thread
    says everything once: what an instance decided is in the outbox with the save that recorded it, so what a
    killed one had not posted yet is posted by the next, and nothing twice."""
    service = "prediction-coordinator"
    async with processes(tmp_path, lease_s=4.0) as p:
        writes = p.world.run.counts["UpdateService"]
        hang = await p.fault(method="UpdateService", hang=True)  # the new revision's write never answers
        await p.command(f"/deploy {service} tag=v3")
        await p.reach(service, lambda r: r.state == "deploying" and hits(p.world, hang) >= 1, "the write in flight")
        killed = [await p.kill_and_replace(service)]
        await p.reach(service, lambda r: r.state == "verifying", "verifying")
        killed.append(await p.kill_and_replace(service))
        at_five = await p.reach(service, lambda r: r.state == "analysing" and p.share(service, r.rollout.candidate)
                                == 5, "analysing at 5%")
        killed.append(await p.kill_and_replace(service))
        candidate = at_five.rollout.candidate
        await p.reach(service, lambda r: r.state == "analysing" and p.share(service, candidate) == 100, "at 100%")
        hang = await p.fault(method="UpdateService", hang=True)  # the promotion never answers
        await p.reach(service, lambda r: r.state == "promoted" and hits(p.world, hang) >= 1, "the promotion in flight")
        killed.append(await p.kill_and_replace(service))
        done = await p.reach(service, lambda r: not r.open, "the rollout finished")
        figures.count(f"{CONVERGED}: {done.state}")
        assert killed == ["deploying", "verifying", "analysing", "promoted"]
        assert done.state == "promoted" and p.world.run.routed_share(service) == {candidate: 100}
        assert not any(s.get("tag") for s in p.world.run.services[service].traffic_statuses)
        assert candidate_history(p, service, candidate) == [0, 5, 100, 100], "each write made once"
        assert p.world.run.counts["UpdateService"] - writes == 4, "new revision, 2 stages, promotion: no more"
        replies = await p.reported("promoted")  # the instance that finished redraws the rollout's message
        for stage in STAGES:
            assert sum(r.startswith(f"stage {stage}% passed") for r in replies) == 1, f"stage {stage}%: {replies}"
        assert sum("serves 100% of traffic" in r for r in replies) == 1, replies
        assert sum("is deploying" in r for r in replies) == 1, replies
        assert all(0 <= late < 10.0 for late in p.takeovers), f"taken over this long after expiry: {p.takeovers}"


async def test_a_bot_killed_while_rolling_back_is_taken_over_after_its_lease_and_the_rollback_lands_once(
        tmp_path: Path) -> None:
    service = "mlb-prediction-worker"
    async with processes(tmp_path, lease_s=4.0) as p:
        stable = p.world.run.services[service].traffic_statuses[0]["revision"]
        await p.http.post(f"{p.world.url('control')}/images", json={
            "image": f"{p.world.config.services[service].image}:v3-broken", "error_rate": 0.6})
        await p.command(f"/deploy {service} tag=v3-broken")
        at_five = await p.reach(service, lambda r: r.state == "analysing" and p.share(service, r.rollout.candidate)
                                == 5, "analysing at 5%")
        hang = await p.fault(method="UpdateService", hang=True)  # the rollback never answers
        await p.reach(service, lambda r: r.state == "rolled_back" and hits(p.world, hang) >= 1,
                      "the rollback in flight")
        assert p.world.run.routed_share(service) == {stable: 95, at_five.rollout.candidate: 5}
        assert await p.kill_and_replace(service) == "rolled_back"
        done = await p.reach(service, lambda r: not r.open, "the rollback landed")
        figures.count(f"{CONVERGED}: {done.state}")
        assert done.state == "rolled_back" and p.world.run.routed_share(service) == {stable: 100}
        assert p.world.run.traffic_history(service).count({stable: 100}) == 1, "the rollback made once"
        replies = await p.reported("rolled back")
        assert sum(r.startswith("stage 5% failed") for r in replies) == 1, replies


async def test_sigterm_releases_the_lease_so_the_next_instance_takes_over_at_once(tmp_path: Path) -> None:
    """Cloud Run sends SIGTERM and "your application will have 10 seconds to exit. If the container does not exit
    by then, a SIGKILL signal ... will be sent" (https://cloud.google.com/blog/topics/developers-practitioners/
    graceful-shutdowns-cloud-run-deep-dive; https://cloud.google.com/run/docs/container-contract#lifecycle).
    SIGTERM arrives while a stage's write is in flight (answered 1.5 s late): the write is finished, the lease
    released, and the next instance carries on at once instead of waiting out the lease."""
    service = "nba-admin-dashboard"
    async with processes(tmp_path, lease_s=10.0) as p:
        await p.command(f"/deploy {service} tag=v3")
        at_five = await p.reach(service, lambda r: r.state == "analysing" and p.share(service, r.rollout.candidate)
                                == 5, "analysing at 5%")
        candidate = at_five.rollout.candidate
        slow = await p.fault(method="UpdateService", latency_ms=1500, count=1)
        await p.reach(service, lambda r: hits(p.world, slow) == 1, "the 100% write in flight")
        held = await p.row(service)
        assert held is not None and held.lease_owner == p.owner and held.lease_expires_at is not None
        logged = p.log.stat().st_size
        p.bot.process.send_signal(signal.SIGTERM)
        figures.count("bot instances stopped (SIGTERM) mid-write, their work finished and handed over")
        signalled = time.monotonic()
        # uvicorn shuts down gracefully, then raises the signal again, so the exit status is SIGTERM's
        assert await asyncio.to_thread(p.bot.process.wait, 10) in (0, -signal.SIGTERM)
        exited = time.monotonic() - signalled
        with p.log.open() as log:
            log.seek(logged)
            assert "Application shutdown complete." in log.read(), "it shut down, it was not cut off"
        left = await p.row(service)
        assert left is not None and left.lease_owner is None, "the lease was released"
        assert left.rollout.pending is None, "the write in flight was finished"
        deadline = time.monotonic() + 5
        while p.share(service, candidate) != 100:  # Cloud Run routes the finished write on its own time
            assert time.monotonic() < deadline, f"the finished write is not routed: {p.share(service, candidate)}%"
            await asyncio.sleep(0.1)
        await p.replace_bot()
        await p.reach(service, lambda r: r.lease_owner == p.owner or not r.open, "the new instance's claim")
        assert time.time() < held.lease_expires_at.timestamp(), "taken over before the old lease would have run out"
        done = await p.reach(service, lambda r: not r.open, "the rollout finished")
        figures.count(f"{CONVERGED}: {done.state}")
        assert done.state == "promoted" and p.world.run.routed_share(service) == {candidate: 100}
        assert candidate_history(p, service, candidate) == [0, 5, 100, 100], "each write made once"
        replies = await p.reported("promoted")
        for stage in STAGES:
            assert sum(r.startswith(f"stage {stage}% passed") for r in replies) == 1, "said once, none lost"
        assert exited < 10


class PrivatePostgres:
    """A PostgreSQL server of this test's own, on a port of its own: restarting it under the bot touches nobody
    else, where restarting the machine's server (pg_ctlcluster) would cut off everyone's tests running beside."""

    def __init__(self, bindir: Path, root: Path, port: int, prefix: list[str]) -> None:
        self.bindir, self.root, self.port, self.prefix = bindir, root, port, prefix
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    @classmethod
    def create(cls) -> PrivatePostgres:
        """initdb a new cluster and start it, or skip the test saying why that cannot be done here."""
        bindir = _postgres_bindir()
        if bindir is None:
            pytest.skip("no PostgreSQL server programs (initdb, pg_ctl) on this machine to run a server of its own")
        prefix: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            if shutil.which("runuser") is None or not _has_user("postgres"):
                pytest.skip("running as root without a postgres user to run a PostgreSQL server as")
            prefix = ["runuser", "-u", "postgres", "--"]
        root = Path(tempfile.mkdtemp(prefix="chatops-pg-"))
        if prefix:
            shutil.chown(root, "postgres", "postgres")
        server = cls(bindir, root, free_port(), prefix)
        try:
            server._run("initdb", "-D", str(root / "data"), "-U", "postgres", "-A", "trust", "--no-sync")
            server.start()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip(f"could not start a PostgreSQL server of the test's own: {exc}")
        return server

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.prefix, str(self.bindir / tool), *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "server.log"), "-o", options, "-w",
                  "start")

    def stop(self) -> None:
        """`fast`: every connection is cut at once, as a restart of the server does."""
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")


def _postgres_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    found = [Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout
                  .strip())] if pg_config else []
    found += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next((d for d in found if (d / "initdb").exists() and (d / "pg_ctl").exists()), None)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres.create()
    try:
        yield server
    finally:
        server.destroy()


async def test_postgresql_restarted_under_the_bot_loses_and_doubles_no_step(
        tmp_path: Path, private_postgres: PrivatePostgres) -> None:
    """The server goes away while a stage's write is in flight (answered 1 s late, inside the bot's Google
    timeout) and comes back 3 s later: every write is made once and every stage is reported once."""
    service = "nba-phase3-analytics-processors"
    async with processes(tmp_path, lease_s=4.0, database_url=private_postgres.url) as p:
        writes = p.world.run.counts["UpdateService"]
        await p.command(f"/deploy {service} tag=v3")
        at_five = await p.reach(service, lambda r: r.state == "analysing" and p.share(service, r.rollout.candidate)
                                == 5, "analysing at 5%")
        candidate = at_five.rollout.candidate
        slow = await p.fault(method="UpdateService", latency_ms=1000, count=1)
        await p.reach(service, lambda r: hits(p.world, slow) == 1, "the 100% write in flight")
        logged = p.log.stat().st_size
        await asyncio.to_thread(private_postgres.stop)
        await asyncio.sleep(3.0)
        await asyncio.to_thread(private_postgres.start)
        done = await p.reach(service, lambda r: not r.open, "the rollout finished", timeout=60)
        figures.count(f"{CONVERGED}: {done.state}")
        figures.count("PostgreSQL restarts under the bot mid-write")
        assert p.bot.process.poll() is None, "the bot lived through it"
        with p.log.open() as log:
            log.seek(logged)
            assert "is unavailable" in log.read(), "the bot did meet the outage"
        assert done.state == "promoted" and p.world.run.routed_share(service) == {candidate: 100}
        assert candidate_history(p, service, candidate) == [0, 5, 100, 100], "each write made once"
        assert p.world.run.counts["UpdateService"] - writes == 4
        replies = await p.reported("promoted")
        for stage in STAGES:
            assert sum(r.startswith(f"stage {stage}% passed") for r in replies) == 1, "each stage said once"
        assert sum(r.startswith("stage 2/2: 100%") for r in replies) == 1
        assert sum("serves 100% of traffic" in r for r in replies) == 1


async def test_secret_manager_answering_503_at_start_stops_the_bot_with_one_line(tmp_path: Path) -> None:
    """google-api-core retries UNAVAILABLE ("retrying with a backoff") until the read's deadline; then the bot
    exits non-zero with one line naming the secret, as it does when Secret Manager cannot be reached at all
    (tests/contract/test_serve_startup.py)."""
    config = process_config(tmp_path, lease_s=4.0)
    world = World(load_config(config), WorldOptions())
    await world.start()
    try:
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{world.url('control')}/faults",
                                     json={"method": "AccessSecretVersion", "status": 503})
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CHATOPS_LOG_FORMAT": "json",
               **bot_environment(world, f"sqlite:///{tmp_path / 'chatops.db'}")}
        result = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "bot", "serve", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=60, check=False)
        tries = hits(world, answer.json()["id"])
        figures.count(INJECTED)
        figures.count(HIT, tries)
    finally:
        await world.stop()
    assert result.returncode == 1
    (line,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert line["severity"] == "CRITICAL"
    assert f"cannot reach Secret Manager at {env['CHATOPS_SECRET_MANAGER_ENDPOINT']} to read secret " \
           f"'{world.config.secrets.slack_bot_token}'" in line["message"]
    assert ": 503 GET" in line["message"], "Google's answer is in the line"
    assert "roles/secretmanager.secretAccessor" in line["message"]
    assert tries >= 2, "the read was retried before the bot gave up"
    assert world.bot_token not in result.stdout + result.stderr
