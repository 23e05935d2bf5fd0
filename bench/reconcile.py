#!/usr/bin/env python3
"""Reconciler tick cost: how long one `Reconciler.tick()` takes with 1, 10 and 100 rollouts due at once, per
rollout, and against one `CloudRunGateway.read` (one GET of a service) measured in the same run, with the calls
to Cloud Run, Monitoring, Logging and the fleet's health endpoints that one tick makes.

How: for each N a fresh world and bot are built in this process, as tests/scenario/harness.py builds them: a
`sandbox.world.World` on a generated fleet config of --services services (bench/common.py's generator, with
the canary window raised to --window so that stage 1 lasts the whole measurement), and `bot.app.build` on
it with a fresh SQLite database (as the sandbox's bot has), without serving Slack and without starting
the reconciler's own loop: this script calls `tick()`. N rollouts are written to the store as `/deploy`
writes them (`plan_for`, `candidate_name`, `Rollout(...)`, `store.create_rollout`; the first tick's save queues
the rollout's message in the outbox, which nothing sends here), each on its own service, healthy images; their
plan's interim-check interval is set to --interval (plan_for would make it min(10 s, window / 6)). Then `tick()`
is called until every rollout is ANALYSING stage 1 (5%) with no write pending: candidate created, ready, probed at
its tag URL, 5% routed.
Measured: one `GET` of a service through the bot's `CloudRunGateway.read`, sequentially (--baseline times,
median), then --repeats ticks, each once every rollout's `next_check_at` has passed (the script sleeps until
the latest one), so every rollout is due: the median tick's wall time, the rollouts it claimed (the store
hands out at most 50 a tick), and per tick the Admin API reads (the world's `run.counts`), Monitoring queries
(`world.monitoring.calls`), Logging `entries:list` calls (the Logging emulator's store queries), health probes
(`world.fleet.probes`); also the process's CPU time during the tick, the mean time of each step of `advance`
(read the service, collect the signals, save to the store with the Slack report's outbox rows) as the bot's
coroutines saw it, and how much of the tick the Logging and Monitoring emulators spent answering.
The emulators run in this process and event loop, as in the scenario tests, so their CPU is inside the tick's
wall time; that is why the fleet gets no simulated traffic by default (--requests-per-s 0): every Monitoring
query of the emulator reads every request record the world keeps (15 minutes of the whole fleet's) and every
Logging query every entry since the stage began, so with traffic their share grows with the fleet and with
time and swamps the bot's. The bot makes the same calls either way (too few requests to judge: the verdict
waits for the end of the window). The emulated Slack is not rate limited here. After the measured ticks,
back-to-back ticks are timed until every rollout has been analysed once ("sweep"): with N > 50 that takes
more than one tick, and the bot's own loop waits its engine interval between ticks.

What to read: whether the cost per rollout falls as N grows (the reconciler advances up to 20 rollouts at
once), and how many GETs of a service one rollout's check costs.

    .venv/bin/python bench/reconcile.py            # N = 1, 10, 100; 7 ticks each; about 40 s
    .venv/bin/python bench/reconcile.py --quick    # N = 1, 10; 3 ticks each
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import (
    BenchError,
    elapsed_note,
    fleet_config,
    fmt,
    median,
    ratio,
    remove_workdir,
    run_main,
    service_names,
    table,
    workdir,
)

from bot.adapters.secrets import fetch_credentials
from bot.adapters.store import Store, StoredRollout
from bot.app import Bot, build
from bot.config import Config, load_config
from bot.domain.rollout import Rollout, State
from bot.environment import Environment
from bot.runbooks import runbooks_beside
from commands.deploy import candidate_name, plan_for
from sandbox.runner import bot_environment
from sandbox.world import World, WorldOptions

READS = ("GetService", "GetRevision", "ListServices", "ListRevisions", "GetOperation", "WaitOperation")
WRITES = ("CreateService", "UpdateService", "DeleteService", "DeleteRevision")
USER = "U07ONCALL01"


@dataclass
class Timer:
    """Calls of one wrapped function: how many, and their total seconds."""

    calls: int = 0
    seconds: float = 0.0

    def snapshot(self) -> tuple[int, float]:
        return self.calls, self.seconds


def time_async(owner: object, name: str, timer: Timer) -> None:
    """Replace `owner.name` (a bound coroutine method) by one that counts and times its calls."""
    inner: Callable[..., Awaitable[Any]] = getattr(owner, name)

    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await inner(*args, **kwargs)
        finally:
            timer.calls += 1
            timer.seconds += time.perf_counter() - started

    setattr(owner, name, timed)


def time_sync(owner: object, name: str, timer: Timer) -> None:
    inner: Callable[..., Any] = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            timer.calls += 1
            timer.seconds += time.perf_counter() - started

    setattr(owner, name, timed)


STEPS = ("read", "collect", "save")
EMULATORS = ("logging", "monitoring")


@dataclass
class Probe:
    """What the world and the bot's steps counted, read before and after a tick."""

    world: World
    timers: dict[str, Timer]

    def read(self) -> dict[str, float]:
        run = self.world.run.counts
        values: dict[str, float] = {
            "admin reads": sum(run[m] for m in READS), "admin writes": sum(run[m] for m in WRITES),
            "GetService": run["GetService"], "monitoring": len(self.world.monitoring.calls),
            "probes": self.world.fleet.probes,
        }
        for name, timer in self.timers.items():
            values[f"{name} calls"], values[f"{name} s"] = timer.snapshot()
        return values


