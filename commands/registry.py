"""The commands the bot answers, in the order `/help` lists them."""

from __future__ import annotations

from typing import Any

from commands.deploy import Deploy
from commands.digest import DigestCommand
from commands.framework import Command
from commands.health import Health
from commands.help import Help
from commands.history import History
from commands.incidents import Ack, Incidents, SilenceCommand
from commands.lock import LockCommand, UnlockCommand
from commands.pause import Pause
from commands.promote import Promote
from commands.queue import Approve, Deny, QueueCommand
from commands.resume import Resume
from commands.rollback import Rollback
from commands.stats import StatsCommand
from commands.status import Status
from commands.timeline import TimelineCommand


def all_commands() -> list[Command[Any]]:
    working: list[Command[Any]] = [Deploy(), Status(), Promote(), Pause(), Resume(), Rollback(), History(), Health(),
                                   Incidents(), Ack(), TimelineCommand(), SilenceCommand(), DigestCommand(),
                                   StatsCommand(), LockCommand(), UnlockCommand()]
    working += [QueueCommand(), Approve(), Deny()]
    return [*working, Help(working)]
