"""Who may do what, through the framework's own entry points: every command and every button by every role of the
example config, allowed or refused with the role named, and one audit row each; then what the one guarded pipeline
does with buttons that are stale, malformed or broken."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from bot.adapters.cloudrun import CloudRunGateway, ServiceView
from bot.adapters.incident_store import IncidentStore
from bot.adapters.slack import SlackGateway, SlackUnreachable
from bot.adapters.store import AuditEntry, Store, StoredRollout
from bot.adapters.usergroups import Read, UserGroups
from bot.config import Config, Role
from bot.domain.incidents import CheckState, Incident
from bot.domain.rollout import Live, Rollout, State
from bot.engine.incidents import IncidentEngine
from bot.runbook_links import ExternalPages
from bot.runbooks import RunbookLinker, runbooks_beside
from commands.buttons import handle_button
from commands.deploy import plan_for
from commands.framework import Command, Invocation, Runtime, handle
from commands.help import Help, HelpRequest
from commands.registry import all_commands
from sandbox.slack_workspace import DEFAULT_USERGROUPS
from tests import figures
from tests.conftest import EXAMPLE_CONFIG

USERS = {"oncall": "U07ONCALL01", "lead": "U07LEAD0001", "viewer": "U07VIEWER01", "modeler": "U07MODELER1",
         "grader": "U07GRADER01"}
"""The sandbox's people: oncall is in the deployer role through the S07SREONCAL group, lead by name, viewer only
through everyone's `*`; modeler is a deployer of prediction-worker through team predictions (group S07MODELS01),
grader a deployer of other services only (team grading)."""
LOOKS = {"health", "status", "history", "incidents", "digest", "stats", "help", "queue", "approve", "deny", "timeline"}
"""`/queue <service>` only looks (it needs `status`); `/approve` and `/deny` are decided by the service's approvers,
not a role."""
OPERATES = {"deploy", "promote", "pause", "resume", "rollback", "ack", "silence", "lock", "unlock"}
MAY: dict[str, set[str]] = {"oncall": LOOKS | OPERATES, "lead": LOOKS | OPERATES, "viewer": LOOKS,
                            "modeler": LOOKS | OPERATES, "grader": LOOKS}
NEEDED = "that needs the *deployer* role, which team *predictions* (<!subteam^S07MODELS01>) has for it."
TYPED = {"deploy": "prediction-worker dry-run", "status": "", "promote": "prediction-worker",
         "pause": "prediction-worker", "resume": "prediction-worker", "rollback": "prediction-worker",
         "history": "prediction-worker", "health": "all", "incidents": "", "ack": "prediction-worker",
         "timeline": "prediction-worker", "silence": "prediction-worker 2h maintenance", "digest": "",
         "stats": "prediction-worker 30d",
         "help": "deploy", "queue": "prediction-worker",
         "approve": "12", "deny": "12 not before tip-off", "lock": "prediction-worker for 2h retraining",
         "unlock": "prediction-worker"}
SERVICE = "prediction-worker"
DEPLOYS = "C07DEPLOYS1"
RESPONSE_URL = "https://hooks.slack.test/commands/T07/1/x"


@dataclass
class SlackSeen:
    """The Slack side of a Runtime: what the bot answered through response_urls."""

    said: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def answering(self, response_url: str, channel: str, user: str) -> Iterator[None]:
        yield

    async def respond(self, response_url: str, text: str, blocks: Any = None, **_: Any) -> None:
        self.said.append(text)


@dataclass
class CandidatesServe:
    """The one Cloud Run read a click makes before it acts (does what the button was drawn for still hold?):
    every rollout's candidate still serves, so the click goes on to what it does."""

    async def read(self, service: str) -> ServiceView:
        candidate = f"{service}-v3-beef"
        return ServiceView(Live(exists=True, traffic=((candidate, 100),), tags={}), "", {}, None)


