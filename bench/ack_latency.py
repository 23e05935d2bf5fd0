#!/usr/bin/env python3
"""Ack latency while busy: how fast the bot answers Slack's HTTP request for a cheap slash command while it
is running `/health all` over 1,000 services back to back, against a bare slack-bolt app.

How: `chatops sandbox --headless --latency-ms 50 --requests-per-s 0 --window 0` runs the bot on a generated
fleet of 1,000 services (--services), with the config's own 60 s alert sweeps (the sandbox's bot otherwise
sweeps every 3 s: over 1,000 services they would overlap, and bench/load.py is where the sweeps run). A
driver keeps the bot busy: it sends `/health all` through the sandbox's Slack user side, waits for the report
in #deploys, and sends the next. Meanwhile `/help` is sent straight to `{bot_url}/slack/events`, signed with
the signing secret read from the sandbox's Secret Manager, 20 a second for 10 seconds, open loop: each send
is scheduled at a fixed time and nobody waits for an answer before the next. Each latency is from the
scheduled send time to the complete HTTP response (so a lagging sender counts against the server, not in its
favour; the sender's own lag is printed too); a non-200 or no answer within Slack's 3 s is an error. The
`response_url` in each command points at a sink in this process, so the bot's `/help` follow-up lands
somewhere.

Baseline, in the same run and at the same time: bench/bare_bolt.py, a bare `AsyncApp` (same token, same
signing secret, same Starlette handler and uvicorn) with one ack-only `/help` listener, as its own process
on another port, hit at the same rate with the same signing, its sends offset by half an interval. Both
are measured first with the bot idle, then with it busy.

Goal: the bot's p99 within 3x bare Bolt's while busy.

    .venv/bin/python bench/ack_latency.py           # 1,000 services, 20/s for 10 s idle then busy; about 25 s
    .venv/bin/python bench/ack_latency.py --quick   # 200 services, 3 s per phase
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from common import (
    CHILDREN,
    PYTHON,
    REPO,
    BenchError,
    Sandbox,
    fleet_config,
    fmt,
    free_port,
    log_problems,
    median,
    percentile,
    post_signed,
    ratio,
    remove_workdir,
    report_after,
    run_main,
    signing_secret,
    slash_command,
    start_sandbox,
    table,
    wait_http_ok,
    workdir,
)


@dataclass
class Series:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)


@dataclass
class Busy:
    runs_ms: list[float] = field(default_factory=list)
    acks_ms: list[float] = field(default_factory=list)


async def response_sink(port: int) -> web.AppRunner:
    """Where the commands' response_url points: accepts every follow-up as Slack would."""
    async def respond(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/response/{id}", respond)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def send_one(session: aiohttp.ClientSession, series: Series, url: str, secret: str,
                   endpoints: dict[str, Any], sink: str, scheduled: float) -> None:
    delay = scheduled - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
    series.lag_ms.append(max(0.0, (time.perf_counter() - scheduled) * 1000))
    body, headers = slash_command(secret, endpoints, "/help", "", response_url=f"{sink}/{secrets.token_hex(8)}")
    error, _ = await post_signed(session, url, body, headers)
    if error:
        series.errors.append(error)
    else:
        series.latencies_ms.append((time.perf_counter() - scheduled) * 1000)


async def open_loop(targets: dict[str, str], secret: str, endpoints: dict[str, Any], sink: str, rate: float,
                    duration: float) -> dict[str, Series]:
    """`rate` commands a second to each target for `duration` s, at fixed times, not waiting for answers."""
    series = {name: Series(name) for name in targets}
    count = int(rate * duration)
    interval = 1.0 / rate
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter() + 0.05
        tasks = []
        for k, (name, url) in enumerate(targets.items()):
            offset = k * interval / max(1, len(targets))
            tasks += [asyncio.create_task(send_one(session, series[name], url, secret, endpoints, sink,
                                                   start + offset + i * interval)) for i in range(count)]
        await asyncio.gather(*tasks)
    return series


async def keep_busy(sandbox: Sandbox, stop: asyncio.Event, busy: Busy, poll_s: float = 0.05) -> None:
    """Back-to-back `/health all`: send one, wait for its report, send the next."""
    user_url = sandbox["slack_user_url"]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while not stop.is_set():
            sent = time.time()
            async with session.post(f"{user_url}/commands", json={
                    "user": "oncall", "channel": "deploys", "command": "/health", "text": "all"}) as response:
                delivery = await response.json()
            if delivery.get("status") != 200:
                raise BenchError(f"/health all was not acknowledged: {delivery}")
            busy.acks_ms.append(float(delivery.get("ack_ms", 0.0)))
            deadline = time.monotonic() + 60
            while True:
                async with session.get(f"{user_url}/messages",
                                       params={"channel": "deploys", "user": "oncall"}) as response:
                    ts = report_after(await response.json(), sent)
                if ts is not None:
                    busy.runs_ms.append((ts - sent) * 1000)
                    break
                if time.monotonic() > deadline:
                    raise BenchError("a /health all report did not arrive within 60 s")
                await asyncio.sleep(poll_s)


