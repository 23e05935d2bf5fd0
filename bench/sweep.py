#!/usr/bin/env python3
"""The periodic health sweep: how long one sweep of a large fleet takes against its interval and against a bare
aiohttp floor, and what sweeping every interval costs the bot in CPU and memory over a long run.

The world (the fleet's health endpoints answering in --latency-ms, no simulated traffic, Cloud Run, Slack, the
metadata server, Secret Manager) is a world-only sandbox in a child process (`chatops sandbox --headless
--world-only`), so nothing the bench measures is the world's work. The fleet is --services generated services
(bench/common.py's generator; `probe_concurrency` 100 as in chatops.example.yaml).

1. One sweep. A bot is built in this process by the real `bot.app.build`, as tests/scenario/harness.py builds
   it, on the sandbox's `bot_env` and a fresh SQLite store, but not served: its scheduler, reconciler and
   outbox sender do not run. The bench calls `Sweeper.run(fire, late=False)` itself with a fresh fire time,
   which is the whole sweep: claim (job, fire time) in the store, list the services' URLs from Cloud Run,
   probe every service's /health, /ready and /health/deep through the bot's Prober (its fixed worker pool),
   classify, and hand the results to the incident engine, which reads incidents and silences and saves what
   changed with its Slack messages queued in the outbox. Measured: wall time, this process's CPU time (all
   threads), and the part spent in the incident engine (`IncidentEngine.swept`, timed by a wrapper).
   The floor: a bare `aiohttp.ClientSession` (`TCPConnector(limit=100)`, a semaphore of 100, as
   bench/health_fanout.py) getting the same 3N URLs and reading each body, in the same event loop, interleaved
   with the sweeps. The services are private (Cloud Run's default; sandbox/world.py), so each of its requests
   carries its service's ID token, fetched beforehand from the sandbox's metadata server through the bot's
   own `IdTokens`, as the bot holds its tokens from one sweep to the next; a floor refused with 401/403 is
   an error, not a figure. One warm-up of each, then the median of --repeats. Two fleets: all healthy, then with
   --failing services failing (half with a failing check: 503 and an unhealthy body; half down: the
   connection drops), declared through the control API (`PATCH /revisions/<name>`).
   Goal: a sweep takes under 10% of its interval (60 s by default).

2. A long run. `chatops serve` runs as its own process on the same world with `defaults.alerts.interval` set
   to --interval, and sweeps on its own schedule for --duration. Its start is placed just after a fire time,
   so the time before its first sweep measures the idle bot (reconciler, outbox sender and scheduler loops
   with nothing to do). Fire times are the bot's own (`bot.engine.scheduler.every`: anchored at a fixed
   epoch); just before each (--margin s), its CPU time (utime + stime from /proc/<pid>/stat) and RSS are
   read, so each difference is one interval holding exactly one sweep and what it set off (incident saves,
   outbox sends to the emulated Slack at its published rate limits). The --failing services flap: failing
   for `open_after` sweeps (an incident opens and is posted), then healthy for `resolve_after` sweeps (it
   resolves: the message is updated and a reply posted), again and again; the bench switches them between
   sweeps. The sweeps really ran: the fire times claimed in the bot's store are checked against the
   expected ones, and the world's probe count is shown against 3N per sweep (a little more while services are
   down: aiohttp retries an idempotent request once when the server drops a kept-alive connection,
   RFC 9112 section 9.3.1.1).
   Reported: CPU seconds per interval (median, min-max), the idle bot's CPU over an interval, and their
   difference against the floor's CPU for the same 3N probes from part 1; RSS before the first sweep, after
   it, and at the end, with the growth from after the first sweep (when the pools and caches are warm) to
   the end. Goal: no growth beyond noise (< 10%).

    .venv/bin/python bench/sweep.py            # 1,000 services; sweeps every 60 s for 10 minutes; about 13 min
    .venv/bin/python bench/sweep.py --quick    # 1,000 services; sweeps every 10 s for 1 minute; about 2 min
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml
from common import (
    CHILDREN,
    BenchError,
    Sandbox,
    chatops_argv,
    cpu_s,
    elapsed_note,
    fleet_config,
    fleet_urls,
    fmt,
    free_port,
    log_problems,
    median,
    ratio,
    remove_workdir,
    rss_mb,
    run_main,
    start_sandbox,
    table,
    tail,
    wait_http_ok,
    workdir,
)
from sqlalchemy import func, select

from bot.adapters.idtokens import IdTokens
from bot.adapters.secrets import fetch_credentials
from bot.adapters.store import Store
from bot.adapters.tables import IncidentRow, OutboxRow, ScheduleRunRow
from bot.app import Bot, build
from bot.config import Config, load_config
from bot.engine.scheduler import every
from bot.environment import Environment
from bot.runbooks import runbooks_beside

PATHS = ("/health", "/ready", "/health/deep")
FLOOR_CONCURRENCY = 100
FAILING_CHECK = "bigquery"  # every generated service's check (bench/common.py's fleet_config)


# --- the world ------------------------------------------------------------------------------------------


def with_interval(config: Path, interval_s: float) -> Path:
    """The generated config with the sweep's interval (`defaults.alerts.interval`) set."""
    data: dict[str, Any] = yaml.safe_load(config.read_text())
    data.setdefault("defaults", {}).setdefault("alerts", {})["interval"] = interval_s
    target = config.with_name(f"{config.stem}-every-{interval_s:g}s.yaml")
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def world_state(sandbox: Sandbox) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(f"{sandbox['control_url']}/state", timeout=60).raise_for_status().json()
    return state