@dataclass
class Acks:
    texts: list[str] = field(default_factory=list)

    async def __call__(self, **kwargs: Any) -> None:
        self.texts.append(str(kwargs.get("text", "")))


def runtime_for(config: Config, store: Store, read: Read | None = None) -> Runtime:
    """A Runtime with the real store, policy and incident engine; nothing that would reach Google. Group members
    come from `read` (the sandbox's groups unless given)."""
    linker = RunbookLinker(config, runbooks_beside(EXAMPLE_CONFIG), ExternalPages("https://runbooks.example/rb"))
    none: Any = None
    return Runtime(config=config, slack=cast(SlackGateway, SlackSeen()), prober=none,
                   cloudrun=cast(CloudRunGateway, CandidatesServe()), store=store,
                   runbook_link=linker, wake=lambda: None, logs=none, log_budget=none,
                   incidents=IncidentEngine(config, IncidentStore(store), linker), digests=none, stats=none,
                   usergroups=UserGroups(config.usergroup_ids(), read or members_in_the_sandbox))


async def members_in_the_sandbox(group: str) -> frozenset[str]:
    """The sandbox workspace's groups, as usergroups.users.list answers for them (tests/contract/
    test_usergroups_contract.py makes the call itself)."""
    return frozenset(DEFAULT_USERGROUPS[group][2])


def said(runtime: Runtime) -> list[str]:
    return cast(SlackSeen, runtime.slack).said


def last_row(runtime: Runtime, user: str) -> AuditEntry:
    return runtime.store.audit(limit=1, user_id=USERS[user])[0]


@pytest.fixture
def store(migrated_sqlite: str) -> Iterator[Store]:
    migrated = Store(migrated_sqlite)
    yield migrated
    migrated.close()


@pytest.fixture
def runtime(example_config: Config, store: Store) -> Runtime:
    return runtime_for(example_config, store)


# -- commands --------------------------------------------------------------------------------------------------


class Witnessed(Command[Any]):
    """The real command's grammar, parser, target and policy action; its work only noted, because the matrix is
    about who may, and the work would reach Google."""

    def __init__(self, real: Command[Any], acted: list[str]) -> None:
        self.real, self.acted = real, acted
        self.name, self.usage, self.action = real.name, real.usage, real.action  # type: ignore[misc]

    def parse(self, args: Any, config: Config) -> Any:
        return self.real.parse(args, config)

    def target(self, request: Any) -> str | None:
        return self.real.target(request)

    async def locate(self, request: Any, runtime: Runtime) -> Any:
        return await self.real.locate(request, runtime)

    def needs(self, request: Any) -> str | None:
        return self.real.needs(request)

    def acknowledgement(self, request: Any, config: Config) -> str:
        return self.real.acknowledgement(request, config)

    async def act(self, request: Any, invocation: Invocation, runtime: Runtime) -> None:
        self.acted.append(f"{invocation.user_id} {invocation.command}")


def named(name: str) -> Command[Any]:
    return next(c for c in all_commands() if c.name == name)


def slash_body(user: str, command: str, text: str) -> dict[str, str]:
    return {"command": command, "text": text, "user_id": USERS[user], "user_name": user, "channel_id": DEPLOYS,
            "response_url": RESPONSE_URL}


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("command", all_commands(), ids=lambda c: c.name)
async def test_every_command_by_every_role_is_allowed_or_refused_naming_the_role(
        runtime: Runtime, command: Command[Any], user: str) -> None:
    acted: list[str] = []
    acks = Acks()
    outcome = await handle(Witnessed(command, acted), slash_body(user, command.slash, TYPED[command.name]), acks,
                           runtime)
    row = last_row(runtime, user)
    assert (row.command, row.text, row.action) == (command.slash, TYPED[command.name], command.action or command.name)
    assert len(runtime.store.audit(limit=10, user_id=USERS[user])) == 1, "one audit row per request"
    figures.count("policy decisions checked (every command and button by every role)")
    if command.name in MAY[user]:
        assert outcome == row.outcome == "ok" and acted == [f"{USERS[user]} {command.slash}"]
        assert "no_entry" not in acks.texts[0]
    else:
        assert outcome == row.outcome == "refused" and not acted
        figures.count("policy decisions that refused, naming the role needed")
        assert acks.texts == [f":no_entry: {row.detail} Ask someone who has it, or the on-call."]
        assert row.detail.startswith("You can't ") and row.detail.endswith(NEEDED)
        assert row.service == (SERVICE if TYPED[command.name].startswith(SERVICE) else None)


