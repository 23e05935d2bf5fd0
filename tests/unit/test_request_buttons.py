"""A deploy request's Approve, Deny and Cancel buttons, and /approve, /deny and /queue cancel, through the one
guarded pipeline with the example config's people: who may do each (the requester never approves; approvers are a
role or a Slack user group), how each refusal is answered and audited, and that a decided request takes no more
decisions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.adapters.deploy_store import DeployRequests
from bot.adapters.store import Store
from bot.config import Config
from bot.domain.deploy_queue import QueuedDeploy, RequestState
from bot.render.deploy_request import APPROVE, CANCEL, DENY
from commands.buttons import handle_button
from commands.framework import Runtime, handle
from commands.queue import Approve, Deny, QueueCommand
from tests.unit.test_policy_matrix import USERS, Acks, click_body, last_row, runtime_for, said, slash_body

NOW = datetime.now(UTC)


@pytest.fixture
def store(migrated_sqlite: str) -> Iterator[Store]:
    migrated = Store(migrated_sqlite)
    yield migrated
    migrated.close()


@pytest.fixture
def runtime(example_config: Config, store: Store) -> Runtime:
    return runtime_for(example_config, store)


def ask(runtime: Runtime, by: str = "oncall", approvers: str = "deployer",
        state: RequestState = RequestState.AWAITING) -> QueuedDeploy:
    request = QueuedDeploy(id=0, service="prediction-worker",
                           image="us-west2-docker.pkg.dev/nba-props-platform/cloud-run/prediction-worker:v3",
                           strategy="canary", requested_by=USERS[by], channel="C07DEPLOYS1", created_at=NOW,
                           state=state, needed=1 if state is RequestState.AWAITING else 0, approvers=approvers,
                           queued_at=NOW if state is RequestState.QUEUED else None,
                           expires_at=NOW + timedelta(hours=4))
    return DeployRequests(runtime.store).add(request, lambda _: [])


async def press(runtime: Runtime, user: str, action_id: str, request: QueuedDeploy) -> str | None:
    return await handle_button(click_body(user, action_id, str(request.id)), Acks(), runtime)


def now_(runtime: Runtime, request: QueuedDeploy) -> QueuedDeploy:
    found = DeployRequests(runtime.store).get(request.id)
    assert found is not None
    return found


async def test_the_requesters_own_approve_is_refused_and_audited_and_a_second_person_queues_it(
        runtime: Runtime) -> None:
    request = ask(runtime)
    assert await press(runtime, "oncall", APPROVE, request) == "refused"
    row = last_row(runtime, "oncall")
    assert (row.action, row.outcome, row.service) == ("approve", "refused", "prediction-worker")
    assert said(runtime)[-1] == (f":no_entry: You asked for request #{request.id}; someone else must approve it (a "
                                 "member of the *deployer* role).")
    assert await press(runtime, "viewer", APPROVE, request) == "refused"
    assert "needs the *deployer* role" in said(runtime)[-1]
    assert now_(runtime, request) == request, "neither counted"
    assert await press(runtime, "lead", APPROVE, request) == "ok"
    assert now_(runtime, request).state is RequestState.QUEUED
    assert said(runtime)[-1].startswith(f":white_check_mark: You approved request #{request.id}; it is queued")
    assert await press(runtime, "lead", APPROVE, request) == "refused", "a double click"
    assert said(runtime)[-1] == f":no_entry: Request #{request.id} is already approved; nothing to approve."


async def test_approve_typed_is_the_button_with_the_same_rules(runtime: Runtime) -> None:
    """A refusal rides in the command's ack (Slack shows it at once); the approval's answer follows on the
    response_url, as /deny's does."""
    request, typed = ask(runtime), Approve()

    async def approve(user: str, text: str) -> tuple[str | None, str]:
        acks = Acks()
        outcome = await handle(typed, slash_body(user, "/approve", text), acks, runtime)
        return outcome, " ".join([*acks.texts, *said(runtime)[-1:]])

    outcome, told = await approve("oncall", f"{request.id}")
    assert outcome == "refused" and f"You asked for request #{request.id}; someone else must approve" in told
    outcome, told = await approve("lead", "soon")
    assert outcome == "invalid" and "give the request's number" in told and "/approve <request#>" in told
    outcome, told = await approve("lead", "999")
    assert outcome == "invalid" and "There is no deploy request #999. `/queue` lists them." in told
    assert now_(runtime, request) == request, "nothing counted"
    outcome, told = await approve("lead", f"#{request.id}")
    assert outcome == "ok" and f":white_check_mark: You approved request #{request.id}; it is queued" in told
    assert now_(runtime, request).state is RequestState.QUEUED
    assert now_(runtime, request).approvals == (USERS["lead"],)
    row = last_row(runtime, "lead")
    assert (row.action, row.outcome, row.service) == ("approve", "ok", "prediction-worker")