@dataclass
class Tick:
    ms: float
    cpu_ms: float  # this process's CPU time (every thread) during the tick
    claimed: int
    counts: dict[str, float]


@dataclass
class Result:
    n: int
    ticks: list[Tick]
    get_ms: list[float]
    setup_s: float
    setup_ticks: int
    sweep_ms: float
    sweep_ticks: int
    notes: list[str] = field(default_factory=list)

    def med(self, key: str) -> float:
        return median([t.counts[key] for t in self.ticks])

    @property
    def tick_ms(self) -> float:
        return median([t.ms for t in self.ticks])

    @property
    def cpu_ms(self) -> float:
        return median([t.cpu_ms for t in self.ticks])

    @property
    def claimed(self) -> float:
        return median([float(t.claimed) for t in self.ticks])

    def step_ms(self, step: str) -> float:
        """Mean ms of one call of an advance step over the measured ticks."""
        calls = sum(t.counts[f"{step} calls"] for t in self.ticks)
        return ratio(sum(t.counts[f"{step} s"] for t in self.ticks) * 1000, calls)

    def emulator_ms(self) -> float:
        """Median ms per tick the Logging and Monitoring emulators spent answering."""
        return median([sum(t.counts[f"{e} s"] for e in EMULATORS) * 1000 for t in self.ticks])


class Harness:
    """A world and a bot in this event loop, as tests/scenario/harness.py makes them, minus the web server."""

    def __init__(self, config: Config, config_path: Path, directory: Path, args: argparse.Namespace) -> None:
        self.config = config
        self.config_path = config_path
        self.directory = directory
        self.args = args
        self.world = World(config, WorldOptions(
            bot_urls=[], start_ms=args.start_ms, route_ms=args.route_ms, latency_ms=args.latency_ms,
            requests_per_s=args.requests_per_s, slack_rate_per_s=1e6, slack_burst=10**6))
        self.bot: Bot | None = None
        self.timers = {name: Timer() for name in (*STEPS, *EMULATORS)}

    async def __aenter__(self) -> Harness:
        await self.world.start()
        database = f"sqlite:///{self.directory / f'chatops-{time.time_ns()}.db'}"
        env = Environment.from_env(bot_environment(self.world, database))
        credentials = await asyncio.to_thread(fetch_credentials, self.config, env)
        store = Store(str(env.database_url))
        await asyncio.to_thread(store.migrate)
        self.bot = build(self.config, env, credentials, store, runbooks_beside(self.config_path),
                         public_url="http://127.0.0.1:9", owner=f"bench:{os.getpid()}")
        reconciler = self.bot.reconciler
        time_async(reconciler.cloudrun, "read", self.timers["read"])
        time_async(reconciler.collector, "collect", self.timers["collect"])
        time_sync(reconciler.store, "save", self.timers["save"])
        time_sync(self.world.logs, "select", self.timers["logging"])
        time_sync(self.world.monitoring, "answer", self.timers["monitoring"])
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.bot is not None:
                await self.bot.aclose()
                metrics = self.bot.reconciler.collector.metrics
                with contextlib.suppress(Exception):  # its gRPC channel, or it complains when the world stops
                    if metrics._client is not None:
                        metrics._client.transport.close()
        finally:
            await self.world.stop()

    @property
    def store(self) -> Store:
        assert self.bot is not None
        return self.bot.runtime.store

    async def deploy(self, service: str) -> None:
        """What `/deploy <service>` does once it has checked the request: read, plan, record, announce."""
        assert self.bot is not None
        runtime = self.bot.runtime
        view = await runtime.cloudrun.read(service)
        if view.serving is None:
            raise BenchError(f"{service} has no revision with all its traffic")
        image = f"{self.config.services[service].image}:bench"
        plan = replace(plan_for(self.config, service, "canary"), interval_s=self.args.interval)
        now = datetime.now(UTC)
        rollout = Rollout(id=0, service=service, image=image, stable=view.serving,
                          candidate=candidate_name(service, image), plan=plan, requested_by=USER, created_at=now,
                          next_check_at=now, traffic=view.live.traffic, generation=view.live.generation,
                          progress_at=now)
        channel = self.config.slack.channels[self.config.slack.deploy_channel]
        await asyncio.to_thread(runtime.store.create_rollout, rollout, channel)

    async def rollouts(self) -> list[StoredRollout]:
        return await asyncio.to_thread(self.store.rollouts, open_only=True, limit=10_000)

    async def tick(self) -> int:
        assert self.bot is not None
        await self.bot.reconciler.tick()
        return self.bot.reconciler.claimed


