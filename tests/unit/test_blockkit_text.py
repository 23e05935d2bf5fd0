"""Block Kit as the sandbox console prints it: messages shaped like the bot's, as `GET /messages` returns them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from sandbox.blockkit_text import render_message

USERS = {"U07CHATOPS1": "chatops", "U07ONCALL01": "oncall", "USLACKBOT": "slackbot"}
Json = dict[str, Any]


def ts(hh: int, mm: int, ss: int) -> str:
    """A ts that reads hh:mm:ss in the local time zone, as the console shows it."""
    return f"{datetime(2024, 6, 10, hh, mm, ss).timestamp():.6f}"


def mrkdwn(text: str) -> Json:
    return {"type": "mrkdwn", "text": text}


def plain(text: str) -> Json:
    return {"type": "plain_text", "text": text, "emoji": True}


def button(action_id: str, text: str, value: str = "rollout-7", **extra: Any) -> Json:
    return {"type": "button", "action_id": action_id, "text": plain(text), "value": value, **extra}


def message(*blocks: Json, kind: str = "message", user: str = "U07CHATOPS1", at: str = ts(12, 1, 7),
            text: str = "fallback", **extra: Any) -> Json:
    return {"kind": kind, "ts": at, "user": user, "text": text, "blocks": list(blocks), **extra}


def render(msg: Json, **options: Any) -> str:
    return render_message(msg, users=USERS, **{"width": 80, **options})


HEALTH = message(
    {"type": "header", "block_id": "h", "text": plain(":rotating_light: Fleet health: 1 of 7 unhealthy")},
    {"type": "section", "text": mrkdwn("*prediction-worker* is :red_circle: _failing_ `/health/deep` "
                                       "since 12:01:07 <@U07ONCALL01> <!here>")},
    {"type": "section", "fields": [mrkdwn("*Revision*\nprediction-worker-00002-abc"),
                                   mrkdwn("*Traffic*\n100% :arrow_right: 00002-abc"),
                                   mrkdwn("*Check*\n:x: bigquery: timeout after 2000 ms"),
                                   mrkdwn("*Others*\n:large_green_circle: 6 healthy")]},
    {"type": "divider"},
    {"type": "section", "text": mrkdwn('```$ curl $URL/health/deep\n{"bigquery": "timeout"}```')},
    {"type": "context", "elements": [
        mrkdwn(":book: <https://runbooks.example/prediction-worker#bigquery|Runbook: bigquery>"),
        mrkdwn("<#C07ALERTS01|alerts> &amp; <#C07PREDICT1>")]},
)

ROLLOUT = message(
    {"type": "section", "text": mrkdwn(":hourglass_flowing_sand: *Canary* prediction-worker `v3` at *5%*"),
     "accessory": button("details", "Details")},
    {"type": "actions", "elements": [button("promote", "Promote", style="primary"),
                                     button("rollback", "Roll back", style="danger"),
                                     {"type": "static_select", "action_id": "stage",
                                      "placeholder": plain("Jump to stage")}]},
    at=ts(12, 5, 0), thread_ts=ts(12, 5, 0), reply_count=2, reactions=[{"name": "eyes", "users": [], "count": 2}],
)


def test_a_health_report_reads_as_slack_lays_it_out() -> None:
    assert render(HEALTH) == "\n".join([
        "12:01:07  chatops",
        "  🚨 Fleet health: 1 of 7 unhealthy",
        "  ═════════════════════════════════",
        "  prediction-worker is 🔴 failing `/health/deep` since 12:01:07 @oncall @here",
        "",
        "  Revision                                Traffic",
        "  prediction-worker-00002-abc             100% ➡️ 00002-abc",
        "  Check                                   Others",
        "  ❌ bigquery: timeout after 2000 ms      🟢 6 healthy",
        "  " + "─" * 78,
        "  │ $ curl $URL/health/deep",
        '  │ {"bigquery": "timeout"}',
        "  📖 Runbook: bigquery (https://runbooks.example/prediction-worker#bigquery)",
        "  #alerts & #C07PREDICT1",
    ])


def test_a_rollout_message_shows_its_buttons_with_what_to_type_to_click_them() -> None:
    assert render(ROLLOUT) == "\n".join([
        "12:05:00  chatops  · 2 replies",
        "  ⏳ Canary prediction-worker `v3` at 5%",
        "  [ Details ]",
        "  :click details",
        "  [ Promote ]     [ Roll back ]    [ Jump to stage ▾ ]",
        "  :click promote  :click rollback",
        "  👀 2",
    ])


def test_buttons_sharing_an_action_id_are_told_apart_by_their_value() -> None:
    approvals = message({"type": "actions", "elements": [button("approve", "Approve v3", "rollout-7"),
                                                         button("approve", "Approve v4", "rollout-8")]})
    assert ":click approve rollout-7  :click approve rollout-8" in render(approvals)


def test_a_thread_reply_is_indented_under_an_arrow_naming_its_thread() -> None:
    reply = message(kind="reply", at=ts(12, 6, 30), thread_ts=ts(12, 5, 0),
                    text=":white_check_mark: Promoted to *50%* by <@U07ONCALL01>")
    assert render(reply) == ("  ↳ 12:06:30  chatops  (thread of 12:05:00)\n"
                             "      ✅ Promoted to 50% by @oncall")


def test_an_ephemeral_is_marked_as_only_visible_to_you() -> None:
    failed = message(kind="ephemeral", user="USLACKBOT", ephemeral=True,
                     text='/deploy failed with the error "dispatch_failed"')
    assert render(failed) == ('12:01:07  slackbot  (only visible to you)\n'
                              '  /deploy failed with the error "dispatch_failed"')


@pytest.mark.parametrize(("text", "shown"), [
    ("*bold* _italic_ ~gone~ `code`", "bold italic gone `code`"),
    ("snake_case_name and 2*3*4 stay", "snake_case_name and 2*3*4 stay"),
    ("<https://console.cloud.google.com/run|Cloud Run>", "Cloud Run (https://console.cloud.google.com/run)"),
    ("<https://example.com/a_b_/c>", "https://example.com/a_b_/c"),
    ("<@U07ONCALL01> <@U07NOBODY1> <@U07NOBODY1|pat>", "@oncall @U07NOBODY1 @pat"),
    ("<#C07DEPLOYS1|deploys> <!here> <!channel> <!subteam^S07SREONCAL|@sre-oncall>",
     "#deploys @here @channel @sre-oncall"),
    (":warning: :large_yellow_circle: :black_circle: :x: :no_such_emoji: at 12:30:45",
     "⚠️ 🟡 ⚫ ❌ :no_such_emoji: at 12:30:45"),
    ("`:x: *not bold*` &lt;tag&gt; &amp;", "`:x: *not bold*` <tag> &"),
    ("&gt; quoted *words*", "▌ quoted words"),
    ("before\n```a  b\n*c*```\nafter", "before\n│ a  b\n│ *c*\nafter"),
])
def test_mrkdwn_is_converted_as_slack_displays_it(text: str, shown: str) -> None:
    rendered = render(message(text=text)).split("\n", 1)[1]
    assert rendered == "\n".join(f"  {line}" for line in shown.split("\n"))


def test_rich_text_is_plain_and_images_show_their_alt_text() -> None:
    rich = message({"type": "rich_text", "elements": [
        {"type": "rich_text_section", "elements": [
            {"type": "text", "text": "Rolled back by "}, {"type": "user", "user_id": "U07ONCALL01"},
            {"type": "text", "text": " see ", "style": {"bold": True}},
            {"type": "link", "url": "https://logs.example/q", "text": "logs"},
            {"type": "emoji", "name": "x", "unicode": "274c"}]},
        {"type": "rich_text_list", "style": "bullet", "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": "error rate 4.2%"}]}]},
        {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": "gcloud run revisions list"}]},
    ]}, {"type": "image", "image_url": "https://x/p99.png", "alt_text": "p99 latency, last hour"},
        {"type": "video", "title": plain("demo")})
    assert render(rich).split("\n")[1:] == [
        "  Rolled back by @oncall see logs (https://logs.example/q)❌",
        "  • error rate 4.2%",
        "  │ gcloud run revisions list",
        "  [image: p99 latency, last hour]",
        "  [video block]",
    ]


def test_every_line_fits_the_width_and_a_long_url_is_cut() -> None:
    long = message(text="word " * 30 + "<https://logs.example/" + "x" * 90 + ">",
                   attachments=[{"text": "an attachment " * 6}])
    lines = render(long, width=40).split("\n")
    assert all(len(line) <= 40 for line in lines), lines
    assert "".join(line.strip() for line in lines[-6:-3]).endswith("x" * 90)
    assert lines[-1].startswith("  ┃ ")


def test_ansi_codes_only_when_asked_for() -> None:
    assert "\x1b" not in render(HEALTH) + render(ROLLOUT)
    colored = render(ROLLOUT, color=True)
    assert "\x1b[1mCanary\x1b[0m" in colored
    assert "\x1b[1m\x1b[32m[ Promote ]\x1b[0m" in colored and "\x1b[1m\x1b[31m[ Roll back ]\x1b[0m" in colored
    assert "\x1b[1m\x1b[4m🚨 Fleet health: 1 of 7 unhealthy\x1b[0m" in render(HEALTH, color=True)