class Fleet:
    """The world's services as the bench sees them: their serving revisions and which of them it makes fail."""

    def __init__(self, sandbox: Sandbox, services: list[str], failing: int) -> None:
        self.sandbox = sandbox
        state = world_state(sandbox)["services"]
        missing = [name for name in services if name not in state]
        if missing:
            raise BenchError(f"the sandbox has no service {missing[0]!r} (and {len(missing) - 1} more)")
        self.revisions = {name: state[name]["traffic_statuses"][0]["revision"] for name in services}
        self.failing = services[:: max(1, len(services) // failing)][:failing] if failing else []
        self.broken = False

    def break_(self, broken: bool) -> None:
        """Half of `failing` get a failing check, half go down; or all are healthy again."""
        if broken == self.broken:
            return
        with httpx.Client(timeout=10) as client:
            for i, name in enumerate(self.failing):
                patch: dict[str, Any] = {"failing_checks": [], "down": False}
                if broken:
                    patch = {"down": True} if i % 2 else {"failing_checks": [FAILING_CHECK]}
                client.patch(f"{self.sandbox['control_url']}/revisions/{self.revisions[name]}",
                             json=patch).raise_for_status()
        self.broken = broken


# --- part 1: one sweep, in process ----------------------------------------------------------------------


@dataclass
class Run:
    ms: float
    cpu_ms: float
    engine_ms: float = 0.0


@dataclass
class Phase:
    label: str
    sweeps: list[Run]
    floors: list[Run]
    seen: Counter[str]  # statuses of the last sweep


def med(runs: list[Run], key: Callable[[Run], float]) -> float:
    return median([key(r) for r in runs])


class EngineTimer:
    """Wraps the bot's `IncidentEngine.swept` to add up the time sweeps spend in it."""

    def __init__(self, bot: Bot) -> None:
        self.seconds = 0.0
        engine = bot.sweeper.engine
        inner = engine.swept

        async def swept(*args: Any, **kwargs: Any) -> None:
            started = time.perf_counter()
            try:
                await inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        engine.swept = swept  # type: ignore[method-assign]


async def timed(action: Callable[[], Awaitable[None]]) -> Run:
    cpu, started = time.process_time(), time.perf_counter()
    await action()
    return Run((time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000)


class Floor:
    """Bare aiohttp on the same URLs, each request with the ID token for its service (the fleet is private, as
    Cloud Run services are by default), fetched once beforehand through the bot's own `IdTokens` from the
    sandbox's metadata server, as the bot holds its tokens between sweeps."""

    def __init__(self, session: aiohttp.ClientSession, requests: list[tuple[str, dict[str, str]]]) -> None:
        self.session = session
        self.requests = requests

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, urls: dict[str, str], metadata_host: str) -> Floor:
        tokens = IdTokens(metadata_host)
        requests = []
        for url in urls.values():
            token = await tokens.token(url)
            if token is None:
                raise BenchError(f"the sandbox's metadata server gave no ID token for {url}")
            requests += [(url.rstrip("/") + path, {"Authorization": f"Bearer {token}"}) for path in PATHS]
        return cls(session, requests)

    async def once(self) -> None:
        slots = asyncio.Semaphore(FLOOR_CONCURRENCY)

        async def probe(url: str, headers: dict[str, str]) -> bool:
            """Whether Cloud Run's front end refused it."""
            async with slots:
                try:
                    async with self.session.get(url, headers=headers) as response:
                        await response.read()
                        return response.status in (401, 403)
                except aiohttp.ClientError:  # the services that are down drop the connection
                    return False

        refused = sum(await asyncio.gather(*(probe(url, headers) for url, headers in self.requests)))
        if refused:
            raise BenchError(f"the floor's probes were refused {refused} times: it measures nothing")


async def in_process_bot(sandbox: Sandbox, config: Config, config_path: Path, directory: Path) -> Bot:
    env = Environment.from_env({**sandbox["bot_env"], "CHATOPS_DATABASE_URL": f"sqlite:///{directory / 'part1.db'}"})
    credentials = await asyncio.to_thread(fetch_credentials, config, env)
    store = Store(str(env.database_url))
    await asyncio.to_thread(store.migrate)
    return build(config, env, credentials, store, runbooks_beside(config_path), public_url="http://127.0.0.1:9",
                 owner=f"bench:{os.getpid()}")


async def one_sweep(bot: Bot, engine: EngineTimer, expected: int) -> Run:
    before, engine_s = bot.sweeper.swept, engine.seconds
    run = await timed(lambda: bot.sweeper.run(datetime.now(UTC), False))
    latest = bot.sweeper.latest
    if bot.sweeper.swept != before + 1 or latest is None or len(latest.services) != expected:
        raise BenchError("the sweep did not run over the whole fleet (Cloud Run unavailable, or its claim lost)")
    run.engine_ms = (engine.seconds - engine_s) * 1000
    return run


async def part1(sandbox: Sandbox, fleet: Fleet, config: Config, config_path: Path, directory: Path,
                args: argparse.Namespace) -> list[Phase]:
    urls = await asyncio.to_thread(fleet_urls, sandbox.endpoints)
    bot = await in_process_bot(sandbox, config, config_path, directory)
    engine = EngineTimer(bot)
    phases: list[Phase] = []
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=FLOOR_CONCURRENCY)) as session:
            floor = await Floor.open(session, urls, sandbox["bot_env"]["GCE_METADATA_HOST"])
            for broken in (False, True) if fleet.failing else (False,):
                await asyncio.to_thread(fleet.break_, broken)
                label = f"{len(fleet.failing)} failing" if broken else "all healthy"
                sweeps: list[Run] = []
                floors: list[Run] = []
                with elapsed_note(f"one sweep, {label}: 1 warm-up + {args.repeats} runs of each"):
                    await one_sweep(bot, engine, len(urls))
                    await floor.once()
                    for _ in range(args.repeats):
                        await asyncio.sleep(args.pause)
                        sweeps.append(await one_sweep(bot, engine, len(urls)))
                        await asyncio.sleep(args.pause)
                        floors.append(await timed(floor.once))
                latest = bot.sweeper.latest
                assert latest is not None
                seen = Counter(s.status.label for s in latest.services)
                phases.append(Phase(label, sweeps, floors, seen))
            await asyncio.to_thread(fleet.break_, False)
    finally:
        await bot.aclose()
    return phases


