"""Incidents as on-call engineers live them: sweeps every second break and heal services through the control API;
one parent message per incident in the service's alert channel, thread replies only on change, acknowledged by
button or /ack, escalated when nobody does, silenced for maintenance."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.config import Config
from sandbox.blockkit_text import text_of
from tests.scenario.harness import Scenario, fast, scenario


def alerting(config: Config) -> Config:
    alerts = config.defaults.alerts.model_copy(update={"interval": 1.0, "open_after": 2, "resolve_after": 2,
                                                      "escalate_after": 4.0, "cooldown": 60.0,
                                                      "monitoring_webhook": True})
    return config.model_copy(update={"defaults": config.defaults.model_copy(update={"alerts": alerts})})


@pytest.fixture(scope="module")
async def fleet(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    async with scenario(alerting(fast(example_config)), tmp_path_factory.mktemp("incidents")) as running:
        yield running


def about(service: str) -> Any:
    return lambda m: m["kind"] == "message" and str(m.get("text", "")).startswith(f"{service}:")


async def parents(fleet: Scenario, service: str, channel: str) -> list[dict[str, Any]]:
    return [m for m in await fleet.messages("oncall", channel) if (about(service)(m) and not m.get("thread_ts"))
            or (about(service)(m) and m.get("thread_ts") == m["ts"])]


async def replies(fleet: Scenario, parent: dict[str, Any], channel: str) -> list[str]:
    return [text_of(m) for m in await fleet.messages("oncall", channel)
            if m.get("thread_ts") == parent["ts"] and m["ts"] != parent["ts"]]


async def test_a_broken_service_gets_one_thread_that_hears_only_changes_and_resolves(fleet: Scenario) -> None:
    service, channel = "prediction-worker", "predictions"
    revision = fleet.serving_revision(service)
    sweeps = fleet.bot.sweeper.swept
    await fleet.behave(revision, failing_checks=["gcs_model_file"])
    parent = await fleet.wait_for("oncall", about(service), channel=channel, timeout=15)
    assert parent["text"].startswith(f"{service}: open incident #")
    text = text_of(parent)
    assert "`gcs_model_file`" in text and "model file gs://nba-props-platform-models/catboost/v8/model.cbm not found" \
        in text
    assert fleet.runbook_link(text, "prediction-worker", "gcs-model-file")
    assert "<!subteam^S07SREONCAL>" in text, "owners and the on-call rotation are named"
    await fleet.until(lambda: _after(fleet, sweeps + 5), 15, "five more sweeps")
    assert len(await parents(fleet, service, channel)) == 1, "one parent, however many sweeps"
    assert await replies(fleet, parent, channel) == [], "nothing changed, nothing said"
    await fleet.behave(revision, failing_checks=[])

    async def resolved() -> bool:
        return any(r.startswith("resolved") for r in await replies(fleet, parent, channel))

    await fleet.until(resolved, 15, "the resolution in the thread")
    said = await replies(fleet, parent, channel)
    changes = [r for r in said if not r.startswith("escalating")]  # nobody acknowledged this one
    assert len(changes) == 2 and changes[0].startswith("`gcs_model_file` recovered")
    assert changes[1].startswith("resolved: every check passes")
    (redrawn,) = await parents(fleet, service, channel)
    assert redrawn["text"].startswith(f"{service}: resolved incident #"), "the parent is updated in place"
    await fleet.behave(revision, failing_checks=["gcs_model_file"])  # it flaps, within the cooldown
    try:

        async def reopened() -> bool:
            return any(r.startswith("failing again") for r in await replies(fleet, parent, channel))

        await fleet.until(reopened, 15, "the same thread reopened")
    finally:
        await fleet.behave(revision, failing_checks=[])
    assert len(await parents(fleet, service, channel)) == 1, "a flap reuses the thread"


async def _after(fleet: Scenario, sweeps: int) -> bool:
    return fleet.bot.sweeper.swept >= sweeps


async def test_acknowledge_by_button_stops_escalation_and_ack_by_command_says_who_has_it(fleet: Scenario) -> None:
    service, channel = "nba-admin-dashboard", "alerts"
    revision = fleet.serving_revision(service)
    await fleet.behave(revision, failing_checks=["firestore"])
    try:
        parent = await fleet.wait_for("oncall", about(service), channel=channel, timeout=15)

        async def escalated() -> bool:
            return any("escalating to <@U07LEAD0001>" in r for r in await replies(fleet, parent, channel))

        await fleet.until(escalated, 15, "the escalation to the next group")
        button = next(e for b in parent["attachments"][0]["blocks"] if b["type"] == "actions"
                      for e in b["elements"] if e["action_id"] == "incident_ack")
        refused = await fleet.http.post(f"{fleet.user_side}/actions", json={
            "user": "viewer", "channel": channel, "message_ts": parent["ts"], "action_id": "incident_ack",
            "value": button["value"]})
        assert refused.status_code == 200
        clicked = await fleet.http.post(f"{fleet.user_side}/actions", json={
            "user": "oncall", "channel": channel, "message_ts": parent["ts"], "action_id": "incident_ack",
            "value": button["value"]})
        assert clicked.status_code == 200

        async def acknowledged() -> bool:
            return any(r.startswith("acknowledged by <@U07ONCALL01>") for r in await replies(fleet, parent, channel))

        await fleet.until(acknowledged, 10, "the acknowledgement in the thread")
        said = await replies(fleet, parent, channel)
        assert not any("acknowledged by <@U07VIEWER01>" in r for r in said), "the viewer may not acknowledge"
        again = await fleet.command("lead", f"/ack {service}", channel=channel)
        assert again["status"] == 200
        told = await fleet.wait_for("lead", lambda m: "already acknowledged by <@U07ONCALL01>" in text_of(m),
                                    channel=channel)
        assert told["kind"] != "message" or told.get("ephemeral", True)
        listed = await fleet.command("viewer", "/incidents")
        assert listed["status"] == 200
        await fleet.wait_for("viewer", lambda m: f"*{service}*" in text_of(m) and "acknowledged by" in text_of(m))
        count = len(await replies(fleet, parent, channel))
        await asyncio.sleep(5)
        assert not any("escalating" in r for r in (await replies(fleet, parent, channel))[count:]), \
            "no escalation once someone has it"
    finally:
        await fleet.behave(revision, failing_checks=[])


async def test_a_silenced_service_opens_no_thread_and_the_silence_is_announced(fleet: Scenario) -> None:
    service, channel = "nba-phase4-precompute-processors", "alerts"
    answer = await fleet.command("oncall", f"/silence {service} 2h BigQuery maintenance", channel="deploys")
    assert answer["status"] == 200
    announced = await fleet.wait_for("viewer", lambda m: "silenced *nba-phase4-precompute-processors*" in text_of(m),
                                     channel=channel)
    assert "BigQuery maintenance" in text_of(announced) and "UTC" in text_of(announced)
    revision = fleet.serving_revision(service)
    sweeps = fleet.bot.sweeper.swept
    await fleet.behave(revision, failing_checks=["bigquery"])
    try:
        await fleet.until(lambda: _after(fleet, sweeps + 4), 15, "four sweeps")
    finally:
        await fleet.behave(revision, failing_checks=[])
    assert not [m for m in await fleet.messages("oncall", channel) if about(service)(m)], \
        "no incident message while silenced"
    entries = fleet.bot.runtime.store.audit(limit=50, user_id="U07ONCALL01")
    assert any(e.command == "/silence" and e.outcome == "ok" for e in entries)


async def test_a_cloud_monitoring_alert_opens_the_services_thread_once_and_its_close_resolves_it(
        fleet: Scenario) -> None:
    """Cloud Monitoring notifies the webhook when an incident opens and again when it closes, with one incident_id
    (https://cloud.google.com/monitoring/support/notification-options#webhooks, schema 1.2). The open lands in
    the service's incident thread, a repeat changes nothing, and the close resolves it."""
    service, channel = "mlb-prediction-worker", "predictions"
    alert = {"policy": "mlb 5xx above 1%", "condition": "5xx ratio", "service": service,
             "summary": "5xx ratio 4.2% for 5 min", "incident_id": "0.mlb-5xx-1",
             "documentation": "Check the pitcher feed first."}
    fired = await fleet.http.post(f"{fleet.control}/alerts/monitoring", json={**alert, "state": "open"})
    assert fired.status_code == 200 and fired.json()["status"] == 200
    parent = await fleet.wait_for("oncall", about(service), channel=channel, timeout=10)
    text = text_of(parent)
    assert "`monitoring: mlb 5xx above 1%` (Cloud Monitoring)" in text and "5xx ratio 4.2% for 5 min" in text
    assert "Check the pitcher feed first." in text
    again = await fleet.http.post(f"{fleet.control}/alerts/monitoring", json={**alert, "state": "open"})
    assert again.status_code == 200
    closed = await fleet.http.post(f"{fleet.control}/alerts/monitoring", json={**alert, "state": "closed"})
    assert closed.status_code == 200

    async def resolved() -> bool:
        return any(r.startswith("resolved") for r in await replies(fleet, parent, channel))

    await fleet.until(resolved, 10, "the close resolving the incident")
    assert len(await parents(fleet, service, channel)) == 1, "the repeated notification opened nothing new"
    forged = await fleet.http.post(f"{fleet.bot_url}/alerts/monitoring?auth_token=not-the-token",
                                   json={"incident": {}, "version": "1.2"})
    assert forged.status_code == 401


async def test_a_flap_counts_twice_in_mttr_and_a_resolve_during_a_silence_turns_the_parent_green(
        fleet: Scenario) -> None:
    """prediction-coordinator fails, recovers, fails again within the cooldown (the same thread), then is silenced
    for maintenance and recovers during the silence: the parent is redrawn green though the thread hears nothing,
    and the digest's MTTR counts both cycles of the one incident."""
    service, channel = "prediction-coordinator", "predictions"
    watched = {"prediction-coordinator", "prediction-worker", "nba-phase4-precompute-processors"}

    async def settled() -> bool:  # the earlier tests' incidents on the digest's services have resolved
        current = await asyncio.to_thread(fleet.bot.runtime.incidents.incidents.current_all)
        return not any(s.incident.state in ("watching", "open") for name, s in current.items() if name in watched)

    await fleet.until(settled, 20, "the earlier incidents of the digest's services resolved")
    before = await mttr_resolved(fleet)
    revision = fleet.serving_revision(service)
    await fleet.behave(revision, failing_checks=["pubsub"])
    parent = await fleet.wait_for("oncall", about(service), channel=channel, timeout=15)
    await fleet.behave(revision, failing_checks=[])

    async def said(start: str, times: int = 1) -> bool:
        return sum(r.startswith(start) for r in await replies(fleet, parent, channel)) >= times

    await fleet.until(lambda: said("resolved"), 15, "the first cycle resolved")
    await fleet.behave(revision, failing_checks=["pubsub"])
    try:
        await fleet.until(lambda: said("failing again"), 15, "the flap reopening the same thread")
        silenced = await fleet.command("oncall", f"/silence {service} 1h pod maintenance")
        assert silenced["status"] == 200
        await fleet.wait_for("viewer", lambda m: f"silenced *{service}*" in text_of(m), channel=channel)
    finally:
        await fleet.behave(revision, failing_checks=[])

    async def green() -> bool:
        (drawn,) = await parents(fleet, service, channel)
        return str(drawn["text"]).startswith(f"{service}: resolved incident #")

    await fleet.until(green, 15, "the parent redrawn as resolved during the silence")
    assert sum(r.startswith("resolved") for r in await replies(fleet, parent, channel)) == 1, \
        "the silence kept the second resolution out of the thread"
    assert await mttr_resolved(fleet) == before + 2, "both cycles of the one incident are times to restore"


async def mttr_resolved(fleet: Scenario) -> int:
    """How many incidents the before-tipoff digest's MTTR counts, as `/digest` shows it to the person who asks."""
    after = await fleet.latest_ts("oncall", "deploys")
    answer = await fleet.command("oncall", "/digest before-tipoff")
    assert answer["status"] == 200
    shown = text_of(await fleet.wait_for("oncall", lambda m: "*MTTR, last 7 days*" in text_of(m), after=after))
    found = re.search(r"\*MTTR, last 7 days\*: (?:no incidents|(\d+) incidents?) resolved", shown)
    assert found is not None, shown
    return int(found.group(1) or 0)
