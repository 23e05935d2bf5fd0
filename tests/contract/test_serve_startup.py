"""`chatops serve` refuses to start without its secrets, in one line that says what to do."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from sandbox.runner import bot_environment, free_port
from sandbox.slack_socket import app_token
from sandbox.world import World
from tests.conftest import EXAMPLE_CONFIG, ROOT


def start(config: Path, env: dict[str, str], tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--config", str(config), "--host", "127.0.0.1",
         "--port", str(free_port()), *args],
        # PYTHONPATH: the checkout under test, not whichever one the environment has installed
        env={"PATH": "/usr/bin:/bin", **env, "CHATOPS_LOG_FORMAT": "json", "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=30, check=False, cwd=tmp)


def config_with(tmp: Path, text: str) -> Path:
    path = tmp / "chatops.yaml"
    path.write_text(text)
    (tmp / "runbooks").symlink_to(ROOT / "runbooks")
    return path


async def test_a_missing_secret_stops_start_up_with_one_line_naming_it(world: World, tmp_path: Path) -> None:
    config = config_with(tmp_path, EXAMPLE_CONFIG.read_text().replace(
        "slack_bot_token: slack-bot-token", "slack_bot_token: chatops-slack-token"))
    env = bot_environment(world, f"sqlite:///{tmp_path / 'db.sqlite'}")
    result = await asyncio.to_thread(start, config, env, tmp_path)
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["severity"] for line in lines] == ["CRITICAL"]
    message = lines[0]["message"]
    assert "secret 'chatops-slack-token'" in message and "roles/secretmanager.secretAccessor" in message
    assert "gcloud secrets create chatops-slack-token" in message


async def test_an_unreachable_secret_manager_stops_start_up_with_one_line(world: World, tmp_path: Path) -> None:
    config = config_with(tmp_path, EXAMPLE_CONFIG.read_text())
    env = {**bot_environment(world, f"sqlite:///{tmp_path / 'db.sqlite'}"),
           "CHATOPS_SECRET_MANAGER_ENDPOINT": "http://127.0.0.1:1"}
    result = await asyncio.to_thread(start, config, env, tmp_path)
    assert result.returncode == 1
    (line,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert "cannot reach Secret Manager at http://127.0.0.1:1 to read secret 'slack-bot-token'" in line["message"]
    assert "roles/secretmanager.secretAccessor" in line["message"]
    assert world.bot_token not in result.stdout + result.stderr


async def test_sqlite_on_cloud_run_is_refused_before_anything_else(world: World, tmp_path: Path) -> None:
    """Cloud Run's disk is memory, lost on restart, and per instance: the bot must not quietly keep its state there."""
    config = config_with(tmp_path, EXAMPLE_CONFIG.read_text())
    env = {**bot_environment(world, f"sqlite:///{tmp_path / 'db.sqlite'}"), "K_SERVICE": "chatops"}
    accesses = len(world.secret_manager.accesses)
    result = await asyncio.to_thread(start, config, env, tmp_path)
    assert result.returncode == 2
    (line,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert line["severity"] == "CRITICAL" and "K_SERVICE=chatops" in line["message"]
    assert "CHATOPS_DATABASE_URL=postgresql+psycopg://" in line["message"]
    assert len(world.secret_manager.accesses) == accesses, "no secret was read"


async def test_socket_mode_with_a_token_that_is_not_the_apps_stops_start_up_with_one_line(
        world: World, tmp_path: Path) -> None:
    """`serve --socket-mode` opens its first URL at start: a token Slack refuses stops it, naming the secret, instead
    of leaving a bot that retries forever and hears nothing."""
    world.secret_manager.put("chatops-wrong-app-token", app_token().encode())  # shaped as Slack's, not this world's
    world.secret_manager.put("chatops-bot-token-as-app-token", world.bot_token.encode())
    for name, expected in (("chatops-wrong-app-token", "apps.connections.open answered invalid_auth"),
                           ("chatops-bot-token-as-app-token", "does not hold an app-level token")):
        case = tmp_path / name
        case.mkdir()
        config = config_with(case, EXAMPLE_CONFIG.read_text().replace(
            "slack_app_token: slack-app-token", f"slack_app_token: {name}"))
        env = bot_environment(world, f"sqlite:///{case / 'db.sqlite'}")
        result = await asyncio.to_thread(start, config, env, case, "--socket-mode")
        assert result.returncode == 1, result.stdout
        # after the migration's lines: the URL is opened last, so that it is fresh when the bot connects with it
        (line,) = [line for line in map(json.loads, result.stdout.splitlines()) if line["severity"] != "INFO"]
        assert line["severity"] == "CRITICAL" and f"secret '{name}'" in line["message"], line
        assert expected in line["message"] and "connections:write" in line["message"]
        assert world.bot_token not in result.stdout + result.stderr