# --- part 2: sweeps on the bot's own schedule, as its own process ------------------------------------------


@dataclass
class Sample:
    at: float  # epoch seconds
    cpu_s: float
    rss_mib: float


@dataclass
class LongRun:
    interval_s: float
    open_after: int
    resolve_after: int
    start_s: float  # launch to /healthz
    idle: tuple[Sample, Sample] | None  # the bot before its first sweep
    samples: list[Sample]  # [k]: just before sweep k; the last, just before the one after the run
    broken: list[bool]  # whether the failing services failed in sweep k
    expected: list[datetime]
    claimed: list[datetime]
    probes: int  # the world's, over the run
    incidents: Counter[str]
    outbox: Counter[str]
    problems: Counter[str]
    notes: list[str] = field(default_factory=list)

    def per_interval(self) -> list[float]:
        return [b.cpu_s - a.cpu_s for a, b in zip(self.samples, self.samples[1:], strict=False)]

    def idle_per_interval(self) -> float:
        if self.idle is None:
            return float("nan")
        a, b = self.idle
        return (b.cpu_s - a.cpu_s) / (b.at - a.at) * self.interval_s


def sample(pid: int) -> Sample:
    return Sample(time.time(), cpu_s(pid), rss_mb(pid, children=False))


def sleep_until(epoch_s: float) -> None:
    time.sleep(max(0.0, epoch_s - time.time()))


