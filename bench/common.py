"""Shared by the bench scripts: a sandbox as a child process (and a bot the bench starts in it), its control
API, generated fleet configs, Slack signing, the signing secret read from the sandbox's Secret Manager as the
bot reads it, process RSS, and tables.

Every child process a bench starts is registered here and stopped by `Children.stop_all()`, which each
script calls from a `finally`, so Ctrl-C or an error never leaves a sandbox or a bot behind.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx
import yaml
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO / "chatops.example.yaml"
PYTHON = sys.executable
if str(REPO) not in sys.path:
    # Benches that build the bot in-process (bench/reconcile.py) import this checkout's `bot`, `commands` and
    # `sandbox`, whatever the venv's editable install points at; they import `common` first, so this runs first.
    sys.path.insert(1, str(REPO))


class BenchError(Exception):
    """The measurement itself could not be made; the script prints it and exits 1."""


# --- child processes ------------------------------------------------------------------------------------


class Children:
    """Every process a bench starts, each in its own process group, stopped newest first."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, log: Path | None = None,
              cwd: Path = REPO) -> subprocess.Popen[bytes]:
        out: Any = subprocess.DEVNULL
        if log is not None:
            out = log.open("ab")
        try:
            proc = subprocess.Popen(list(argv), env=dict(env) if env is not None else None, cwd=cwd,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        finally:
            if log is not None:
                out.close()
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        """SIGTERM (the sandbox then stops its bot and its world), then SIGKILL to the whole group."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        # Anything left in the group it led (the sandbox's bot) goes too; the group is ours alone.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait()
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc)


CHILDREN = Children()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_main(main: Any) -> int:
    """Run `main()`; on any way out (Ctrl-C, SIGTERM, an error) stop every child first."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where started with SIGINT ignored (`cmd &`)
    try:
        code: int = main()
        return code
    except BenchError as exc:
        print(f"bench: the measurement could not be made: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        CHILDREN.stop_all()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http_ok(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None,
                 interval: float = 0.01) -> float:
    """Poll `url` until it answers 200; returns time.perf_counter() of that answer."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise BenchError(f"the process behind {url} exited with {proc.returncode} before answering")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return time.perf_counter()
            time.sleep(interval)
    raise BenchError(f"{url} did not answer 200 within {timeout:g} s")


# --- configs --------------------------------------------------------------------------------------------


def workdir(prefix: str) -> Path:
    """A temp dir with the repo's runbooks/ beside where generated configs go; removed at exit."""
    path = Path(tempfile.mkdtemp(prefix=f"chatops-bench-{prefix}-"))
    (path / "runbooks").symlink_to(REPO / "runbooks", target_is_directory=True)
    return path


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def service_names(n: int) -> list[str]:
    return [f"svc-{i:04d}" for i in range(n)]


def fleet_config(n: int, directory: Path, *, probe_concurrency: int | None = None,
                 canary: Mapping[str, Any] | None = None, engine: Mapping[str, Any] | None = None) -> Path:
    """The example config's project, Slack, roles and defaults, with N generated services in place of the
    example's (no runbook, no checks: the sandbox gives each the default `bigquery` check). `canary` and
    `engine` override keys of `defaults.canary` and `engine`."""
    base: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    image_repo = f"{base['region']}-docker.pkg.dev/{base['project']}/cloud-run"
    base["services"] = {name: {"image": f"{image_repo}/{name}", "description": f"generated service {name}"}
                        for name in service_names(n)}
    base["digests"] = [d for d in base.get("digests", []) if d.get("services", "all") == "all"]
    if probe_concurrency is not None:
        base.setdefault("defaults", {})["probe_concurrency"] = probe_concurrency
    if canary:
        base.setdefault("defaults", {}).setdefault("canary", {}).update(canary)
    if engine:
        base.setdefault("engine", {}).update(engine)
    path = directory / f"fleet-{n}.yaml"
    path.write_text(f"# generated by bench/: {n} services\n" + yaml.safe_dump(base, sort_keys=False))
    return path


# --- the sandbox ----------------------------------------------------------------------------------------


@dataclass
class Sandbox:
    proc: subprocess.Popen[bytes]
    endpoints: dict[str, Any]
    log: Path
    started_s: float

    def __getitem__(self, key: str) -> Any:
        return self.endpoints[key]

    def stop(self) -> None:
        CHILDREN.stop(self.proc)


def chatops_argv(*args: str) -> list[str]:
    """`chatops ...` as `python -m bot ...`, run from REPO (Children.spawn's cwd), so it is this checkout's
    code that runs even where the venv's `chatops` script is an editable install of another one; the
    sandbox starts its bot the same way."""
    return [PYTHON, "-m", "bot", *args]


def start_sandbox(config: Path, directory: Path, *, world_only: bool = False, latency_ms: float | None = None,
                  requests_per_s: float | None = None, slack_rate: float | None = None,
                  window: float | None = None, start_ms: float | None = None, route_ms: float | None = None,
                  bot_urls: Sequence[str] = (), timeout: float = 180.0) -> Sandbox:
    """`chatops sandbox --headless` as a child; returns once its endpoints file is written.

    `start_ms` and `route_ms` are passed as `--start-ms` / `--route-ms` (None: the CLI's own defaults, which
    already shorten Cloud Run's modelled times); `bot_urls` (with `world_only`) is where Slack's user side
    sends commands, for a bot the bench starts itself (`start_bot`)."""
    endpoints_file = directory / f"endpoints-{secrets.token_hex(4)}.json"
    log = directory / f"sandbox-{endpoints_file.stem}.log"
    argv = chatops_argv("sandbox", "--headless", "--config", str(config), "--endpoints-file", str(endpoints_file))
    if world_only:
        argv.append("--world-only")
    for url in bot_urls:
        argv += ["--bot-url", url]
    if start_ms is not None:
        argv += ["--start-ms", f"{start_ms:g}"]
    if route_ms is not None:
        argv += ["--route-ms", f"{route_ms:g}"]
    if latency_ms is not None:
        argv += ["--latency-ms", f"{latency_ms:g}"]
    if requests_per_s is not None:
        argv += ["--requests-per-s", f"{requests_per_s:g}"]
    if slack_rate is not None:
        argv += ["--slack-rate", f"{slack_rate:g}"]
    if window is not None:
        argv += ["--window", f"{window:g}"]
    started = time.perf_counter()
    proc = CHILDREN.spawn(argv, env={**os.environ, "CHATOPS_LOG_FORMAT": "json"}, log=log)
    deadline = time.monotonic() + timeout
    while not endpoints_file.exists():
        if proc.poll() is not None:
            raise BenchError(f"chatops sandbox exited with {proc.returncode} at start:\n{tail(log)}")
        if time.monotonic() > deadline:
            CHILDREN.stop(proc)
            raise BenchError(f"chatops sandbox wrote no endpoints file within {timeout:g} s:\n{tail(log)}")
        time.sleep(0.05)
    endpoints: dict[str, Any] = json.loads(endpoints_file.read_text())
    return Sandbox(proc, endpoints, log, time.perf_counter() - started)


@dataclass
class BotServer:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


def start_bot(sandbox: Sandbox, directory: Path, port: int, *, env: Mapping[str, str] | None = None,
              timeout: float = 60.0) -> BotServer:
    """`chatops serve` on a world-only sandbox's `bot_config` and `bot_env`, as the sandbox would run its own
    bot, with `env` on top (another database, an endpoint in front of an emulator); returns once `/healthz`
    answers 200."""
    url = f"http://127.0.0.1:{port}"
    log = directory / f"bot-{port}.log"
    full = {**os.environ, **sandbox["bot_env"], "CHATOPS_PUBLIC_URL": url, "CHATOPS_LOG_FORMAT": "json",
            "CHATOPS_INSTANCE_ID": f"bench-bot:{port}", **(env or {})}
    argv = chatops_argv("serve", "--config", str(sandbox["bot_config"]), "--host", "127.0.0.1", "--port", str(port))
    proc = CHILDREN.spawn(argv, env=full, log=log)
    try:
        wait_http_ok(f"{url}/healthz", timeout, proc)
    except BenchError as exc:
        raise BenchError(f"{exc}:\n{tail(log)}") from None
    return BotServer(proc, url, log)


def tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def google_auth(endpoints: Mapping[str, Any]) -> dict[str, str]:
    """An access token from the sandbox's metadata server, as the bot's service account gets one: the sandbox's
    Google APIs answer 401 without it. Never print or write what this returns."""
    url = f"http://{endpoints['bot_env']['GCE_METADATA_HOST']}/computeMetadata/v1/instance/service-accounts/default/token"
    token = httpx.get(url, headers={"Metadata-Flavor": "Google"}, timeout=5).raise_for_status().json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def secret_value(endpoints: Mapping[str, Any], name: str) -> str:
    """A secret's latest version, read from the sandbox's Secret Manager exactly as the bot reads it.
    Never print or write what this returns."""
    url = (f"{endpoints['secret_manager_endpoint']}/v1/projects/{endpoints['project']}/secrets/{name}"
           "/versions/latest:access")
    try:
        response = httpx.get(url, timeout=5, headers=google_auth(endpoints))
        response.raise_for_status()
        data = response.json()["payload"]["data"]
        return base64.b64decode(data).decode("utf-8").strip()
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise BenchError(f"cannot read secret {name!r} from the sandbox's Secret Manager: "
                         f"{type(exc).__name__}") from None


def signing_secret(endpoints: Mapping[str, Any]) -> str:
    return secret_value(endpoints, "slack-signing-secret")


def id_tokens(endpoints: Mapping[str, Any], audiences: Iterable[str]) -> dict[str, str]:
    """An ID token per audience from the sandbox's metadata server, as the bot's service account gets them: the
    fleet's services are private, so a baseline that probes them without one is answered 403 at once, which
    measures nothing (https://cloud.google.com/run/docs/authenticating/service-to-service)."""
    url = f"{endpoints['bot_env']['GCE_METADATA_HOST']}"
    identity = f"http://{url}/computeMetadata/v1/instance/service-accounts/default/identity"
    with httpx.Client(timeout=30, headers={"Metadata-Flavor": "Google"}) as client:
        return {audience: client.get(identity, params={"audience": audience, "format": "full"})
                .raise_for_status().text for audience in audiences}


def fleet_urls(endpoints: Mapping[str, Any]) -> dict[str, str]:
    """Every service's URL, from the Cloud Run emulator's services list."""
    url = (f"{endpoints['cloud_run_endpoint']}/v2/projects/{endpoints['project']}/locations/"
           f"{endpoints['region']}/services")
    found: dict[str, str] = {}
    token = ""
    with httpx.Client(timeout=30, headers=google_auth(endpoints)) as client:
        while True:
            params = {"pageSize": "1000", **({"pageToken": token} if token else {})}
            page = client.get(url, params=params).raise_for_status().json()
            for service in page.get("services", []):
                found[service["name"].rsplit("/", 1)[-1]] = service["uri"]
            token = page.get("nextPageToken", "")
            if not token:
                return found


def routed(state: Mapping[str, Any], service: str) -> dict[str, int]:
    """revision -> percent that Cloud Run routes now (the service's trafficStatuses)."""
    shares: dict[str, int] = {}
    for status in state["services"][service]["traffic_statuses"]:
        if status.get("revision") and status.get("percent"):
            shares[status["revision"]] = shares.get(status["revision"], 0) + int(status["percent"])
    return shares


class Control:
    """The sandbox's control API and Slack user side, through one keep-alive client."""

    def __init__(self, sandbox: Sandbox, client: httpx.Client) -> None:
        self.control = sandbox["control_url"]
        self.user_side = sandbox["slack_user_url"]
        self.client = client

    def state(self) -> dict[str, Any]:
        response = self.client.get(f"{self.control}/state")
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    def until(self, found: Callable[[dict[str, Any]], bool], timeout: float, poll_s: float,
              what: str) -> tuple[float, dict[str, Any]]:
        """Poll /state until `found` accepts it; (time.time() just after that answer, the state)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            seen = time.time()
            if found(state):
                return seen, state
            if time.monotonic() > deadline:
                raise BenchError(f"not within {timeout:g} s: {what}")
            time.sleep(poll_s)

    def patch(self, path: str, body: dict[str, Any]) -> None:
        response = self.client.patch(f"{self.control}{path}", json=body)
        if response.status_code != 200:
            raise BenchError(f"PATCH {path} answered {response.status_code}: {response.text[:200]}")

    def limits(self) -> dict[str, dict[str, Any]]:
        """The published figures every emulator enforces, by limit group (GET /limits)."""
        response = self.client.get(f"{self.control}/limits")
        response.raise_for_status()
        found: dict[str, dict[str, Any]] = response.json()
        return found

    def command(self, text: str) -> None:
        command, _, rest = text.partition(" ")
        delivery = self.client.post(f"{self.user_side}/commands", json={
            "user": "oncall", "channel": "deploys", "command": command, "text": rest}).json()
        if delivery.get("status") != 200 or delivery.get("error"):
            raise BenchError(f"{text} was not acknowledged: {delivery}")

    def messages(self) -> list[dict[str, Any]]:
        response = self.client.get(f"{self.user_side}/messages", params={"channel": "deploys", "user": "oncall"})
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
        return found


# --- Slack ----------------------------------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: str) -> str:
    """Slack's v0 request signature."""
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={digest}"


def slash_command(secret: str, endpoints: Mapping[str, Any], command: str, text: str, *, response_url: str,
                  user: str = "oncall", channel: str = "deploys") -> tuple[bytes, dict[str, str]]:
    """A slash command's form body and headers as Slack sends them to `<bot>/slack/events`."""
    form = {
        "token": "benchVerificationToken", "team_id": "T07SANDBOX1", "team_domain": "nba-props",
        "channel_id": endpoints["channels"][channel], "channel_name": channel,
        "user_id": endpoints["users"][user], "user_name": user, "command": command, "text": text,
        "api_app_id": "A07CHATOPS1", "is_enterprise_install": "false", "response_url": response_url,
        "trigger_id": f"{secrets.randbelow(10**13)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}",
    }
    body = urlencode(form)
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": timestamp,
               "X-Slack-Signature": sign(secret, timestamp, body), "User-Agent": "Slackbot 1.0 (bench)"}
    return body.encode(), headers


