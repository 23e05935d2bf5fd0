"""The bot as its own process with its database restarted underneath mid-write, and started against a Secret
Manager that answers 503."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.config import load_config
from sandbox.runner import bot_environment, free_port
from sandbox.world import World, WorldOptions
from tests import figures
from tests.scenario.bot_processes import (
    CONVERGED,
    HIT,
    INJECTED,
    STAGES,
    candidate_history,
    hits,
    process_config,
    processes,
)


class PrivatePostgres:
    """A PostgreSQL server of this test's own, on a port of its own: restarting it under the bot touches nobody
    else, where restarting the machine's server (pg_ctlcluster) would cut off everyone's tests running beside."""

    def __init__(self, bindir: Path, root: Path, port: int, prefix: list[str]) -> None:
        self.bindir, self.root, self.port, self.prefix = bindir, root, port, prefix
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    @classmethod
    def create(cls) -> PrivatePostgres:
        """initdb a new cluster and start it, or skip the test saying why that cannot be done here."""
        bindir = _postgres_bindir()
        if bindir is None:
            pytest.skip("no PostgreSQL server programs (initdb, pg_ctl) on this machine to run a server of its own")
        prefix: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            if shutil.which("runuser") is None or not _has_user("postgres"):
                pytest.skip("running as root without a postgres user to run a PostgreSQL server as")
            prefix = ["runuser", "-u", "postgres", "--"]
        root = Path(tempfile.mkdtemp(prefix="chatops-pg-"))
        if prefix:
            shutil.chown(root, "postgres", "postgres")
        server = cls(bindir, root, free_port(), prefix)
        try:
            server._run("initdb", "-D", str(root / "data"), "-U", "postgres", "-A", "trust", "--no-sync")
            server.start()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip(f"could not start a PostgreSQL server of the test's own: {exc}")
        return server

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.prefix, str(self.bindir / tool), *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "server.log"), "-o", options, "-w",
                  "start")

    def stop(self) -> None:
        """`fast`: every connection is cut at once, as a restart of the server does."""
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")


def _postgres_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    found = [Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout
                  .strip())] if pg_config else []
    found += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next((d for d in found if (d / "initdb").exists() and (d / "pg_ctl").exists()), None)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres.create()
    try:
        yield server
    finally:
        server.destroy()


async def test_postgresql_restarted_under_the_bot_loses_and_doubles_no_step(
        tmp_path: Path, private_postgres: PrivatePostgres) -> None:
    """The server goes away while a stage's write is in flight (answered 1 s late, inside the bot's Google
    timeout) and comes back 3 s later: every write is made once and every stage is reported once."""
    service = "nba-phase3-analytics-processors"
    async with processes(tmp_path, lease_s=4.0, database_url=private_postgres.url) as p:
        writes = p.world.run.counts["UpdateService"]
        await p.command(f"/deploy {service} tag=v3")
        at_five = await p.reach(service, lambda r: r.state == "analysing" and p.share(service, r.rollout.candidate)
                                == 5, "analysing at 5%")
        candidate = at_five.rollout.candidate
        slow = await p.fault(method="UpdateService", latency_ms=1000, count=1)
        await p.reach(service, lambda r: hits(p.world, slow) == 1, "the 100% write in flight")
        logged = p.log.stat().st_size
        await asyncio.to_thread(private_postgres.stop)
        await asyncio.sleep(3.0)
        await asyncio.to_thread(private_postgres.start)
        done = await p.reach(service, lambda r: not r.open, "the rollout finished", timeout=60)
        figures.count(f"{CONVERGED}: {done.state}")
        figures.count("PostgreSQL restarts under the bot mid-write")
        assert p.bot.process.poll() is None, "the bot lived through it"
        with p.log.open() as log:
            log.seek(logged)
            assert "is unavailable" in log.read(), "the bot did meet the outage"
        assert done.state == "promoted" and p.world.run.routed_share(service) == {candidate: 100}
        assert candidate_history(p, service, candidate) == [0, 5, 100, 100], "each write made once"
        assert p.world.run.counts["UpdateService"] - writes == 4
        replies = await p.reported("promoted")
        for stage in STAGES:
            assert sum(r.startswith(f"stage {stage}% passed") for r in replies) == 1, "each stage said once"
        assert sum(r.startswith("stage 2/2: 100%") for r in replies) == 1
        assert sum("serves 100% of traffic" in r for r in replies) == 1


async def test_secret_manager_answering_503_at_start_stops_the_bot_with_one_line(tmp_path: Path) -> None:
    """google-api-core retries UNAVAILABLE ("retrying with a backoff") until the read's deadline; then the bot
    exits non-zero with one line naming the secret, as it does when Secret Manager cannot be reached at all
    (tests/contract/test_serve_startup.py)."""
    config = process_config(tmp_path, lease_s=4.0)
    world = World(load_config(config), WorldOptions())
    await world.start()
    try:
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{world.url('control')}/faults",
                                     json={"method": "AccessSecretVersion", "status": 503})
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CHATOPS_LOG_FORMAT": "json",
               **bot_environment(world, f"sqlite:///{tmp_path / 'chatops.db'}")}
        result = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "bot", "serve", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=60, check=False)
        tries = hits(world, answer.json()["id"])
        figures.count(INJECTED)
        figures.count(HIT, tries)
    finally:
        await world.stop()
    assert result.returncode == 1
    (line,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert line["severity"] == "CRITICAL"
    assert f"cannot reach Secret Manager at {env['CHATOPS_SECRET_MANAGER_ENDPOINT']} to read secret " \
           f"'{world.config.secrets.slack_bot_token}'" in line["message"]
    assert ": 503 GET" in line["message"], "Google's answer is in the line"
    assert "roles/secretmanager.secretAccessor" in line["message"]
    assert tries >= 2, "the read was retried before the bot gave up"
    assert world.bot_token not in result.stdout + result.stderr