def store_figures(database: Path) -> tuple[list[datetime], Counter[str], Counter[str]]:
    """From the bot's store: the sweep fire times claimed, incidents by state, outbox rows by state."""
    store = Store(f"sqlite:///{database}")
    try:
        with store.reading() as session:
            claimed = sorted(session.scalars(select(ScheduleRunRow.fire_time).where(ScheduleRunRow.job == "sweep")))
            incidents = Counter({state: count for state, count in session.execute(
                select(IncidentRow.state, func.count()).group_by(IncidentRow.state))})
            outbox = Counter({state: count for state, count in session.execute(
                select(OutboxRow.state, func.count()).group_by(OutboxRow.state))})
    finally:
        store.close()
    return claimed, incidents, outbox


def part2(sandbox: Sandbox, fleet: Fleet, config_path: Path, directory: Path, args: argparse.Namespace) -> LongRun:
    config_file = with_interval(config_path, args.interval)
    alerts = load_config(config_file).defaults.alerts
    cycle = alerts.open_after + alerts.resolve_after
    trigger = every(args.interval)
    sweeps = round(args.duration / args.interval)
    # Launched just after a fire time, the bot's first sweep is a whole interval away: the idle bot is measured
    # in between.
    grid: datetime = trigger.get_next_fire_time(None, datetime.now(UTC))
    sleep_until(grid.timestamp() + 0.1)
    port = free_port()
    database = directory / "part2.db"
    log = directory / "part2-bot.log"
    env = {**os.environ, **sandbox["bot_env"], "CHATOPS_DATABASE_URL": f"sqlite:///{database}",
           "CHATOPS_PUBLIC_URL": f"http://127.0.0.1:{port}", "CHATOPS_LOG_FORMAT": "json"}
    launched = time.time()
    proc = CHILDREN.spawn(chatops_argv("serve", "--config", str(config_file), "--host", "127.0.0.1", "--port",
                                       str(port)), env=env, log=log)
    try:
        try:
            wait_http_ok(f"http://127.0.0.1:{port}/healthz", 120, proc)
        except BenchError as exc:
            raise BenchError(f"{exc}\n{tail(log)}") from None
        ready = time.time()
        first: datetime = trigger.get_next_fire_time(None, datetime.fromtimestamp(ready, UTC))
        fires = [first + timedelta(seconds=args.interval * k) for k in range(sweeps + 1)]
        sleep_until(ready + args.settle)
        idle_from = sample(proc.pid)
        probes_before = int(world_state(sandbox)["probes"])
        samples: list[Sample] = []
        broken: list[bool] = []
        with elapsed_note(f"{sweeps} sweeps every {args.interval:g} s"):
            for k, fire in enumerate(fires):
                sleep_until(fire.timestamp() - args.margin)
                samples.append(sample(proc.pid))
                if k < sweeps:
                    broken.append(bool(fleet.failing) and k % cycle < alerts.open_after)
                    fleet.break_(broken[-1])
        probes = int(world_state(sandbox)["probes"]) - probes_before
        notes = []
        if time.time() > fires[-1].timestamp():
            notes.append("the world's probe count was read after the next sweep began: it may include some of it")
        claimed, incidents, outbox = store_figures(database)
    finally:
        CHILDREN.stop(proc)
        fleet.break_(False)
    idle = (idle_from, samples[0]) if samples[0].at - idle_from.at >= 1.0 else None
    if idle is None:
        notes.append("the bot started too close to its first sweep to measure it idle")
    return LongRun(args.interval, alerts.open_after, alerts.resolve_after, ready - launched, idle, samples, broken,
                   fires[:-1], [c for c in claimed if c < fires[-1]], probes, incidents, outbox, log_problems(log),
                   notes)


