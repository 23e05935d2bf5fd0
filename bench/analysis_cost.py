#!/usr/bin/env python3
"""Analysis cost: the Cloud Logging reads (`entries.list` calls) the bot makes per minute to judge 1, 10 and
50 concurrent canaries, against Cloud Logging's quota ("Number of entries.list requests: 60 per minute, per
Google Cloud project", https://cloud.google.com/logging/quotas), the bot's own budget (half of it), and the
reads the old design would have made, computed for the same rollouts.

How: for each N a fresh sandbox runs on the strict defaults (`chatops sandbox --headless --world-only`: the
Logging quota and ingestion delay, Monitoring's delay, Slack's rate limits) with Cloud Run's modelled operation
times (the `cloud_run` limit group's defaults, 20 s to start a revision and 5 s to route, passed explicitly
because the CLI's own defaults shorten them). The fleet is a generated config of --services services (N at
most; bench/common.py's generator) with the production canary: stages 5/50/100, --window seconds each, and
the engine's defaults (check interval, log lag, `engine.logging_reads_per_minute`); the sandbox's window and
engine overrides are off (`--window 0`). Rollout k runs on service k. The bench starts the bot itself
(`chatops serve` on the sandbox's bot config and environment) with its Logging endpoint pointed at a
pass-through proxy in this process that records every `entries.list` call and the sandbox's answer: the
sandbox's `GET /state` counts log entries held (`log_entries`), not calls to list them, nor refusals. N
`/deploy <service> tag=...` commands go through Slack's user side; `GET /state` is polled to see when Cloud
Run routes each stage. Every rollout ends promoted except one in ten (N >= 10), whose candidate is made to
fail 20% of its requests once it serves 100%: those must be rolled back.

Traffic: every service at --requests-per-s (8: a candidate at 5% still gets `min_requests`, 20, in a 60 s
window), and up to N = --busy-until (10) the first --busy service (so the one rollout of N = 1) at --busy-rps
(1,000/s), whose candidate writes more request logs than one read returns, so the bot samples them
(`sample(insertId, f)`); at N = 50 the 50 candidates' logs together do that. No busy service at N = 50: the
sandbox's Logging emulator matches every entry in a query's time range against every window of the bot's
batched filter (about 3 µs per window per stored entry on this machine, so 160 µs at 50 windows), on the
event loop its other emulators and the fleet share. At 1,490 requests/s in all a 50-window read held that
loop for up to 8 s, the fleet's answers to the bot's 2 s probes timed out, and most rollouts were rolled back
for it; at 400/s in all the longest answer was 3.5 s and every verdict was right. The "answer s" and
"GET /state" columns show how well the sandbox kept up in each run.

Instances: --instances bot processes (3 by default) share one fresh schema of the PostgreSQL at --postgres-url,
as a scaled-out deployment does; Slack's user side sends the commands to them in turn, and each has its own
pass-through proxy, so every read is counted against the instance that made it. Cloud Logging's quota is per
project, so the bot's budget is too: the instances spend one `engine.logging_reads_per_minute` together (the
bucket is a row of the shared database), not one each. `--instances 1` runs one bot on SQLite.

Measured: reads per minute in a steady window of --steady seconds that starts once every candidate serves its
first stage (all N being analysed), the most reads in any 60 s of the run (what the sliding quota sees), 429s
and other failed calls over the whole run, how many reads were sampled, entries, windows and time span per
read, the longest filter (Logging allows 20,000 characters), and the sandbox's and bot's CPU over the steady
window. Computed, not measured: the old design's reads, one errors query and one count per rollout per check
interval (the plan's `interval_s` from `plan_for`), as the ratio new / old. At the largest N (and every N
with --verdicts) the bench waits for every rollout's end in the bot's store and reports the verdicts (and the
bot's reason for any unexpected one) and the stages' durations (Cloud Run routing one stage to routing the
next; the last stage to the rollout's end) against the window W.

Goal: at 50 rollouts, under half the quota (< 30 reads/min), no 429, every rollout with its verdict; with three
instances, their reads together within the one budget.

    .venv/bin/python bench/analysis_cost.py            # N = 1, 10, 50; W = 60 s; about 11 minutes
    .venv/bin/python bench/analysis_cost.py --quick    # N = 10; W = 20 s; Cloud Run's times shortened; 2 min
    .venv/bin/python bench/analysis_cost.py --instances 1   # one bot on SQLite, as before the budget was shared
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp
import httpx
from aiohttp import web
from common import (
    CHILDREN,
    POSTGRES_URL,
    BenchError,
    BotServer,
    Control,
    Sandbox,
    cpu_s,
    elapsed_note,
    fleet_config,
    fmt,
    free_port,
    fresh_schema,
    median,
    percentile,
    ratio,
    remove_workdir,
    routed,
    run_main,
    service_names,
    start_bot,
    start_sandbox,
    table,
    tail,
    workdir,
)

from bot.adapters.store import Store
from bot.config import Config, load_config
from bot.domain.rollout import Plan, Rollout
from commands.deploy import plan_for
from sandbox.cloudrun_rules import CloudRunLimits

ENTRIES_LIST = "/v2/entries:list"
_SAMPLE = re.compile(r"sample\(insertId,\s*([0-9.eE+-]+)\)")
_RANGE = re.compile(r'timestamp>="([^"]+)" AND timestamp<"([^"]+)"')
_HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive",
                          "accept-encoding"})
FAULTY_EVERY = 10
FAULT_ERROR_RATE = 0.2


# --- the wire count -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One entries.list call the bot made and what the sandbox answered."""

    at: float  # time.time() when the answer came back
    status: int
    next_page: bool  # it carried a pageToken: a page after the first of one query
    fraction: float  # the query's sample(insertId, f); 1 when it reads every request log
    windows: int  # rollouts' windows the query covers (its revision_name terms)
    entries: int
    filter_chars: int
    answer_s: float  # how long the sandbox took to answer
    span_s: float  # the time range the query covers (its first timestamp>= ... timestamp< bounds)
    instance: int  # which of the bot's instances made it (its proxy's index)


