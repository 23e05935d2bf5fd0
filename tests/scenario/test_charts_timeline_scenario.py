"""Charts and timelines in threads: a judged stage shares its evidence as a PNG in the rollout's thread, through
Slack's upload flow, and the file's link opens as that PNG; a resolved incident's Timeline button uploads a Markdown
postmortem draft to its thread that lists detection, acknowledgement and resolution in order, each with its UTC
time and a link that opens its message."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image

from bot.config import Config
from tests.scenario.harness import Scenario, fast, scenario

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def alerting(config: Config) -> Config:
    """Sweeps every second; an incident opens after 2 failing sweeps and resolves after 2 passing ones."""
    alerts = config.defaults.alerts.model_copy(update={"interval": 1.0, "open_after": 2, "resolve_after": 2,
                                                      "escalate_after": 600.0})
    return config.model_copy(update={"defaults": config.defaults.model_copy(update={"alerts": alerts})})


@pytest.fixture(scope="module")
async def fleet(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    async with scenario(alerting(fast(example_config, min_requests=5)), tmp_path_factory.mktemp("charts"),
                        requests_per_s=60) as running:
        yield running


async def test_each_judged_stage_shares_its_chart_in_the_rollouts_thread_and_it_opens_as_a_png(
        fleet: Scenario) -> None:
    service = "prediction-coordinator"
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    done = await fleet.rollout_state(service, "promoted", "rolled_back", "paused", timeout=60)
    assert done.rollout.state.value == "promoted", done.rollout.reason
    thread = await fleet.thread(done)
    charts = [f for m in thread for f in m.get("files") or []]
    stages = [r.percent for r in done.rollout.results]
    assert [c["title"] for c in charts] == [f"{service} stage {p}%: the evidence" for p in stages], \
        "one chart per judged stage, in order"
    passed_at = next(i for i, m in enumerate(thread) if f"stage {stages[0]}% passed" in m["text"])
    first_chart = next(i for i, m in enumerate(thread) if m.get("files"))
    assert first_chart == passed_at + 1, "the chart follows the note that judged its stage"
    opened = await fleet.http.get(charts[0]["permalink"])
    assert opened.status_code == 200 and opened.headers["content-type"] == "image/png"
    assert opened.content.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(opened.content))
    image.load()
    assert image.size[0] >= 600 and image.size[1] >= 300


def _in_thread(parent: dict[str, Any]) -> Any:
    return lambda m: m.get("thread_ts") == parent["ts"] and m["ts"] != parent["ts"]


async def test_a_resolved_incidents_timeline_lists_detection_ack_and_resolution_in_order_with_links(
        fleet: Scenario) -> None:
    service, channel = "prediction-worker", "predictions"
    revision = fleet.serving_revision(service)
    await fleet.behave(revision, failing_checks=["gcs_model_file"])
    try:
        parent = await fleet.wait_for("oncall", lambda m: m["kind"] == "message" and
                                      str(m.get("text", "")).startswith(f"{service}: open incident #"),
                                      channel=channel, timeout=15)
        buttons = {e["action_id"]: e for b in parent["attachments"][0]["blocks"] if b["type"] == "actions"
                   for e in b["elements"]}
        clicked = await fleet.http.post(f"{fleet.user_side}/actions", json={
            "user": "oncall", "channel": channel, "message_ts": parent["ts"], "action_id": "incident_ack",
            "value": buttons["incident_ack"]["value"]})
        assert clicked.status_code == 200
        await fleet.wait_for("oncall", lambda m: _in_thread(parent)(m) and m["text"].startswith("acknowledged by"),
                             channel=channel)
    finally:
        await fleet.behave(revision, failing_checks=[])
    await fleet.wait_for("oncall", lambda m: _in_thread(parent)(m) and m["text"].startswith("resolved:"),
                         channel=channel, timeout=15)
    clicked = await fleet.http.post(f"{fleet.user_side}/actions", json={
        "user": "viewer", "channel": channel, "message_ts": parent["ts"], "action_id": "incident_timeline",
        "value": buttons["incident_timeline"]["value"]})
    assert clicked.status_code == 200
    shared = await fleet.wait_for("viewer", lambda m: _in_thread(parent)(m) and bool(m.get("files")),
                                  channel=channel, timeout=15)
    (file,) = shared["files"]
    assert file["name"].startswith("incident-") and file["name"].endswith(".md")
    opened = await fleet.http.get(file["permalink"])
    assert opened.status_code == 200
    draft = opened.text
    moment = r"- `(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC` \*\*([a-z ]+)\*\*: .*\(\[message\]\((http://127\.0\.0\.1:\d+/archives/[^)]+)\)\)$"
    lines = [found.groups() for line in draft.splitlines() if (found := re.match(moment, line))]
    kinds = [kind for _, kind, _ in lines]
    assert {"detected", "incident opened", "acknowledged", "recovered", "resolved"} <= set(kinds), draft
    order = [kinds.index(k) for k in ("detected", "incident opened", "acknowledged", "recovered", "resolved")]
    assert order == sorted(order), draft
    assert [at for at, _, _ in lines] == sorted(at for at, _, _ in lines), "in time order"
    assert "Time to acknowledge: " in draft and "by @U07ONCALL01" in draft and "Time to resolve: " in draft
    assert "not resolved yet" not in draft and "not acknowledged" not in draft
    acked_link = lines[kinds.index("acknowledged")][2]
    message = (await fleet.http.get(acked_link)).json()
    assert message["text"].startswith("acknowledged by <@U07ONCALL01>"), "the link opens the message it names"