def test_the_matrix_covers_every_command_and_every_action_a_role_may_name() -> None:
    assert set(TYPED) == {c.name for c in all_commands()}
    assert {c.action for c in all_commands() if c.action} <= MAY["oncall"]


async def slack_unreachable(group: str) -> frozenset[str]:
    raise SlackUnreachable("Cannot connect to host slack.com:443")


async def test_while_slack_cannot_say_who_is_in_a_group_a_group_member_is_refused_and_told_why(
        example_config: Config, store: Store) -> None:
    """Fail closed: a group never read is not taken as empty (a silent refusal that names the wrong fix) or as
    everyone; the refusal says the members are unknown and to try again."""
    runtime = runtime_for(example_config, store, read=slack_unreachable)
    acted: list[str] = []
    acks = Acks()
    outcome = await handle(Witnessed(named("deploy"), acted), slash_body("modeler", "/deploy", TYPED["deploy"]), acks,
                           runtime)
    assert outcome == "refused" and not acted
    told = ("I couldn't read the members of <!subteam^S07SREONCAL> and <!subteam^S07MODELS01> from Slack, so I can't "
            "tell whether you may deploy prediction-worker; try again in a minute.")
    assert acks.texts == [f":no_entry: {told}"]
    assert (last_row(runtime, "modeler").outcome, last_row(runtime, "modeler").detail) == ("refused", told)


async def test_while_slack_cannot_say_who_is_in_a_group_someone_named_in_a_role_still_rolls_back(
        example_config: Config, store: Store) -> None:
    """A rollback is never blocked by what this adds: the lead is a deployer by user id, and everyone's looks stay."""
    runtime = runtime_for(example_config, store, read=slack_unreachable)
    for user, command in (("lead", "rollback"), ("viewer", "status")):
        acted: list[str] = []
        body = slash_body(user, f"/{command}", TYPED[command])
        assert await handle(Witnessed(named(command), acted), body, Acks(), runtime) == "ok"
        assert acted == [f"{USERS[user]} /{command}"]


def test_help_shows_a_team_member_the_commands_their_team_may_use_and_which_teams_may(runtime: Runtime) -> None:
    """The grader may deploy only their team's services, yet /deploy is theirs to use: not locked in /help, which
    also says which teams may use it, on what."""
    help_ = cast(Help, named("help"))

    def deploy_line(user: str, groups: frozenset[str]) -> str:
        blocks = help_.render(HelpRequest(None), USERS[user], groups, runtime)
        return next(json.dumps(b) for b in blocks if "/deploy " in json.dumps(b))

    assert ":lock:" not in deploy_line("grader", frozenset({"S07GRADING1"}))
    assert ":lock:" in deploy_line("viewer", frozenset())
    who = json.dumps(help_.render(HelpRequest("deploy"), USERS["grader"], frozenset({"S07GRADING1"}), runtime)[-1])
    teams = ("teams: grading (deployer on nba-grading-service, nba-phase*); predictions (deployer on prediction-*, "
             "mlb-prediction-worker)")
    assert f"Who may: deployer; {teams}" in who
    assert "you don't have this role" not in who


# -- buttons ---------------------------------------------------------------------------------------------------


