#!/usr/bin/env python3
"""Load: a thousand mixed slash commands at 20 a second, signed as Slack signs them, against the bot in the
sandbox while three canary rollouts run and the alert sweeps probe the fleet every few seconds; the acks
against a bare slack-bolt app hit at the same rate in the same run.

How: `chatops sandbox --headless --world-only --window 600` makes the world for a generated fleet
(--services, each revision answering in --latency-ms, no simulated traffic but for the rollouts' services),
and `chatops serve` runs on the sandbox's bot config, as the sandbox would run its bot: canary windows of 600 s,
so every rollout stays at its first stage for the whole run, and the alert sweeps every 3 s over the whole
fleet. Three `/deploy <service> tag=load` go through Slack's user side first, and the run starts once Cloud
Run routes each candidate its first stage. Then --count commands are sent straight to `{bot}/slack/events`,
signed with the signing secret read from the sandbox's Secret Manager, --rate a second, open loop: each send
is scheduled at a fixed time and nobody waits for an answer before the next. The commands are a fixed,
seeded mix of what people type: `/health all`, `/health <service>`, `/status` with and without a service,
`/help`, `/incidents`, `/history`, `/digest`, `/deploy ... dry-run`, and mistakes (an unknown service or
command, missing or malformed arguments, a viewer asking to pause). The same sequence goes to bench/bare_bolt.py
(its own process, an ack-only listener for each of those commands), its sends offset by half an interval.

Each latency is from the scheduled send time to the complete HTTP response (a lagging sender counts against
the server; the sender's own lag is printed). An error is a non-200 or no answer within Slack's 3 s. Every
answer the bot gives (in the ack, and what it posts to the command's `response_url`, a sink in this process)
is read: one that looks like a failure (starts with `:x:`, says it "failed on our side", or holds a
traceback) is counted and shown, and so is a mistake that got no answer in its ack. The bot's resident memory
is read just before the run (after a warm-up) and a few seconds after it. At the end the rollouts must
still be in canary and the sweeps must have run.

Goals: the bot's ack p99 within 3x bare Bolt's; no errors and no failure-looking answers; resident memory
growth under 10%.

    .venv/bin/python bench/load.py           # 100 services, 1,000 commands at 20/s; about 80 s
    .venv/bin/python bench/load.py --quick   # 30 services, 200 commands at 20/s; about 35 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml
from aiohttp import web
from common import (
    CHILDREN,
    PYTHON,
    REPO,
    Control,
    Sandbox,
    fleet_config,
    fmt,
    free_port,
    log_problems,
    percentile,
    post_signed,
    ratio,
    remove_workdir,
    routed,
    rss_mb,
    run_main,
    service_names,
    signing_secret,
    slash_command,
    start_bot,
    start_sandbox,
    table,
    wait_http_ok,
    workdir,
)
from sqlalchemy import select

from bot.adapters.store import Store
from bot.adapters.tables import ScheduleRunRow

ROLLOUTS = 3
SETTLE_S = 5.0  # after the last send, for the answers that follow acks to arrive before memory is read


@dataclass(frozen=True)
class Kind:
    """One kind of command in the mix: what is typed, by whom, and whether it is a mistake to be answered."""

    name: str
    command: str
    text: str
    weight: int
    user: str = "oncall"
    mistake: bool = False


def mix(services: list[str], rolling: list[str]) -> list[Kind]:
    """What people type during an afternoon of rollouts, weighted; every service named exists unless the
    kind is a mistake."""
    quiet = services[-1]
    return [
        Kind("/health all", "/health", "all", 1),
        Kind("/health <service>", "/health", services[len(services) // 2], 6),
        Kind("/status", "/status", "", 3),
        Kind("/status <rolling>", "/status", rolling[0], 2),
        Kind("/help", "/help", "", 2),
        Kind("/help deploy", "/help", "deploy", 1),
        Kind("/incidents", "/incidents", "", 2),
        Kind("/history <rolling>", "/history", rolling[1], 2),
        Kind("/digest", "/digest", "", 1),
        Kind("/deploy dry-run", "/deploy", f"{quiet} tag=v9 dry-run", 1),
        Kind("unknown service", "/health", "svc-nosuch", 1, mistake=True),
        Kind("unknown command", "/frobnicate", "now", 1, mistake=True),
        Kind("missing argument", "/history", "", 1, mistake=True),
        Kind("malformed duration", "/silence", f"{quiet} forever", 1, mistake=True),
        Kind("bad option", "/deploy", f"{quiet} image=", 1, mistake=True),
        Kind("refused (viewer)", "/pause", rolling[2], 1, user="viewer", mistake=True),
    ]


def failure_looking(text: str) -> bool:
    return text.startswith(":x:") or "failed on our side" in text or "Traceback" in text


@dataclass
class Sent:
    kind: Kind
    latency_ms: float | None = None
    error: str = ""
    ack_text: str = ""


@dataclass
class Series:
    name: str
    sent: list[Sent] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)

    def latencies(self) -> list[float]:
        return [s.latency_ms for s in self.sent if s.latency_ms is not None]

    def errors(self) -> list[str]:
        return [s.error for s in self.sent if s.error]


@dataclass
class Sink:
    """Where the commands' response_url points: every follow-up accepted as Slack would, its text kept."""

    replies: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    async def start(self, port: int) -> web.AppRunner:
        async def respond(request: web.Request) -> web.Response:
            with contextlib.suppress(ValueError):
                self.replies[request.match_info["id"]].append(str((await request.json()).get("text", "")))
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/response/{id}", respond)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner


async def send_one(session: aiohttp.ClientSession, series: Series, sent: Sent, url: str, secret: str,
                   endpoints: dict[str, Any], reply_url: str, scheduled: float) -> None:
    delay = scheduled - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
    series.lag_ms.append(max(0.0, (time.perf_counter() - scheduled) * 1000))
    kind = sent.kind
    body, headers = slash_command(secret, endpoints, kind.command, kind.text, response_url=reply_url, user=kind.user)
    sent.error, raw = await post_signed(session, url, body, headers)
    if sent.error:
        return
    sent.latency_ms = (time.perf_counter() - scheduled) * 1000
    sent.ack_text = ack_text(raw.decode(errors="replace"))


def ack_text(body: str) -> str:
    """What Slack shows of an ack: a JSON message's text, else the body itself (Bolt acks bare text as text)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    return str(payload.get("text", "")) if isinstance(payload, dict) else body


async def open_loop(targets: dict[str, str], secret: str, endpoints: dict[str, Any], reply_to: str,
                    kinds: list[Kind], rate: float) -> dict[str, Series]:
    """The same sequence of commands to each target, `rate` a second, at fixed times, not waiting for answers;
    the i-th command to target "bot" is answered at `{reply_to}bot-{i}`."""
    series = {name: Series(name, [Sent(kind) for kind in kinds]) for name in targets}
    interval = 1.0 / rate
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        start = time.perf_counter() + 0.05
        tasks = []
        for k, (name, url) in enumerate(targets.items()):
            offset = k * interval / max(1, len(targets))
            tasks += [asyncio.create_task(send_one(session, series[name], sent, url, secret, endpoints,
                                                   f"{reply_to}{name.replace(' ', '-')}-{i}",
                                                   start + offset + i * interval))
                      for i, sent in enumerate(series[name].sent)]
        await asyncio.gather(*tasks)
    return series


def start_rollouts(control: Control, services: list[str], timeout: float = 90.0) -> None:
    """`/deploy <service> tag=load` for each, through Slack's user side; returns once Cloud Run routes each
    candidate its first stage."""
    for service in services:
        control.command(f"/deploy {service} tag=load")
    control.until(lambda state: all(len(routed(state, service)) == 2 for service in services), timeout, 0.2,
                  f"{len(services)} canaries routed their first stage")


def in_canary(control: Control, services: list[str]) -> dict[str, dict[str, int]]:
    state = control.state()
    return {service: routed(state, service) for service in services}


def sweeps_between(database_url: str, start: datetime, end: datetime) -> int:
    """Sweep fire times the bot claimed in its store within [start, end)."""
    store = Store(database_url)
    try:
        with store.reading() as session:
            fires = session.scalars(select(ScheduleRunRow.fire_time).where(ScheduleRunRow.job == "sweep"))
            return sum(1 for fire in fires if start <= fire.replace(tzinfo=UTC) < end)
    finally:
        store.close()


@dataclass
class Run:
    series: dict[str, Series]
    sink: Sink
    rss_before: float
    rss_after: float
    canary_before: dict[str, dict[str, int]]
    canary_after: dict[str, dict[str, int]]
    sweeps: int
    seconds: float


async def measure(sandbox: Sandbox, bot_url: str, bot_pid: int, baseline_url: str, kinds: list[Kind],
                  rate: float, rolling: list[str]) -> Run:
    endpoints = sandbox.endpoints
    secret = signing_secret(endpoints)
    sink = Sink()
    sink_port = free_port()
    runner = await sink.start(sink_port)
    sink_url = f"http://127.0.0.1:{sink_port}/response"
    targets = {"bot": f"{bot_url}/slack/events", "bare bolt": f"{baseline_url}/slack/events"}
    try:
        with httpx.Client(timeout=30) as client:
            control = Control(sandbox, client)
            await asyncio.to_thread(start_rollouts, control, rolling)
            # warm-up: Bolt's auth.test, connections, each command's first run; not measured
            await open_loop(targets, secret, endpoints, f"{sink_url}/warm-up-", list(dict.fromkeys(kinds)), 10)
            await asyncio.sleep(1.0)
            canary_before = await asyncio.to_thread(in_canary, control, rolling)
            rss_before = rss_mb(bot_pid)
            started, wall = time.perf_counter(), datetime.now(UTC)
            series = await open_loop(targets, secret, endpoints, f"{sink_url}/", kinds, rate)
            seconds = time.perf_counter() - started
            await asyncio.sleep(SETTLE_S)
            rss_after = rss_mb(bot_pid)
            canary_after = await asyncio.to_thread(in_canary, control, rolling)
        sweeps = await asyncio.to_thread(sweeps_between, sandbox["bot_env"]["CHATOPS_DATABASE_URL"], wall,
                                         datetime.now(UTC))
        return Run(series, sink, rss_before, rss_after, canary_before, canary_after, sweeps, seconds)
    finally:
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=100, help="size of the generated fleet")
    parser.add_argument("--count", type=int, default=1000, help="commands sent to each server")
    parser.add_argument("--rate", type=float, default=20.0, help="commands per second to each server")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="every revision's response time")
    parser.add_argument("--slack-rate", type=float, default=100.0, help="emulated chat.postMessage per s per channel")
    parser.add_argument("--seed", type=int, default=10, help="of the command mix")
    parser.add_argument("--quick", action="store_true", help="30 services, 200 commands")
    args = parser.parse_args()
    if args.quick:
        args.services, args.count = 30, 200
    services = service_names(args.services)
    rolling = services[:ROLLOUTS]
    kinds_mix = mix(services, rolling)
    kinds = random.Random(args.seed).choices(kinds_mix, weights=[k.weight for k in kinds_mix], k=args.count)
    directory = workdir("load")
    try:
        bot_port = free_port()
        bot_url = f"http://127.0.0.1:{bot_port}"
        sandbox = start_sandbox(fleet_config(args.services, directory), directory, world_only=True,
                                bot_urls=[bot_url], window=600, latency_ms=args.latency_ms, requests_per_s=0,
                                slack_rate=args.slack_rate)
        bot = start_bot(sandbox, directory, bot_port)
        with httpx.Client(timeout=10) as client:
            control = Control(sandbox, client)
            for service in rolling:  # the canaries' analysis has request logs to read
                control.patch(f"/services/{service}", {"requests_per_s": 5})
        sweep_every = yaml.safe_load(Path(sandbox["bot_config"]).read_text())["defaults"]["alerts"]["interval"]
        port = free_port()
        baseline = CHILDREN.spawn(
            [PYTHON, str(REPO / "bench" / "bare_bolt.py"), "--port", str(port),
             "--secret-manager-endpoint", sandbox["secret_manager_endpoint"], "--project", sandbox["project"],
             "--metadata-host", sandbox["bot_env"]["GCE_METADATA_HOST"],
             "--slack-api-url", sandbox["slack_api_url"],
             *[arg for command in sorted({k.command for k in kinds_mix}) for arg in ("--command", command)]],
            log=directory / "bare_bolt.log")
        baseline_url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{baseline_url}/healthz", 30, baseline)
        run = asyncio.run(measure(sandbox, bot_url, bot.proc.pid, baseline_url, kinds, args.rate, rolling))
        problems = log_problems(bot.log)
    finally:
        CHILDREN.stop_all()
        remove_workdir(directory)
    report(run, kinds_mix, args, sweep_every, problems)
    return 0


def report(run: Run, kinds_mix: list[Kind], args: argparse.Namespace, sweep_every: str,
           problems: Counter[str]) -> None:
    print(f"load: {args.count} mixed commands to each server at {args.rate:g}/s, open loop, in {run.seconds:.1f} s; "
          f"ms from scheduled send to full HTTP response; fleet of {args.services} services answering in "
          f"{args.latency_ms:g} ms, {ROLLOUTS} rollouts in canary, alert sweeps every "
          f"{sweep_every} ({run.sweeps} during the run)")
    rows = []
    for s in run.series.values():
        latencies = s.latencies()
        rows.append([s.name, str(len(latencies)), fmt(percentile(latencies, 50)), fmt(percentile(latencies, 90)),
                     fmt(percentile(latencies, 99)), fmt(max(latencies, default=float("nan"))), str(len(s.errors())),
                     fmt(max(s.lag_ms, default=float("nan")))])
    print(table(["server", "ok", "p50", "p90", "p99", "max", "errors", "send lag max"], rows))
    bot = run.series["bot"]
    by_kind: dict[str, list[Sent]] = defaultdict(list)
    for sent in bot.sent:
        by_kind[sent.kind.name].append(sent)
    rows = []
    bad: list[str] = []  # one line per failure-looking answer
    for kind in kinds_mix:
        sent_of = by_kind.get(kind.name, [])
        latencies = [s.latency_ms for s in sent_of if s.latency_ms is not None]
        looking = 0
        for index, sent in enumerate(bot.sent):
            if sent.kind != kind:
                continue
            answers = [sent.ack_text, *run.sink.replies.get(f"bot-{index}", [])]
            failing = [a for a in answers if failure_looking(a)]
            if failing or (kind.mistake and not sent.error and not sent.ack_text):
                looking += 1
                bad.append(f"{kind.command} {kind.text}: " + (failing[0][:160] if failing else "no answer in the ack"))
        rows.append([kind.name, f"{kind.command} {kind.text}".strip(), str(len(sent_of)),
                     fmt(percentile(latencies, 50)), fmt(percentile(latencies, 99)),
                     str(sum(1 for s in sent_of if s.error)), str(looking)])
    print(table(["bot, by kind", "typed", "sent", "p50", "p99", "errors", "failure-looking"], rows))
    errors = {f"{s.name}": dict(Counter(s.errors())) for s in run.series.values() if s.errors()}
    if errors:
        print(f"errors: {errors}")
    for line, count in Counter(bad).most_common(10):
        print(f"  {count} x failure-looking: {line}")
    follow_ups = sum(len(v) for k, v in run.sink.replies.items() if k.startswith("bot-"))
    print(f"answers after the ack (response_url): {follow_ups}")
    still = [s for s, shares in run.canary_after.items() if len(shares) == 2]
    print(f"rollouts in canary: {sum(1 for s in run.canary_before.values() if len(s) == 2)} before the run, "
          f"{len(still)} after ({', '.join(f'{s}: {min(run.canary_after[s].values(), default=0)}%' for s in still)})")
    print(f"bot log lines at WARNING or worse: {sum(problems.values())}")
    for line, count in problems.most_common(5):
        print(f"  {count} x {line}")
    growth = ratio(run.rss_after - run.rss_before, run.rss_before) * 100
    print(f"bot RSS: {fmt(run.rss_before)} MiB before, {fmt(run.rss_after)} MiB after ({growth:+.1f}%); goal: under "
          f"+10%")
    base = run.series["bare bolt"]
    bot_p50, base_p50 = percentile(bot.latencies(), 50), percentile(base.latencies(), 50)
    bot_p99, base_p99 = percentile(bot.latencies(), 99), percentile(base.latencies(), 99)
    print(f"bot ack p50 {fmt(bot_p50)} ms = {fmt(ratio(bot_p50, base_p50), 2)}x bare bolt ({fmt(base_p50)} ms); "
          f"p99 {fmt(bot_p99)} ms = {fmt(ratio(bot_p99, base_p99), 2)}x bare bolt ({fmt(base_p99)} ms); goal: p99 "
          f"within 3x; errors {len(bot.errors())}, failure-looking answers {len(bad)}; goal: 0")


if __name__ == "__main__":
    sys.exit(run_main(main))
