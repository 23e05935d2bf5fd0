#!/usr/bin/env python3
"""`/health all` fan-out: how long the bot takes to probe N services and post the report, against probing
the same URLs one after another (the seeds' curl loop) and against a bare aiohttp floor.

How: for each N (10, 100, 1000 by default) a fleet config of N generated services is written (defaults from
chatops.example.yaml, so `probe_concurrency` is 100), `chatops sandbox --headless --world-only --latency-ms 50
--requests-per-s 0 --window 0` runs its world and `chatops serve` the bot on the config's own timings (the
sandbox's 3 s sweeps of the whole fleet would run beside the measured `/health all`; bench/load.py measures those),
in a process of its own as the floor below is: in one process with the world, the bot's probing and the fleet's
answering (each request's ID token verified) shared one core while the floor had the other. A `/health all` is sent
as the on-call user through the sandbox's Slack user side (`POST /commands`, signed and delivered like Slack does);
the time is from just before that send to the report's `ts` in #deploys, which is the Slack emulator's receive time
(epoch seconds), so how often the channel is polled adds nothing. One warm-up run is discarded (it lists the
services from the Cloud Run emulator and opens the connections), then the median of --repeats runs.
Against the same fleet URLs (from the Cloud Run emulator's services list) and the same 3 probes per service
(/health, /ready, /health/deep), each with its service's ID token from the sandbox's metadata server, fetched
before the timing (the services are private, as the bot's tokens are cached after its warm-up run):
  * sequential: one `httpx.Client` request after another, on a sample of services (100 by default) and
    extrapolated linearly per probe to 3N probes when N is larger (marked `*`);
  * floor: a bare `aiohttp.ClientSession` with `TCPConnector(limit=100)` and a semaphore of 100, all 3N
    probes, reading each body and nothing else; one warm-up, then the median of --repeats runs, interleaved
    with the bot's runs.
The floor measures probing only; the bot's time also includes Slack's signed delivery, the ack, parsing
and classifying 3N bodies, rendering, and chat.postMessage. That is intended: both are reported.
The emulated Slack's per-channel post rate is raised (--slack-rate, default 100/s) so that back-to-back
reports measure fan-out, not Slack's 1-message-a-second throttle.

Goal at N=1000: at least 50x faster than sequential and within 1.5x the floor.

    .venv/bin/python bench/health_fanout.py            # N = 10, 100, 1000; about 75 s
    .venv/bin/python bench/health_fanout.py --quick    # N = 10, 100; 2 runs; small sequential sample
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
from common import (
    CHILDREN,
    BenchError,
    Sandbox,
    elapsed_note,
    fleet_config,
    fleet_urls,
    fmt,
    free_port,
    id_tokens,
    median,
    ratio,
    remove_workdir,
    report_after,
    run_main,
    start_bot,
    start_sandbox,
    table,
    workdir,
)

PATHS = ("/health", "/ready", "/health/deep")
FLOOR_CONCURRENCY = 100


@dataclass
class Row:
    n: int
    bot_ms: list[float]
    ack_ms: list[float]
    floor_ms: list[float]
    seq_ms: float
    seq_sampled: int  # services probed sequentially; < n means seq_ms is extrapolated
    cold_ms: float


def bot_run(sandbox: Sandbox, client: httpx.Client, poll_s: float, timeout: float = 60.0) -> tuple[float, float]:
    """One `/health all` through Slack's user side; (ms from send to the report's ts, the bot's ack ms)."""
    user_url = sandbox["slack_user_url"]
    sent = time.time()
    answer = client.post(f"{user_url}/commands", json={"user": "oncall", "channel": "deploys",
                                                        "command": "/health", "text": "all"})
    delivery = answer.json()
    if answer.status_code != 200 or delivery.get("status") != 200 or delivery.get("error"):
        raise BenchError(f"/health all was not acknowledged: {delivery}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = client.get(f"{user_url}/messages", params={"channel": "deploys", "user": "oncall"}).json()
        ts = report_after(messages, sent)
        if ts is not None:
            return (ts - sent) * 1000, float(delivery.get("ack_ms", 0.0))
        time.sleep(poll_s)
    raise BenchError(f"no /health all report in #deploys within {timeout:g} s")


Probes = list[tuple[str, dict[str, str]]]
"""(URL, headers): each probe with the ID token of its service."""


async def _floor_once(session: aiohttp.ClientSession, probes: Probes) -> float:
    slots = asyncio.Semaphore(FLOOR_CONCURRENCY)

    async def probe(url: str, headers: dict[str, str]) -> None:
        async with slots, session.get(url, headers=headers) as response:
            await response.read()
            if response.status in (401, 403):
                raise BenchError(f"the floor's probe of {url} was refused ({response.status})")

    started = time.perf_counter()
    await asyncio.gather(*(probe(u, h) for u, h in probes))
    return (time.perf_counter() - started) * 1000


class Floor:
    """A bare aiohttp prober kept open across runs, as the bot keeps its pool."""

    def __init__(self, probes: Probes) -> None:
        self.probes = probes
        self.loop = asyncio.new_event_loop()
        self.session = self.loop.run_until_complete(self._open())

    async def _open(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=FLOOR_CONCURRENCY))

    def run(self) -> float:
        return self.loop.run_until_complete(_floor_once(self.session, self.probes))

    def close(self) -> None:
        self.loop.run_until_complete(self.session.close())
        self.loop.close()