def open_rollout(store: Store, config: Config, service: str = SERVICE, state: State = State.ANALYSING,
                 stage: int = 0) -> StoredRollout:
    now = datetime.now(UTC)
    stable = f"{service}-00001-abc"
    rollout = Rollout(id=0, service=service, image=f"{config.services[service].image}:v3", stable=stable,
                      candidate=f"{service}-v3-beef", plan=plan_for(config, service, "canary"),
                      requested_by=USERS["oncall"], created_at=now, next_check_at=now, traffic=((stable, 100),),
                      state=state, stage=stage)
    return store.create_rollout(rollout, DEPLOYS)


def open_incident(store: Store, service: str = SERVICE) -> int:
    now = datetime.now(UTC)
    incident = Incident(service=service, state="open", checks=(CheckState("bigquery", now, 3, "403 Access Denied"),),
                        detected_at=now, opened_at=now, announced=True)
    stored = IncidentStore(store).save(None, incident, "C07PREDICT1", now)
    assert stored is not None
    return stored.incident.id


def click_body(user: str, action_id: str, value: Any) -> dict[str, Any]:
    """A block_actions payload as Slack sends it (https://api.slack.com/reference/interaction-payloads/block-actions)."""
    return {"type": "block_actions", "user": {"id": USERS[user], "username": user, "name": user},
            "channel": {"id": DEPLOYS, "name": "deploys"}, "response_url": RESPONSE_URL,
            "actions": [{"action_id": action_id, "block_id": "b", "type": "button", "value": value}]}


BUTTONS = {"rollout_promote": "promote", "rollout_pause": "pause", "rollout_resume": "resume",
           "rollout_rollback": "rollback", "watch_rollback": "rollback", "incident_ack": "ack",
           "incident_timeline": "timeline"}


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("action_id", BUTTONS)
async def test_every_button_by_every_role_is_authorized_again_and_audited(
        runtime: Runtime, example_config: Config, action_id: str, user: str) -> None:
    rollout = open_rollout(runtime.store, example_config, state=State.PAUSED if action_id == "rollout_resume"
                           else State.ANALYSING)
    subject = open_incident(runtime.store) if action_id.startswith("incident_") else rollout.rollout.id
    value = f"{subject}:0" if action_id.startswith("rollout_") else str(subject)
    acks = Acks()
    outcome = await handle_button(click_body(user, action_id, value), acks, runtime)
    assert acks.texts == [""], "acked at once, bare"
    row = last_row(runtime, user)
    assert (row.command, row.text, row.action, row.service) == (f"button:{action_id}", value, BUTTONS[action_id],
                                                                 SERVICE)
    assert len(runtime.store.audit(limit=10, user_id=USERS[user])) == 1
    figures.count("policy decisions checked (every command and button by every role)")
    if BUTTONS[action_id] in MAY[user]:
        assert outcome == row.outcome == "ok"
        assert said(runtime) and ":no_entry:" not in said(runtime)[0]
    else:
        assert outcome == row.outcome == "refused"
        figures.count("policy decisions that refused, naming the role needed")
        assert said(runtime) == [f":no_entry: {row.detail} Ask someone who has it, or the on-call."]
        assert row.detail.endswith(NEEDED)


async def test_a_button_is_decided_on_the_service_it_acts_on_today_not_on_the_message(
        example_config: Config, store: Store) -> None:
    """A role limited to one service: its member's click on another service's rollout is refused, though the
    button itself names only a rollout id."""
    roles = {**example_config.roles, "ml": Role(members=("U07VIEWER01",), may=("pause",), services=(SERVICE,))}
    runtime = runtime_for(example_config.model_copy(update={"roles": roles}), store)
    theirs = open_rollout(store, example_config, SERVICE)
    other = open_rollout(store, example_config, "nba-grading-service")
    assert await handle_button(click_body("viewer", "rollout_pause", f"{theirs.rollout.id}:0"), Acks(), runtime) == "ok"
    refused = await handle_button(click_body("viewer", "rollout_pause", f"{other.rollout.id}:0"), Acks(), runtime)
    assert refused == "refused"
    assert said(runtime)[-1].startswith(":no_entry: You can't pause nba-grading-service: that needs the *deployer*")