def _span_s(text: str) -> float:
    found = _RANGE.search(text)
    if found is None:
        return float("nan")
    since, until = (datetime.fromisoformat(value.replace("Z", "+00:00")) for value in found.groups())
    return (until - since).total_seconds()


def _call(status: int, body: bytes, payload: bytes, answer_s: float, instance: int) -> Call:
    try:
        query = json.loads(body or b"{}")
    except ValueError:
        query = {}
    text = str(query.get("filter", "")) if isinstance(query, dict) else ""
    sample = _SAMPLE.search(text)
    entries = 0
    if status == 200:
        with contextlib.suppress(ValueError, AttributeError):
            entries = len(json.loads(payload).get("entries", []))
    return Call(time.time(), status, isinstance(query, dict) and bool(query.get("pageToken")),
                float(sample.group(1)) if sample else 1.0, text.count("resource.labels.revision_name="), entries,
                len(text), answer_s, _span_s(text), instance)


class LoggingTap:
    """A pass-through proxy in front of the sandbox's Cloud Logging, served from a thread of this process: the bot
    is pointed at it, every request is forwarded unchanged, and each entries.list call is recorded with the
    sandbox's answer (its status: 429 when the quota refused it)."""

    def __init__(self, upstream: str, instance: int) -> None:
        self.upstream = upstream.rstrip("/")
        self.instance = instance
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.calls: list[Call] = []  # appended by the proxy's thread; list.append is atomic
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="logging-tap", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120), auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        asked = time.perf_counter()
        async with self._session.request(request.method, f"{self.upstream}{request.path_qs}", data=body,
                                         headers=headers) as answer:
            payload = await answer.read()
            status = answer.status
            content_type = answer.headers.get("Content-Type", "application/json")
        if request.path == ENTRIES_LIST:
            self.calls.append(_call(status, body, payload, time.perf_counter() - asked, self.instance))
        return web.Response(status=status, body=payload, headers={"Content-Type": content_type})

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


# --- the rollouts ---------------------------------------------------------------------------------------


