"""`chatops sandbox --demo`: a scripted tour of what the bot does, checked as it goes.

Every step acts as a person would (a signed slash command, a fault injected through the control API)
and then checks what that person would see. Exit 0 when every step did what it should.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from typing import Any, TextIO

import httpx

from sandbox.blockkit_text import text_of
from sandbox.demo_surfaces import surfaces_tour
from sandbox.demo_tour import StepFailed, Tour, expect


async def _health_tour(tour: Tour) -> None:
    async def fleet_is_listed() -> str:
        after = await tour.latest("oncall")
        answer = await tour.command("oncall", "/health all")
        expect(answer["status"] == 200, f"the bot answered HTTP {answer['status']} ({answer.get('error')})")
        expect(answer["ack_ms"] < 3000, f"the ack took {answer['ack_ms']:.0f} ms, over Slack's 3 s")
        report = await tour.next_message("oncall", after, lambda m: "Fleet health" in str(m["text"]))
        state = (await tour.http.get(f"{tour.endpoints['control_url']}/state")).json()
        missing = [s for s in state["services"] if s not in text_of(report)]
        expect(not missing, f"the report does not mention {missing}")
        return f"acked in {answer['ack_ms']:.0f} ms; all {len(state['services'])} services listed"

    async def failing_ready_is_unhealthy() -> str:
        revision = await tour.serving("prediction-worker")
        await tour.behave(revision, failing_checks=["gcs_model_file"])
        try:
            after = await tour.latest("oncall")
            await tour.command("oncall", "/health all")
            report = await tour.next_message("oncall", after, lambda m: "Fleet health" in str(m["text"]))
        finally:
            await tour.behave(revision, failing_checks=[])
        text = text_of(report)
        expect("*prediction-worker* is *unhealthy*" in text, "prediction-worker is not shown as unhealthy")
        expect("`gcs_model_file`" in text and "not found" in text, "the failing check or its detail is missing")
        found = re.search(re.escape(tour.endpoints["bot_url"]) + r"/runbooks/prediction-worker\?sig=[\w-]+"
                          r"#gcs-model-file", text)
        expect(found is not None, "the signed runbook link is missing")
        assert found is not None
        page = await tour.http.get(found.group(0))
        expect(page.status_code == 200 and 'id="gcs-model-file"' in page.text, "the runbook link does not resolve")
        return "unhealthy, with the check, its detail and a runbook link that resolves"

    async def down_is_unreachable() -> str:
        revision = await tour.serving("nba-grading-service")
        await tour.behave(revision, down=True)
        try:
            after = await tour.latest("oncall")
            await tour.command("oncall", "/health nba-grading-service")
            report = await tour.next_message("oncall", after,
                                             lambda m: str(m["text"]).startswith("nba-grading-service is"))
        finally:
            await tour.behave(revision, down=False)
        expect("unreachable" in str(report["text"]), f"shown as: {report['text']}")
        return "shown as unreachable, not as an error of the bot"

    async def mistakes_are_explained() -> str:
        answers = {typed: (await tour.command("oncall", typed))["body"]
                   for typed in ("/health prediction-wrker", "/health", "/health nope")}
        expect("Did you mean `prediction-worker`?" in answers["/health prediction-wrker"], "no did-you-mean")
        expect("which service?" in answers["/health"], "no hint for a missing service")
        expect("there is no service `nope`" in answers["/health nope"], "no answer for an unknown service")
        for typed, body in answers.items():
            tour.out.write(f"    {typed} → {body.splitlines()[0]}\n")
        return "each mistake got a short answer saying what to type instead"

    async def forged_is_refused() -> str:
        if tour.endpoints.get("socket_mode"):
            route = await tour.http.post(f"{tour.endpoints['bot_url']}/slack/events", content=b"payload=%7B%7D")
            expect(route.status_code == 404, f"in Socket Mode the bot's Slack route answered {route.status_code}")
            return "in Socket Mode the bot takes nothing over HTTP: its /slack/events route answers 404"
        answer = await tour.command("oncall", "/health all", signature="v0=" + "0" * 64)
        expect(answer["status"] == 401, f"a forged signature got HTTP {answer['status']}")
        old = await tour.command("oncall", "/health all", timestamp=int(time.time()) - 600)
        expect(old["status"] == 401, f"a replayed request got HTTP {old['status']}")
        return "a forged signature and a 10-minute-old timestamp both got 401"

    async def help_lists_commands() -> str:
        after = await tour.latest("viewer")
        await tour.command("viewer", "/help")
        listing = await tour.next_message("viewer", after, lambda m: "/health <service|all>" in text_of(m))
        expect(listing.get("ephemeral") is True, "help should be visible only to who asked")
        return "/help answered only to the viewer"

    await tour.step("/health all: every service, acked within Slack's 3 seconds", fleet_is_listed)
    await tour.step("a revision whose /ready fails (gcs_model_file, set through the control API)",
                    failing_ready_is_unhealthy)
    await tour.step("a service whose revision stops answering", down_is_unreachable)
    await tour.step("mistyped commands", mistakes_are_explained)
    await tour.step("requests that are not from Slack", forged_is_refused)
    await tour.step("/help", help_lists_commands)


async def _rollout_tour(tour: Tour) -> None:
    control = tour.endpoints["control_url"]

    async def rollout_of(service: str, ended: tuple[str, ...], timeout: float = 60.0) -> dict[str, Any]:
        """The rollout message once it says the rollout ended; shown with its thread."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in await tour.messages("oncall"):
                text = str(message.get("text", ""))
                if message["kind"] == "message" and text.startswith(f"{service}:") and any(e in text for e in ended) \
                        and "(applying)" not in text:
                    tour.show(message)
                    for reply in await tour.messages("oncall"):
                        if reply.get("thread_ts") == message["ts"] and reply["ts"] != message["ts"]:
                            tour.show(reply)
                    return message
            await asyncio.sleep(0.2)
        raise StepFailed(f"{service}'s rollout did not end within {timeout:g} s")

    async def state(service: str) -> dict[str, Any]:
        found: dict[str, Any] = (await tour.http.get(f"{control}/state")).json()["services"][service]
        return found

    async def good_image_is_promoted() -> str:
        service = "prediction-worker"
        (await tour.http.patch(f"{control}/services/{service}", json={"requests_per_s": 100})).raise_for_status()
        after = await tour.latest("oncall")
        answer = await tour.command("oncall", f"/deploy {service} tag=v3")
        expect(answer["status"] == 200, f"the bot answered HTTP {answer['status']}")
        asked = await tour.next_message("oncall", after, lambda m: "Approval needed" in text_of(m))
        click = (await tour.http.post(f"{tour.endpoints['slack_user_url']}/actions", json={
            "user": "lead", "channel": "deploys", "message_ts": asked["ts"], "action_id": "deploy_approve"})).json()
        expect(click["status"] == 200, f"the bot answered the lead's Approve with HTTP {click['status']}")
        await rollout_of(service, ("promoted", "rolled back", "failed", "paused"))
        now = await state(service)
        routed = {s["revision"]: s["percent"] for s in now["traffic_statuses"] if s.get("percent")}
        expect(routed == {now["latest_ready"]: 100}, f"traffic is {routed}, not all on the candidate")
        expect(not any(s.get("tag") for s in now["traffic_statuses"]), "the canary tag is still there")
        steps = " → ".join(f"{split.get(now['latest_ready'], 0)}%" for split in now["traffic_history"])
        return f"the candidate's traffic went {steps}; {now['latest_ready']} now serves 100%, untagged"

    async def bad_image_is_rolled_back() -> str:
        service = "nba-admin-dashboard"
        stable = [s["revision"] for s in (await state(service))["traffic_statuses"]]
        image = (await state(service))["revisions"][0]["image"].rpartition(":")[0] + ":v4-broken"
        (await tour.http.post(f"{control}/images", json={"image": image, "error_rate": 0.8})).raise_for_status()
        (await tour.http.patch(f"{control}/services/{service}", json={"requests_per_s": 100})).raise_for_status()
        await tour.command("oncall", f"/deploy {service} tag=v4-broken")
        message = await rollout_of(service, ("promoted", "rolled back", "failed", "paused"))
        expect("rolled back" in str(message["text"]), f"the rollout ended as: {message['text']}")
        now = await state(service)
        routed = [s["revision"] for s in now["traffic_statuses"] if s.get("percent")]
        expect(routed == stable, f"traffic is on {routed}, not back on {stable}")
        peak = max(split.get(now["latest_created"], 0) for split in now["traffic_history"])
        expect(peak == 5, f"the bad candidate reached {peak}% before the rollback")
        return f"rolled back at 5%; all traffic is back on {stable[0]}"

    await tour.step("/deploy of a good image: approved by a second person (the lead), every stage analysed, then "
                    "promoted", good_image_is_promoted)
    await tour.step("/deploy of an image that fails 80% of requests (declared through the control API)",
                    bad_image_is_rolled_back)