# --- main -----------------------------------------------------------------------------------------------


def print_part1(phases: list[Phase], args: argparse.Namespace) -> None:
    print(f"1. one sweep of {args.services:,} services (3 probes each, answering in {args.latency_ms:g} ms, no "
          f"traffic), bot probe_concurrency 100: Sweeper.run in this process against a world-only sandbox; "
          f"median of {args.repeats} after 1 warm-up")
    rows = []
    for p in phases:
        sweep, floor = med(p.sweeps, lambda r: r.ms), med(p.floors, lambda r: r.ms)
        rows.append([p.label, fmt(sweep, 0), f"{min(r.ms for r in p.sweeps):,.0f}-{max(r.ms for r in p.sweeps):,.0f}",
                     fmt(med(p.sweeps, lambda r: r.engine_ms), 0), fmt(med(p.sweeps, lambda r: r.cpu_ms), 0),
                     fmt(floor, 0), fmt(med(p.floors, lambda r: r.cpu_ms), 0), fmt(ratio(sweep, floor), 2) + "x",
                     fmt(100 * sweep / (args.sweep_interval * 1000), 1) + "%",
                     ", ".join(f"{n} {label}" for label, n in sorted(p.seen.items()))])
    print(table(["fleet", "sweep ms", "min-max", "engine ms", "sweep CPU ms", "floor ms", "floor CPU ms",
                 "sweep/floor", f"of {args.sweep_interval:g} s", "last sweep saw"], rows))
    print("sweep: claim, list URLs, probe, classify, incident engine (engine ms: its part); CPU: this process, "
          "all threads; floor: bare aiohttp, the same 3N URLs, 100 at once, probing only")


