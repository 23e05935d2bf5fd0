"""The commands the bot answers, in the order `/help` lists them."""

from __future__ import annotations

from typing import Any

from commands.framework import Command
from commands.health import Health
from commands.help import Help


def all_commands() -> list[Command[Any]]:
    working: list[Command[Any]] = [Health()]
    return [*working, Help(working)]
