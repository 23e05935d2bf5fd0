#!/usr/bin/env python3
"""Scale-out: how many cheap slash commands a second 1, 2 and 3 instances of `chatops serve` on one PostgreSQL
acknowledge within Slack's 3 s, and their ack p99, against one instance measured in the same run.

How: one `chatops sandbox --headless --world-only` (the example fleet, no simulated traffic) provides Google, Slack
and Secret Manager. For each instance count K, a fresh schema is created in the PostgreSQL at --postgres-url
(`options=-csearch_path=<schema>`, dropped afterwards) and K `chatops serve` processes are started on the
sandbox's `bot_config` and `bot_env` with that database, each on its own port under its own CHATOPS_INSTANCE_ID,
as a Cloud Run service scaled to K instances would run; they sweep, reconcile and fire digests as usual while
measured. Commands go straight to the instances' `/slack/events`, round-robin (command i to instance i mod K, as
a load balancer would), signed with the signing secret read from the sandbox's Secret Manager: `/help` and
`/status` alternately, so half of them read the shared database (`/status` lists the rollouts in progress), and
every one is written to the shared audit table. Their `response_url` points at a sink in this process. Load is
open loop, in steps of increasing rate (--rates, --step seconds each): every send is scheduled at a fixed time and
nobody waits for an answer before the next, and a latency is from the scheduled send to the complete HTTP
response, so a lagging sender counts against the server. A step is sustained when every command got 200 within
3 s; the ramp stops at the first step that is not. Reported per K: the highest sustained rate, the ack p50/p99 at
it, the ack p99 at the highest rate that one instance sustained (the same load for every K), and at a light rate
(--light-rate, 50/s) that no count is near its limit at, where the difference is what more instances cost.
Afterwards the audit table is counted: every acknowledged command has exactly one row, whichever instance took it,
so the count lies between the commands acknowledged in time and those sent (one answered late may be audited).

All instances, the sandbox, PostgreSQL and this load generator share this machine's cores (2 here). One instance
is one Python event loop and uses at most about one core, so a second instance can take the other core and a third
only shares them: the ratios say that spreading commands over instances is correct and what it costs (connections
to PostgreSQL, each instance's own sweeps and reconciler ticks), not what Cloud Run, with CPU for each instance,
would give. A step is only 4 s, so the sustained rate of a count can differ by a step between runs.

Goal: 2 and 3 instances sustain at least 0.8x the rate of one instance, with ack p99 at one instance's sustained
rate under Slack's 3 s, and every acknowledged command audited exactly once.

    .venv/bin/python bench/scale_out.py            # rates 25 to 500/s, 4 s a step; about 2 to 3 min
    .venv/bin/python bench/scale_out.py --quick    # rates 25 to 200/s, 2 s a step; about a minute
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from common import (
    ACK_TIMEOUT_S,
    CHILDREN,
    EXAMPLE_CONFIG,
    POSTGRES_URL,
    BenchError,
    BotServer,
    Sandbox,
    elapsed_note,
    fmt,
    free_port,
    fresh_schema,
    percentile,
    post_signed,
    ratio,
    remove_workdir,
    run_main,
    signing_secret,
    slash_command,
    start_bot,
    start_sandbox,
    table,
    workdir,
)
from sqlalchemy import make_url, text
from sqlalchemy.engine import Engine

COMMANDS = (("/help", ""), ("/status", ""))


@dataclass
class Step:
    rate: float
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def sustained(self) -> bool:
        return not self.errors and len(self.latencies_ms) == self.sent

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)


@dataclass
class Run:
    instances: int
    steps: list[Step] = field(default_factory=list)
    audited: int = 0
    acked: int = 0
    sent: int = 0
    followups: int = 0

    def best(self) -> Step | None:
        """The highest-rate step sustained (the ramp stops at the first one that is not)."""
        good = [s for s in self.steps if s.sustained]
        return good[-1] if good else None

    def at(self, rate: float) -> Step | None:
        return next((s for s in self.steps if s.rate == rate), None)


# --- PostgreSQL -----------------------------------------------------------------------------------------


def audit_rows(admin: Engine, database_url: str) -> int:
    schema = make_url(database_url).query["options"]
    name = str(schema).removeprefix("-csearch_path=")
    with admin.connect() as conn:
        return int(conn.execute(text(f'SELECT count(*) FROM "{name}".audit')).scalar_one())


# --- load -----------------------------------------------------------------------------------------------


class Sink:
    """Where the commands' response_url points: accepts every follow-up as Slack would, and counts them."""

    def __init__(self) -> None:
        self.received = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        async def respond(request: web.Request) -> web.Response:
            try:
                await request.read()
            except ConnectionResetError:  # the instance gave the follow-up up mid-send: its business, not ours
                return web.Response(status=400)
            self.received += 1
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/response/{id}", respond)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/response"

    async def drained(self, quiet_s: float = 1.5, most_s: float = 20.0) -> None:
        """Until no follow-up has come for `quiet_s` (the instances work through what an overloaded step left)."""
        deadline = time.monotonic() + most_s
        seen, still = self.received, time.monotonic()
        while time.monotonic() - still < quiet_s and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            if self.received != seen:
                seen, still = self.received, time.monotonic()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def send_one(session: aiohttp.ClientSession, step: Step, url: str, secret: str, endpoints: dict[str, Any],
                   sink: str, command: tuple[str, str], scheduled: float) -> None:
    delay = scheduled - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
    body, headers = slash_command(secret, endpoints, command[0], command[1],
                                  response_url=f"{sink}/{secrets.token_hex(8)}")
    error, _ = await post_signed(session, url, body, headers)
    if error:
        step.errors.append(error)
    else:
        step.latencies_ms.append((time.perf_counter() - scheduled) * 1000)


