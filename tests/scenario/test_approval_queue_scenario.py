"""A second person's approval and the deploy queue, as people use them: signed /deploy, /deny and /queue in, button
clicks through Slack's user side; the request's message and thread in #deploys, rollouts and Cloud Run out.

prediction-worker needs one approval from the deployer role (the example config); mlb-prediction-worker is given
one from the S07SREONCAL user group that expires after a second. nba-grading-service deploys directly (one stage),
so a queue of three runs in seconds."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.adapters.deploy_store import DeployRequests
from bot.adapters.lock_store import LockStore
from bot.adapters.store import StoredRollout
from bot.config import Approval, Config
from bot.domain.deploy_queue import QueuedDeploy, RequestState
from bot.render.deploy_request import APPROVE, CANCEL, DENY
from sandbox.blockkit_text import text_of
from sandbox.runner import sandbox_config
from tests.conftest import EXAMPLE_CONFIG
from tests.scenario.harness import Scenario, fast, scenario
from tests.scenario.test_scale_out_scenario import Cluster, running_cluster

ONCALL, LEAD = "U07ONCALL01", "U07LEAD0001"


@pytest.fixture(scope="module")
async def fleet(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    config = fast(example_config, min_requests=5, approvals=True)
    mlb = config.services["mlb-prediction-worker"]
    services = {**config.services, "mlb-prediction-worker": mlb.model_copy(
        update={"approval": Approval(approvers="S07SREONCAL", min=1, expires=1.0)})}
    async with scenario(config.model_copy(update={"services": services}), tmp_path_factory.mktemp("approvals"),
                        requests_per_s=60) as running:
        yield running


def requests(fleet: Scenario) -> DeployRequests:
    return DeployRequests(fleet.bot.runtime.store)


async def request_of(fleet: Scenario, service: str, tag: str) -> QueuedDeploy:
    """The newest request of `service` for `tag`, once the bot has recorded it."""
    found: list[QueuedDeploy] = []

    async def recorded() -> bool:
        found[:] = [r for r in await asyncio.to_thread(requests(fleet).waiting, service) if r.tag == tag]
        return bool(found)

    await fleet.until(recorded, 10, f"a request for {service}:{tag}")
    return found[-1]


async def reaches(fleet: Scenario, request_id: int, state: RequestState, timeout: float = 15) -> QueuedDeploy:
    latest: list[QueuedDeploy | None] = [None]

    async def there() -> bool:
        latest[0] = await asyncio.to_thread(requests(fleet).get, request_id)
        return latest[0] is not None and latest[0].state is state

    await fleet.until(there, timeout, f"request #{request_id} {state.value}")
    assert latest[0] is not None
    return latest[0]


async def posted(fleet: Scenario, request_id: int, saying: str) -> dict[str, Any]:
    """The request's message in #deploys, once it says `saying`."""
    return await fleet.wait_for("oncall", lambda m: m["kind"] == "message" and f"Request #{request_id}." in text_of(m)
                                and saying in text_of(m))


async def click(fleet: Scenario, user: str, message: dict[str, Any], action_id: str) -> None:
    answer = (await fleet.http.post(f"{fleet.user_side}/actions", json={
        "user": user, "channel": "deploys", "message_ts": message["ts"], "action_id": action_id,
        "confirmed": True})).json()
    assert answer["status"] == 200, answer


async def told(fleet: Scenario, user: str, words: str, after: str) -> str:
    """What `user` was told after ts `after` that says `words` (an ephemeral answer or a thread reply)."""
    return text_of(await fleet.wait_for(user, lambda m: words in text_of(m), after=after))


async def thread_of(fleet: Scenario, message: dict[str, Any]) -> str:
    seen = await fleet.messages("oncall")
    return "\n".join(text_of(m) for m in seen if m.get("thread_ts") == message["ts"] and m["ts"] != message["ts"])


async def rollout_of(fleet: Scenario, request: QueuedDeploy) -> StoredRollout:
    assert request.rollout_id is not None
    stored = await asyncio.to_thread(fleet.bot.runtime.store.rollout, request.rollout_id)
    assert stored is not None
    return stored


