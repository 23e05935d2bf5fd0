"""`chatops sandbox`: start the world and the bot in it, then a console, a demo, or nothing (headless).

The bot runs as its own process, `chatops serve`, configured only through the environment the world
hands it, exactly as Cloud Run would run it; so killing and restarting it is a real restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from bot.config import ConfigError, load_config

if TYPE_CHECKING:
    from sandbox.world import World, WorldOptions

PORT_NAMES = ("cloud_run", "secret_manager", "logging", "monitoring", "monitoring_grpc", "slack_api", "slack_user",
              "control", "fleet", "metadata")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="chatops.example.yaml", help="fleet config the world is built from")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--headless", action="store_true", help="no console; run until SIGINT or SIGTERM")
    mode.add_argument("--demo", action="store_true", help="run the scripted tour, exit 0 if every step passed")
    parser.add_argument("--endpoints-file", help="write the endpoints JSON here once everything answers")
    parser.add_argument("--world-only", action="store_true", help="start the world without a bot")
    parser.add_argument("--bot-url", action="append", default=[], metavar="URL",
                        help="with --world-only: where Slack's user side sends requests (repeat for round-robin)")
    parser.add_argument("--bot-port", type=int, default=0, help="port of the bot the sandbox starts")
    parser.add_argument("--user", default="oncall", help="the console's Slack user")
    parser.add_argument("--channel", default="deploys", help="the console's channel")
    parser.add_argument("--start-ms", type=float, default=300.0,
                        help="time a new revision takes to start (Cloud Run's is seconds: the cloud_run limits say)")
    parser.add_argument("--route-ms", type=float, default=1000.0,
                        help="time Cloud Run takes to route a traffic change")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="response time of undeclared images")
    parser.add_argument("--requests-per-s", type=float, default=25.0, help="simulated traffic per service")
    parser.add_argument("--window", type=float, default=4.0,
                        help="seconds of analysis per canary stage in the bot the sandbox runs (0: as configured)")
    parser.add_argument("--slack-rate", type=float, default=1.0, help="chat.postMessage per second per channel")
    parser.add_argument("--socket-mode", action="store_true",
                        help="the app in Socket Mode: the bot runs `serve --socket-mode` and Slack delivers over its "
                             "WebSocket, never over HTTP")
    for name in PORT_NAMES:
        parser.add_argument(f"--{name.replace('_', '-')}-port", type=int, default=0, metavar="PORT")


def options_from(args: argparse.Namespace, bot_urls: list[str]) -> WorldOptions:
    from sandbox.world import WorldOptions

    return WorldOptions(
        ports={name: getattr(args, f"{name}_port") for name in PORT_NAMES if getattr(args, f"{name}_port")},
        bot_urls=bot_urls,
        start_ms=args.start_ms,
        route_ms=args.route_ms,
        latency_ms=args.latency_ms,
        requests_per_s=args.requests_per_s,
        slack_rate_per_s=args.slack_rate,
        socket_mode=args.socket_mode,
    )


def sandbox_config(config_path: Path, workdir: Path, window_s: float,
                   freezes: Sequence[dict[str, Any]] = ()) -> Path:
    """The config the sandbox's bot runs on: the same fleet, with windows of seconds instead of minutes, so a
    whole canary takes well under a minute; written beside a link to the runbooks, as the bot expects. Without the
    config's freeze windows (a sandbox that deploys at some hours of the day and not others would show the clock,
    not the bot), but with `freezes` instead: the demo's own, in force whenever it runs."""
    data = yaml.safe_load(config_path.read_text())
    data.pop("freezes", None)
    if freezes:
        data["freezes"] = list(freezes)
    if window_s > 0:
        canary = data.setdefault("defaults", {}).setdefault("canary", {})
        canary["window"] = window_s
        canary["progress_deadline"] = max(30.0, window_s * 10)
        # A window of seconds sees a candidate at 5% answer a handful of requests where the configured minute sees
        # dozens: min_requests shrinks with the window (at least 3), so a healthy candidate is judged on its
        # requests instead of pausing for too little traffic (insufficient_traffic.then: pause).
        canary["min_requests"] = max(3, round(int(canary.get("min_requests", 20)) * window_s / 60))
        for service in data.get("services", {}).values():
            if isinstance(service.get("canary"), dict):
                service["canary"].pop("window", None)
        data["engine"] = {"interval": min(1.0, window_s / 8), "lease": 10.0, "google_timeout": 4.0, "log_lag": 2.5}
        # Sweeps every few seconds, so an incident opens (and resolves) while someone watches.
        data["defaults"].setdefault("alerts", {}).update({"interval": "3s", "open_after": 2, "resolve_after": 2,
                                                          "escalate_after": "2m", "cooldown": "2m"})
    target = workdir / "chatops.yaml"
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    runbooks = workdir / "runbooks"
    if not runbooks.exists():
        runbooks.symlink_to(config_path.resolve().parent / "runbooks")
    return target


DEMO_FROZEN = "mlb-prediction-worker"