@dataclass
class Track:
    """One rollout, as Cloud Run routes it (polled) and as the bot's store ends it."""

    service: str
    stable: str
    faulty: bool
    candidate: str = ""
    routed_at: dict[int, float] = field(default_factory=dict)  # candidate's percent -> first seen routed
    fault_at: float | None = None
    verdict: str = ""  # the bot's end state (promoted, rolled_back, failed); "" while open
    state: str = ""
    reason: str = ""  # the bot's reason for its end (or pause)
    ended_at: float | None = None

    @property
    def expected(self) -> str:
        return "rolled_back" if self.faulty else "promoted"

    def observe(self, shares: dict[str, int], now: float) -> None:
        for revision, percent in shares.items():
            if revision != self.stable and percent > 0:
                self.candidate = revision
                self.routed_at.setdefault(percent, now)

    def stage_s(self, stages: Sequence[int]) -> list[float | None]:
        """Each stage's duration: Cloud Run routing it to routing the next; the last, to the rollout's end."""
        found: list[float | None] = []
        for index, percent in enumerate(stages):
            began = self.routed_at.get(percent)
            if index + 1 < len(stages):
                ended = self.routed_at.get(stages[index + 1])
            else:
                ended = self.ended_at if self.verdict == "promoted" else None
            found.append(ended - began if began is not None and ended is not None else None)
        return found


@dataclass
class Result:
    n: int
    plan: Plan
    calls: list[Call]
    steady: tuple[float, float]  # time.time() bounds of the steady window
    tracks: list[Track]
    cpu: dict[str, float]  # process ("sandbox", "bots": all instances together) -> share of one core, steady window
    setup_s: float  # first /deploy -> every candidate serving its first stage
    waited: bool  # verdicts were waited for
    quota: int  # Logging's reads_per_minute as the sandbox enforces it (GET /limits)
    state_s: list[float]  # latencies of GET /state over the run
    busy: int  # services at args.busy_rps in this run
    instances: int

    def in_steady(self, instance: int | None = None) -> list[Call]:
        return [c for c in self.calls if self.steady[0] <= c.at <= self.steady[1]
                and instance in (None, c.instance)]

    @property
    def per_minute(self) -> float:
        """All instances together."""
        return self.instance_per_minute(None)

    def instance_per_minute(self, instance: int | None) -> float:
        return len(self.in_steady(instance)) * 60 / (self.steady[1] - self.steady[0])

    @property
    def old_per_minute(self) -> float:
        """Computed: one errors query and one count per rollout per check interval."""
        return 2 * self.n * 60 / self.plan.interval_s

    def peak_60s(self, instance: int | None = None) -> int:
        """The most calls in any 60 s of the run: what Logging's sliding per-minute quota sees."""
        times = sorted(c.at for c in self.calls if instance in (None, c.instance))
        start, most = 0, 0
        for end, at in enumerate(times):
            while times[start] <= at - 60:
                start += 1
            most = max(most, end - start + 1)
        return most

    @property
    def refused(self) -> int:
        return sum(1 for c in self.calls if c.status == 429)

    def failed(self) -> Counter[int]:
        """Calls answered neither 200 nor 429, by status."""
        return Counter(c.status for c in self.calls if c.status not in (200, 429))