async def test_an_approval_denied_one_expired_and_one_approved_by_a_second_person_while_the_requesters_is_refused(
        fleet: Scenario) -> None:
    service, store = "prediction-worker", fleet.bot.runtime.store
    before = await fleet.latest_ts("oncall")
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    asked = await told(fleet, "oncall", "needs a second person's approval", before)
    request = await request_of(fleet, service, "v3")
    assert f"request #{request.id}" in asked and request.state is RequestState.AWAITING
    message = await posted(fleet, request.id, "Approval needed")
    shown = text_of(message)
    assert f"<@{ONCALL}>" in shown and f"{service}:v3" in shown and "5%  →  50%  →  100%" in shown, (
        "what, who asked, and the plan as dry-run shows it")

    at = await fleet.latest_ts("oncall")
    await click(fleet, "oncall", message, APPROVE)
    assert "someone else must approve it" in await told(fleet, "oncall", "You asked for request", at)
    at = await fleet.latest_ts("viewer")
    await click(fleet, "viewer", message, APPROVE)
    assert "needs the *deployer* role" in await told(fleet, "viewer", "Approving", at)
    assert (await asyncio.to_thread(requests(fleet).get, request.id)) == request, "neither click counted"
    assert await asyncio.to_thread(store.rollouts, service=service) == []

    await click(fleet, "lead", message, APPROVE)
    started = await reaches(fleet, request.id, RequestState.STARTED)
    rollout = (await rollout_of(fleet, started)).rollout
    assert started.approvals == (LEAD,) and rollout.requested_by == ONCALL and rollout.image.endswith(":v3")
    await fleet.command("oncall", f"/rollback {service}")  # its stages would only fill #deploys; it has started
    redrawn = text_of(await posted(fleet, request.id, f"started as rollout #{rollout.id}"))
    assert f"*Approvals:* 1 of 1 (<@{LEAD}>)" in redrawn and not _has_button(
        await posted(fleet, request.id, "started"), APPROVE), "the started request's message keeps no buttons"
    audit = await asyncio.to_thread(store.audit, service=service, limit=20)
    assert {(e.user_id, e.action, e.outcome) for e in audit if e.command == "button:deploy_approve"} == {
        (ONCALL, "approve", "refused"), ("U07VIEWER01", "approve", "refused"), (LEAD, "approve", "ok")}

    # Denied, with the reason the requester reads: while v3 rolls out, so v4 would have waited in the queue.
    await fleet.command("oncall", f"/deploy {service} tag=v4")
    denied = await request_of(fleet, service, "v4")
    at = await fleet.latest_ts("lead")
    await fleet.command("lead", f"/deny {denied.id} not before tip-off")
    assert "its thread says so" in await told(fleet, "lead", f"Request #{denied.id} denied", at)
    ended = await reaches(fleet, denied.id, RequestState.DENIED)
    assert (ended.decided_by, ended.reason) == (LEAD, "not before tip-off")
    denial = await posted(fleet, denied.id, "denied")
    assert not _has_button(denial, APPROVE) and not _has_button(denial, DENY)
    await fleet.until(lambda: _says(fleet, denial, f"<@{ONCALL}>, request #{denied.id}"), 10, "the denial said")
    assert "was denied by <@U07LEAD0001>: not before tip-off" in await thread_of(fleet, denial)

    # Expired: a user group's members are approvers, and nobody approved within a second.
    other = "mlb-prediction-worker"
    await fleet.command("oncall", f"/deploy {other} tag=v3")
    lapsed = await request_of(fleet, other, "v3")
    expired = await reaches(fleet, lapsed.id, RequestState.EXPIRED, timeout=10)
    assert expired.reason == "not approved within 1 s" and expired.rollout_id is None
    late = await posted(fleet, lapsed.id, "expired")
    assert not _has_button(late, APPROVE), "an ended request's message keeps no buttons"
    await fleet.until(lambda: _says(fleet, late, f"<@{ONCALL}>, request #{lapsed.id} expired: not approved within 1 s"),
                      10, "the expiry in its thread")
    assert await asyncio.to_thread(store.rollouts, service=other) == []
    assert [r.rollout.image.rpartition(":")[2] for r in await asyncio.to_thread(store.rollouts, service=service)] == [
        "v3"], "one rollout: the approved request's"


async def _says(fleet: Scenario, message: dict[str, Any], words: str) -> bool:
    return words in await thread_of(fleet, message)


def _has_button(message: dict[str, Any], action_id: str) -> bool:
    return action_id in str(message.get("blocks"))