def demo_freeze(now: datetime) -> dict[str, Any]:
    """The demo's freeze window: fixed, from a minute ago to a day from now, on one service the rest of the tour
    leaves alone, so `/deploy` of it is refused naming the window whatever the hour."""
    return {"name": "demo-maintenance", "start": (now - timedelta(minutes=1)).isoformat(),
            "end": (now + timedelta(days=1)).isoformat(), "services": [DEMO_FROZEN],
            "reason": "the sandbox's demo shows a freeze"}


def free_port() -> int:
    """A port for a process that binds it later. Chosen below the kernel's ephemeral range: a port the kernel hands
    out (`bind` to 0) is free again once this probe closes, and the next outgoing connection may take it as its
    local port before the process binds; ports below the range are never handed out that way."""
    lowest_ephemeral = 32768
    with contextlib.suppress(OSError, ValueError):
        lowest_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = range(10_000, lowest_ephemeral) if lowest_ephemeral > 11_000 else range(0)
    for port in random.sample(candidates, min(50, len(candidates))):
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", port))
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        found: int = sock.getsockname()[1]
        return found


def bot_environment(world: World, database_url: str) -> dict[str, str]:
    """What `chatops serve` needs to live in this world instead of Google's and Slack's.

    GCE_METADATA_HOST and GCE_METADATA_IP are the variables google-auth reads to find the metadata server
    (google/auth/environment_vars.py): host:port, no scheme.
    """
    urls = world.endpoints()
    metadata = urls["metadata_url"].removeprefix("http://")
    return {
        "CHATOPS_SLACK_API_URL": urls["slack_api_url"],
        "CHATOPS_CLOUD_RUN_ENDPOINT": urls["cloud_run_endpoint"],
        "CHATOPS_SECRET_MANAGER_ENDPOINT": urls["secret_manager_endpoint"],
        "CHATOPS_ARTIFACT_REGISTRY_ENDPOINT": urls["artifact_registry_endpoint"],
        "CHATOPS_LOGGING_ENDPOINT": urls["logging_endpoint"],
        "CHATOPS_MONITORING_ENDPOINT": urls["monitoring_endpoint"],
        "CHATOPS_DATABASE_URL": database_url,
        "GCE_METADATA_HOST": metadata,
        "GCE_METADATA_IP": metadata,
    }


class BotProcess:
    """`chatops serve` as a child process, its log in a file beside its database. Its CHATOPS_INSTANCE_ID (the name
    it holds leases under) is `instance`, by default named after its port."""

    def __init__(self, config: Path, port: int, env: dict[str, str], log_path: Path, *,
                 instance: str | None = None, args: Sequence[str] = ()) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.instance = instance or f"sandbox-bot:{port}"
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--config", str(config), "--host", "127.0.0.1",
             "--port", str(port), *args],
            env={**os.environ, **env, "CHATOPS_PUBLIC_URL": self.url, "CHATOPS_LOG_FORMAT": "json",
                 "CHATOPS_INSTANCE_ID": self.instance},
            stdout=self._log, stderr=subprocess.STDOUT)

    async def ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                    raise RuntimeError("the bot exited at start:\n" + "\n".join(tail))
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the bot did not answer {self.url}/healthz within {timeout:g} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


async def _serve(args: argparse.Namespace) -> int:
    from sandbox.world import World, write_endpoints

    config_path = Path(args.config)
    config = load_config(config_path)
    workdir = Path(tempfile.mkdtemp(prefix="chatops-sandbox-"))
    bot_port = 0 if args.world_only else (args.bot_port or free_port())
    bot_urls = list(args.bot_url) if args.world_only else [f"http://127.0.0.1:{bot_port}"]
    world = World(config, options_from(args, bot_urls))
    endpoints: dict[str, Any] = await world.start()
    bot_env = bot_environment(world, f"sqlite:///{workdir / 'chatops.db'}")
    freezes = [demo_freeze(datetime.now(UTC))] if args.demo else []
    bot_config = sandbox_config(config_path, workdir, args.window, freezes)
    endpoints["bot_env"] = bot_env
    endpoints["bot_config"] = str(bot_config)
    bot: BotProcess | None = None
    try:
        if not args.world_only:
            bot = BotProcess(bot_config, bot_port, bot_env, workdir / "bot.log",
                             args=["--socket-mode"] if args.socket_mode else [])
            await bot.ready()
            endpoints["bot_url"] = bot.url
            endpoints["bot_log"] = str(bot.log_path)
        if args.endpoints_file:
            write_endpoints(args.endpoints_file, endpoints)
        return await _run_mode(args, endpoints)
    except RuntimeError as exc:
        print(f"chatops sandbox: {exc}", file=sys.stderr)
        return 1
    finally:
        if bot is not None:
            bot.stop()
        await world.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def _run_mode(args: argparse.Namespace, endpoints: dict[str, Any]) -> int:
    if args.demo:
        from sandbox.demo import run_demo

        return await run_demo(endpoints)
    if args.headless:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        await stopping.wait()
        return 0
    from sandbox.console import run_console

    print(f"sandbox for {endpoints['project']}/{endpoints['region']} is up; the bot's log: "
          f"{endpoints.get('bot_log', '(no bot)')}")
    print(f"control API {endpoints['control_url']} · Slack user side {endpoints['slack_user_url']}")
    return await run_console(endpoints, user=args.user, channel=args.channel)


def main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_serve(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