def analysing(found: list[StoredRollout]) -> bool:
    return all(s.rollout.state is State.ANALYSING and s.rollout.stage == 0 and s.rollout.pending is None
               for s in found)


async def until_due(harness: Harness) -> list[StoredRollout]:
    """Sleep until every open rollout's next check is due; returns them."""
    found = await harness.rollouts()
    latest = max(s.rollout.next_check_at for s in found)
    wait = (latest - datetime.now(UTC)).total_seconds()
    if wait > 0:
        await asyncio.sleep(wait + 0.02)
    return found


async def measure(n: int, config: Config, config_path: Path, directory: Path, args: argparse.Namespace) -> Result:
    async with Harness(config, config_path, directory, args) as harness:
        services = service_names(args.services)[:n]
        started = time.perf_counter()
        with elapsed_note(f"N={n}: {n} rollouts to stage 1"):
            for service in services:
                await harness.deploy(service)
            setup_ticks = 0
            deadline = time.monotonic() + 120 + n
            while not analysing(found := await harness.rollouts()) or len(found) != n:
                if time.monotonic() > deadline:
                    states = Counter(f"{s.rollout.state.value}/{s.rollout.stage}" for s in found)
                    raise BenchError(f"N={n}: rollouts not all analysing stage 1 within 2 min: {dict(states)}")
                setup_ticks += 1
                await harness.tick()
                await asyncio.sleep(0.05)
        setup_s = time.perf_counter() - started
        assert harness.bot is not None
        cloudrun = harness.bot.runtime.cloudrun
        await until_due(harness)
        get_ms = []
        for _ in range(args.baseline):
            began = time.perf_counter()
            await cloudrun.read(services[0])
            get_ms.append((time.perf_counter() - began) * 1000)
        probe = Probe(harness.world, harness.timers)
        ticks: list[Tick] = []
        with elapsed_note(f"N={n}: {args.repeats} ticks"):
            for _ in range(args.repeats):
                await until_due(harness)
                before = probe.read()
                cpu = time.process_time()
                began = time.perf_counter()
                claimed = await harness.tick()
                took = (time.perf_counter() - began) * 1000
                cpu = (time.process_time() - cpu) * 1000
                after = probe.read()
                ticks.append(Tick(took, cpu, claimed, {k: after[k] - before[k] for k in after}))
        notes = []
        found = await harness.rollouts()
        if not analysing(found) or any(t.counts["admin writes"] for t in ticks):
            states = Counter(f"{s.rollout.state.value}/{s.rollout.stage}" for s in found)
            notes.append(f"N={n}: rollouts left stage 1 during the measurement ({dict(states)}); raise --window")
        # Sweep: back-to-back ticks until every rollout has been analysed once.
        await until_due(harness)
        pending = {s.rollout.id for s in await harness.rollouts()}
        sweep_ticks = 0
        began = time.perf_counter()
        while pending and sweep_ticks < 100:
            mark = datetime.now(UTC)
            await harness.tick()
            sweep_ticks += 1
            pending -= {s.rollout.id for s in await harness.rollouts() if s.rollout.next_check_at > mark}
        sweep_ms = (time.perf_counter() - began) * 1000
        return Result(n, ticks, get_ms, setup_s, setup_ticks, sweep_ms, sweep_ticks, notes)