async def test_queued_deploys_run_in_order_and_the_queue_holds_after_a_rollback_until_resumed(
        fleet: Scenario) -> None:
    service, store = "nba-grading-service", fleet.bot.runtime.store
    await fleet.command("oncall", f"/deploy {service} tag=v5")
    await fleet.until(lambda: _open(fleet, service), 10, "the first rollout")
    first = await asyncio.to_thread(store.open_rollout, service)
    assert first is not None
    at = await fleet.latest_ts("lead")
    await fleet.command("lead", f"/deploy {service} tag=v6")
    queued = await told(fleet, "lead", "queued #2", at)
    assert f"queued #2 behind <@{ONCALL}>'s rollout of `v5`" in queued and "it starts when that one ends" in queued
    at = await fleet.latest_ts("oncall")
    await fleet.command("oncall", f"/deploy {service} tag=v7")
    await told(fleet, "oncall", "queued #3", at)
    await fleet.command("lead", f"/deploy {service} tag=v8")
    second, third, fourth = [await request_of(fleet, service, tag) for tag in ("v6", "v7", "v8")]
    at = await fleet.latest_ts("viewer")
    await fleet.command("viewer", f"/queue {service}")
    listing = await told(fleet, "viewer", "Deploy queue", at)
    assert re.search(rf"#1 rollout #{first.rollout.id} of `v5`.*#2 request #{second.id}.*#3 request #{third.id}"
                     rf".*#4 request #{fourth.id}", listing, re.S), listing

    at = await fleet.latest_ts("viewer")
    await fleet.command("viewer", f"/queue cancel {fourth.id}")
    assert f"or someone who may roll back {service} can cancel" in await told(fleet, "viewer", "Only", at)
    await click(fleet, "lead", await fleet.wait_for("lead", lambda m: f"Request #{fourth.id};" in text_of(m)), CANCEL)
    await reaches(fleet, fourth.id, RequestState.CANCELLED)

    assert (await asyncio.to_thread(requests(fleet).get, second.id)).state is RequestState.QUEUED  # type: ignore[union-attr]
    await fleet.until(lambda: _state(fleet, first.rollout.id, "analysing"), 10, "the first rollout analysed")
    await fleet.command("oncall", f"/promote {service}")  # no need to wait for its window
    started = await reaches(fleet, second.id, RequestState.STARTED)
    done = await asyncio.to_thread(store.rollout, first.rollout.id)
    assert done is not None and done.rollout.state.value == "promoted", "the second starts once the first promoted"
    assert (await asyncio.to_thread(requests(fleet).get, third.id)).state is RequestState.QUEUED  # type: ignore[union-attr]
    await fleet.command("oncall", f"/rollback {service}")
    back = await fleet.rollout_state(service, "rolled_back")
    assert back.rollout.id == started.rollout_id
    hold = f"The deploy queue of {service} holds: rollout #{back.rollout.id} (`v6`) rolled back. Waiting: #{third.id}"
    await fleet.until(lambda: _in_thread(fleet, back, hold), 10, "the hold said in the rollback's thread")
    assert f"`v7` by <@{ONCALL}>" in await _thread_text(fleet, back) and f"`/queue resume {service}`" in (
        await _thread_text(fleet, back))
    assert (await asyncio.to_thread(requests(fleet).get, third.id)).state is RequestState.QUEUED, (  # type: ignore[union-attr]
        "held: the dispatcher has started nothing since it said so")

    at = await fleet.latest_ts("lead")
    await fleet.command("lead", f"/deploy {service} tag=v9")
    behind = await told(fleet, "lead", "queued #2 behind", at)
    assert f"The queue holds since rollout #{back.rollout.id} (`v6`) rolled back: `/queue resume {service}`" in behind
    late = await request_of(fleet, service, "v9")
    await fleet.command("lead", f"/queue cancel {late.id}")
    await reaches(fleet, late.id, RequestState.CANCELLED)

    at = await fleet.latest_ts("viewer")
    await fleet.command("viewer", f"/queue resume {service}")
    assert "needs the *deployer* role" in await told(fleet, "viewer", "You can't", at)
    await fleet.command("lead", f"/queue resume {service}")
    resumed = await reaches(fleet, third.id, RequestState.STARTED)
    rollouts = await asyncio.to_thread(store.rollouts, service=service)
    assert [(r.rollout.id, r.rollout.image.rpartition(":")[2]) for r in reversed(rollouts)] == [
        (first.rollout.id, "v5"), (started.rollout_id, "v6"), (resumed.rollout_id, "v7")], "in order, v8 never"



