"""The App Home tab of each person who looks at it: published when they open it, and again when what it shows
changes (a rollout saved, an incident opened, acknowledged or resolved) while they have looked recently.

views.publish is Tier 4, 100+ calls a minute per workspace (https://docs.slack.dev/reference/methods/views.publish),
shared by every instance. Changes come in bursts (a rollout saves at each stage, a sweep touches many incidents), so a
change only wakes a refresh that waits DEBOUNCE_S for the burst to end and then publishes once per recent viewer,
PACE_S apart, and only to those whose tab would read differently (a rollout's every save wakes it, most change nothing
shown): one instance keeps to 60 a minute, and the client waits out any 429 Slack still answers. A person who has not
opened the tab for RECENT_S is not refreshed; the next open publishes afresh. A change another instance made wakes
only that instance, so the recent viewers' tabs are also looked at every LOOK_S (published only if they changed).
A Home tab has no response_url, so what became of a click there (the audit row the pipeline wrote) is shown at the
top of the tab itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.adapters.incident_store import IncidentStore
from bot.adapters.lock_store import LockStore
from bot.adapters.slack import SlackGateway
from bot.adapters.store import Store
from bot.adapters.usergroups import MembersUnread
from bot.config import Config
from bot.domain.freeze import in_force, next_window
from bot.domain.policy import Grant
from bot.engine.sweeper import Sweeper
from bot.render.home import HomeData, RunbookLink, home_view

log = logging.getLogger(__name__)

DEBOUNCE_S = 2.0
PACE_S = 1.0
RECENT_S = 15 * 60.0
LOOK_S = 30.0
MY_DEPLOYS_READ = 50
_TIMELESS = datetime(2000, 1, 1, tzinfo=UTC)


def allowed_actions(grants: Sequence[Grant], user: str, groups: frozenset[str]) -> list[str]:
    """The actions some grant gives this person on some service (a role's `*` is every action the config names)."""
    known = sorted({action for grant in grants for action in grant.actions if action != "*"})
    mine = {action for grant in grants if grant.includes(user, groups) and (grant.team is None or grant.services)
            for action in grant.actions}
    return known if "*" in mine else sorted(mine)


class HomeTabs:
    def __init__(self, config: Config, store: Store, incidents: IncidentStore, sweeper: Sweeper, runbook: RunbookLink,
                 slack: SlackGateway, grants: Callable[[], Sequence[Grant]],
                 groups_of: Callable[[str], Awaitable[frozenset[str]]], *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.store = store
        self.incidents = incidents
        self.sweeper = sweeper
        self.runbook = runbook
        self.slack = slack
        self.grants = grants
        self.groups_of = groups_of
        self.clock = clock
        self.viewers: dict[str, datetime] = {}
        self.notices: dict[str, str] = {}
        self.shown: dict[str, str] = {}  # what each person's tab last said, but its time
        self.published = 0  # views.publish calls made by this instance: tests and benches read it
        self._changed = asyncio.Event()

    async def opened(self, user: str) -> None:
        """The person opened the tab: publish it now, and keep it fresh for a while."""
        self.viewers[user] = self.clock()
        await self.publish(user)

    def changed(self) -> None:
        """Something the tab shows changed: refresh the recent viewers' tabs once the burst is over."""
        if self.viewers:
            self._changed.set()

    async def clicked(self, user: str) -> None:
        """A button in the tab was handled: show the person what became of it."""
        entries = await asyncio.to_thread(self.store.audit, limit=1, user_id=user)
        if entries:
            entry = entries[0]
            said = f": {entry.detail}" if entry.detail and entry.outcome != "ok" else ""
            target = f" {entry.service}" if entry.service else ""
            self.notices[user] = f":information_source: Your last click, *{entry.action}*{target}: " \
                                 f"*{entry.outcome}*{said}"
        self.viewers[user] = self.clock()
        await self.publish(user)

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), LOOK_S)
            await asyncio.sleep(DEBOUNCE_S)
            self._changed.clear()
            now = self.clock()
            for user, seen in list(self.viewers.items()):
                if (now - seen).total_seconds() > RECENT_S:
                    self.viewers.pop(user, None)
                    self.notices.pop(user, None)
                    continue
                if await self.publish(user, unless_same=True):
                    await asyncio.sleep(PACE_S)

    async def data(self, user: str) -> HomeData:
        now = self.clock()
        opened = await asyncio.to_thread(self.store.rollouts, open_only=True, limit=40)
        recent = await asyncio.to_thread(self.store.rollouts, limit=MY_DEPLOYS_READ)
        incidents = await asyncio.to_thread(self.incidents.open_incidents)
        locks = await LockStore(self.store).locks(now)
        freezes = self.config.freeze_windows()
        try:
            groups = await self.groups_of(user)
        except MembersUnread as exc:
            groups = exc.known
        return HomeData(viewer=user, now=now, fleet=self.sweeper.latest, fleet_at=self.sweeper.latest_at,
                        rollouts=[s.rollout for s in opened], incidents=[s.incident for s in incidents], locks=locks,
                        freeze_now=in_force(freezes, None, now), freeze_next=next_window(freezes, None, now),
                        my_deploys=[s.rollout for s in recent if s.rollout.requested_by == user],
                        may=allowed_actions(self.grants(), user, groups), notice=self.notices.get(user, ""),
                        runbook=self.runbook)

    async def publish(self, user: str, *, unless_same: bool = False) -> bool:
        """Whether the tab was published. Never raises: a tab that could not be published now is published at the
        next change or open."""
        try:
            data = await self.data(user)
            said = json.dumps(home_view(replace(data, now=_TIMELESS)), sort_keys=True)
            if unless_same and self.shown.get(user) == said:
                return False
            await self.slack.publish_home(user, home_view(data))
        except SlackApiError as exc:
            log.warning("could not publish %s's Home tab: %s", user, exc.response.get("error"))
            return False
        except Exception:
            log.exception("could not publish %s's Home tab", user)
            return False
        self.shown[user] = said
        self.published += 1
        return True


def from_home(body: Mapping[str, Any]) -> str | None:
    """The user who clicked, for a block_actions payload from a Home tab (`container.type` "view", a `home` view);
    None for any other click."""
    container, view, user = (body.get(key) for key in ("container", "view", "user"))
    if not (isinstance(container, Mapping) and container.get("type") == "view" and isinstance(view, Mapping)
            and view.get("type") == "home" and isinstance(user, Mapping)):
        return None
    user_id = user.get("id")
    return user_id if isinstance(user_id, str) and user_id else None
