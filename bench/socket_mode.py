#!/usr/bin/env python3
"""Socket Mode against HTTP: how long Slack waits for the bot's ack of a slash command each way, and how long a
refresh (`disconnect`, reason `refresh_requested`) leaves the bot without a connection.

How: a sandbox world in this process and the bot as its own process (`python -m bot serve`, then `serve
--socket-mode` against a second world in Socket Mode), each on the example fleet. `/help` (cheap, answered in
the ack) is typed through the sandbox's Slack user side N times, one after another; the user side times each
from its send to the bot's answer: the HTTP response over HTTP, the ack frame over the WebSocket. Then the
Socket Mode world tells the bot to refresh R times; each gap is from the `disconnect` to the bot's new
connection being open. slack_sdk's client opens each new URL with `apps.connections.open`, which is Tier 1 (the
sandbox allows 1 a minute plus a burst of 1, slack_limits.py): start-up spends one, the first refresh the other,
so a second refresh within the minute is refused 429 and the client waits out Retry-After. Real refreshes come
"once every few hours"; the second one here shows what a burst of them costs.

Baseline: the same commands over HTTP, in the same run. Printed: median and p95 ack times each way, their
ratio, and the refresh gaps.

    .venv/bin/python bench/socket_mode.py           # 100 commands each way, 2 refreshes; about 40 s
    .venv/bin/python bench/socket_mode.py --quick   # 20 commands each way, 1 refresh
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.config import load_config  # noqa: E402
from sandbox.runner import BotProcess, bot_environment, free_port, sandbox_config  # noqa: E402
from sandbox.world import World, WorldOptions  # noqa: E402


async def ack_times(socket_mode: bool, n: int, refreshes: int, directory: Path) -> tuple[list[float], list[float]]:
    """Each command's ack time (ms) and, in Socket Mode, each refresh's gap (ms)."""
    config = sandbox_config(REPO / "chatops.example.yaml", directory, window_s=2.0)
    port = free_port()
    world = World(load_config(config), WorldOptions(socket_mode=socket_mode, bot_urls=[f"http://127.0.0.1:{port}"]))
    await world.start()
    bot = BotProcess(config, port, bot_environment(world, f"sqlite:///{directory / 'chatops.db'}"),
                     directory / "bot.log", args=["--socket-mode"] if socket_mode else [])
    times: list[float] = []
    gaps: list[float] = []
    try:
        await bot.ready()
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(n):
                answer = (await http.post(f"{world.url('slack_user')}/commands", json={
                    "user": "oncall", "channel": "deploys", "command": "/help", "text": ""})).json()
                if answer["status"] != 200:
                    raise RuntimeError(f"/help was not answered: {answer}")
                times.append(float(answer["ack_ms"]))
            for _ in range(refreshes if socket_mode else 0):
                started = time.perf_counter()
                await world.socket_mode.disconnect("refresh_requested")
                while world.socket_mode.connections < 1:  # noqa: ASYNC110 - the world offers no event
                    await asyncio.sleep(0.005)
                gaps.append((time.perf_counter() - started) * 1000)
    finally:
        bot.stop()
        await world.stop()
    return times, gaps


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, refreshes = (20, 1) if args.quick else (100, 2)
    with tempfile.TemporaryDirectory(prefix="bench-socket-") as tmp:
        (Path(tmp) / "http").mkdir()
        (Path(tmp) / "socket").mkdir()
        http, _ = await ack_times(False, n, 0, Path(tmp) / "http")
        socket, gaps = await ack_times(True, n, refreshes, Path(tmp) / "socket")
    print(f"/help acks, {n} each way (ms)          median    p95")
    print(f"  over HTTP (baseline)               {statistics.median(http):7.1f} {p95(http):7.1f}")
    print(f"  over Socket Mode                   {statistics.median(socket):7.1f} {p95(socket):7.1f}")
    print(f"  Socket Mode / HTTP                 {statistics.median(socket) / statistics.median(http):7.2f}x"
          f" {p95(socket) / p95(http):6.2f}x")
    print("refresh: disconnect to the bot's new connection open (ms): " + ", ".join(f"{g:.0f}" for g in gaps)
          + ("  (the second within a minute of start waits out apps.connections.open's Tier 1)"
             if len(gaps) > 1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