async def phase(targets: dict[str, str], secret: str, endpoints: dict[str, Any], sink: str,
                args: argparse.Namespace, sandbox: Sandbox | None) -> tuple[dict[str, Series], Busy | None]:
    if sandbox is None:
        return await open_loop(targets, secret, endpoints, sink, args.rate, args.duration), None
    busy = Busy()
    stop = asyncio.Event()
    driver = asyncio.create_task(keep_busy(sandbox, stop, busy))
    try:
        while not busy.acks_ms:  # the first /health all is under way
            if driver.done():
                driver.result()
            await asyncio.sleep(0.01)
        series = await open_loop(targets, secret, endpoints, sink, args.rate, args.duration)
        stop.set()
        await asyncio.wait_for(driver, 60)
    finally:
        if not driver.done():
            driver.cancel()
    return series, busy


async def measure(sandbox: Sandbox, baseline_url: str, args: argparse.Namespace) -> list[
        tuple[str, dict[str, Series], Busy | None]]:
    endpoints = sandbox.endpoints
    secret = signing_secret(endpoints)
    sink_port = free_port()
    runner = await response_sink(sink_port)
    sink = f"http://127.0.0.1:{sink_port}/response"
    targets = {"bot": f"{sandbox['bot_url']}/slack/events", "bare bolt": f"{baseline_url}/slack/events"}
    try:
        # warm-up: Bolt's auth.test, connections, the bot's first-request work; not measured
        await open_loop(targets, secret, endpoints, sink, 10, 0.5)
        results: list[tuple[str, dict[str, Series], Busy | None]] = []
        if not args.no_idle:
            series, _ = await phase(targets, secret, endpoints, sink, args, None)
            results.append(("idle", series, None))
        series, busy = await phase(targets, secret, endpoints, sink, args, sandbox)
        results.append(("busy", series, busy))
        return results
    finally:
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=1000, help="size of the generated fleet")
    parser.add_argument("--rate", type=float, default=20.0, help="commands per second to each server")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per phase")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="every revision's response time")
    parser.add_argument("--slack-rate", type=float, default=100.0, help="emulated chat.postMessage per s per channel")
    parser.add_argument("--no-idle", action="store_true", help="skip the idle phase")
    parser.add_argument("--quick", action="store_true", help="200 services, 3 s per phase")
    args = parser.parse_args()
    if args.quick:
        args.services, args.duration = 200, 3.0
    directory = workdir("ack")
    try:
        sandbox = start_sandbox(fleet_config(args.services, directory), directory, latency_ms=args.latency_ms,
                                requests_per_s=0, slack_rate=args.slack_rate, window=0)
        port = free_port()
        baseline = CHILDREN.spawn(
            [PYTHON, str(REPO / "bench" / "bare_bolt.py"), "--port", str(port),
             "--secret-manager-endpoint", sandbox["secret_manager_endpoint"], "--project", sandbox["project"],
             "--metadata-host", sandbox["bot_env"]["GCE_METADATA_HOST"],
             "--slack-api-url", sandbox["slack_api_url"]], log=directory / "bare_bolt.log")
        baseline_url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{baseline_url}/healthz", 30, baseline)
        results = asyncio.run(measure(sandbox, baseline_url, args))
        bot_problems = log_problems(Path(sandbox["bot_log"]))
    finally:
        CHILDREN.stop_all()
        remove_workdir(directory)

    count = int(args.rate * args.duration)
    print(f"ack latency of /help: {args.rate:g}/s to each server for {args.duration:g} s, open loop "
          f"({count} each); ms from scheduled send to full HTTP response; fleet of {args.services} services "
          f"answering in {args.latency_ms:g} ms")
    rows = []
    for name, series, _ in results:
        for s in series.values():
            rows.append([name, s.name, str(len(s.latencies_ms)), fmt(percentile(s.latencies_ms, 50)),
                         fmt(percentile(s.latencies_ms, 90)), fmt(percentile(s.latencies_ms, 99)),
                         fmt(max(s.latencies_ms, default=float("nan"))), str(len(s.errors)),
                         fmt(max(s.lag_ms, default=float("nan")))])
    print(table(["phase", "server", "ok", "p50", "p90", "p99", "max", "errors", "send lag max"], rows))
    busy_phase = next(r for r in results if r[0] == "busy")
    busy = busy_phase[2]
    if busy is not None:
        print(f"busy: {len(busy.runs_ms)} back-to-back /health all over {args.services} services, report in "
              f"{fmt(median(busy.runs_ms), 0)} ms median (min {fmt(min(busy.runs_ms, default=float('nan')), 0)}, "
              f"max {fmt(max(busy.runs_ms, default=float('nan')), 0)}); their own acks "
              f"{fmt(median(busy.acks_ms), 0)} ms median, {fmt(max(busy.acks_ms, default=float('nan')), 0)} max")
    errors = {f"{name}/{s.name}": sorted(set(s.errors)) for name, series, _ in results for s in series.values()
              if s.errors}
    if errors:
        print(f"errors: {errors}")
    print(f"bot log lines at WARNING or worse: {sum(bot_problems.values())} {dict(bot_problems) or ''}".rstrip())
    bot, base = busy_phase[1]["bot"], busy_phase[1]["bare bolt"]
    bot_p99, base_p99 = percentile(bot.latencies_ms, 99), percentile(base.latencies_ms, 99)
    print(f"busy: bot p99 {fmt(bot_p99)} ms = {fmt(ratio(bot_p99, base_p99), 2)}x bare bolt p99 "
          f"({fmt(base_p99)} ms); goal: within 3x while busy")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