async def open_loop(urls: Sequence[str], secret: str, endpoints: dict[str, Any], sink: str, rate: float,
                    duration: float, start_index: int = 0) -> Step:
    """`rate` commands a second in all, round-robin over `urls`, at fixed times, for `duration` s."""
    step = Step(rate)
    step.sent = max(1, int(rate * duration))
    interval = 1.0 / rate
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        start = time.perf_counter() + 0.05
        await asyncio.gather(*(send_one(session, step, urls[(start_index + i) % len(urls)], secret, endpoints, sink,
                                        COMMANDS[i % len(COMMANDS)], start + i * interval)
                               for i in range(step.sent)))
    return step


async def ramp(run: Run, bots: Sequence[BotServer], sandbox: Sandbox, secret: str, sink: Sink,
               rates: Sequence[float], step_s: float) -> None:
    urls = [f"{bot.url}/slack/events" for bot in bots]
    endpoints = sandbox.endpoints
    # warm-up, not measured: connections, Bolt's first auth.test, the instances' first queries
    warm = await open_loop(urls, secret, endpoints, sink.url, 10, 1.0)
    run.acked += len(warm.latencies_ms)
    run.sent += warm.sent
    for rate in rates:
        step = await open_loop(urls, secret, endpoints, sink.url, rate, step_s)
        run.steps.append(step)
        run.acked += len(step.latencies_ms)
        run.sent += step.sent
        print(f"  {run.instances} instance(s) at {rate:g}/s: {len(step.latencies_ms)}/{step.sent} acked in time, "
              f"p99 {fmt(step.p99)} ms" + (f", errors {sorted(set(step.errors))}" if step.errors else ""),
              file=sys.stderr, flush=True)
        if not step.sustained:
            break
        await asyncio.sleep(1.0)  # let the follow-ups of this step go out before the next


