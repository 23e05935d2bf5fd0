#!/usr/bin/env python3
"""Quick start for a fresh machine: creates .venv, installs the project, runs a task.

Standard library only, so that `python3 dev.py ...` works before anything is installed.

    python3 dev.py sandbox [chatops sandbox options]   the world (and the bot) on 127.0.0.1
    python3 dev.py test [pytest options]               ruff, mypy --strict, then the whole test suite
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".chatops-installed"


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


def test(args: list[str]) -> int:
    for step in (("ruff", "check", "."), ("mypy",)):
        print("$", " ".join(step), flush=True)
        if code := run(*step):
            return code
    print("$ pytest", " ".join(args), flush=True)
    return run("python", "-m", "pytest", *args)


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
