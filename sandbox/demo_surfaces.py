"""The demo's tour of Slack's own surfaces: the Home tab, a retried event, a deploy from a modal, a stage's chart and
an incident's timeline. Each step acts as a person does in Slack (opens the tab, types into the form, clicks) and
checks what that person would then see, files opened by their links as a browser would."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sandbox.blockkit_text import text_of
from sandbox.demo_tour import StepFailed, Tour, expect

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODAL_SERVICE = "nba-phase3-analytics-processors"
"""A service the other tours leave alone, with no approval, lock or freeze window in the demo's config."""


def _input(view: dict[str, Any], element_type: str) -> tuple[str, str]:
    """The block and action ids of the form's input of this type, as a person finds the field on screen."""
    for block in view["blocks"]:
        element = block.get("element") or {}
        if block["type"] == "input" and element.get("type") == element_type:
            return str(block["block_id"]), str(element["action_id"])
    raise StepFailed(f"the form has no {element_type} field")


async def surfaces_tour(tour: Tour) -> None:
    user_side = tour.endpoints["slack_user_url"]
    control = tour.endpoints["control_url"]

    async def home(user: str, **extra: Any) -> dict[str, Any]:
        opened: dict[str, Any] = (await tour.http.post(f"{user_side}/home", json={"user": user, **extra})).json()
        if not isinstance(opened.get("view"), dict):
            raise StepFailed(f"{user}'s Home tab is empty: the bot published nothing within 3 s")
        return opened

    async def home_shows_the_fleet() -> str:
        view = (await home("oncall"))["view"]
        said = text_of({"blocks": view["blocks"]})
        expect("Fleet" in said and "You may:" in said, "the tab does not show the fleet and what oncall may do")
        for line in said.splitlines()[:8]:
            tour.out.write(f"    {line}\n")
        return f"{len(view['blocks'])} blocks: the fleet, rollouts, incidents, locks, your deploys, what you may do"

    async def retried_event_is_acted_on_once() -> str:
        opened = await home("viewer", duplicates=2)
        statuses = [d["status"] for d in opened["deliveries"]]
        expect(statuses == [200, 200, 200], f"the deliveries were answered {statuses}")
        await asyncio.sleep(1.0)
        now = (await tour.http.get(f"{user_side}/home", params={"user": "viewer"})).json()["view"]
        expect(now["hash"] == opened["view"]["hash"], "the tab was published again for the same event")
        return "one event delivered three times (the first and retries 1 and 2), each answered 200, acted on once"

    async def form(path: str, **spec: Any) -> dict[str, Any]:
        answer: dict[str, Any] = (await tour.http.post(f"{user_side}/views/{path}",
                                                       json={"user": "oncall", **spec})).json()
        if answer.get("error"):
            raise StepFailed(f"{path}: Slack answered {answer['error']}")
        return answer

    async def views() -> list[dict[str, Any]]:
        shown: list[dict[str, Any]] = (await tour.http.get(f"{user_side}/views", params={"user": "oncall"})).json()[
            "views"]
        return shown

    async def modal_deploy() -> str:
        (await tour.http.patch(f"{control}/services/{MODAL_SERVICE}", json={"requests_per_s": 100})).raise_for_status()
        after = await tour.latest("oncall")
        opened = await tour.command("oncall", "/deploy")
        expect(opened["status"] == 200, f"/deploy with no arguments got HTTP {opened['status']}")
        (view,) = await views()
        service_field, image_field = _input(view, "external_select"), _input(view, "plain_text_input")
        typed = await form("suggest", block_id=service_field[0], action_id=service_field[1], value="phase3")
        offered = [o["value"] for o in typed["options"]]
        expect(MODAL_SERVICE in offered, f"typing 'phase3' offered {offered}")
        tour.out.write(f"    typed 'phase3' → offered {', '.join(offered)}\n")
        await form("fill", block_id=service_field[0], action_id=service_field[1], value=MODAL_SERVICE)
        await form("fill", block_id=image_field[0], action_id=image_field[1], value="docker.io/someone/else:v3")
        refused = (await form("submit"))["views"]
        expect(len(refused) == 1 and image_field[0] in refused[0]["errors"], "the foreign image was not refused")
        tour.out.write(f"    image docker.io/someone/else:v3 → on the field: {refused[0]['errors'][image_field[0]]}\n")
        expect(await tour.latest("oncall") == after, "a problem in the form was posted as a message")
        await form("fill", block_id=image_field[0], action_id=image_field[1], value="v3")
        submitted = await form("submit")
        expect(submitted["views"] == [], "a valid form did not close")
        message = await tour.next_message("oncall", after, lambda m: m["kind"] == "message" and str(
            m["text"]).startswith(f"{MODAL_SERVICE}:"), timeout=30)
        return f"the form's Submit started rollout {str(message['text']).split(' ', 2)[1]} as the typed command does"

    async def stage_chart() -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = await tour.messages("oncall")
            parent = next((m for m in seen if m["kind"] == "message" and str(m["text"]).startswith(
                f"{MODAL_SERVICE}:") and "rollout #" in text_of(m)), None)
            charts = [f for m in seen if parent and m.get("thread_ts") == parent["ts"] for f in m.get("files") or []]
            if charts:
                opened = await tour.http.get(charts[0]["permalink"])
                expect(opened.status_code == 200 and opened.content.startswith(PNG_SIGNATURE),
                       f"{charts[0]['permalink']} did not open as a PNG")
                tour.out.write(f"    📎 {charts[0]['title']}: {charts[0]['permalink']}\n")
                return f"the stage's evidence as a {len(opened.content):,}-byte PNG in the rollout's thread"
            await asyncio.sleep(0.3)
        raise StepFailed("no chart in the rollout's thread within 60 s")

    async def incident_timeline() -> str:
        channel = "predictions"
        seen = await tour.messages("oncall", channel)
        parent = next((m for m in reversed(seen) if m["kind"] == "message" and "incident #" in text_of(m)), None)
        if parent is None:
            raise StepFailed(f"no incident in #{channel} to draw a timeline of")
        button = next(e for b in parent["attachments"][0]["blocks"] if b["type"] == "actions"
                      for e in b["elements"] if e["action_id"] == "incident_timeline")
        after = await tour.latest("oncall", channel)
        clicked = await tour.http.post(f"{user_side}/actions", json={
            "user": "oncall", "channel": channel, "message_ts": parent["ts"], "action_id": "incident_timeline",
            "value": button["value"]})
        expect(clicked.status_code == 200, f"the Timeline click got HTTP {clicked.status_code}")
        shared = await tour.next_message("oncall", after, lambda m: m.get("thread_ts") == parent["ts"] and any(
            str(f["name"]).endswith(".md") for f in m.get("files") or []), channel=channel, timeout=20)
        draft = next(f for f in shared["files"] if str(f["name"]).endswith(".md"))
        text = (await tour.http.get(draft["permalink"])).text
        moments = [line for line in text.splitlines() if line.startswith("- `")]
        for word in ("detected", "acknowledged", "resolved"):
            expect(any(f"**{word}**" in line for line in moments), f"the timeline has no {word} line")
        for line in moments[:6]:
            tour.out.write(f"    {line[:110]}\n")
        tour.out.write(f"    📎 {draft['name']}: {draft['permalink']}\n")
        return f"a Markdown postmortem draft of {len(moments)} moments, each with its UTC time and message link"

    await tour.step("App Home: oncall opens the Home tab", home_shows_the_fleet)
    await tour.step("Events API: Slack delivers the same event again", retried_event_is_acted_on_once)
    await tour.step("/deploy with no arguments opens a form: type-ahead, a foreign image refused on its field, Submit",
                    modal_deploy)
    await tour.step("a judged stage's chart in the rollout's thread", stage_chart)
    await tour.step("the Timeline button on the resolved incident", incident_timeline)
