"""Slack's rules as the workspace keeps them: ids, ts order, threads, ephemerals, the posting rate,
block limits and response_urls."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from sandbox.slack_errors import RateLimited, SlackError
from sandbox.slack_limits import SlackLimits
from sandbox.slack_workspace import BOT, SLACKBOT, TOMBSTONE, Workspace

DEPLOYS = "C07DEPLOYS1"
ONCALL, VIEWER, LEAD = "U07ONCALL01", "U07VIEWER01", "U07LEAD0001"
GRADER, MODELER = "U07GRADER01", "U07MODELER1"
DEFAULT_MEMBERS = {"S07SREONCAL": [ONCALL, LEAD], "S07GRADING1": [GRADER], "S07MODELS01": [MODELER]}


def workspace(**options: Any) -> Workspace:
    return Workspace(bot_token=f"xoxb-{secrets.token_hex(12)}",
                     channels={"deploys": DEPLOYS, "alerts": "C07ALERTS01"}, **options)


def members(slack: Workspace) -> dict[str, list[str]]:
    return {group.id: group.users for group in slack.usergroups.values()}


def button(action_id: str, text: str = "Go") -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": text}}


def test_the_people_the_bot_and_the_on_call_group_are_always_there() -> None:
    slack = workspace()
    assert {u.name: u.id for u in slack.users.values()} == {
        "chatops": "U07CHATOPS1", "slackbot": "USLACKBOT", "oncall": ONCALL, "viewer": VIEWER, "lead": LEAD,
        "grader": GRADER, "modeler": MODELER}
    assert slack.user_named("lead").real_name == "Platform Lead"
    assert slack.channel_named("deploys").id == DEPLOYS
    assert slack.lookup_channel("#alerts") == slack.lookup_channel("C07ALERTS01")
    assert members(slack) == DEFAULT_MEMBERS
    assert {g.handle for g in slack.usergroups.values()} == {"sre-oncall", "grading", "models"}
    with pytest.raises(KeyError):
        slack.lookup_user("nobody")


def test_configured_usergroups_add_to_and_override_the_default() -> None:
    slack = workspace(usergroups={"S07SREONCAL": [LEAD], "S07VIEWERS1": [VIEWER]})
    assert members(slack) == {**DEFAULT_MEMBERS, "S07SREONCAL": [LEAD], "S07VIEWERS1": [VIEWER]}


def test_every_ts_is_unique_and_sorts_in_posting_order() -> None:
    slack = workspace()
    stamps = [slack.post(DEPLOYS, BOT.id, f"m{i}").ts for i in range(200)]
    assert stamps == sorted(set(stamps))
    assert all(len(ts) == 17 and ts[10] == "." for ts in stamps)


def test_a_channel_takes_a_burst_then_about_the_configured_rate() -> None:
    slack = workspace(limits=SlackLimits(post_per_channel_per_s=0.25, post_burst=3))
    for _ in range(3):
        slack.check_post_rate(DEPLOYS)
    with pytest.raises(RateLimited) as limited:
        slack.check_post_rate(DEPLOYS)
    assert (limited.value.error, limited.value.retry_after) == ("ratelimited", 4)
    slack.check_post_rate("C07ALERTS01")


def test_a_person_sees_posts_replies_and_their_own_ephemerals_in_ts_order() -> None:
    slack = workspace()
    parent = slack.post(DEPLOYS, BOT.id, "Rollout started")
    mine = slack.post_ephemeral(DEPLOYS, ONCALL, "Only for on-call")
    slack.post_ephemeral(DEPLOYS, VIEWER, "Only for the viewer")
    reply = slack.post(DEPLOYS, LEAD, "watching", thread_ts=parent.ts)
    slack.post(DEPLOYS, LEAD, "never shown", thread_ts="1700000000.000001")
    seen = slack.seen_by(DEPLOYS, ONCALL)
    assert [(s["kind"], s["text"]) for s in seen] == [
        ("message", "Rollout started"), ("ephemeral", "Only for on-call"), ("reply", "watching")]
    assert (seen[0]["thread_ts"], seen[0]["reply_count"], seen[0]["bot_id"]) == (parent.ts, 1, "B07CHATOPS1")
    assert (seen[1]["ts"], seen[1]["ephemeral"]) == (mine.ts, True)
    assert (seen[2]["ts"], seen[2]["thread_ts"], seen[2]["user"]) == (reply.ts, parent.ts, LEAD)
    assert "bot_id" not in seen[2]


def test_a_reply_to_a_reply_joins_the_parents_thread() -> None:
    slack = workspace()
    parent = slack.post(DEPLOYS, BOT.id, "Rollout started")
    first = slack.post(DEPLOYS, BOT.id, "Stage 5%", thread_ts=parent.ts)
    second = slack.post(DEPLOYS, BOT.id, "Stage 50%", thread_ts=first.ts)
    assert second.thread_ts == parent.ts
    assert slack.thread(DEPLOYS, first.ts) == [parent, first, second]
    with pytest.raises(SlackError, match="invalid_thread_ts"):
        slack.post(DEPLOYS, BOT.id, "x", thread_ts="yesterday")


def test_deleting_a_thread_parent_leaves_slacks_tombstone() -> None:
    slack = workspace()
    parent = slack.post(DEPLOYS, BOT.id, "Rollout started")
    reply = slack.post(DEPLOYS, BOT.id, "Stage 5%", thread_ts=parent.ts)
    slack.delete(DEPLOYS, parent.ts, BOT.id)
    [tombstone] = slack.parents(DEPLOYS)
    assert (tombstone.user, tombstone.subtype, tombstone.text) == (SLACKBOT.id, "tombstone", TOMBSTONE)
    slack.delete(DEPLOYS, reply.ts, BOT.id)
    assert tombstone.replies == []
    with pytest.raises(SlackError, match="message_not_found"):
        slack.delete(DEPLOYS, reply.ts, BOT.id)


@pytest.mark.parametrize(("blocks", "detail"), [
    ([{"type": "section", "text": {"type": "mrkdwn", "text": "a"}, "block_id": "x"},
      {"type": "divider", "block_id": "x"}],
     "duplicate block_id [json-pointer:/blocks/1/block_id]"),
    ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}], "/blocks/0/fields]"),
    ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
     "must be less than 2001 characters [json-pointer:/blocks/0/fields/0/text]"),
    ([{"type": "section"}], "must provide text or fields [json-pointer:/blocks/0]"),
    ([{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], "less than 151 characters"),
    ([{"type": "actions", "elements": [button(f"b{i}") for i in range(26)]}], "/blocks/0/elements]"),
    ([{"type": "actions", "elements": [button("b", "t" * 76)]}],
     "[json-pointer:/blocks/0/elements/0/text/text]"),
    ([{"type": "carousel"}], "unsupported type: carousel"),
])
def test_blocks_slack_would_refuse_are_invalid_blocks(blocks: list[Any], detail: str) -> None:
    with pytest.raises(SlackError) as refused:
        workspace().post(DEPLOYS, BOT.id, "t", blocks)
    assert refused.value.error == "invalid_blocks"
    assert any(detail in d for d in refused.value.details), refused.value.details


def test_stored_blocks_get_a_block_id_when_they_have_none() -> None:
    blocks = [{"type": "divider"}, {"type": "divider", "block_id": "d"}]
    message = workspace().post(DEPLOYS, BOT.id, "t", blocks)
    assert message.blocks is not None
    assert message.blocks[0]["block_id"] and message.blocks[1]["block_id"] == "d"


def test_an_update_keeps_the_blocks_it_does_not_replace() -> None:
    slack = workspace()
    divider = {"type": "divider", "block_id": "d"}
    posted = slack.post(DEPLOYS, BOT.id, "Stage 5%", [divider])
    assert slack.update(DEPLOYS, posted.ts, BOT.id, "Stage 50%").blocks == [divider]
    assert slack.update(DEPLOYS, posted.ts, BOT.id, "Done", []).blocks is None
    with pytest.raises(SlackError, match="cant_update_message"):
        slack.update(DEPLOYS, posted.ts, ONCALL, "mine now")


def test_a_response_url_answers_ephemerally_then_replaces_and_deletes_the_original() -> None:
    slack = workspace()
    url = slack.open_response_url(DEPLOYS, ONCALL)
    slack.acknowledge(url, {"text": "Checking…"})
    slack.respond(url, {"replace_original": True, "text": "All healthy"})
    [seen] = slack.seen_by(DEPLOYS, ONCALL)
    assert (seen["kind"], seen["text"]) == ("ephemeral", "All healthy")
    slack.respond(url, {"delete_original": True})
    assert slack.seen_by(DEPLOYS, ONCALL) == []


def test_an_in_channel_response_is_a_bot_post_everyone_sees_and_may_go_in_a_thread() -> None:
    slack = workspace()
    parent = slack.post(DEPLOYS, BOT.id, "Rollout started")
    url = slack.open_response_url(DEPLOYS, LEAD)
    slack.respond(url, {"response_type": "in_channel", "text": "Paused", "thread_ts": parent.ts})
    [reply] = [s for s in slack.seen_by(DEPLOYS, VIEWER) if s["kind"] == "reply"]
    assert (reply["text"], reply["user"], reply["thread_ts"]) == ("Paused", BOT.id, parent.ts)


def test_a_response_url_takes_five_posts_and_the_ack_is_not_one_of_them() -> None:
    """"you can use a response_url up to five times within 30 minutes"
    (https://api.slack.com/interactivity/handling#message_responses)"""
    slack = workspace()
    url = slack.open_response_url(DEPLOYS, ONCALL)
    slack.acknowledge(url, {"text": "ack"})
    for i in range(5):
        slack.respond(url, {"text": f"update {i}"})
    with pytest.raises(SlackError, match="used_url"):
        slack.respond(url, {"text": "one too many"})
    with pytest.raises(SlackError, match="no_service"):
        slack.respond("unknown", {"text": "x"})
    with pytest.raises(SlackError, match="no_text"):
        slack.respond(slack.open_response_url(DEPLOYS, ONCALL), {"response_type": "ephemeral"})


def test_the_response_url_figures_come_from_the_limit_group_as_it_is_now() -> None:
    slack = workspace()
    url = slack.open_response_url(DEPLOYS, ONCALL)
    slack.limits.response_url_uses = 1
    slack.respond(url, {"text": "one"})
    with pytest.raises(SlackError, match="used_url"):
        slack.respond(url, {"text": "two"})


def test_a_response_url_expires_after_its_lifetime_however_little_it_was_used() -> None:
    slack = workspace(limits=SlackLimits(response_url_lifetime_s=0.05))
    url = slack.open_response_url(DEPLOYS, ONCALL)
    slack.respond(url, {"text": "in time"})
    time.sleep(0.06)
    with pytest.raises(SlackError, match="expired_url"):
        slack.respond(url, {"text": "too late"})
    assert [s["text"] for s in slack.seen_by(DEPLOYS, ONCALL)] == ["in time"]


def test_a_workspace_grants_no_scope_unless_told() -> None:
    assert workspace().scopes == ()
    assert workspace(scopes=["commands", "chat:write"]).scopes == ("commands", "chat:write")
