"""The members of the Slack user groups the config names (role members, teams), read from Slack and kept.

Who is in a group is Slack's to say, so that adding someone to @grading in Slack is all it takes; the bot keeps
what it last read and refreshes it in the background:
- each group is read with usergroups.users.list, Tier 2, "20+ per minute", scope usergroups:read
  (https://docs.slack.dev/reference/methods/usergroups.users.list). A round reads every group once, one call
  after another, and rounds are `REFRESH_S` (5 minutes) apart: a handful of groups costs a few calls every five
  minutes, far under the tier, and a change in Slack takes effect within five minutes;
- a 429 ends the round, and no call is made before its Retry-After has passed
  (https://docs.slack.dev/apis/web-api/rate-limits); a round reads the groups read longest ago first, so a
  round cut short by a 429 is carried on by the next one, never restarted from the same group;
- a read that fails (429, an outage, `missing_scope`) keeps the members last read, and the group is read again
  after `RETRY_S`; a group never read is *unread*: `groups_of` raises MembersUnread, and a permission that group
  would grant is refused, never assumed (fail closed);
- `no_such_subteam`: the group does not exist (a mistyped id, a deleted group): it has no members, and the log
  says so;
- a request that finds a group unread starts a round (or joins the one under way) and waits for it at most
  `INLINE_S`, well inside the 3 seconds Slack gives the ack.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from slack_sdk.errors import SlackApiError

from bot.adapters.slack import SlackUnreachable, retry_after

log = logging.getLogger(__name__)

REFRESH_S = 300.0
"""Between two rounds that read every group."""
RETRY_S = 30.0
"""Between a round in which some read failed and the next; a refusal for an unread group says "in a minute"."""
INLINE_S = 1.5
"""The longest a request waits for a round to read a group it needs."""

Read = Callable[[str], Awaitable[frozenset[str]]]
"""One group's members from Slack (SlackGateway.usergroup_members)."""


class MembersUnread(Exception):
    """The members of `unread` have never been read from Slack; `known` are the groups the user is known to be in."""

    def __init__(self, unread: frozenset[str], known: frozenset[str]) -> None:
        super().__init__(f"never read the members of {', '.join(sorted(unread))}")
        self.unread = unread
        self.known = known


class UserGroups:
    """The cache of `groups`' members (module docstring); `run` is its background refresh, started by bot/app.py."""

    def __init__(self, groups: Iterable[str], read: Read, *, refresh_s: float = REFRESH_S, retry_s: float = RETRY_S,
                 inline_s: float = INLINE_S) -> None:
        self._groups = tuple(sorted(set(groups)))
        self._read = read
        self._refresh_s = refresh_s
        self._retry_s = retry_s
        self._inline_s = inline_s
        self._members: dict[str, frozenset[str]] = {}
        self._turns = itertools.count()
        self._answered: dict[str, int] = {}
        """When Slack last answered for each group (anything but a 429), in turns: a round starts with the group
        answered longest ago, and with those never answered before them."""
        self._failed: set[str] = set()
        self._not_before = 0.0
        self._round: asyncio.Task[None] | None = None

    def members(self, group: str) -> frozenset[str] | None:
        """What was last read of `group`; None if it never was."""
        return self._members.get(group)

    async def groups_of(self, user_id: str) -> frozenset[str]:
        """The groups `user_id` is in, as last read; raises MembersUnread while some group has never been read."""
        if self._unread():
            under_way = self._start_round()
            if under_way is not None:
                await asyncio.wait({under_way}, timeout=self._inline_s)
        known = frozenset(group for group, members in self._members.items() if user_id in members)
        unread = self._unread()
        if unread:
            raise MembersUnread(unread, known)
        return known

    async def refresh(self) -> None:
        """One round now (or the one under way), unless a Retry-After has not passed yet."""
        under_way = self._start_round()
        if under_way is not None:
            await asyncio.shield(under_way)

    async def run(self) -> None:
        """Refresh forever: every `refresh_s`, or `retry_s` after a failed read, never before a Retry-After ends."""
        try:
            while True:
                try:
                    await self.refresh()
                except Exception:
                    log.exception("reading the user groups' members failed; keeping what was last read")
                pause = self._retry_s if self._failed or self._unread() else self._refresh_s
                await asyncio.sleep(max(pause, self._not_before - time.monotonic()))
        finally:
            if self._round is not None and not self._round.done():
                self._round.cancel()

    def _unread(self) -> frozenset[str]:
        return frozenset(group for group in self._groups if group not in self._members)

    def _start_round(self) -> asyncio.Task[None] | None:
        if self._round is not None and not self._round.done():
            return self._round
        if time.monotonic() < self._not_before:
            return None
        self._round = asyncio.create_task(self._read_all(), name="usergroups")
        return self._round

    async def _read_all(self) -> None:
        for group in sorted(self._groups, key=lambda g: self._answered.get(g, -1)):
            wait = await self._read_one(group)
            if wait is not None:
                self._not_before = time.monotonic() + wait
                self._failed.add(group)
                log.warning("Slack rate-limited reading the members of %s; next read in %.0f s", group, wait)
                return
            self._answered[group] = next(self._turns)

    async def _read_one(self, group: str) -> float | None:
        """Read one group's members into the cache; returns a 429's Retry-After, else None."""
        try:
            members = await self._read(group)
        except SlackApiError as exc:
            wait = retry_after(exc)
            if wait is not None:
                return wait
            error = exc.response.get("error")
            if error != "no_such_subteam":
                self._failed.add(group)
                needed = exc.response.get("needed")
                log.error("could not read the members of %s: %s%s; keeping what was last read", group, error,
                          f" (add the {needed} scope to the Slack app)" if needed else "")
                return None
            log.warning("Slack has no user group %s (the config names it): it grants nothing", group)
            members = frozenset()
        except SlackUnreachable as exc:
            self._failed.add(group)
            log.warning("could not reach Slack to read the members of %s: %s; keeping what was last read", group, exc)
            return None
        self._members[group] = members
        self._failed.discard(group)
        return None