def sequential(probes: Probes) -> float:
    """ms for making `probes` one after another, as a curl loop does (but on one keep-alive client)."""
    with httpx.Client(timeout=10) as client:
        client.get(probes[0][0], headers=probes[0][1]).read()  # connect outside the timing: the others are warm
        started = time.perf_counter()
        for url, headers in probes:
            if client.get(url, headers=headers).status_code in (401, 403):
                raise BenchError(f"the sequential probe of {url} was refused")
        return (time.perf_counter() - started) * 1000


def measure(n: int, args: argparse.Namespace, directory: Path) -> Row:
    config = fleet_config(n, directory)
    port = free_port()
    with elapsed_note(f"N={n}: sandbox and bot start"):
        sandbox = start_sandbox(config, directory, world_only=True, bot_urls=[f"http://127.0.0.1:{port}"],
                                latency_ms=args.latency_ms, requests_per_s=0, slack_rate=args.slack_rate, window=0)
    try:
        start_bot(sandbox, directory, port)
        urls = fleet_urls(sandbox.endpoints)
        if len(urls) != n:
            raise BenchError(f"the Cloud Run emulator lists {len(urls)} services, expected {n}")
        tokens = id_tokens(sandbox.endpoints, urls.values())  # the bot's are cached too after its warm-up run
        probes = [(url.rstrip("/") + path, {"Authorization": f"Bearer {tokens[url]}"})
                  for url in urls.values() for path in PATHS]
        floor = Floor(probes)
        bot_ms: list[float] = []
        ack_ms: list[float] = []
        floor_ms: list[float] = []
        try:
            with httpx.Client(timeout=30) as client, elapsed_note(f"N={n}: bot and floor, {args.repeats} runs"):
                cold_ms, _ = bot_run(sandbox, client, args.poll_ms / 1000)
                floor.run()
                for _ in range(args.repeats):
                    time.sleep(args.pause)
                    took, acked = bot_run(sandbox, client, args.poll_ms / 1000)
                    bot_ms.append(took)
                    ack_ms.append(acked)
                    time.sleep(args.pause)
                    floor_ms.append(floor.run())
        finally:
            floor.close()
        sample = list(urls.values())[: min(n, args.sample)]
        with elapsed_note(f"N={n}: sequential over {len(sample)} services"):
            seq_measured = sequential([(url.rstrip("/") + path, {"Authorization": f"Bearer {tokens[url]}"})
                                       for url in sample for path in PATHS])
        seq_ms = seq_measured / (len(sample) * len(PATHS)) * (n * len(PATHS))
        return Row(n, bot_ms, ack_ms, floor_ms, seq_ms, len(sample), cold_ms)
    finally:
        CHILDREN.stop_all()  # the bot, then the world


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000], metavar="N")
    parser.add_argument("--repeats", type=int, default=5, help="measured runs per N after one warm-up")
    parser.add_argument("--sample", type=int, default=100, help="services probed sequentially (then extrapolated)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="every revision's response time")
    parser.add_argument("--slack-rate", type=float, default=100.0, help="emulated chat.postMessage per s per channel")
    parser.add_argument("--poll-ms", type=float, default=20.0, help="how often #deploys is read")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between runs")
    parser.add_argument("--quick", action="store_true", help="N = 10, 100; 2 runs; 20 services sequentially")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeats, args.sample = [10, 100], 2, 20
    directory = workdir("fanout")
    try:
        rows = [measure(n, args, directory) for n in args.sizes]
    finally:
        remove_workdir(directory)

    print(f"/health all fan-out: 3 probes per service, every revision answers in {args.latency_ms:g} ms, "
          f"bot probe_concurrency 100; median of {args.repeats} runs after 1 warm-up")
    print(table(
        ["N", "bot ms", "bot min-max", "cold ms", "ack ms", "floor ms", "sequential ms", "bot/floor", "seq/bot"],
        [[str(r.n), fmt(median(r.bot_ms), 0), f"{min(r.bot_ms):,.0f}-{max(r.bot_ms):,.0f}", fmt(r.cold_ms, 0),
          fmt(median(r.ack_ms), 0), fmt(median(r.floor_ms), 0),
          fmt(r.seq_ms, 0) + ("*" if r.seq_sampled < r.n else " "),
          fmt(ratio(median(r.bot_ms), median(r.floor_ms)), 2) + "x",
          fmt(ratio(r.seq_ms, median(r.bot_ms)), 1) + "x"] for r in rows]))
    extrapolated = [r for r in rows if r.seq_sampled < r.n]
    if extrapolated:
        print("* sequential extrapolated linearly per probe from " + ", ".join(
            f"{r.seq_sampled} services ({r.seq_sampled * len(PATHS)} probes) for N={r.n}" for r in extrapolated))
    print("bot: send -> report ts (includes Slack delivery, ack, classify, render, post); cold: the warm-up run; "
          "floor: bare aiohttp, probing only")
    head = max(rows, key=lambda r: r.n)
    bot = median(head.bot_ms)
    print(f"N={head.n}: /health all {bot:,.0f} ms = {ratio(bot, median(head.floor_ms)):.2f}x the floor "
          f"(goal <= 1.5x), {ratio(head.seq_ms, bot):.1f}x faster than sequential (goal >= 50x)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