def measure(sandbox: Sandbox, directory: Path, instances: int, args: argparse.Namespace, secret: str) -> Run:
    run = Run(instances)
    with fresh_schema(args.postgres_url) as (database_url, admin):
        bots: list[BotServer] = []
        try:
            # one at a time: each migrates the schema at start under a lock anyway
            for _ in range(instances):
                bots.append(start_bot(sandbox, directory, free_port(),
                                      env={"CHATOPS_DATABASE_URL": database_url}, timeout=60))

            async def load() -> None:
                sink = Sink()
                await sink.start()
                try:
                    await ramp(run, bots, sandbox, secret, sink, args.rates, args.step)
                    await sink.drained()
                    run.followups = sink.received
                finally:
                    await sink.stop()

            asyncio.run(load())
            run.audited = audit_rows(admin, database_url)
        finally:
            for bot in bots:
                CHILDREN.stop(bot.proc)
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 3], help="instance counts to measure")
    parser.add_argument("--rates", type=float, nargs="+", default=[25, 50, 100, 150, 200, 250, 300, 400, 500],
                        help="commands per second in all, one step each, in increasing order")
    parser.add_argument("--step", type=float, default=4.0, help="seconds of load per step")
    parser.add_argument("--light-rate", type=float, default=50.0,
                        help="a rate every instance count sustains easily (one of --rates): p99 there is overhead")
    parser.add_argument("--postgres-url", default=POSTGRES_URL,
                        help="PostgreSQL to create a fresh schema in for each instance count")
    parser.add_argument("--quick", action="store_true", help="rates 25 to 200/s, 2 s a step")
    args = parser.parse_args()
    if args.quick:
        args.rates, args.step = [25, 50, 100, 200], 2.0
    if args.light_rate not in args.rates:
        raise BenchError("--light-rate must be one of --rates")
    if 1 not in args.instances:
        raise BenchError("--instances must include 1: the other counts are compared with it")
    args.instances = sorted(set(args.instances))
    directory = workdir("scale-out")
    runs: list[Run] = []
    try:
        with elapsed_note("sandbox start"):
            sandbox = start_sandbox(EXAMPLE_CONFIG, directory, world_only=True, requests_per_s=0)
        secret = signing_secret(sandbox.endpoints)
        for instances in args.instances:
            with elapsed_note(f"{instances} instance(s)"):
                runs.append(measure(sandbox, directory, instances, args, secret))
    finally:
        CHILDREN.stop_all()
        remove_workdir(directory)

    one = runs[0]
    base = one.best()
    common = base.rate if base is not None else None
    base_common_p99 = base.p99 if base is not None else float("nan")
    print(f"scale-out: /help and /status alternately, open loop, round-robin over the instances' /slack/events, "
          f"steps of {', '.join(f'{r:g}' for r in args.rates)} commands/s for {args.step:g} s each; a step is "
          f"sustained when every command is acked 200 within {ACK_TIMEOUT_S:g} s; one PostgreSQL schema per "
          f"instance count; every process on this machine's {os.cpu_count()} cores")
    light = one.at(args.light_rate)
    light_p99 = light.p99 if light is not None and light.sustained else float("nan")
    rows = []
    for run in runs:
        best = run.best()
        at_common = run.at(common) if common is not None else None
        at_light = run.at(args.light_rate)
        sustained = best.rate if best is not None else 0.0
        common_p99 = at_common.p99 if at_common is not None and at_common.sustained else float("nan")
        run_light_p99 = at_light.p99 if at_light is not None and at_light.sustained else float("nan")
        rows.append([str(run.instances), fmt(sustained, 0), fmt(ratio(sustained, base.rate if base else 0), 2),
                     fmt(percentile(best.latencies_ms, 50) if best else float("nan")),
                     fmt(best.p99 if best else float("nan")),
                     fmt(common_p99), fmt(ratio(common_p99, base_common_p99), 2),
                     fmt(run_light_p99), fmt(ratio(run_light_p99, light_p99), 2),
                     f"{run.audited}/{run.acked}/{run.sent}"])
    print(table(["instances", "sustained cmd/s", "x 1 inst", "p50 ms", "p99 ms",
                 f"p99 ms at {fmt(common or float('nan'), 0)}/s", "x 1 inst",
                 f"p99 ms at {args.light_rate:g}/s", "x 1 inst", "audit rows/acked/sent"], rows))
    capped = [run.instances for run in runs if run.best() is not None and run.best() is run.steps[-1]]
    if capped:
        print(f"instances {capped} sustained the highest rate offered ({args.rates[-1]:g}/s): their limit is higher")
    wrong = [run.instances for run in runs if not run.acked <= run.audited <= run.sent]
    if wrong:
        print(f"audit rows outside [acknowledged, sent] with {wrong} instance(s): a command lost or doubled")
    met = base is not None and not wrong and all(
        (best := run.best()) is not None and best.rate >= 0.8 * base.rate
        and (same := run.at(base.rate)) is not None and same.sustained and same.p99 < ACK_TIMEOUT_S * 1000
        for run in runs[1:])
    print(f"goal: more instances sustain >= 0.8x one instance's rate, p99 at its rate < 3000 ms, every acknowledged "
          f"command audited once: {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