async def test_a_queued_deploy_waits_while_someone_elses_lock_holds_the_service_and_starts_once_unlocked(
        fleet: Scenario) -> None:
    """The change gate is asked again when the queue's head would start: a lock taken while a deploy waited holds
    it (the dispatcher looks at least once a second), its requester is told so once, and it starts by itself once
    the lock is gone."""
    service, store = "nba-phase4-precompute-processors", fleet.bot.runtime.store
    await fleet.command("oncall", f"/deploy {service} tag=v5")
    await fleet.until(lambda: _open(fleet, service), 10, "the first rollout")
    first = await asyncio.to_thread(store.open_rollout, service)
    assert first is not None
    await fleet.command("oncall", f"/deploy {service} tag=v6")
    waiting = await request_of(fleet, service, "v6")
    await fleet.command("lead", f"/lock {service} for 1h backfill running")

    async def locked() -> bool:  # the row, not its announcement, which waits its turn behind the channel's posts
        return any(lock.service == service for lock in await LockStore(store).locks(datetime.now(UTC)))

    await fleet.until(locked, 10, "the lead's lock")
    await fleet.until(lambda: _state(fleet, first.rollout.id, "analysing"), 10, "the first rollout analysed")
    await fleet.command("oncall", f"/promote {service} full")
    await fleet.rollout_state(service, "promoted")
    await asyncio.sleep(2.5)
    assert (await asyncio.to_thread(requests(fleet).get, waiting.id)).state is RequestState.QUEUED, (  # type: ignore[union-attr]
        "someone else's lock holds the queue's head")
    assert (await asyncio.to_thread(store.open_rollout, service)) is None
    waits = f"request #{waiting.id} (`v6` to {service}) is next in the queue, and waits"
    said = text_of(await fleet.wait_for("oncall", lambda m: waits in text_of(m)))
    assert f"locked by <@{LEAD}> until" in said and "backfill running" in said
    assert f"`/queue cancel {waiting.id}` withdraws it" in said
    await asyncio.sleep(2)
    assert sum(waits in text_of(m) for m in await fleet.messages("oncall")) == 1, (
        "its requester is told once what holds it, though the dispatcher looked every second")
    at = await fleet.latest_ts("viewer")
    await fleet.command("viewer", f"/queue {service}")
    listing = await told(fleet, "viewer", "Deploy queue", at)
    assert f"#1 request #{waiting.id}: `v6` by <@{ONCALL}> · waits: :lock: {service} is locked by <@{LEAD}>" in listing
    await fleet.command("lead", f"/unlock {service}")
    started = await reaches(fleet, waiting.id, RequestState.STARTED)
    assert started.rollout_id is not None and started.rollout_id != first.rollout.id


async def _thread_text(fleet: Scenario, stored: StoredRollout) -> str:
    return "\n".join(text_of(m) for m in await fleet.thread(stored))


async def _in_thread(fleet: Scenario, stored: StoredRollout, words: str) -> bool:
    return words in await _thread_text(fleet, stored)


async def _state(fleet: Scenario, rollout_id: int, state: str) -> bool:
    stored = await asyncio.to_thread(fleet.bot.runtime.store.rollout, rollout_id)
    return stored is not None and stored.rollout.state.value == state


async def _open(fleet: Scenario, service: str) -> bool:
    return await asyncio.to_thread(fleet.bot.runtime.store.open_rollout, service) is not None