async def run_all(args: argparse.Namespace, directory: Path) -> list[Result]:
    # SIGTERM cancels this task, as asyncio.run does for Ctrl-C, so the world and the bot are closed in order
    # (a KeyboardInterrupt raised from a plain signal handler in the middle of gRPC's callbacks can crash it).
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    if args.threads:
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=args.threads, thread_name_prefix="bench"))
    size = max(args.services, *args.sizes)
    args.services = size
    # The config requires the progress deadline to outlast a window and its two insufficient-traffic extensions.
    config_path = fleet_config(size, directory, canary={"window": args.window, "progress_deadline": 4 * args.window},
                               engine={"interval": args.interval, "lease": 60})
    config = load_config(config_path)
    return [await measure(n, config, config_path, directory, args) for n in args.sizes]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100], metavar="N",
                        help="concurrent rollouts")
    parser.add_argument("--services", type=int, default=100, help="size of the generated fleet (at least max N)")
    parser.add_argument("--repeats", type=int, default=7, help="measured ticks per N")
    parser.add_argument("--baseline", type=int, default=30, help="sequential GETs of a service for the baseline")
    parser.add_argument("--window", type=float, default=600.0, help="canary window, s: stage 1 must outlast the run")
    parser.add_argument("--interval", type=float, default=1.0, help="the rollouts' interim-check interval, s")
    parser.add_argument("--requests-per-s", type=float, default=0.0,
                        help="simulated traffic per service (with traffic the in-process emulators' scans dominate)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="every revision's response time")
    parser.add_argument("--start-ms", type=float, default=300.0, help="time a new revision takes to start")
    parser.add_argument("--route-ms", type=float, default=100.0, help="time Cloud Run takes to route traffic")
    parser.add_argument("--threads", type=int, default=0,
                        help="size of the event loop's default thread pool (0: Python's, min(32, CPUs + 4))")
    parser.add_argument("--quick", action="store_true", help="N = 1, 10; 3 ticks each")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeats, args.baseline = [1, 10], 3, 10
    directory = workdir("reconcile")
    try:
        results = asyncio.run(run_all(args, directory))
    except asyncio.CancelledError:
        raise KeyboardInterrupt("SIGTERM") from None
    finally:
        remove_workdir(directory)

    threads = args.threads or min(32, (os.cpu_count() or 1) + 4)
    print(f"reconciler tick with N rollouts due, all ANALYSING stage 1; fleet of {args.services} services, "
          f"{args.requests_per_s:g} requests/s each, health endpoints answering in {args.latency_ms:g} ms; "
          f"median of {args.repeats} ticks; world and bot in one process "
          f"and event loop; {os.cpu_count()} CPUs, {threads} worker threads")
    base = results[0]
    rows = []
    for r in results:
        per = ratio(r.tick_ms, r.claimed)
        get = median(r.get_ms)
        rows.append([str(r.n), fmt(r.claimed, 0), fmt(r.tick_ms, 1), fmt(per, 1),
                     fmt(ratio(r.tick_ms, base.tick_ms), 1) + "x", fmt(ratio(per, ratio(base.tick_ms, base.claimed)),
                                                                          2) + "x",
                     fmt(get, 1), fmt(ratio(per, get), 1) + "x", fmt(r.cpu_ms, 0), fmt(r.emulator_ms(), 0),
                     f"{fmt(r.sweep_ms, 0)} / {r.sweep_ticks}"])
    print(table(["N", "claimed", "tick ms", "ms/rollout", "tick vs N=1", "per-rollout vs N=1", "GET ms",
                 "per-rollout / GET", "CPU ms", "emulators ms", "sweep ms / ticks"],
                rows))
    print("claimed: rollouts one tick took (the store hands out at most 50); per-rollout = tick / claimed; GET: one "
          "CloudRunGateway.read, sequential, same world; CPU: this process's CPU time during the tick (all threads, "
          "bot and world); emulators: of the tick, time the Logging and Monitoring emulators spent answering; "
          "sweep: back-to-back ticks until all N were analysed once")
    print()
    print("calls one tick made, per rollout it claimed (median tick):")
    rows = []
    for r in results:
        claimed = max(r.claimed, 1.0)
        rows.append([str(r.n), fmt(r.med("admin reads") / claimed, 1), fmt(r.med("monitoring") / claimed, 1),
                     fmt(r.med("logging calls") / claimed, 1), fmt(r.med("probes") / claimed, 1),
                     fmt(r.med("admin writes"), 0),
                     *(fmt(r.step_ms(step), 1) for step in STEPS)])
    print(table(["N", "Admin API reads", "Monitoring queries", "Logging calls", "probes",
                 "writes (tick)", "read ms", "collect ms", "save ms"], rows))
    print("read/collect/save ms: mean time of one call of that step of Reconciler.advance, as its coroutine waited "
          "for it (queueing for a worker thread included); a save also writes what the rollout tells Slack to the "
          "outbox, which this script does not send")
    for r in results:
        print(f"  N={r.n}: set-up {r.setup_s:.1f} s ({r.setup_ticks} ticks); ticks "
              + ", ".join(f"{t.ms:.0f}" for t in r.ticks) + " ms")
        for note in r.notes:
            print(f"  note: {note}")
    head = results[-1]
    print(f"N={head.n}: {ratio(head.tick_ms, head.claimed):.1f} ms per rollout = "
          f"{ratio(ratio(head.tick_ms, head.claimed), ratio(base.tick_ms, base.claimed)):.2f}x N={base.n}'s and "
          f"{ratio(ratio(head.tick_ms, head.claimed), median(head.get_ms)):.1f} GETs of a service")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
