"""Change control: may this change (a deploy, or a move of traffic forward) start now, given the locks and the
freeze windows?

A lock is a person saying "not now" for one service or for `all`; its holder may still deploy, everyone else is
refused. A freeze window holds everyone. Either is gone past with `override="why"` by someone whose role has the
`override` action, and what was gone past is returned so that it is announced and audited. Only changes that move
traffic forward ask the gate: rollbacks and pauses never do, so nothing here can stand in the way of stopping a bad
deploy. Pure: the locks, the windows and the instant are given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.domain.freeze import Freeze, in_force

ALL = "all"
"""The lock that holds every service."""


@dataclass(frozen=True)
class Lock:
    """`service` (or `all`) locked by `holder` for `reason`, from `since` until `until` (None: until unlocked)."""

    service: str
    holder: str
    reason: str
    since: datetime
    until: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.until is None or now < self.until

    def covers(self, service: str) -> bool:
        return self.service in (ALL, service)

    @property
    def what(self) -> str:
        return "every service" if self.service == ALL else self.service

    @property
    def ends(self) -> str:
        return "until unlocked" if self.until is None else f"until {self.until.astimezone(UTC):%Y-%m-%d %H:%M} UTC"

    def spoken(self) -> str:
        """`locked by <@U…> until 2026-12-06 18:00 UTC: reason`."""
        return f"locked by <@{self.holder}> {self.ends}: {self.reason}"


def holding(locks: Iterable[Lock], service: str, now: datetime) -> list[Lock]:
    """The active locks on `service`, its own first, then `all`."""
    return sorted((lock for lock in locks if lock.covers(service) and lock.active(now)), key=lambda lock: lock.service
                  == ALL)


@dataclass(frozen=True)
class Go:
    """The change may start. `overridden` says what an override went past (empty: nothing held it), for the
    announcement in the deploy channel and the audit row; `freeze` is what a rollout records when the override went
    past a freeze window (`<@U…>: why`), so that its stages go on advancing through it."""

    overridden: tuple[str, ...] = ()
    freeze: str = ""


@dataclass(frozen=True)
class Refusal:
    """The change may not start: `text` names the holder or window, the reason, the end and how to go ahead;
    `held` is what holds it, a line each (a lock, a freeze window)."""

    text: str
    held: tuple[str, ...] = ()


def gate(*, service: str, user: str, now: datetime, locks: Iterable[Lock], freezes: Iterable[Freeze],
         override: str = "", may_override: bool = False, command: str = "/deploy",
         overriders: Sequence[str] = ()) -> Go | Refusal:
    """Whether `user` may `command` `service` at `now`. `override` is the reason the person gave (empty: none);
    `may_override` whether their role has the `override` action; `overriders` the roles that have it, named in a
    refusal of an override."""
    others = [lock for lock in holding(locks, service, now) if lock.holder != user]
    blocking = [f":lock: {'every service' if lock.service == ALL else service} is {lock.spoken()}" for lock in others]
    window = in_force(freezes, service, now)
    if window is not None:
        blocking.append(f":snowflake: {service} is in {window.spoken()}")
    if not blocking:
        return Go()
    if override.strip() and may_override:
        return Go(tuple(line.split(" ", 1)[1] for line in blocking),
                  f"<@{user}>: {override.strip()}" if window is not None else "")
    held = "\n".join(blocking)
    if override.strip():
        roles = " or ".join(f"*{role}*" for role in overriders)
        who = f"the {roles} role" if roles else "a role with the `override` action (none in the config has it)"
        return Refusal(f"{held}\n`override=` needs {who}, which you don't have: ask someone who has it, or wait.",
                       tuple(blocking))
    later = ("wait until it ends" if window is not None else
             " or ".join(f"ask <@{lock.holder}> to `/unlock {lock.service}`" for lock in others))
    return Refusal(f"{held}\nTo go ahead anyway: `{command} {service} override=\"why\"` (needs the `override` "
                   f"permission; it is announced and audited), or {later}.", tuple(blocking))
