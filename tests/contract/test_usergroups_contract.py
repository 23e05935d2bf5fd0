"""Slack's user groups: the emulator's usergroups.list and usergroups.users.list, driven by slack_sdk's real client
and judged by Slack's OpenAPI spec, and the bot's cache of group members against it.

The methods' pages: https://docs.slack.dev/reference/methods/usergroups.users.list and
https://docs.slack.dev/reference/methods/usergroups.list (Tier 2, scope usergroups:read, `include_disabled`,
`include_users`, `include_count`, `no_such_subteam`); a 429 carries Retry-After
(https://docs.slack.dev/apis/web-api/rate-limits)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack import SlackGateway
from bot.adapters.usergroups import MembersUnread, UserGroups
from sandbox.serving import stop
from tests.contract.schemas import assert_slack
from tests.contract.slack_stage import EVERY_SCOPE, LEAD, ONCALL, Slack, api_error, slack_api

GRADING, MODELS, SRE = "S07GRADING1", "S07MODELS01", "S07SREONCAL"
GRADER, MODELER = "U07GRADER01", "U07MODELER1"
CALL = "usergroups.users.list"


@pytest.fixture
async def slack() -> AsyncIterator[Slack]:
    emulator, listener = await slack_api()
    yield emulator
    await stop(listener)


@pytest.fixture
async def client(slack: Slack) -> AsyncWebClient:
    return slack.client()


@pytest.fixture
async def gateway(slack: Slack) -> AsyncIterator[SlackGateway]:
    opened = SlackGateway(slack.workspace.bot_token, base_url=f"{slack.url}/api/")
    yield opened
    await opened.aclose()


# -- the emulator ------------------------------------------------------------------------------------------------


async def test_users_list_gives_a_groups_members_and_no_such_subteam_for_an_unknown_id(client: AsyncWebClient) -> None:
    """"List all users in a User Group"; "no_such_subteam: No usergroup found with the given Id"."""
    response = await client.usergroups_users_list(usergroup=SRE)
    assert_slack(CALL, response.data)
    assert response["users"] == [ONCALL, LEAD]
    assert await api_error(client.usergroups_users_list(usergroup="S07NOGROUP1")) == {
        "ok": False, "error": "no_such_subteam"}


async def test_a_disabled_group_has_members_only_with_include_disabled(slack: Slack, client: AsyncWebClient) -> None:
    """`include_disabled`: "Allow results that involve disabled User Groups"."""
    slack.workspace.usergroups[GRADING].disabled = True
    assert (await client.usergroups_users_list(usergroup=GRADING))["users"] == []
    assert (await client.usergroups_users_list(usergroup=GRADING, include_disabled=True))["users"] == [GRADER]


async def test_list_gives_every_enabled_group_with_users_and_counts_when_asked(slack: Slack,
                                                                              client: AsyncWebClient) -> None:
    """usergroups.list: "Returns a list of usergroup objects"; users with `include_users`, the count with
    `include_count`, disabled groups with `include_disabled`."""
    bare = await client.usergroups_list()
    assert_slack("usergroups.list", bare.data)
    assert {g["id"]: g["handle"] for g in bare["usergroups"]} == {SRE: "sre-oncall", GRADING: "grading",
                                                                  MODELS: "models"}
    assert not any("users" in g or "user_count" in g for g in bare["usergroups"])
    full = await client.usergroups_list(include_users=True, include_count=True)
    assert_slack("usergroups.list", full.data)
    assert {g["id"]: (g["users"], g["user_count"]) for g in full["usergroups"]} == {
        SRE: ([ONCALL, LEAD], 2), GRADING: ([GRADER], 1), MODELS: ([MODELER], 1)}
    slack.workspace.usergroups[MODELS].disabled = True
    assert {g["id"] for g in (await client.usergroups_list())["usergroups"]} == {SRE, GRADING}
    disabled = await client.usergroups_list(include_disabled=True)
    assert_slack("usergroups.list", disabled.data)
    [models] = [g for g in disabled["usergroups"] if g["id"] == MODELS]
    assert models["date_delete"] > 0 and models["deleted_by"] == LEAD


@pytest.mark.parametrize("method", ["usergroups.list", CALL])
async def test_both_methods_need_usergroups_read(method: str) -> None:
    """Both pages list `usergroups:read` as the bot scope; a token without it is refused `missing_scope`."""
    slack, listener = await slack_api(scopes=tuple(s for s in EVERY_SCOPE if s != "usergroups:read"))
    try:
        body = await api_error(slack.client().api_call(method, params={"usergroup": SRE}))
        assert (body["error"], body["needed"]) == ("missing_scope", "usergroups:read")
    finally:
        await stop(listener)


# -- the bot's cache ---------------------------------------------------------------------------------------------


async def test_members_are_read_once_and_served_from_the_cache(slack: Slack, gateway: SlackGateway) -> None:
    groups = UserGroups([SRE, GRADING, MODELS], gateway.usergroup_members)
    assert await groups.groups_of(GRADER) == {GRADING}
    assert await groups.groups_of(LEAD) == {SRE}
    assert await groups.groups_of("U07NOBODY01") == frozenset()
    assert slack.workspace.calls[CALL] == 3, "one call per group, then the cache"


async def test_a_change_in_slack_is_seen_at_the_next_refresh(slack: Slack, gateway: SlackGateway) -> None:
    groups = UserGroups([GRADING, MODELS], gateway.usergroup_members)
    await groups.refresh()
    slack.workspace.usergroups[GRADING].users = []
    slack.workspace.usergroups[MODELS].users.append(GRADER)
    assert await groups.groups_of(GRADER) == {GRADING}, "the cache, until the next refresh"
    await groups.refresh()
    assert await groups.groups_of(GRADER) == {MODELS}


async def test_the_background_loop_refreshes_on_its_interval(slack: Slack, gateway: SlackGateway) -> None:
    groups = UserGroups([GRADING], gateway.usergroup_members, refresh_s=0.05)
    loop = asyncio.create_task(groups.run())

    async def shows(members: set[str]) -> bool:
        """Polled rather than slept on: a loaded machine may take longer than a few intervals to answer."""
        deadline = time.monotonic() + 10
        for _ in range(1000):
            if groups.members(GRADING) == members or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        return groups.members(GRADING) == members

    try:
        assert await shows({GRADER})
        slack.workspace.usergroups[GRADING].users = [MODELER]
        assert await shows({MODELER}), "a change in Slack is seen at a later refresh, with no call to ask for it"
    finally:
        loop.cancel()
    assert slack.workspace.calls[CALL] >= 2, "the first read, then the refresh that saw the change"


async def test_a_failed_refresh_keeps_the_members_last_read(slack: Slack, gateway: SlackGateway) -> None:
    """An outage (Slack answers 503) or a scope taken away: the last members read still decide."""
    groups = UserGroups([GRADING], gateway.usergroup_members)
    await groups.refresh()
    slack.faults.add({"method": CALL, "status": 503, "count": 1})
    await groups.refresh()
    assert await groups.groups_of(GRADER) == {GRADING}
    slack.workspace.scopes = tuple(s for s in slack.workspace.scopes if s != "usergroups:read")
    await groups.refresh()
    assert await groups.groups_of(GRADER) == {GRADING}


async def test_a_group_never_read_fails_closed(slack: Slack, gateway: SlackGateway) -> None:
    """Without the scope nothing can be read: the group is unread, never taken as empty or as everyone."""
    slack.workspace.scopes = tuple(s for s in slack.workspace.scopes if s != "usergroups:read")
    groups = UserGroups([SRE, GRADING], gateway.usergroup_members)
    with pytest.raises(MembersUnread) as unread:
        await groups.groups_of(GRADER)
    assert (unread.value.unread, unread.value.known) == ({SRE, GRADING}, frozenset())
    slack.workspace.scopes = (*slack.workspace.scopes, "usergroups:read")
    assert await groups.groups_of(GRADER) == {GRADING}, "read at the next request once Slack answers"


async def test_a_group_slack_does_not_know_grants_nothing(gateway: SlackGateway) -> None:
    groups = UserGroups([GRADING, "S07NOGROUP1"], gateway.usergroup_members)
    assert await groups.groups_of(GRADER) == {GRADING}
    assert groups.members("S07NOGROUP1") == frozenset()


async def test_a_429_stops_the_reads_until_its_retry_after_and_the_next_round_carries_on() -> None:
    """Tier 2 at one call a second and no burst: the second group's read is refused 429 with Retry-After 1; no call
    is made before it has passed (the group stays unread: failing closed), and the next round starts with the group
    it did not read, so every group gets read however many there are."""
    slack, listener = await slack_api(tier2_per_min=1, window_s=1.0, tier_burst_fraction=0.0)
    gateway = SlackGateway(slack.workspace.bot_token, base_url=f"{slack.url}/api/")
    try:
        groups = UserGroups([GRADING, MODELS], gateway.usergroup_members)
        await groups.refresh()
        assert (groups.members(GRADING), groups.members(MODELS)) == ({GRADER}, None)
        assert slack.workspace.calls[CALL] == 2
        with pytest.raises(MembersUnread):
            await groups.groups_of(MODELER)
        await groups.refresh()
        assert slack.workspace.calls[CALL] == 2, "no call while the Retry-After runs"
        await asyncio.sleep(1.1)
        await groups.refresh()
        assert groups.members(MODELS) == {MODELER}
        assert await groups.groups_of(MODELER) == {MODELS}
    finally:
        await gateway.aclose()
        await stop(listener)