async def _change_control_tour(tour: Tour) -> None:
    control = tour.endpoints["control_url"]
    service = "nba-phase4-precompute-processors"

    async def serving_tag() -> str:
        found = (await tour.http.get(f"{control}/state")).json()["services"][service]
        images = {r["name"]: r["image"] for r in found["revisions"]}
        routed = [s["revision"] for s in found["traffic_statuses"] if s.get("percent") == 100]
        return images.get(routed[0], "").rpartition(":")[2] if routed else ""

    async def lock_refuses_others() -> str:
        after = await tour.latest("oncall")
        await tour.command("oncall", f"/lock {service} for 1h backfill running")
        await tour.next_message("oncall", after, lambda m: "backfill running" in text_of(m))
        after = await tour.latest("lead")
        await tour.command("lead", f"/deploy {service} tag=v3")
        refusal = await tour.next_message("lead", after, lambda m: "override=" in text_of(m))
        expect("backfill running" in text_of(refusal), "the refusal does not say why the service is locked")
        return "the lock is announced; the lead's /deploy is refused, naming the holder, the reason and the override"

    async def freeze_refuses() -> str:
        after = await tour.latest("oncall")
        await tour.command("oncall", "/deploy mlb-prediction-worker tag=v3")
        refusal = await tour.next_message("oncall", after, lambda m: "demo-maintenance" in text_of(m))
        expect("override=" in text_of(refusal), "the refusal does not say how to go ahead")
        return "refused during the window, naming it, its end and the override"

    async def second_deploy_is_queued() -> str:
        (await tour.http.patch(f"{control}/services/{service}", json={"requests_per_s": 100})).raise_for_status()
        await tour.command("oncall", f"/deploy {service} direct tag=v3")  # the lock's holder may deploy
        after = await tour.latest("oncall")
        await tour.command("oncall", f"/deploy {service} direct tag=v4")
        await tour.next_message("oncall", after, lambda m: "queued #2" in text_of(m))
        deadline = time.monotonic() + 90
        while await serving_tag() != "v4":
            if time.monotonic() > deadline:
                raise StepFailed(f"{service} serves `{await serving_tag()}`, not v4, after 90 s")
            await asyncio.sleep(0.5)
        after = await tour.latest("oncall")
        await tour.command("oncall", f"/unlock {service}")
        await tour.next_message("oncall", after, lambda m: "unlock" in text_of(m).lower())
        return "v4 waited its turn behind v3, then ran: v4 serves 100%; the lock is released"

    await tour.step("/lock: the lock holds others' deploys", lock_refuses_others)
    await tour.step("a freeze window (the demo's own, on mlb-prediction-worker)", freeze_refuses)
    await tour.step("a /deploy while one is in progress is queued, and starts when it ends", second_deploy_is_queued)


