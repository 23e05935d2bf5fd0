"""Progressive delivery as on-call engineers drive it: a signed /deploy in; Slack messages and Cloud Run
traffic out. Windows are 1.5 s, so each rollout takes a few seconds."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

from bot.config import Config
from sandbox.blockkit_text import text_of
from tests.conftest import client_options, google_credentials
from tests.scenario.harness import Scenario, fast, scenario

PROJECT = "projects/nba-props-platform/locations/us-west2"


@pytest.fixture(scope="module")
async def fleet(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    config = fast(example_config, min_requests=5)
    hasty = config.services["mlb-prediction-worker"]  # the deadline test's service gives up sooner
    services = {**config.services, "mlb-prediction-worker": hasty.model_copy(
        update={"canary": hasty.canary.model_copy(update={"progress_deadline": 8.0})})}
    config = config.model_copy(update={"services": services})
    async with scenario(config, tmp_path_factory.mktemp("rollouts"), requests_per_s=60) as running:
        yield running


def image(fleet: Scenario, service: str, tag: str) -> str:
    return f"{fleet.world.config.services[service].image}:{tag}"


def thread_text(replies: list[dict[str, object]]) -> str:
    return "\n".join(text_of(m) for m in replies)  # type: ignore[arg-type]


async def test_a_good_image_is_promoted_through_every_stage(fleet: Scenario) -> None:
    service = "prediction-coordinator"
    stable = fleet.serving_revision(service)
    # Enough traffic that the 5% stage sees min_requests in one window, instead of being extended twice for too few.
    (await fleet.http.patch(f"{fleet.control}/services/{service}", json={"requests_per_s": 200})).raise_for_status()
    answer = await fleet.command("oncall", f"/deploy {service} tag=v3")
    assert answer["status"] == 200 and "Deploying" in answer["body"]
    done = await fleet.rollout_state(service, "promoted", timeout=60)  # 3 stages: 1.5 s and 2.5 s of log lag each
    candidate = done.rollout.candidate
    assert fleet.routed(service) == {candidate: 100} and fleet.tags(service) == {}
    history = fleet.world.run.traffic_history(service)
    assert [split.get(candidate, 0) for split in history] == [0, 5, 50, 100, 100]
    assert history[0] == {stable: 100, candidate: 0}, "the candidate was created at 0% with its tag"
    message = await fleet.rollout_message(done)
    assert "promoted" in message["text"] and message["attachments"][0]["color"] == "#2eb67d"
    replies = thread_text(await fleet.thread(done))
    for expected in ("stage 5% passed", "stage 50% passed", "stage 100% passed", "serves 100% of traffic"):
        assert expected in replies


async def test_a_bad_image_is_rolled_back_at_the_first_stage_with_the_reason(fleet: Scenario) -> None:
    service = "mlb-prediction-worker"
    stable = fleet.serving_revision(service)
    await fleet.declare(image(fleet, service, "v3-broken"), error_rate=0.6)
    await fleet.command("oncall", f"/deploy {service} tag=v3-broken")
    done = await fleet.rollout_state(service, "rolled_back")
    assert fleet.routed(service) == {stable: 100} and fleet.tags(service) == {}
    assert [r.percent for r in done.rollout.results] == [5], "rolled back at the first stage"
    assert max(split.get(done.rollout.candidate, 0) for split in fleet.world.run.traffic_history(service)) == 5
    message = await fleet.rollout_message(done)
    assert message["attachments"][0]["color"] == "#e01e5a" and "rolled back" in message["text"]
    replies = thread_text(await fleet.thread(done))
    assert "stage 5% failed" in replies
    assert "ERROR entries" in replies or "success rate" in replies
    assert "KeyError: 'pitcher_id'" in replies, "the candidate's newest error lines are in the thread"
    assert fleet.runbook_link(replies, "mlb-prediction-worker", "canary-failed")


async def test_a_candidate_whose_ready_fails_never_gets_traffic(fleet: Scenario) -> None:
    service = "nba-admin-dashboard"
    stable = fleet.serving_revision(service)
    await fleet.declare(image(fleet, service, "v3-no-firestore"), failing_checks=["firestore"])
    await fleet.command("oncall", f"/deploy {service} tag=v3-no-firestore")
    done = await fleet.rollout_state(service, "rolled_back")
    assert max(split.get(done.rollout.candidate, 0) for split in fleet.world.run.traffic_history(service)) == 0
    assert fleet.routed(service) == {stable: 100} and fleet.tags(service) == {}
    assert "before getting any traffic" in done.rollout.reason and "check firestore" in done.rollout.reason
    replies = thread_text(await fleet.thread(done))
    assert fleet.runbook_link(replies, "nba-admin-dashboard", "firestore")


async def test_a_latency_regression_is_rolled_back(fleet: Scenario) -> None:
    service = "nba-phase4-precompute-processors"
    stable = fleet.serving_revision(service)
    (await fleet.http.patch(f"{fleet.control}/services/{service}", json={"requests_per_s": 300})).raise_for_status()
    await fleet.declare(image(fleet, service, "v3-slow"), latency_ms=900)
    await fleet.command("oncall", f"/deploy {service} tag=v3-slow")
    done = await fleet.rollout_state(service, "rolled_back")
    assert fleet.routed(service) == {stable: 100}
    assert "p99 latency" in done.rollout.reason and "> 500 ms" in done.rollout.reason


async def test_rollback_mid_stage_puts_all_traffic_back_in_one_write(fleet: Scenario) -> None:
    service = "prediction-worker"
    stable = fleet.serving_revision(service)
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    running = await fleet.rollout_state(service, "analysing")
    asked = len(fleet.world.run.traffic_history(service))
    answer = await fleet.command("oncall", f"/rollback {service}")
    assert answer["status"] == 200
    await fleet.wait_for("oncall", lambda m: "Rolling back" in text_of(m))
    done = await fleet.rollout_state(service, "rolled_back")
    assert done.rollout.id == running.rollout.id and "rolled back by <@U07ONCALL01>" in done.rollout.reason
    assert fleet.routed(service) == {stable: 100} and fleet.tags(service) == {}
    after = fleet.world.run.traffic_history(service)[asked:]
    assert after[-1] == {stable: 100} and after.count({stable: 100}) == 1, "the rollback itself is one write"
    assert all(done.rollout.candidate in split for split in after[:-1]), "nothing but stage moves came before it"


async def test_pause_by_button_holds_traffic_and_resume_finishes(fleet: Scenario) -> None:
    service = "nba-phase3-analytics-processors"
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    running = await fleet.rollout_state(service, "analysing")
    message = await fleet.rollout_message(running)
    click = await fleet.http.post(f"{fleet.user_side}/actions", json={
        "user": "oncall", "channel": "deploys", "message_ts": running.message_ts, "action_id": "rollout_pause",
        "value": message["attachments"][0]["blocks"][-2]["elements"][1]["value"]})
    assert click.json()["status"] == 200
    paused = await fleet.rollout_state(service, "paused")
    split = fleet.routed(service)
    await asyncio.sleep(2.5)
    assert fleet.routed(service) == split, "nothing moves while paused"
    assert (await fleet.rollout_state(service, "paused")).rollout.stage == paused.rollout.stage
    await fleet.command("oncall", f"/resume {service}")
    done = await fleet.rollout_state(service, "promoted")
    assert fleet.routed(service) == {done.rollout.candidate: 100}


async def test_traffic_changed_by_hand_pauses_the_rollout_and_says_what_changed(fleet: Scenario) -> None:
    service = "prediction-coordinator"
    await fleet.command("oncall", f"/deploy {service} tag=v4")
    running = await fleet.rollout_state(service, "analysing")
    stable = running.rollout.stable
    gcloud = run_v2.ServicesClient(transport="rest", credentials=google_credentials(fleet.world),
                                   client_options=client_options(fleet.world.url("cloud_run")))

    def by_hand() -> None:
        """As `gcloud run services update-traffic --to-revisions STABLE=100` does: traffic only, by mask."""
        target = run_v2.TrafficTarget(
            type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION, revision=stable,
            percent=100)
        gcloud.update_service(request=run_v2.UpdateServiceRequest(
            service=run_v2.Service(name=f"{PROJECT}/services/{service}", traffic=[target]),
            update_mask=field_mask_pb2.FieldMask(paths=["traffic"]))).result(timeout=30)

    await asyncio.to_thread(by_hand)
    paused = await fleet.rollout_state(service, "paused")
    assert paused.rollout.reason.startswith(f"traffic was changed outside chatops: it is now set to {stable} 100%")
    assert fleet.routed(service) == {stable: 100}, "the bot does not fight the human"
    message = await fleet.rollout_message(paused)
    assert "Resume" in text_of(message["attachments"][0]) or "Resume" in str(message["attachments"])
    await fleet.command("oncall", f"/rollback {service}")
    await fleet.rollout_state(service, "rolled_back")


async def test_a_second_deploy_is_queued_behind_the_running_one_and_says_whose(fleet: Scenario) -> None:
    service = "nba-grading-service"
    await fleet.command("oncall", f"/deploy {service} canary tag=v5")
    running = await fleet.rollout_state(service, "analysing", "verifying", "deploying")
    await fleet.command("lead", f"/deploy {service} canary tag=v6")
    queued = await fleet.wait_for("lead", lambda m: "queued #2 behind" in text_of(m))
    assert f"<@U07ONCALL01>'s rollout of `v5` (#{running.rollout.id})" in queued["text"]
    assert "it starts when that one ends" in queued["text"] and "/queue cancel" in queued["text"]
    await fleet.command("oncall", f"/rollback {service}")
    await fleet.rollout_state(service, "rolled_back")
    assert len(await asyncio.to_thread(fleet.bot.runtime.store.rollouts, service=service)) == 1, (
        "the queue holds after a rollback")
    request = re.search(r"Request #(\d+);", queued["text"])
    assert request is not None
    await fleet.command("lead", f"/queue cancel {request[1]}")
    await fleet.wait_for("lead", lambda m: f"Request #{request[1]} cancelled" in text_of(m))


async def test_the_viewer_may_not_deploy(fleet: Scenario) -> None:
    answer = await fleet.command("viewer", "/deploy prediction-worker tag=v9")
    assert "You can't deploy prediction-worker: that needs the *deployer* role" in answer["body"]


async def test_a_dry_run_shows_the_plan_and_changes_nothing(fleet: Scenario) -> None:
    writes = fleet.world.run.counts["UpdateService"]
    before = len(await asyncio.to_thread(fleet.bot.runtime.store.rollouts))
    await fleet.command("oncall", "/deploy mlb-prediction-worker tag=v7 dry-run")
    plan = await fleet.wait_for("oncall", lambda m: "Dry run: nothing was changed" in text_of(m))
    text = text_of(plan)
    assert "5%  →  50%  →  100%" in text and "success rate ≥ 99%" in text and "Can stop it:* deployer" in text
    assert fleet.world.run.counts["UpdateService"] == writes
    assert len(await asyncio.to_thread(fleet.bot.runtime.store.rollouts)) == before


async def test_a_revision_that_never_becomes_ready_fails_at_the_deadline(fleet: Scenario) -> None:
    service = "mlb-prediction-worker"
    stable = fleet.serving_revision(service)
    await fleet.declare(image(fleet, service, "v8-hangs"), start="hang")
    await fleet.command("oncall", f"/deploy {service} tag=v8-hangs")
    done = await fleet.rollout_state(service, "failed", timeout=20)
    assert "was not ready within 8 s: Waiting for the container to become healthy." in done.rollout.reason
    assert fleet.routed(service) == {stable: 100} and fleet.tags(service) == {}
    replies = thread_text(await fleet.thread(done))
    assert "was not ready within" in replies


async def test_a_new_service_is_deployed_directly_and_the_message_says_why(fleet: Scenario) -> None:
    service = "prediction-worker"
    gcloud = run_v2.ServicesClient(transport="rest", credentials=google_credentials(fleet.world),
                                   client_options=client_options(fleet.world.url("cloud_run")))
    await asyncio.to_thread(lambda: gcloud.delete_service(name=f"{PROJECT}/services/{service}").result(timeout=10))
    await fleet.command("oncall", f"/deploy {service} canary tag=v1")
    done = await fleet.rollout_state(service, "promoted")
    assert fleet.routed(service) == {done.rollout.candidate: 100}
    assert done.rollout.plan.stages == (100,)
    replies = thread_text(await fleet.thread(done))
    assert "Cloud Run cannot start a new service with no traffic on its first revision" in replies


async def test_rollback_after_a_finished_deploy_returns_to_the_revision_before_it(fleet: Scenario) -> None:
    service = "nba-phase3-analytics-processors"
    promoted = await fleet.rollout_state(service, "promoted")
    assert fleet.routed(service) == {promoted.rollout.candidate: 100}
    missing = await fleet.command("oncall", f"/rollback {service} to={promoted.rollout.stable}x")
    said = await fleet.wait_for("oncall", lambda m: "has no revision" in text_of(m))
    assert missing["status"] == 200 and f"Did you mean `{promoted.rollout.stable}`?" in said["text"]
    writes = fleet.world.run.counts["UpdateService"]
    await fleet.command("oncall", f"/rollback {service}")
    await fleet.wait_for("oncall", lambda m: f"back: all traffic to `{promoted.rollout.stable}`" in text_of(m))
    restored = await fleet.rollout_state(service, "rolled_back")
    assert restored.rollout.id != promoted.rollout.id, "a restore row the reconciler owns, not a write from the command"
    assert fleet.routed(service) == {promoted.rollout.stable: 100}
    assert fleet.world.run.counts["UpdateService"] - writes == 1
    announced = await fleet.rollout_message(restored, "viewer")
    assert "rolled back" in text_of(announced), "the channel is told, not only the person who asked"
    assert any("rolled back by <@U07ONCALL01>" in text_of(m) for m in await fleet.thread(restored, "viewer"))
