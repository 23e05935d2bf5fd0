"""Every scenario test is also a secret-leak test: after each one, the log lines of the bot and the sandbox (one
process here) and every Slack message anyone can see are searched for the secrets the world holds (the bot token,
the signing secret, the runbook link key, the Monitoring webhook token: every version in its Secret Manager).

Records are captured at the levels production writes (bot/log.py: INFO, and WARNING for the libraries that log each
request), from every logger. The raw record is searched, before bot/log.py's redaction, which is the last line of
defence, not the first."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from bot.log import QUIET
from sandbox.world import World
from tests.scenario.harness import Scenario

SLACK_TOKEN = re.compile(r"xox[abposr]-[0-9A-Za-z-]{10,}")
"""Any Slack token, so a world the scan cannot reach (one a test builds inline) still cannot leak its bot token."""


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted is the logging call's bug, reported by pytest's own
            self.handleError(record)


@dataclasses.dataclass
class SecretScan:
    logs: Captured
    read: dict[str, int] = dataclasses.field(default_factory=dict)
    """Per secret, how many log lines were already searched for it: each line is searched once for each secret, so
    one leak fails one test, not every test after it."""
    shapes_read: int = 0

    def learn(self, world: World) -> None:
        for secret in world.secret_manager.secrets.values():
            for version in secret.versions:
                value = version.data.decode("utf-8", "replace")
                if len(value) >= 8 and "\ufffd" not in value:  # bytes that are not text cannot be in a log line
                    self.read.setdefault(value, 0)

    def leaks(self, text: str, where: str, secrets: Iterable[str]) -> list[str]:
        return [f"{where}: a secret of the world ({secret[:4]}…)" for secret in secrets if secret in text]

    def tokens(self, text: str, where: str) -> list[str]:
        return [f"{where}: a Slack token ({match[:9]}…)" for match in SLACK_TOKEN.findall(text)]

    def new_log_leaks(self) -> list[str]:
        lines = self.logs.lines
        leaks = self.tokens("\n".join(lines[self.shapes_read:]), "a log line")
        self.shapes_read = len(lines)
        for secret, start in self.read.items():
            leaks += self.leaks("\n".join(lines[start:]), "a log line", [secret])
            self.read[secret] = len(lines)
        return leaks


def worlds_in(value: Any, depth: int = 0) -> Iterator[World]:
    """The worlds a test's fixture values hold: a World, a Scenario, or a dataclass around one."""
    if isinstance(value, World):
        yield value
    elif isinstance(value, Scenario):
        yield value.world
    elif dataclasses.is_dataclass(value) and not isinstance(value, type) and depth < 2:
        for item in dataclasses.fields(value):
            yield from worlds_in(getattr(value, item.name), depth + 1)


def messages_of(world: World) -> str:
    workspace = world.workspace
    seen = [workspace.seen_by(channel, user) for channel in workspace.channels for user in workspace.users]
    return json.dumps(seen, default=str)


@pytest.fixture(scope="session")
def secret_scan() -> Iterator[SecretScan]:
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in QUIET)]
    levels = [logger.level for logger in loggers]
    scan = SecretScan(Captured())
    loggers[0].addHandler(scan.logs)
    for logger in loggers:
        logger.setLevel(logging.INFO if logger is loggers[0] else logging.WARNING)
    try:
        yield scan
        leaks = scan.new_log_leaks()
        assert not leaks, f"after the last scenario test: {leaks}"
    finally:
        loggers[0].removeHandler(scan.logs)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@pytest.fixture(autouse=True)
def nothing_secret_leaks(request: pytest.FixtureRequest, secret_scan: SecretScan) -> Iterator[None]:
    yield
    worlds = [world for value in request.node.funcargs.values() for world in worlds_in(value)]
    for world in worlds:
        secret_scan.learn(world)
    leaks = secret_scan.new_log_leaks()
    for world in worlds:
        seen = messages_of(world)
        leaks += secret_scan.leaks(seen, "a Slack message", secret_scan.read)
        leaks += secret_scan.tokens(seen, "a Slack message")
    assert not leaks, f"secrets leaked: {leaks}"
