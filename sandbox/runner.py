"""`chatops sandbox`: start the world, say where it is, run until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING

from bot.config import ConfigError, load_config

if TYPE_CHECKING:
    from sandbox.world import WorldOptions

PORT_NAMES = ("cloud_run", "secret_manager", "logging", "slack_api", "slack_user", "control", "fleet")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="chatops.example.yaml", help="fleet config the world is built from")
    parser.add_argument("--headless", action="store_true", help="no console; run until SIGINT or SIGTERM")
    parser.add_argument("--endpoints-file", help="write the endpoints JSON here once everything answers")
    parser.add_argument("--world-only", action="store_true", help="start the world without a bot")
    parser.add_argument("--bot-url", action="append", default=[], metavar="URL",
                        help="where Slack's user side sends commands (repeat for round-robin)")
    parser.add_argument("--start-ms", type=float, default=300.0, help="time a new revision takes to start")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="response time of undeclared images")
    parser.add_argument("--requests-per-s", type=float, default=4.0, help="simulated traffic per service")
    parser.add_argument("--slack-rate", type=float, default=1.0, help="chat.postMessage per second per channel")
    for name in PORT_NAMES:
        parser.add_argument(f"--{name.replace('_', '-')}-port", type=int, default=0, metavar="PORT")


def options_from(args: argparse.Namespace) -> WorldOptions:
    from sandbox.world import WorldOptions

    return WorldOptions(
        ports={name: getattr(args, f"{name}_port") for name in PORT_NAMES if getattr(args, f"{name}_port")},
        bot_urls=list(args.bot_url),
        start_ms=args.start_ms,
        latency_ms=args.latency_ms,
        requests_per_s=args.requests_per_s,
        slack_rate_per_s=args.slack_rate,
    )


async def _serve(args: argparse.Namespace) -> int:
    from sandbox.world import World, write_endpoints

    config = load_config(args.config)
    world = World(config, options_from(args))
    endpoints = await world.start()
    if args.endpoints_file:
        write_endpoints(args.endpoints_file, endpoints)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    if not args.headless:
        print(f"sandbox for {config.project}/{config.region}: {len(config.services)} services")
        for key in ("slack_user_url", "control_url", "cloud_run_endpoint", "fleet_url"):
            print(f"  {key:<24} {endpoints[key]}")
        print("Ctrl-C stops it.", flush=True)
    await stopping.wait()
    await world.stop()
    return 0


def main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_serve(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
