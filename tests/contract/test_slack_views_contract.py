"""The sandbox's views.open / views.update / views.push, driven by slack_sdk's real client and judged by Slack's
OpenAPI spec and the limits of https://docs.slack.dev/reference/views/modal-views and the method pages: a trigger
lasts 3 s and is exchanged once, a view has at most 100 blocks and a title of at most 24 characters, an update
with a stale hash is refused, and a stack holds at most 3 views."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sandbox.serving import stop
from sandbox.slack_views import views_of
from tests.contract.schemas import assert_slack
from tests.contract.slack_stage import ONCALL, Slack, api_error, slack_api


@pytest.fixture
async def slack() -> AsyncIterator[Slack]:
    emulator, listener = await slack_api()
    yield emulator
    await stop(listener)


def view(title: str = "Deploy", blocks: int = 1, **extra: Any) -> dict[str, Any]:
    return {"type": "modal", "title": {"type": "plain_text", "text": title},
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"line {i}"}} for i in range(blocks)],
            **extra}


async def test_open_answers_the_view_with_its_id_and_hash_as_the_spec_says(slack: Slack) -> None:
    trigger = views_of(slack.workspace).trigger(ONCALL)
    opened = await slack.client().views_open(trigger_id=trigger, view=view(external_id="deploy-1"))
    assert_slack("views.open", opened.data)
    shown = opened["view"]
    assert shown["id"].startswith("V") and shown["hash"] and shown["root_view_id"] == shown["id"]
    assert [v.id for v in views_of(slack.workspace).stack(ONCALL)] == [shown["id"]]


async def test_a_trigger_is_exchanged_once_and_expires_after_3_seconds(slack: Slack) -> None:
    views = views_of(slack.workspace)
    client = slack.client()
    used = views.trigger(ONCALL)
    await client.views_open(trigger_id=used, view=view())
    again = await api_error(client.views_open(trigger_id=used, view=view()))
    late = views.trigger(ONCALL)
    await asyncio.sleep(3.1)
    expired = await api_error(client.views_open(trigger_id=late, view=view()))
    unknown = await api_error(client.views_open(trigger_id="1.2.nope", view=view()))
    assert (again["error"], expired["error"], unknown["error"]) == (
        "exchanged_trigger_id", "expired_trigger_id", "invalid_trigger_id")
    for body in (again, expired, unknown):
        assert_slack("views.open", body)


@pytest.mark.parametrize(("bad", "pointer"), [
    (view(blocks=101), "/view/blocks"),
    (view(title="t" * 25), "/view/title/text"),
    (view(submit={"type": "plain_text", "text": "s" * 25}), "/view/submit/text"),
    (view(close={"type": "plain_text", "text": "c" * 25}), "/view/close/text"),
    (view(private_metadata="m" * 3001), "/view/private_metadata"),
    ({**view(), "blocks": [{"type": "input", "block_id": "a", "label": {"type": "plain_text", "text": "A"},
                            "element": {"type": "plain_text_input", "action_id": "a"}}]}, "/view/submit"),
])
async def test_a_view_past_slacks_limits_is_invalid_arguments(slack: Slack, bad: dict[str, Any],
                                                              pointer: str) -> None:
    refused = await api_error(slack.client().views_open(trigger_id=views_of(slack.workspace).trigger(ONCALL),
                                                         view=bad))
    assert_slack("views.open", refused)
    assert refused["error"] == "invalid_arguments"
    assert any(f"[json-pointer:{pointer}" in m for m in refused["response_metadata"]["messages"])


async def test_update_by_id_or_external_id_and_a_stale_hash_conflicts(slack: Slack) -> None:
    client = slack.client()
    opened = (await client.views_open(trigger_id=views_of(slack.workspace).trigger(ONCALL),
                                      view=view(external_id="ext-1")))["view"]
    updated = await client.views_update(view_id=opened["id"], hash=opened["hash"],
                                        view=view("Second", external_id="ext-1"))
    assert_slack("views.update", updated.data)
    assert updated["view"]["title"]["text"] == "Second" and updated["view"]["hash"] != opened["hash"]
    stale = await api_error(client.views_update(view_id=opened["id"], hash=opened["hash"], view=view("Third")))
    by_external = await client.views_update(external_id="ext-1", view=view("Fourth", external_id="ext-1"))
    missing = await api_error(client.views_update(view_id="VNOPE", view=view()))
    assert (stale["error"], missing["error"]) == ("hash_conflict", "not_found")
    assert by_external["view"]["id"] == opened["id"]


async def test_a_stack_holds_three_views(slack: Slack) -> None:
    views, client = views_of(slack.workspace), slack.client()
    root = (await client.views_open(trigger_id=views.trigger(ONCALL), view=view()))["view"]
    for _ in range(2):
        pushed = await client.views_push(trigger_id=views.trigger(ONCALL, root["id"]), view=view("Pushed"))
        assert_slack("views.push", pushed.data)
        assert pushed["view"]["root_view_id"] == root["id"]
    full = await api_error(client.views_push(trigger_id=views.trigger(ONCALL, root["id"]), view=view()))
    outside = await api_error(client.views_push(trigger_id=views.trigger(ONCALL), view=view()))
    assert (full["error"], outside["error"]) == ("push_limit_reached", "not_found")
