"""Team permissions with a whole bot: chatops.example.yaml gives team grading (Slack user group S07GRADING1, the
sandbox's "grader") the deployer role on nba-grading-service and nba-phase*, and team predictions (S07MODELS01) the
same role on prediction-*. Who is in a group is read from the sandbox's Slack with usergroups.users.list
(https://docs.slack.dev/reference/methods/usergroups.users.list), never from the config."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.adapters.store import AuditEntry
from bot.config import Config
from tests.scenario.harness import Scenario, fast, scenario

GRADER = "U07GRADER01"


@pytest.fixture
async def teams(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    async with scenario(fast(example_config), tmp_path_factory.mktemp("teams")) as running:
        yield running


async def row(fleet: Scenario, outcome: str) -> AuditEntry:
    """The grader's newest /deploy row once it has `outcome`."""
    found: list[AuditEntry] = []

    async def written() -> bool:
        found[:] = await asyncio.to_thread(fleet.bot.runtime.store.audit, limit=1, user_id=GRADER)
        return bool(found) and found[0].command == "/deploy" and found[0].outcome == outcome

    await fleet.until(written, 10, f"the grader's /deploy row, {outcome}")
    return found[0]


async def test_a_team_member_deploys_their_own_service_and_is_refused_another_teams_naming_team_and_role(
        teams: Scenario) -> None:
    mine = await teams.command("grader", "/deploy nba-grading-service tag=v3")
    assert ":no_entry:" not in mine["body"]
    await teams.rollout_state("nba-grading-service", "deploying", "verifying", "analysing", "promoted")
    assert (await row(teams, "ok")).service == "nba-grading-service"

    theirs = await teams.command("grader", "/deploy prediction-worker tag=v3")
    refusal = ("You can't deploy prediction-worker: that needs the *deployer* role, which team *predictions* "
               "(<!subteam^S07MODELS01>) has for it.")
    assert theirs["body"] == f":no_entry: {refusal} Ask someone who has it, or the on-call."
    refused = await row(teams, "refused")
    assert (refused.service, refused.detail) == ("prediction-worker", refusal)
    assert await asyncio.to_thread(teams.bot.runtime.store.rollouts, service="prediction-worker") == []
    assert teams.world.workspace.calls["usergroups.users.list"] >= 3, "every group the config names, from Slack"