def one_stage(tmp: Path) -> Path:
    """The sandbox's bot config (prediction-worker needs one approval from the deployer role), deploying in one
    stage of a second, so two rollouts in a row take seconds."""
    path = sandbox_config(EXAMPLE_CONFIG, tmp, window_s=1.0)
    data = yaml.safe_load(path.read_text())
    data["defaults"]["canary"].update({"stages": [100]})
    data["engine"].update({"interval": 0.1, "lease": 4.0, "google_timeout": 1.6})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def as_user(cluster: Cluster, user: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = (await cluster.http.post(f"{cluster.world.url('slack_user')}{path}", json={
        "user": user, "channel": "deploys", **body})).json()
    return answer


def delivered(answer: dict[str, Any]) -> bool:
    assert answer.get("status") == 200, answer
    return True


async def test_with_three_instances_every_approval_and_queue_step_happens_once(tmp_path: Path) -> None:
    """Two requests for one service, each approved by a triple click, then a rollback and a triple /queue resume,
    all spread by Slack's user side over three instances: each approval counts once, each request gets one message
    and one rollout, the queue holds once (said once) and resumes once, and the waiting request starts once."""
    service = "prediction-worker"
    async with running_cluster(one_stage(tmp_path), tmp_path, 3, schema="chatops_approvals") as cluster:
        store = DeployRequests(cluster.store)
        assert all(delivered(answer) for answer in await asyncio.gather(*(
            as_user(cluster, user, "/commands", {"command": "/deploy", "text": f"{service} tag={tag}"})
            for user, tag in (("oncall", "v3"), ("lead", "v4")))))

        def cards(seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [m for m in seen if m["kind"] == "message" and "Request #" in text_of(m)]

        seen = await cluster.settled("deploys", lambda s: len(cards(s)) >= 2, "two approval requests", quiet=0.5)
        by_tag = {("v3" if "deploy of v3" in text_of(m) else "v4"): m for m in cards(seen)}
        assert len(cards(seen)) == 2 and set(by_tag) == {"v3", "v4"}, "one message per request"

        async def approve(tag: str, approver: str) -> None:
            """Three clicks at once; a click that Slack's client makes after the first one's redraw took the button
            away never reaches the bot (the user side answers `no button`), which is what a person would see."""
            answers = await asyncio.gather(*(as_user(cluster, approver, "/actions", {
                "message_ts": by_tag[tag]["ts"], "action_id": APPROVE}) for _ in range(3)))
            reached = [a for a in answers if "status" in a]
            assert reached and all(delivered(a) for a in reached), answers
            assert all("no button" in str(a.get("error")) for a in answers if "status" not in a), answers

        await approve("v3", "lead")
        first = await cluster.reach(service, lambda r: r.rollout.image.endswith(":v3"), "v3's rollout")
        await approve("v4", "oncall")
        await cluster.command(f"/rollback {service}")
        await cluster.reach(service, lambda r: r.state == "rolled_back" and not r.open, "v3 rolled back")
        hold = f"The deploy queue of {service} holds: rollout #{first.rollout.id}"
        await cluster.settled("deploys", lambda s: any(hold in str(m.get("text")) for m in s), "the hold said",
                              quiet=0.5)
        assert len(await cluster.rows(service)) == 1, "v4 waits while the queue holds"
        await asyncio.gather(*(cluster.command(f"/queue resume {service}") for _ in range(3)))
        second = await cluster.reach(service, lambda r: r.rollout.image.endswith(":v4"), "v4's rollout")

        requests = sorted([r for r in [await asyncio.to_thread(store.get, i) for i in (1, 2)] if r is not None],
                          key=lambda r: r.tag)
        assert [(r.tag, r.state.value, len(r.approvals), r.rollout_id) for r in requests] == [
            ("v3", "started", 1, first.rollout.id), ("v4", "started", 1, second.rollout.id)], (
            "each approval counted once, each request started once")
        assert [r.rollout.id for r in await cluster.rows(service)] == [second.rollout.id, first.rollout.id]
        audit = await asyncio.to_thread(cluster.store.audit, limit=100, service=service)
        assert len([e for e in audit if e.command == "button:deploy_approve"]) == 6, "every click audited"
        decided = sorted((e.action, e.detail) for e in audit if e.command == "deploy-queue")
        assert [action for action, _ in decided] == ["approve", "approve", "queue-hold", "queue-resume",
                                                      "queue-start", "queue-start"], decided

        def told_everything(seen: list[dict[str, Any]]) -> bool:
            return sum("started as rollout" in text_of(m) for m in cards(seen)) == 2

        seen = await cluster.settled("deploys", told_everything, "both requests' messages say they started",
                                     quiet=1.0)
        assert len(cards(seen)) == 2, "no request posted twice"
        assert sum(hold in str(m.get("text")) for m in seen) == 1, "the hold said once"
        assert sum(f"is deploying `{first.rollout.image}`" in str(m.get("text")) for m in seen) == 1
