"""A modal's Submit goes through the typed command's guarded pipeline: the policy refuses whoever may not deploy,
and every submission leaves the audit row the typed command would (`invalid` for a problem on a field)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.adapters.store import Store
from bot.config import Config
from bot.render.modals import IMAGE_BLOCK, SERVICE_BLOCK, STRATEGY_BLOCK, Origin
from commands.modals import submit
from tests.unit.test_policy_matrix import USERS, last_row, runtime_for, said

ORIGIN = Origin("C07DEPLOYS1", "https://hooks.slack.test/commands/T07/1/x")


@dataclass
class ViewAck:
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


@pytest.fixture
def store(migrated_sqlite: str) -> Iterator[Store]:
    migrated = Store(migrated_sqlite)
    yield migrated
    migrated.close()


def submission(user: str, image: str) -> dict[str, Any]:
    def entered(kind: str, value: str) -> dict[str, Any]:
        chosen = {"selected_option": {"text": {"type": "plain_text", "text": value}, "value": value}}
        return {"a": {"type": kind, **({"value": value} if kind == "plain_text_input" else chosen)}}

    return {"type": "view_submission", "user": {"id": USERS[user], "username": user},
            "view": {"callback_id": "deploy_modal", "private_metadata": ORIGIN.metadata(), "state": {"values": {
                SERVICE_BLOCK: entered("external_select", "prediction-worker"),
                STRATEGY_BLOCK: entered("static_select", "canary"),
                IMAGE_BLOCK: entered("plain_text_input", image)}}}}


async def test_someone_who_may_not_deploy_is_refused_as_the_typed_command_would_be(example_config: Config,
                                                                                   store: Store) -> None:
    runtime = runtime_for(example_config, store)
    ack = ViewAck()
    assert await submit(submission("viewer", "v3"), ack, runtime) == "refused"
    assert ack.calls == [{}], "the modal closes; the answer goes where /deploy was typed"
    row = last_row(runtime, "viewer")
    assert (row.command, row.text, row.outcome) == ("/deploy", "prediction-worker canary tag=v3", "refused")
    assert "deployer" in said(runtime)[-1]


async def test_a_problem_is_answered_on_the_field_and_audited_invalid(example_config: Config, store: Store) -> None:
    runtime = runtime_for(example_config, store)
    ack = ViewAck()
    assert await submit(submission("oncall", "docker.io/evil/x:v3"), ack, runtime) == "invalid"
    [answer] = ack.calls
    assert answer["response_action"] == "errors" and list(answer["errors"]) == [IMAGE_BLOCK]
    assert said(runtime) == [], "no message"
    row = last_row(runtime, "oncall")
    assert (row.command, row.outcome) == ("/deploy", "invalid") and "docker.io/evil/x" in row.detail