async def test_a_user_groups_members_approve_when_the_group_is_the_approvers(runtime: Runtime) -> None:
    """S07SREONCAL holds oncall and lead (the example's `slack.usergroups`); the viewer is not in it."""
    request = ask(runtime, by="lead", approvers="S07SREONCAL")
    assert await press(runtime, "viewer", APPROVE, request) == "refused"
    assert "<!subteam^S07SREONCAL>" in said(runtime)[-1]
    assert await press(runtime, "oncall", APPROVE, request) == "ok"
    assert now_(runtime, request).approvals == (USERS["oncall"],)


async def test_deny_by_button_or_with_a_reason_ends_it_and_nothing_is_decided_after(runtime: Runtime) -> None:
    first, second = ask(runtime), ask(runtime)
    assert await press(runtime, "oncall", DENY, first) == "refused"
    assert said(runtime)[-1] == f":no_entry: It is your own request: `/queue cancel {first.id}` withdraws it."
    assert await press(runtime, "lead", DENY, first) == "ok"
    assert (now_(runtime, first).state, now_(runtime, first).decided_by) == (RequestState.DENIED, USERS["lead"])
    assert await press(runtime, "lead", APPROVE, first) == "refused"
    assert said(runtime)[-1] == (f":no_entry: Request #{first.id} is already denied by <@{USERS['lead']}>; nothing to "
                                 "approve.")
    deny = Deny()
    assert await handle(deny, slash_body("viewer", "/deny", f"{second.id} no"), Acks(), runtime) == "refused"
    assert await handle(deny, slash_body("lead", "/deny", f"{second.id}"), Acks(), runtime) == "invalid", (
        "a denial says why")
    assert await handle(deny, slash_body("lead", "/deny", f"#{second.id} not before tip-off"), Acks(),
                        runtime) == "ok"
    assert (now_(runtime, second).state, now_(runtime, second).reason) == (RequestState.DENIED, "not before tip-off")


async def test_cancel_is_the_requesters_or_whoever_may_roll_back(runtime: Runtime) -> None:
    mine, theirs = ask(runtime, state=RequestState.QUEUED), ask(runtime, by="lead", state=RequestState.QUEUED)
    assert await press(runtime, "viewer", CANCEL, mine) == "refused"
    assert said(runtime)[-1] == (f":no_entry: Only <@{USERS['oncall']}>, who asked for it, or someone who may roll "
                                 f"back prediction-worker can cancel request #{mine.id}.")
    assert await press(runtime, "oncall", CANCEL, mine) == "ok"
    assert now_(runtime, mine).state is RequestState.CANCELLED
    queue = QueueCommand()
    assert await handle(queue, slash_body("viewer", "/queue", f"cancel {theirs.id}"), Acks(), runtime) == "refused"
    assert await handle(queue, slash_body("oncall", "/queue", f"cancel {theirs.id}"), Acks(), runtime) == "ok"
    assert (now_(runtime, theirs).state, now_(runtime, theirs).decided_by) == (RequestState.CANCELLED,
                                                                               USERS["oncall"])
    assert await handle(queue, slash_body("oncall", "/queue", "cancel 999"), Acks(), runtime) == "invalid"


async def test_viewing_the_queue_needs_status_and_resuming_it_needs_queue(runtime: Runtime) -> None:
    ask(runtime, state=RequestState.QUEUED)
    queue = QueueCommand()
    assert await handle(queue, slash_body("viewer", "/queue", "prediction-worker"), Acks(), runtime) == "ok"
    assert await handle(queue, slash_body("viewer", "/queue", "resume prediction-worker"), Acks(),
                        runtime) == "refused"
    assert last_row(runtime, "viewer").detail == ("You can't manage the deploy queue of prediction-worker: that "
                                                  "needs the *deployer* role, which team *predictions* "
                                                  "(<!subteam^S07MODELS01>) has for it.")
    assert await handle(queue, slash_body("lead", "/queue", "resume prediction-worker"), Acks(), runtime) == "ok"
    assert said(runtime)[-1].startswith("The queue of prediction-worker is not held")