def report_after(messages: Sequence[Mapping[str, Any]], sent_epoch: float,
                 prefix: str = "Fleet health") -> float | None:
    """The ts (the Slack emulator's receive time, epoch seconds) of the first channel message starting
    with `prefix` posted after `sent_epoch`."""
    for message in messages:
        if (message.get("kind") == "message" and str(message.get("text", "")).startswith(prefix)
                and float(message["ts"]) > sent_epoch):
            return float(message["ts"])
    return None


# --- processes and figures ------------------------------------------------------------------------------


def _children_of(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def rss_mb(pid: int, *, children: bool = True) -> float:
    """VmRSS of the process (and, recursively, its children) in MiB, from /proc."""
    total_kb = 0
    pending = [pid]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        if children:
            pending += _children_of(current)
    return total_kb / 1024


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process and, recursively, its children, from /proc."""
    ticks = 0
    pending = [pid]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
        pending += _children_of(current)
    return ticks / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def add_repeats(parser: argparse.ArgumentParser, default: int) -> None:
    """`--repeats N` measured runs after one warm-up, and `--quick` for 5 of them (read back with `repeats`)."""
    parser.add_argument("--repeats", type=int, default=default, help="measured runs of each, after one warm-up")
    parser.add_argument("--quick", action="store_true", help="5 runs of each")


def repeats(args: argparse.Namespace) -> int:
    count = 5 if args.quick else int(args.repeats)
    if count < 1:
        raise BenchError("--repeats must be at least 1")
    return count


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True))),
             "  ".join("-" * w for w in widths)]
    for row in rows:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(lines)


@contextlib.contextmanager
def elapsed_note(label: str) -> Iterator[None]:
    """Print how long a phase took, to stderr, so stdout stays the figures."""
    started = time.perf_counter()
    yield
    print(f"  [{label}: {time.perf_counter() - started:.1f} s]", file=sys.stderr, flush=True)


ACK_TIMEOUT_S = 3.0
"""Slack's: a request not acknowledged within it is an error (https://api.slack.com/interactivity/handling)."""


async def post_signed(session: aiohttp.ClientSession, url: str, body: str,
                      headers: Mapping[str, str]) -> tuple[str, bytes]:
    """POST a signed Slack request as Slack does: ("", the ack's body) for a 200 within ACK_TIMEOUT_S, else
    (what went wrong, b"")."""
    try:
        async with asyncio.timeout(ACK_TIMEOUT_S):
            async with session.post(url, data=body, headers=dict(headers)) as response:
                raw = await response.read()
                status = response.status
    except TimeoutError:
        return f"no answer within {ACK_TIMEOUT_S:g} s", b""
    except aiohttp.ClientError as exc:
        return type(exc).__name__, b""
    return ("", raw) if status == 200 else (f"HTTP {status}", b"")


def log_problems(path: Path) -> Counter[str]:
    """The bot's JSON log lines at WARNING or worse, by severity and message."""
    found: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, AttributeError):
            record = json.loads(line)
            if record.get("severity") in ("WARNING", "ERROR", "CRITICAL"):
                found[f"{record['severity']}: {str(record.get('message', ''))[:120]}"] += 1
    return found


# --- PostgreSQL -----------------------------------------------------------------------------------------

POSTGRES_URL = os.environ.get("CHATOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def admin_engine(url: str) -> Engine:
    return create_engine(make_url(url).set(drivername="postgresql+psycopg"), poolclass=NullPool,
                         isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})


@contextmanager
def fresh_schema(url: str) -> Iterator[tuple[str, Engine]]:
    """A new schema, dropped afterwards: (the database URL that puts it first on the search path, an engine)."""
    admin = admin_engine(url)
    schema = f"chatops_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except SQLAlchemyError as exc:
        admin.dispose()
        raise BenchError(f"cannot create a schema in the PostgreSQL at {make_url(url).render_as_string()}: "
                         f"{type(exc).__name__}") from None
    try:
        scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False), admin
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