def print_part2(run: LongRun, phases: list[Phase], args: argparse.Namespace) -> None:
    per = run.per_interval()
    idle = run.idle_per_interval()
    floor_cpu = med(phases[0].floors, lambda r: r.cpu_ms) / 1000  # all healthy
    start, warm, end = run.samples[0].rss_mib, run.samples[1].rss_mib, run.samples[-1].rss_mib
    print()
    print(f"2. chatops serve sweeping {args.services:,} services every {run.interval_s:g} s for "
          f"{len(run.broken) * run.interval_s:g} s ({len(run.broken)} sweeps), as its own process; "
          f"{args.failing} services failing {run.open_after} sweeps then healthy {run.resolve_after}, over and "
          f"over; start-up {run.start_s:.1f} s")
    rows = [[str(k), "failing" if run.broken[k] else "healthy", fmt(cpu, 2),
             fmt(run.samples[k + 1].rss_mib, 1)] for k, cpu in enumerate(per)]
    print(table(["sweep", f"{args.failing} services", "CPU s in its interval", "RSS MiB after"], rows))
    sweep_cpu = median(per) - (0.0 if math.isnan(idle) else idle)
    print(f"CPU per interval: median {median(per):.2f} s (min {min(per):.2f}, max {max(per):.2f}); idle bot over an "
          f"interval {fmt(idle, 2)} s; the sweep's share {sweep_cpu:.2f} s = {ratio(sweep_cpu, floor_cpu):.1f}x "
          f"the floor's CPU for the same {3 * args.services:,} probes ({floor_cpu:.2f} s)")
    print(f"RSS: {start:.1f} MiB before the first sweep, {warm:.1f} MiB after it, {end:.1f} MiB at the end: "
          f"{100 * (end - warm) / warm:+.1f}% since the first sweep (goal < 10%), "
          f"{100 * (end - start) / start:+.1f}% since before it")
    probes_per = ratio(run.probes, len(run.broken))
    print(f"checks: sweeps claimed in the store {len(run.claimed)} of {len(run.expected)} expected "
          f"({'the same fire times' if run.claimed == run.expected else 'fire times DIFFER'}); world probes "
          f"{probes_per:,.0f} per sweep (3N = {3 * args.services:,}, more while some are down); incidents "
          f"{dict(run.incidents) or '{}'}; outbox rows {dict(run.outbox) or '{}'}")
    if run.problems:
        print("bot log: " + "; ".join(f"{n}x {message}" for message, n in run.problems.most_common(5)))
    for note in run.notes:
        print(f"note: {note}")
    healthy = phases[0]
    sweep, floor = med(healthy.sweeps, lambda r: r.ms), med(healthy.floors, lambda r: r.ms)
    print(f"{args.services:,} services: one sweep {sweep:,.0f} ms = {ratio(sweep, floor):.2f}x the floor, "
          f"{100 * sweep / (args.sweep_interval * 1000):.1f}% of its {args.sweep_interval:g} s interval "
          f"(goal < 10%); every {run.interval_s:g} s for {len(run.broken) * run.interval_s:g} s: {median(per):.2f} s "
          f"CPU per sweep, RSS {100 * (end - warm) / warm:+.1f}% from the first sweep to the end (goal < 10%)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=1000, help="size of the generated fleet")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="every revision's response time")
    parser.add_argument("--failing", type=int, default=10, help="services made to fail (half a check, half down)")
    parser.add_argument("--repeats", type=int, default=5, help="part 1: measured sweeps (and floors) per fleet")
    parser.add_argument("--pause", type=float, default=0.5, help="part 1: seconds between runs")
    parser.add_argument("--sweep-interval", type=float, default=60.0,
                        help="part 1: the interval a sweep is set against (defaults.alerts.interval)")
    parser.add_argument("--interval", type=float, default=60.0, help="part 2: the bot's sweep interval, s")
    parser.add_argument("--duration", type=float, default=600.0, help="part 2: how long the bot sweeps, s")
    parser.add_argument("--margin", type=float, default=2.0, help="part 2: read CPU and RSS this long before a sweep")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="part 2: seconds after start-up before the idle bot is measured")
    parser.add_argument("--quick", action="store_true", help="3 runs in part 1; part 2 every 10 s for 60 s")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.interval, args.duration = 3, 10.0, 60.0
    if args.interval < 3 * args.margin or args.duration < 2 * args.interval:
        raise BenchError("part 2 needs --interval >= 3 x --margin and --duration >= 2 x --interval")
    directory = workdir("sweep")
    try:
        config_path = fleet_config(args.services, directory)
        with elapsed_note(f"world-only sandbox of {args.services} services"):
            sandbox = start_sandbox(config_path, directory, world_only=True, latency_ms=args.latency_ms,
                                    requests_per_s=0)
        fleet = Fleet(sandbox, list(load_config(config_path).services), args.failing)
        phases = asyncio.run(part1(sandbox, fleet, load_config(config_path), config_path, directory, args))
        print_part1(phases, args)
        sys.stdout.flush()
        long_run = part2(sandbox, fleet, config_path, directory, args)
        print_part2(long_run, phases, args)
    finally:
        CHILDREN.stop_all()
        remove_workdir(directory)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