async def test_a_timeline_asked_by_incident_number_is_decided_on_that_incidents_service(
        example_config: Config, store: Store) -> None:
    """`/timeline #12` names no service, yet it acts on one: a team's member may ask for their service's incident by
    number (as its Timeline button lets them) and not for another team's; a number that is no incident says so."""
    roles = {**example_config.roles, "everyone": Role(members=("*",), may=("health", "status"))}
    runtime = runtime_for(example_config.model_copy(update={"roles": roles}), store)
    now = datetime.now(UTC)
    quiet = Incident(service=SERVICE, state="open", checks=(CheckState("bigquery", now, 3, "403"),), detected_at=now,
                     opened_at=now, announced=False)
    stored = IncidentStore(store).save(None, quiet, "C07PREDICT1", now)
    assert stored is not None
    number = f"#{stored.incident.id}"
    timeline = named("timeline")
    assert await handle(timeline, slash_body("modeler", "/timeline", number), Acks(), runtime) == "ok"
    assert said(runtime)[-1] == (f"Incident #{stored.incident.id} of {SERVICE} has no thread yet (it was silenced "
                                 "from the start).")
    assert last_row(runtime, "modeler").service == SERVICE
    assert await handle(timeline, slash_body("grader", "/timeline", number), Acks(), runtime) == "refused"
    assert last_row(runtime, "grader").detail == (f"You can't see the incident timelines of {SERVICE}: that needs "
                                                  "the *deployer* role, which team *predictions* "
                                                  "(<!subteam^S07MODELS01>) has for it.")
    assert await handle(timeline, slash_body("grader", "/timeline", "#99999"), Acks(), runtime) == "invalid"
    assert last_row(runtime, "grader").detail == "no such incident"


async def test_a_stale_promote_is_refused_before_it_is_called_stale(runtime: Runtime, example_config: Config) -> None:
    """The policy first: someone who may not promote learns nothing about the rollout's state."""
    moved_on = open_rollout(runtime.store, example_config, stage=1)
    body = click_body("viewer", "rollout_promote", f"{moved_on.rollout.id}:0")
    assert await handle_button(body, Acks(), runtime) == "refused"
    assert await handle_button({**body, "user": {"id": USERS["oncall"]}}, Acks(), runtime) == "invalid"
    assert said(runtime)[-1] == f"Rollout #{moved_on.rollout.id} has moved on since; nothing was done."
    row = last_row(runtime, "oncall")
    assert (row.outcome, row.detail, row.service) == ("invalid", "stale button", SERVICE)
    still = runtime.store.rollout(moved_on.rollout.id)
    assert still is not None and still.rollout.commands == (), "nothing handed over"


@pytest.mark.parametrize(("payload", "problem", "answer"), [
    ({"actions": []}, "no action in the payload", "That click named no button; nothing was done."),
    ({"actions": "promote"}, "no action in the payload", "That click named no button; nothing was done."),
    ({"actions": [["rollout_promote"]]}, "no action in the payload", "That click named no button; nothing was done."),
    ({"actions": [{"action_id": "rollout_frobnicate", "value": "1"}]}, "unknown button",
     "I don't know that button (it may be from an older version of me); nothing was done."),
    ({"actions": [{"action_id": 7, "value": "1"}]}, "unknown button",
     "I don't know that button (it may be from an older version of me); nothing was done."),
    ({"actions": [{"action_id": "rollout_pause", "value": 1}]}, "button value is not one the bot draws",
     "That button doesn't say which rollout or incident it is for; nothing was done."),
    ({"actions": [{"action_id": "rollout_pause", "value": "²"}]}, "button value is not one the bot draws",
     "That button doesn't say which rollout or incident it is for; nothing was done."),
    ({"actions": [{"action_id": "incident_ack", "value": "9" * 30}]}, "button value is not one the bot draws",
     "That button doesn't say which rollout or incident it is for; nothing was done."),
    ({"actions": [{"action_id": "rollout_pause", "value": "424242:0"}]}, "no such rollout",
     "Rollout #424242 is gone; nothing was done."),
    ({"actions": [{"action_id": "incident_ack", "value": "424242"}]}, "no such incident",
     "Incident #424242 is gone; nothing was done."),
])
async def test_a_malformed_click_is_answered_and_audited_invalid(runtime: Runtime, payload: dict[str, Any],
                                                                 problem: str, answer: str) -> None:
    body = {**click_body("oncall", "rollout_pause", "1:0"), **payload}
    assert await handle_button(body, Acks(), runtime) == "invalid"
    assert said(runtime) == [answer]
    row = last_row(runtime, "oncall")
    assert (row.outcome, row.detail) == ("invalid", problem)


