"""What the Dockerfile assembles, run the way the image runs: only the files its COPY lines take, installed
non-editable into a fresh virtual environment, its CMD run as its unprivileged user, in the sandbox world; then a
canary deployed through Slack's user side all the way to promotion.

No Docker engine is needed (CI has none): the test follows the Dockerfile (tests/dockerfile.py) instead of building
it. pip resolves the dependencies as the Dockerfile's `pip install .` does, from PyPI through pip's own cache, which
keeps a repeated run to about 25 s of installing. Marked `image` (`-m "not image"` leaves it out of a quick run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bot.config import load_config
from sandbox.runner import bot_environment, free_port, sandbox_config
from sandbox.world import World, WorldOptions
from tests.conftest import EXAMPLE_CONFIG, ROOT
from tests.dockerfile import Image, parse

pytestmark = pytest.mark.image

SERVICE = "prediction-coordinator"
IMAGE_UID = 10001
"""The Dockerfile's `useradd --uid 10001 chatops`, the user its CMD runs as."""


def test_the_dockerfile_still_says_what_this_test_assumes() -> None:
    image = parse(ROOT / "Dockerfile")
    assert image.user == "chatops"
    assert any(re.search(rf"useradd .*--uid {IMAGE_UID} chatops", line) for line in image.run_lines)
    assert any("chown chatops:chatops /app/data" in line for line in image.run_lines)
    assert image.workdir == "/app"
    assert image.env["CHATOPS_CONFIG"] == "/app/chatops.yaml"


def as_image_user(command: list[str]) -> list[str]:
    """Run as the image's user: when the test runs as root, switch to its uid (no account needed)."""
    if os.geteuid() != 0:
        return command
    return ["setpriv", f"--reuid={IMAGE_UID}", f"--regid={IMAGE_UID}", "--clear-groups", *command]


