"""Locks and freeze windows as one line each, the same in `/status`, the rollout message and the digest. A lock's
reason was escaped where it entered the bot (commands/lock.py), and a window's text comes from the config.

A lock's Unlock button names the lock it was drawn for (its service and when it was taken), so a click on an old
message cannot release a newer lock someone else took since (commands/buttons.py); it is `/unlock`, asked again on
click, behind a confirmation saying what it releases.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bot.domain.change_gate import ALL, Lock
from bot.domain.freeze import Window
from bot.render.blocks import Block, button, confirm

UNLOCK = "lock_unlock"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def lock_line(lock: Lock) -> str:
    what = "every service" if lock.service == ALL else f"*{lock.service}*"
    return f":lock: {what} {lock.spoken()}"


def unlock_value(lock: Lock) -> str:
    """`<service>@<microseconds since the epoch it was taken>`: which lock, not only which service."""
    return f"{lock.service}@{(lock.since - EPOCH) // timedelta(microseconds=1)}"


def unlock_button(lock: Lock) -> Block:
    what = "every service" if lock.service == ALL else lock.service
    return button("Unlock", UNLOCK, unlock_value(lock), asks=confirm(
        f"Unlock {what}?",
        f"Others' deploys, promotions and resumes of {what} will no longer be refused by the lock taken "
        f"{lock.since:%Y-%m-%d %H:%M} UTC. Breaking someone else's lock needs the override "
        "permission and is announced in the deploy channel.", "Unlock"))


def _services(window: Window) -> str:
    return "" if window.services is None else " for " + ", ".join(sorted(window.services))


def window_lines(current: Window | None, upcoming: Window | None, *, named: bool = True) -> list[str]:
    """The window in force and the next one; `named` lists the services each holds (the fleet's view)."""
    lines = []
    if current is not None:
        scope = _services(current) if named else ""
        lines.append(f":snowflake: *frozen*{scope}: {current.spoken()}; deploys, promotions and stage "
                     "advances wait unless `override=\"why\"` is given")
    if upcoming is not None:
        scope = _services(upcoming) if named else ""
        lines.append(f":calendar: next freeze window `{upcoming.name}`{scope}: "
                     f"{upcoming.local(upcoming.starts_at)} → {upcoming.local(upcoming.ends_at)}")
    return lines


def control_lines(locks: Sequence[Lock], current: Window | None, upcoming: Window | None, *,
                  named: bool = True) -> list[str]:
    return [*(lock_line(lock) for lock in locks), *window_lines(current, upcoming, named=named)]