async def test_a_click_without_a_usable_response_url_is_still_audited(runtime: Runtime) -> None:
    body = {**click_body("oncall", "rollout_pause", "1:0"), "response_url": 42, "user": {"id": USERS["oncall"]}}
    assert await handle_button({**body, "actions": []}, Acks(), runtime) == "invalid"
    assert said(runtime) == [] and last_row(runtime, "oncall").outcome == "invalid"


async def test_a_link_button_is_only_acknowledged(runtime: Runtime) -> None:
    acks = Acks()
    assert await handle_button(click_body("viewer", "incident_runbook", None), acks, runtime) is None
    assert acks.texts == [""] and said(runtime) == [] and runtime.store.audit() == []


# -- the error guard -------------------------------------------------------------------------------------------


class Broken(Store):
    """A store whose rollout lookups fail, as a database outage would."""

    def rollout(self, rollout_id: int) -> StoredRollout | None:
        raise ConnectionError("database unreachable")


async def test_a_failing_button_gets_a_reference_in_its_reply_and_its_audit_row(
        example_config: Config, tmp_path: Path) -> None:
    broken = Broken(f"sqlite:///{tmp_path / 'chatops.db'}")
    broken.migrate()
    runtime = runtime_for(example_config, broken)
    assert await handle_button(click_body("oncall", "rollout_pause", "7:0"), Acks(), runtime) == "failed"
    (reply,) = said(runtime)
    reference = reply.split("(ref `")[1].split("`")[0]
    assert reply.startswith(":x: `button:rollout_pause 7:0` failed on our side") and len(reference) == 8
    row = last_row(runtime, "oncall")
    assert row.outcome == "failed" and row.detail == f"ref {reference}: ConnectionError: database unreachable"
    broken.close()


async def test_a_failing_command_gets_a_reference_after_its_ack(runtime: Runtime) -> None:
    class Failing(Witnessed):
        async def act(self, request: Any, invocation: Invocation, runtime: Runtime) -> None:
            raise RuntimeError("bug")

    acks = Acks()
    outcome = await handle(Failing(named("status"), []), slash_body("viewer", "/status", ""), acks, runtime)
    assert outcome == "failed" and acks.texts == [""], "acked first, as accepted"
    (reply,) = said(runtime)
    reference = reply.split("(ref `")[1].split("`")[0]
    row = last_row(runtime, "viewer")
    assert (row.outcome, row.detail) == ("failed", f"ref {reference}: RuntimeError: bug")


async def test_text_over_the_limit_is_refused_in_the_ack_and_audited_short(runtime: Runtime) -> None:
    acks = Acks()
    typed = "prediction-worker " + "x" * 10_000
    assert await handle(named("deploy"), slash_body("oncall", "/deploy", typed), acks, runtime) == "invalid"
    assert acks.texts[0].startswith(":warning: that is 10,018 characters; a command takes at most 4,000")
    row = last_row(runtime, "oncall")
    assert row.outcome == "invalid" and row.text.endswith("… (10,018 characters)") and len(row.text) < 4100