class Run:
    """N rollouts in one sandbox: the bench's view of them, refreshed by polling the control API and the store."""

    def __init__(self, control: Control, store: Store, tracks: list[Track], stages: Sequence[int],
                 args: argparse.Namespace, alive: Callable[[], None]) -> None:
        self.control = control
        self.store = store
        self.tracks = tracks
        self.stages = stages
        self.args = args
        self.alive = alive
        self.state_s: list[float] = []  # how long each GET /state took: the sandbox's event loop keeping up
        self._store_read = 0.0

    def watch(self, done: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll until `done()`; returns time.time() of the poll that found it."""
        deadline = time.monotonic() + timeout
        while True:
            self.alive()
            asked = time.perf_counter()
            state = self.control.state()
            self.state_s.append(time.perf_counter() - asked)
            now = time.time()
            for track in self.tracks:
                track.observe(routed(state, track.service), now)
                if track.faulty and track.fault_at is None and self.stages[-1] in track.routed_at:
                    self.control.patch(f"/revisions/{track.candidate}", {"error_rate": FAULT_ERROR_RATE})
                    track.fault_at = time.time()
            if now - self._store_read >= 2:
                self.read_store()
            if done():
                return now
            if time.monotonic() > deadline:
                states = Counter(t.state or "no rollout yet" for t in self.tracks)
                raise BenchError(f"not within {timeout:g} s: {what} (rollouts by state: {dict(states)})")
            time.sleep(self.args.poll_s)

    def read_store(self) -> None:
        self._store_read = time.time()
        latest: dict[str, Rollout] = {}
        for stored in self.store.rollouts(limit=10 * len(self.tracks)):
            latest.setdefault(stored.rollout.service, stored.rollout)
        for track in self.tracks:
            rollout = latest.get(track.service)
            if rollout is None:
                continue
            track.state = rollout.state.value
            track.reason = rollout.reason
            if rollout.state.ended and rollout.pending is None and not track.verdict:
                track.verdict = rollout.state.value
                track.ended_at = rollout.ended_at.timestamp() if rollout.ended_at else time.time()


@contextlib.contextmanager
def database(args: argparse.Namespace, directory: Path, n: int) -> Iterator[str]:
    """One SQLite file for one instance; a fresh PostgreSQL schema, dropped afterwards, for several."""
    if args.instances == 1:
        yield f"sqlite:///{directory / f'bot-{n}-{secrets.token_hex(3)}.db'}"
        return
    with fresh_schema(args.postgres_url) as (url, _):
        yield url


def measure(n: int, config_path: Path, config: Config, directory: Path, args: argparse.Namespace,
            wait_verdicts: bool) -> Result:
    services = service_names(args.services)[:n]
    plan = plan_for(config, services[0], "canary")
    ports = [free_port() for _ in range(args.instances)]
    taps: list[LoggingTap] = []
    with elapsed_note(f"N={n}: sandbox and {args.instances} bot instance(s) start"):
        sandbox = start_sandbox(config_path, directory, world_only=True,
                                bot_urls=[f"http://127.0.0.1:{port}" for port in ports], window=0,
                                requests_per_s=args.requests_per_s, start_ms=args.start_ms, route_ms=args.route_ms)
    try:
        with database(args, directory, n) as database_url:
            taps = [LoggingTap(sandbox["logging_endpoint"], index) for index in range(args.instances)]
            for tap in taps:
                tap.start()
            bots = [start_bot(sandbox, directory, port, env={"CHATOPS_LOGGING_ENDPOINT": tap.url,
                                                             "CHATOPS_DATABASE_URL": database_url})
                    for port, tap in zip(ports, taps, strict=True)]
            store = Store(database_url)
            try:
                return _run(n, plan, services, sandbox, bots, taps, store, args, wait_verdicts)
            finally:
                CHILDREN.stop_all()
                store.close()
    finally:
        CHILDREN.stop_all()
        for tap in taps:
            tap.stop()


def _run(n: int, plan: Plan, services: list[str], sandbox: Sandbox, bots: list[BotServer], taps: list[LoggingTap],
         store: Store, args: argparse.Namespace, wait_verdicts: bool) -> Result:
    def alive() -> None:
        for bot in bots:
            if bot.proc.poll() is not None:
                raise BenchError(f"a bot instance exited with {bot.proc.returncode}:\n{tail(bot.log)}")

    with httpx.Client(timeout=30) as client:
        control = Control(sandbox, client)
        quota = int(control.limits()["logging"]["reads_per_minute"])
        busy = args.busy if n <= args.busy_until else 0
        for service in service_names(args.services)[:busy]:
            control.patch(f"/services/{service}", {"requests_per_s": args.busy_rps})
        state = control.state()
        tracks = []
        for index, service in enumerate(services):
            stable = next((r for r, p in routed(state, service).items() if p == 100), None)
            if stable is None:
                raise BenchError(f"{service} has no revision serving all its traffic")
            tracks.append(Track(service, stable, faulty=n >= FAULTY_EVERY and index % FAULTY_EVERY
                                == FAULTY_EVERY - 1))
        run = Run(control, store, tracks, plan.stages, args, alive)
        first = plan.stages[0]
        sent = time.time()
        with elapsed_note(f"N={n}: {n} rollouts to their first stage"):
            for track in tracks:
                control.command(f"/deploy {track.service} tag=bench-{secrets.token_hex(3)}")
            started = run.watch(lambda: all(first in t.routed_at or t.verdict for t in tracks), 300 + 4 * n,
                                f"every candidate serving {first}% (or its rollout ended)")
        pids = {"sandbox": [sandbox.proc.pid], "bots": [bot.proc.pid for bot in bots]}
        cpu_before = {name: sum(cpu_s(pid) for pid in group) for name, group in pids.items()}
        with elapsed_note(f"N={n}: steady window"):
            ended = run.watch(lambda: time.time() >= started + args.steady, args.steady + 60, "the steady window")
        cpu = {name: (sum(cpu_s(pid) for pid in group) - cpu_before[name]) / (ended - started)
               for name, group in pids.items()}
        if wait_verdicts:
            longest = len(plan.stages) * plan.window_s * (1 + plan.insufficient.extend) + 300
            with elapsed_note(f"N={n}: every rollout to its verdict"):
                run.watch(lambda: all(t.verdict for t in tracks), longest, "every rollout's verdict")
        calls = sorted((c for tap in taps for c in tap.calls), key=lambda c: c.at)
        return Result(n, plan, calls, (started, ended), tracks, cpu, started - sent, wait_verdicts, quota,
                      run.state_s, busy, len(bots))


# --- the report -----------------------------------------------------------------------------------------


def spread(values: Sequence[float], digits: int = 0) -> str:
    if not values:
        return "-"
    return f"{fmt(median(values), digits)} ({fmt(min(values), digits)}-{fmt(max(values), digits)})"


def report(results: list[Result], config: Config, args: argparse.Namespace) -> None:
    engine = config.engine
    quota = results[0].quota
    plan = results[0].plan
    window = plan.window_s
    print(f"Cloud Logging entries.list calls by the bot, counted on the wire (a pass-through proxy: the sandbox's "
          f"GET /state has no count of them); stages {'/'.join(map(str, plan.stages))}%, W = {window:g} s, check "
          f"interval {plan.interval_s:g} s; engine: interval {engine.interval:g} s, log lag {engine.log_lag:g} s, "
          f"budget {engine.logging_reads_per_minute}/min; Logging quota {quota}/min per project (sliding 60 s)")
    modelled = CloudRunLimits()
    shortened = (args.start_ms, args.route_ms) != (modelled.revision_start_ms, modelled.route_ms)
    print(f"fleet of {args.services} services at {args.requests_per_s:g} requests/s each, except, up to N = "
          f"{args.busy_until}, {args.busy} at {args.busy_rps:,.0f}/s; Cloud Run: revision start "
          f"{args.start_ms:,.0f} ms, routing {args.route_ms:,.0f} ms ("
          + (f"shortened; the cloud_run limit group models {modelled.revision_start_ms:,.0f} and "
             f"{modelled.route_ms:,.0f}" if shortened else "the cloud_run limit group's") + f"); steady window "
          f"{args.steady:g} s from every candidate serving {plan.stages[0]}%")
    rows = []
    for r in results:
        rps = r.busy * args.busy_rps + (args.services - r.busy) * args.requests_per_s
        rows.append([str(r.n), f"{rps:,.0f}", fmt(r.per_minute, 1), fmt(ratio(r.per_minute, r.n), 2),
                     str(engine.logging_reads_per_minute), str(quota), str(r.peak_60s()), str(r.refused),
                     ", ".join(f"{n} x {status}" for status, n in sorted(r.failed().items())) or "0",
                     fmt(r.old_per_minute, 0), fmt(ratio(r.per_minute, r.old_per_minute), 3) + "x"])
    print(table(["N", "fleet req/s", "reads/min", "per rollout", "budget", "quota", "peak 60 s", "429s",
                 "other failures", "old design (computed)", "new / old"], rows))
    print(f"{results[0].instances} bot instance(s) on one "
          + ("PostgreSQL" if results[0].instances > 1 else "SQLite file") + "; their reads, each and together:")
    rows = []
    for r in results:
        for instance in [*range(r.instances), None]:
            rows.append([str(r.n), "all" if instance is None else f"#{instance + 1}",
                         fmt(r.instance_per_minute(instance), 1), str(r.peak_60s(instance)),
                         str(engine.logging_reads_per_minute),
                         f"{ratio(r.instance_per_minute(instance), engine.logging_reads_per_minute):.2f}"])
    print(table(["N", "instance", "reads/min", "peak 60 s", "budget/min (one, shared)", "reads / budget"], rows))
    print("reads/min: entries.list calls in the steady window, per minute; peak 60 s: most calls in any 60 s of the "
          "run; 429s and other failures (answered neither 200 nor 429): over the whole run; old design: computed, "
          "2 reads (errors query + count) per rollout per check interval, = 2 x N x 60 / interval")
    rows = []
    for r in results:
        first = [c for c in r.calls if not c.next_page]
        sampled = [c.fraction for c in first if c.fraction < 1]
        rows.append([str(r.n), f"{len(sampled)}/{len(first)}", fmt(min(sampled), 4) if sampled else "-",
                     str(sum(1 for c in r.calls if c.next_page)), spread([float(c.entries) for c in r.calls]),
                     spread([float(c.windows) for c in first]), spread([c.span_s for c in first]),
                     spread([c.answer_s for c in r.calls], 2),
                     f"{max((c.filter_chars for c in r.calls), default=0):,}",
                     f"{r.cpu['sandbox'] * 100:.0f}% / {r.cpu['bots'] * 100:.0f}%",
                     f"{percentile(r.state_s, 99):.2f} / {max(r.state_s):.2f}"])
    print(table(["N", "sampled", "min f", "next pages", "entries/read", "windows/read", "span s", "answer s",
                 "filter chars", "CPU sandbox / bots", "GET /state p99 / max s"], rows))
    print("over the whole run: sampled: first pages whose query carried sample(insertId, f), min f the smallest f; "
          "next pages: calls with a pageToken; entries, windows (rollouts covered), span (time range covered) per "
          "read and answer (how long the sandbox took): median (min-max); filter chars: the longest query (Logging "
          "allows 20,000); CPU: share of one core over the steady window (2 cores here); GET /state: how long the "
          "sandbox took to answer the bench's polls (its emulators share one event loop: a slow answer means the "
          "fleet's probes waited too)")
    for r in results:
        stage_one = [s for t in r.tracks if (s := t.stage_s(r.plan.stages)[0]) is not None]
        reached = sum(1 for t in r.tracks if r.plan.stages[0] in t.routed_at)
        lasted = (f"lasted {spread(stage_one)} s = {fmt(ratio(median(stage_one), window), 2)} W (median, over the "
                  f"{len(stage_one)} rollouts that left it)" if stage_one else "had not ended when the run did")
        print(f"  N={r.n}: first /deploy -> every candidate at {r.plan.stages[0]}% (or ended): {r.setup_s:.0f} s, "
              f"{reached}/{r.n} got there; stage {r.plan.stages[0]}% {lasted}")
    for r in (r for r in results if r.waited):
        verdicts = Counter(t.verdict or f"none ({t.state})" for t in r.tracks)
        wrong = [t for t in r.tracks if t.verdict != t.expected]
        print(f"N={r.n}: verdicts {dict(verdicts)}; expected {sum(not t.faulty for t in r.tracks)} promoted, "
              f"{sum(t.faulty for t in r.tracks)} rolled back (faulty at {r.plan.stages[-1]}%); "
              f"{len(wrong)} not as expected")
        why = Counter((t.verdict or t.state, t.expected, t.reason[:160]) for t in wrong)
        for (got, expected, reason), count in why.most_common():
            print(f"    {count} x {got} (expected {expected}): {reason}")
        rows = []
        for index, percent in enumerate(r.plan.stages):
            took = [s for t in r.tracks if not t.faulty and (s := t.stage_s(r.plan.stages)[index]) is not None]
            rows.append([f"{percent}%", str(len(took)), spread(took), fmt(ratio(median(took), window), 2) + " W"])
        print(table(["stage", "rollouts", "duration s", "median / W"], rows))
        print(f"  duration: Cloud Run routing the stage -> routing the next (the last: -> the rollout's end in the "
              f"bot's store), promoted rollouts; a stage is W + the log lag ({engine.log_lag:g} s) + the wait for a "
              f"read + the next stage's routing ({args.route_ms / 1000:g} s) at least")
    last = results[-1]
    capacity = max(1.0, engine.logging_reads_per_minute / 10)
    within = all(r.peak_60s() <= engine.logging_reads_per_minute + capacity for r in results)
    print(f"{last.instances} instance(s): the most reads in any 60 s, all instances together, "
          f"{'stayed' if within else 'did NOT stay'} within the one budget of {engine.logging_reads_per_minute}/min "
          f"(+ the bucket's {capacity:g} to start with): " + ", ".join(f"N={r.n} {r.peak_60s()}" for r in results))
    print(f"N={last.n}: {last.per_minute:.1f} reads/min = {ratio(last.per_minute, quota):.2f} of the quota (goal < "
          f"{quota / 2:g}/min, half of it); {last.refused} 429s (goal 0); "
          f"{ratio(last.per_minute, last.old_per_minute):.3f}x the old design's {last.old_per_minute:,.0f}/min "
          "(computed)" + (f"; {sum(t.verdict == t.expected for t in last.tracks)}/{last.n} rollouts ended as "
                          "expected" if last.waited else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    cloud_run = CloudRunLimits()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50], metavar="N",
                        help="concurrent rollouts")
    parser.add_argument("--services", type=int, default=0, help="size of the generated fleet (default: the largest N)")
    parser.add_argument("--window", type=float, default=60.0, help="canary analysis window per stage, s")
    parser.add_argument("--steady", type=float, default=90.0, help="seconds of the measured steady window")
    parser.add_argument("--busy", type=int, default=1, help="services (the first ones) with --busy-rps traffic")
    parser.add_argument("--busy-rps", type=float, default=1000.0, help="simulated requests/s of a busy service")
    parser.add_argument("--busy-until", type=int, default=10,
                        help="the largest N with busy services (see the docstring: the sandbox's Logging cost)")
    parser.add_argument("--requests-per-s", type=float, default=8.0, help="simulated requests/s of the others")
    parser.add_argument("--start-ms", type=float, default=cloud_run.revision_start_ms,
                        help="time a new revision takes to start (default: the cloud_run limit group's)")
    parser.add_argument("--route-ms", type=float, default=cloud_run.route_ms,
                        help="time Cloud Run takes to route a traffic change (default: the cloud_run limit group's)")
    parser.add_argument("--instances", type=int, default=3,
                        help="bot instances sharing one PostgreSQL schema (1: one instance on SQLite)")
    parser.add_argument("--postgres-url", default=POSTGRES_URL,
                        help="PostgreSQL to create a fresh schema in for the instances of each N")
    parser.add_argument("--poll-s", type=float, default=1.0, help="how often GET /state is polled")
    parser.add_argument("--verdicts", action="store_true", help="wait for every rollout's verdict at every N, "
                                                               "not only at the largest")
    parser.add_argument("--quick", action="store_true", help="N = 10, W = 20 s, 25 requests/s a service (so a 5%% "
                        "stage still sees min_requests), a 30 s steady window, Cloud Run's times shortened to 5,000 ms "
                        "to start and 1,000 to route")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.window, args.steady, args.requests_per_s = [10], 20.0, 30.0, 25.0
        args.start_ms, args.route_ms = 5000.0, 1000.0
    args.services = max(args.services, *args.sizes)
    args.busy = min(args.busy, args.services)
    directory = workdir("analysis-cost")
    try:
        config_path = fleet_config(args.services, directory, canary={"window": args.window})
        config = load_config(config_path)
        results = [measure(n, config_path, config, directory, args, args.verdicts or n == max(args.sizes))
                   for n in args.sizes]
    finally:
        remove_workdir(directory)
    report(results, config, args)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
