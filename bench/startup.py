#!/usr/bin/env python3
"""Start-up: how long `chatops serve` takes from launch to answering `/healthz`, and how much memory it
holds once it does, against a bare Starlette + uvicorn app, so the ratio shows the cost of the bot's own
imports and start-up work (config, runbooks, secrets from Secret Manager, migrations, Bolt).

How: a world-only sandbox runs (`chatops sandbox --headless --world-only`); its endpoints file's `bot_env`
is the environment that points `chatops serve` at it. `chatops serve --config chatops.example.yaml --host
127.0.0.1 --port P` is started with that environment and `CHATOPS_DATABASE_URL` set to a fresh SQLite
file each run (so every run migrates a new database, as a first start does); the time is from just before
`Popen` to the first 200 from `/healthz`, polled every 10 ms, and the memory is VmRSS from
/proc/<pid>/status (plus any children) read right then; then the process is stopped. The baseline is a
`python -c` that imports starlette and uvicorn and serves one route the same way (`uvicorn.run`, same
host, same polling). The runs alternate bot, baseline, bot, ...; one warm-up run of each comes first (disk
cache, bytecode) and is shown but not counted.

Goals: the bot answers within 2 s and holds under 150 MB.

    .venv/bin/python bench/startup.py            # 5 runs of each after a warm-up; about 10 s
    .venv/bin/python bench/startup.py --quick    # 2 runs of each, no warm-up
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    CHILDREN,
    EXAMPLE_CONFIG,
    PYTHON,
    chatops_argv,
    fmt,
    free_port,
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

BARE_APP = """\
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def healthz(request):
    return JSONResponse({"status": "ok"})


uvicorn.run(Starlette(routes=[Route("/healthz", healthz, methods=["GET"])]), host="127.0.0.1",
            port=int(sys.argv[1]), log_config=None, access_log=False)
"""


@dataclass
class Runs:
    name: str
    ready_ms: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    warmup: tuple[float, float] | None = None


def start_once(argv: list[str], env: dict[str, str], port: int, log: Path, timeout: float) -> tuple[float, float]:
    """(ms from Popen to the first 200 from /healthz, VmRSS MiB then); the process is stopped after."""
    started = time.perf_counter()
    proc = CHILDREN.spawn(argv, env=env, log=log)
    try:
        try:
            ready = wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout, proc)
        except Exception as exc:
            raise type(exc)(f"{exc}\n{tail(log)}") from None
        return (ready - started) * 1000, rss_mb(proc.pid)
    finally:
        CHILDREN.stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="measured starts of each")
    parser.add_argument("--config", type=Path, default=EXAMPLE_CONFIG, help="the bot's fleet config")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for /healthz")
    parser.add_argument("--no-warmup", action="store_true", help="count the first start too")
    parser.add_argument("--quick", action="store_true", help="2 runs of each, no warm-up")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.no_warmup = 2, True
    directory = workdir("startup")
    bot, bare = Runs("chatops serve"), Runs("bare starlette+uvicorn")
    try:
        sandbox = start_sandbox(args.config, directory, world_only=True)
        bot_env = {**os.environ, **sandbox["bot_env"], "CHATOPS_LOG_FORMAT": "json"}
        warmups = 0 if args.no_warmup else 1
        for i in range(warmups + args.runs):
            port = free_port()
            env = {**bot_env, "CHATOPS_DATABASE_URL": f"sqlite:///{directory / f'run-{i}.db'}",
                   "CHATOPS_PUBLIC_URL": f"http://127.0.0.1:{port}"}
            argv = chatops_argv("serve", "--config", str(args.config.resolve()), "--host", "127.0.0.1",
                                "--port", str(port))
            ms, rss = start_once(argv, env, port, directory / f"bot-{i}.log", args.timeout)
            port = free_port()
            bare_ms, bare_rss = start_once([PYTHON, "-c", BARE_APP, str(port)], dict(os.environ), port,
                                           directory / f"bare-{i}.log", args.timeout)
            if i < warmups:
                bot.warmup, bare.warmup = (ms, rss), (bare_ms, bare_rss)
                continue
            bot.ready_ms.append(ms)
            bot.rss.append(rss)
            bare.ready_ms.append(bare_ms)
            bare.rss.append(bare_rss)
    finally:
        CHILDREN.stop_all()
        remove_workdir(directory)

    print(f"start-up to the first 200 from /healthz (polled every 10 ms) and VmRSS then; {args.runs} runs each"
          + ("" if args.no_warmup else " after 1 warm-up") + f"; bot config {args.config.name}, fresh SQLite each run")
    rows = []
    for runs in (bot, bare):
        warm = runs.warmup
        rows.append([runs.name, fmt(median(runs.ready_ms), 0), fmt(min(runs.ready_ms), 0),
                     fmt(max(runs.ready_ms), 0), fmt(median(runs.rss)), fmt(min(runs.rss)), fmt(max(runs.rss)),
                     f"{warm[0]:,.0f} ms, {warm[1]:.1f} MiB" if warm else "-"])
    print(table(["process", "ready ms", "min", "max", "RSS MiB", "min", "max", "warm-up run"], rows))
    ready, base_ready = median(bot.ready_ms), median(bare.ready_ms)
    rss, base_rss = median(bot.rss), median(bare.rss)
    print(f"bot: ready in {ready:,.0f} ms = {ratio(ready, base_ready):.1f}x bare ({base_ready:,.0f} ms), "
          f"{rss:.1f} MiB ({rss * 1.048576:.1f} MB) = {ratio(rss, base_rss):.1f}x bare ({base_rss:.1f} MiB); "
          "goals: < 2,000 ms, < 150 MB")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
