"""Progressive delivery on the strict sandbox, where Google says no, routes in its own time and reads are
scarce: a signed /deploy or /rollback in; Slack messages and Cloud Run traffic out.

Every figure is the sandbox's published default (IAM roles, Logging's 60 reads a minute and its ingestion
delay, Monitoring's 180 s delay); only the canary windows are seconds long, as in every scenario here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

from bot.config import Config
from sandbox.blockkit_text import text_of
from sandbox.iam import DEFAULT_ROLES
from tests.conftest import client_options, google_credentials
from tests.scenario.harness import Scenario, fast, scenario

PROJECT = "projects/nba-props-platform/locations/us-west2"
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


@pytest.fixture(scope="module")
async def strict(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    async with scenario(fast(example_config, min_requests=5), tmp_path_factory.mktemp("strict"),
                        requests_per_s=60) as running:
        assert running.world.logs.limits.reads_per_minute == 60, "Cloud Logging's published quota"
        assert running.world.monitoring_limits.visibility_delay_s == 180, "Cloud Monitoring's published delay"
        yield running


def image(world: Scenario, service: str, tag: str) -> str:
    return f"{world.world.config.services[service].image}:{tag}"


def thread_text(replies: list[dict[str, object]]) -> str:
    return "\n".join(text_of(m) for m in replies)  # type: ignore[arg-type]


async def roles(world: Scenario, granted: list[str]) -> None:
    (await world.http.put(f"{world.control}/iam", json={"roles": granted})).raise_for_status()


async def test_a_deploy_refused_for_a_missing_act_as_ends_naming_the_role_and_the_next_deploy_goes_ahead(
        strict: Scenario) -> None:
    """Deploying a revision needs iam.serviceAccounts.actAs on its runtime service account
    (https://cloud.google.com/run/docs/configuring/service-accounts): without roles/iam.serviceAccountUser Cloud Run
    refuses the write. The rollout must end with Google's words and the role, not retry forever."""
    service = "mlb-prediction-worker"
    stable = strict.serving_revision(service)
    await roles(strict, [r for r in DEFAULT_ROLES if r != "roles/iam.serviceAccountUser"])
    try:
        writes = strict.world.run.counts["UpdateService"]
        await strict.command("oncall", f"/deploy {service} tag=v3")
        failed = await strict.rollout_state(service, "failed")
    finally:
        await roles(strict, list(DEFAULT_ROLES))
    assert strict.world.run.counts["UpdateService"] - writes == 1, "refused once, not asked again every tick"
    assert "PERMISSION_DENIED" in failed.rollout.reason and "iam.serviceaccounts.actAs" in failed.rollout.reason
    assert "roles/iam.serviceAccountUser" in failed.rollout.reason
    assert strict.routed(service) == {stable: 100} and strict.tags(service) == {}
    replies = thread_text(await strict.thread(failed))
    assert f"Traffic is as it was: {stable} 100%" in replies
    step = strict.runbook_link(replies, "mlb-prediction-worker", "deploy-refused")
    assert (await strict.http.get(step)).status_code == 200
    again = await strict.command("oncall", f"/deploy {service} tag=v3")
    assert "Deploying" in again["body"]
    second = await strict.rollout_state(service, "promoted", "rolled_back", timeout=60)
    assert second.rollout.id != failed.rollout.id and second.rollout.state.value == "promoted"


async def test_a_private_service_is_canaried_to_100_with_a_teams_tag_kept_and_judged_from_request_logs(
        strict: Scenario) -> None:
    """prediction-worker is private: the bot's probes carry an ID token from the metadata server
    (https://cloud.google.com/run/docs/authenticating/service-to-service). A team's `staging` tag is theirs: every
    write keeps it. Monitoring shows a minute only 180 s after it (https://cloud.google.com/monitoring/api/
    metrics_gcp#gcp-run), so the seconds-long stages are judged from the candidate's request logs."""
    service = "prediction-worker"
    assert strict.world.iam.private(service)
    stable = strict.serving_revision(service)
    gcloud = run_v2.ServicesClient(transport="rest", credentials=google_credentials(strict.world),
                                   client_options=client_options(strict.world.url("cloud_run")))

    def tag_staging() -> None:
        """As `gcloud run services update-traffic --set-tags staging=STABLE` does: traffic by mask."""
        targets = [run_v2.TrafficTarget(type_=REVISION, revision=stable, percent=100),
                   run_v2.TrafficTarget(type_=REVISION, revision=stable, percent=0, tag="staging")]
        gcloud.update_service(request=run_v2.UpdateServiceRequest(
            service=run_v2.Service(name=f"{PROJECT}/services/{service}", traffic=targets),
            update_mask=field_mask_pb2.FieldMask(paths=["traffic"]))).result(timeout=30)

    await asyncio.to_thread(tag_staging)
    refused = strict.world.fleet.refused
    await strict.command("oncall", f"/deploy {service} tag=v3")
    running = await strict.rollout_state(service, "analysing")
    assert strict.tags(service) == {"staging": stable, "canary": running.rollout.candidate}
    done = await strict.rollout_state(service, "promoted", "rolled_back", "paused", timeout=60)
    assert done.rollout.state.value == "promoted", done.rollout.reason
    assert strict.routed(service) == {done.rollout.candidate: 100}
    assert strict.tags(service) == {"staging": stable}, "the team's tag outlived the canary; chatops' is gone"
    assert strict.world.fleet.refused == refused, "no probe of the private service was turned away"
    replies = thread_text(await strict.thread(done))
    assert "request logs)" in replies and "success rate: 100.0% of" in replies
    assert "Cloud Monitoring has no whole minute of this window yet" in replies


async def test_rollback_after_a_rolled_back_canary_goes_to_what_served_before_never_the_candidate(
        strict: Scenario) -> None:
    """After a canary is rolled back, the newest revision that is not serving is that bad canary, and Cloud Run's
    list promises no order: /rollback must go to what served before the deploy that promoted the serving one."""
    service = "nba-phase4-precompute-processors"
    original = strict.serving_revision(service)
    await strict.command("oncall", f"/deploy {service} tag=v3")
    good = await strict.rollout_state(service, "promoted", "rolled_back", "paused", timeout=60)
    assert good.rollout.state.value == "promoted", good.rollout.reason
    await strict.declare(image(strict, service, "v4-broken"), error_rate=0.7)
    await strict.command("oncall", f"/deploy {service} tag=v4-broken")
    bad = await strict.rollout_state(service, "rolled_back")
    assert strict.routed(service) == {good.rollout.candidate: 100}
    before = await strict.latest_ts()
    await strict.command("oncall", f"/rollback {service}")
    said = await strict.wait_for("oncall", lambda m: "back: all traffic to" in text_of(m), after=before)
    assert f"`{original}`" in text_of(said) and f"it served before rollout #{good.rollout.id}" in text_of(said)
    await strict.rollout_state(service, "rolled_back")
    assert strict.routed(service) == {original: 100} and bad.rollout.candidate not in strict.routed(service)
    before = await strict.latest_ts()
    await strict.command("oncall", f"/rollback {service} to={bad.rollout.candidate}")
    warned = await strict.wait_for("oncall", lambda m: "was rolled back before" in text_of(m), after=before)
    assert f"`{bad.rollout.candidate}` was rolled back before: chatops rolled back it" in text_of(warned)
    await strict.rollout_state(service, "rolled_back")  # the reconciler's write, before the next test counts writes
    assert strict.routed(service) == {bad.rollout.candidate: 100}


async def test_an_image_outside_the_services_repositories_is_refused_before_anything_changes(
        strict: Scenario) -> None:
    service = "nba-admin-dashboard"
    writes = strict.world.run.counts["UpdateService"]
    answer = await strict.command("oncall", f"/deploy {service} image=docker.io/someone/nba-admin-dashboard:v9")
    assert answer["status"] == 200
    assert "nba-admin-dashboard deploys only from `us-west2-docker.pkg.dev/nba-props-platform/cloud-run/" \
           "nba-admin-dashboard`" in answer["body"]
    await asyncio.sleep(0.5)
    assert strict.world.run.counts["UpdateService"] == writes
    assert await asyncio.to_thread(strict.bot.runtime.store.open_rollout, service) is None


async def test_the_logging_quota_spent_by_others_during_three_rollouts_leaves_none_wedged(strict: Scenario) -> None:
    """People reading logs share the project's 60 reads a minute (https://cloud.google.com/logging/quotas); past it
    Google answers 429 RESOURCE_EXHAUSTED. Left with almost none, each rollout must still end, or pause saying why,
    and a person's /rollback must still be acted on."""
    services = ("prediction-coordinator", "nba-admin-dashboard", "nba-phase3-analytics-processors")
    refused = strict.world.logging_quota.refused
    (await strict.http.patch(f"{strict.control}/limits/logging", json={"reads_per_minute": 2})).raise_for_status()
    try:
        for service in services:
            await strict.command("oncall", f"/deploy {service} tag=v5")
        ended = [await strict.rollout_state(service, "promoted", "rolled_back", "failed", "paused", timeout=90)
                 for service in services]
    finally:
        (await strict.http.patch(f"{strict.control}/limits/logging", json={"reads_per_minute": 60})).raise_for_status()
    assert strict.world.logging_quota.refused > refused, "the bot did meet Google's 429"
    for stored in ended:
        if stored.rollout.state.value == "paused":
            assert "Cloud Logging" in stored.rollout.reason or "no evidence" in stored.rollout.reason
            await strict.command("oncall", f"/rollback {stored.rollout.service}")
            back = await strict.rollout_state(stored.rollout.service, "rolled_back")
            assert strict.routed(stored.rollout.service) == {back.rollout.stable: 100}
        replies = thread_text(await strict.thread(stored))
        assert replies, "the thread says what happened"