def interpreter_for_image_user() -> str:
    """A Python of this version that the image's user may run (not one installed in root's home); the fresh venv is
    made from it."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): cannot drop to the image's unprivileged user")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [str(Path(sys.base_prefix) / "bin" / version), shutil.which(version, path="/usr/local/bin:/usr/bin")]
    for candidate in filter(None, candidates):
        # Through a shell, as the image's CMD starts it: an exec straight from setpriv has been seen to succeed where
        # the same path from the unprivileged shell is refused.
        probe = subprocess.run(as_image_user(["sh", "-c", 'exec "$0" -c "import ensurepip, venv"', candidate]),
                               capture_output=True, cwd="/", check=False)
        if probe.returncode == 0:
            return candidate
    pytest.skip(f"no {version} with venv and ensurepip that uid {IMAGE_UID} may run")


def assemble(image: Image, context: list[Path], app: Path) -> None:
    """Copy what each COPY line names, from the first context directory that has it, to where it lands under the
    WORKDIR (a directory's contents go into the destination directory, as Docker copies them)."""
    for copy in image.copies:
        destination = app / copy.destination
        for source in copy.sources:
            found = next((base / source for base in context if (base / source).exists()), None)
            assert found is not None, f"COPY {source}: not in the build context"
            if found.is_dir():
                shutil.copytree(found, destination, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
            elif copy.destination.endswith("/") or len(copy.sources) > 1:
                destination.mkdir(parents=True, exist_ok=True)
                shutil.copy2(found, destination / found.name)
            else:
                shutil.copy2(found, destination)


def in_image(value: str, image: Image, app: Path) -> str:
    """An ENV value with the image's WORKDIR (/app) moved to where the test assembled it."""
    return value.replace(image.workdir.rstrip("/") + "/", f"{app}/")


@pytest.fixture(scope="module")
def image_root() -> Iterator[Path]:
    """Readable by the image's user, unlike pytest's own tmp_path (0700 under /tmp/pytest-of-root)."""
    root = Path(tempfile.mkdtemp(prefix="chatops-image-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def installed(image_root: Path) -> tuple[Image, Path, Path]:
    """(image, app directory, venv): the COPY lines' files, with the operator's chatops.yaml in the build context
    (the sandbox's fleet config, windows of seconds), pip-installed non-editable into a fresh venv."""
    image = parse(ROOT / "Dockerfile")
    operator = image_root / "operator"
    scratch = image_root / "scratch"
    operator.mkdir()
    scratch.mkdir()
    shutil.copy2(sandbox_config(EXAMPLE_CONFIG, scratch, window_s=3.0), operator / "chatops.yaml")
    app = image_root / image.workdir.lstrip("/")
    assemble(image, [operator, ROOT], app)
    data = app / "data"
    data.mkdir()
    if os.geteuid() == 0:
        os.chown(data, IMAGE_UID, IMAGE_UID)
    venv = image_root / "venv"
    subprocess.run([interpreter_for_image_user(), "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                          str(app)], capture_output=True, text=True, check=False)
    assert pip.returncode == 0, f"pip install of the assembled app failed:\n{pip.stdout[-3000:]}{pip.stderr[-3000:]}"
    return image, app, venv


def test_the_app_is_installed_not_linked_to_its_sources(installed: tuple[Image, Path, Path]) -> None:
    _, app, venv = installed
    where = subprocess.run(as_image_user([str(venv / "bin" / "python"), "-c", "import bot; print(bot.__file__)"]),
                           capture_output=True, text=True, cwd=venv, check=True).stdout.strip()
    assert where.startswith(f"{venv}/lib/") and "site-packages" in where
    assert not where.startswith(str(app))


def run_cmd(image: Image, app: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """The Dockerfile's CMD in its WORKDIR, as its user, its output in a log file as Cloud Run collects it."""
    with log_path.open("wb") as log:
        return subprocess.Popen(as_image_user(image.cmd), cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT)


def process_uid(pid: int) -> int:
    return os.stat(f"/proc/{pid}").st_uid


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)


async def test_the_image_serves_a_canary_deploy_from_slack_to_promotion(installed: tuple[Image, Path, Path],
                                                                         image_root: Path) -> None:
    image, app, venv = installed
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    world = World(load_config(app / "chatops.yaml"), WorldOptions(bot_urls=[url], requests_per_s=40, start_ms=60,
                                                                    route_ms=20))
    await world.start()
    env = {name: in_image(value, image, app) for name, value in image.env.items()}
    env.update(bot_environment(world, env["CHATOPS_DATABASE_URL"]))
    env.update(PATH=f"{venv}/bin:/usr/bin:/bin", HOME=str(app / "data"), PORT=str(port), CHATOPS_PUBLIC_URL=url,
               CHATOPS_INSTANCE_ID=f"image-test:{port}")
    log_path = image_root / "bot.log"
    bot = run_cmd(image, app, env, log_path)

    def said() -> str:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])

    try:
        async with httpx.AsyncClient(timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                assert bot.poll() is None, f"the image's CMD exited ({bot.returncode}):\n{said()}"
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}/healthz")).status_code == 200:
                        break
                assert time.monotonic() < deadline, f"/healthz did not answer within 60 s:\n{said()}"
                await asyncio.sleep(0.1)
            if os.geteuid() == 0:
                assert process_uid(bot.pid) == IMAGE_UID, "the bot runs as the image's user"

            answer = await http.post(f"{world.url('slack_user')}/commands", json={
                "user": "oncall", "channel": "deploys", "command": "/deploy", "text": f"{SERVICE} tag=v3"})
            assert answer.json()["status"] == 200
            stable = world.run.routed_share(SERVICE)

            def candidate_share() -> int:
                return next((p for r, p in world.run.routed_share(SERVICE).items() if r not in stable), 0)

            await until(lambda: candidate_share() == 100 and not any(
                s.get("tag") for s in world.run.services[SERVICE].traffic_statuses), 60, "promotion")

            seen: list[dict[str, object]] = []
            deadline = time.monotonic() + 30
            while not any(m["kind"] == "message" and "promoted" in str(m["text"]) for m in seen):
                assert time.monotonic() < deadline, f"the rollout message never said promoted:\n{said()}"
                await asyncio.sleep(0.1)
                seen[:] = (await http.get(f"{world.url('slack_user')}/messages",
                                          params={"channel": "deploys", "user": "oncall"})).json()
    finally:
        bot.terminate()
        try:
            bot.wait(10)
        except subprocess.TimeoutExpired:
            bot.kill()
            bot.wait()
        await world.stop()
    # Cloud Run stops an instance with SIGTERM and kills it 10 s later ("trap SIGTERM to give a instance 10 seconds
    # grace time", https://cloud.google.com/run/docs/configuring/billing-settings): the bot is done by then (uvicorn
    # re-raises the signal once it has shut down, hence -SIGTERM).
    assert bot.returncode in (0, -signal.SIGTERM), f"the bot did not stop cleanly on SIGTERM:\n{said()}"