async def _alert_tour(tour: Tour) -> None:
    control = tour.endpoints["control_url"]

    async def replies_to(parent: dict[str, Any], channel: str) -> list[str]:
        return [text_of(m) for m in await tour.messages("oncall", channel)
                if m.get("thread_ts") == parent["ts"] and m["ts"] != parent["ts"]]

    async def reply_saying(parent: dict[str, Any], channel: str, words: str, timeout: float = 40.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in await replies_to(parent, channel) if words in r]
            if found:
                tour.out.write(f"      ↳ {found[0].splitlines()[0]}\n")
                return found[0]
            await asyncio.sleep(0.2)
        raise StepFailed(f"the thread never said {words!r}")

    async def incident_opens_is_acknowledged_and_resolves() -> str:
        service, channel = "prediction-worker", "predictions"
        revision = await tour.serving(service)
        after = await tour.latest("oncall", channel)
        await tour.behave(revision, failing_checks=["gcs_model_file"])
        try:
            parent = await tour.next_message("oncall", after, lambda m: str(m["text"]).startswith(
                f"{service}: open incident"), channel=channel, timeout=60)
            button = next(e for b in parent["attachments"][0]["blocks"] if b["type"] == "actions"
                          for e in b["elements"] if e["action_id"] == "incident_ack")
            clicked = await tour.http.post(f"{tour.endpoints['slack_user_url']}/actions", json={
                "user": "oncall", "channel": channel, "message_ts": parent["ts"], "action_id": "incident_ack",
                "value": button["value"]})
            expect(clicked.status_code == 200, f"the click got HTTP {clicked.status_code}")
            await reply_saying(parent, channel, "acknowledged by")
        finally:
            await tour.behave(revision, failing_checks=[])
        await reply_saying(parent, channel, "resolved")
        return f"one thread in #{channel}: opened, acknowledged by oncall, resolved once the check passed"

    async def monitoring_alert_is_threaded() -> str:
        service, channel = "nba-grading-service", "alerts"
        after = await tour.latest("oncall", channel)
        alert = {"policy": "grading 5xx above 1%", "condition": "5xx ratio", "service": service,
                 "summary": "5xx ratio 3.1% for 5 min", "incident_id": "0.demo-grading"}
        sent = (await tour.http.post(f"{control}/alerts/monitoring", json={**alert, "state": "open"})).json()
        expect(sent.get("status") == 200, f"the bot answered the notification with {sent.get('status')}")
        parent = await tour.next_message("oncall", after, lambda m: str(m["text"]).startswith(f"{service}:"),
                                         channel=channel)
        expect("grading 5xx above 1%" in text_of(parent), "the policy is not in the incident")
        (await tour.http.post(f"{control}/alerts/monitoring", json={**alert, "state": "closed"})).raise_for_status()
        await reply_saying(parent, channel, "resolved")
        return "Cloud Monitoring's notification opened the service's incident thread; its close resolved it"

    async def digest_now() -> str:
        after = await tour.latest("oncall")
        answer = await tour.command("oncall", "/digest")
        expect(answer["status"] == 200, f"the bot answered HTTP {answer['status']}")
        digest = await tour.next_message("oncall", after, lambda m: "Health digest" in text_of(m))
        expect(digest["kind"] != "message", "the digest went to the channel, not to the requester")
        return "the digest, shown to the requester only"

    await tour.step("a service breaks: one incident thread, acknowledged, then resolved",
                    incident_opens_is_acknowledged_and_resolves)
    await tour.step("Cloud Monitoring fires an alert through its webhook", monitoring_alert_is_threaded)
    await tour.step("/digest", digest_now)


async def run_demo(endpoints: dict[str, Any], out: TextIO = sys.stdout) -> int:
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=15) as http:
        tour = Tour(endpoints, http, out, users={v: k for k, v in endpoints["users"].items()})
        await _health_tour(tour)
        await _rollout_tour(tour)
        await _change_control_tour(tour)
        await _alert_tour(tour)
        await surfaces_tour(tour)
    out.write(f"\n(the tour took {time.monotonic() - started:.0f} s)\n")
    if tour.failures:
        out.write(f"\n✗ {len(tour.failures)} step(s) failed: {'; '.join(tour.failures)}\n")
        return 1
    out.write("\n✓ every step did what it should\n")
    return 0
