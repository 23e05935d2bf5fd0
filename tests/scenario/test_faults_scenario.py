"""Google's errors met inside one bot (the harness), injected with the sandbox's `POST /faults`
(sandbox/faults.py): at every rollout state, and the Admin API down through a rollback. The bot as its own process,
killed and stopped, is in test_kills_scenario.py; its database restarted and Secret Manager failing at start in
test_restarts_scenario.py.

Google's transient errors are retried with backoff: UNAVAILABLE "is most likely a transient condition, which can
be corrected by retrying with a backoff" (google.rpc.Code, https://cloud.google.com/apis/design/errors#error_codes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.adapters.store import StoredRollout
from bot.config import Config
from sandbox.blockkit_text import text_of
from tests import figures
from tests.scenario.bot_processes import CONVERGED, HIT, INJECTED, STAGES, hits
from tests.scenario.harness import Scenario, fast, scenario

# -- Google's errors inside one bot (the harness) -----------------------------------------------------------


@pytest.fixture(scope="module")
async def fleet(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    async with scenario(fast(example_config, min_requests=5, stages=STAGES), tmp_path_factory.mktemp("faults"),
                        requests_per_s=60) as running:
        yield running


async def inject(fleet: Scenario, **fault: Any) -> int:
    response = await fleet.http.post(f"{fleet.control}/faults", json=fault)
    assert response.status_code == 201, response.text
    figures.count(INJECTED)
    fault_id: int = response.json()["id"]
    return fault_id


async def clear(fleet: Scenario) -> dict[str, int]:
    """Take every fault away; returns how many calls each method's faults hit."""
    cleared = (await fleet.http.delete(f"{fleet.control}/faults")).json()["cleared"]
    by_method: dict[str, int] = {}
    for fault in cleared:
        by_method[fault["method"]] = by_method.get(fault["method"], 0) + fault["hits"]
    figures.count(HIT, sum(by_method.values()))
    return by_method


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)


async def latest(fleet: Scenario, service: str) -> StoredRollout | None:
    found = await asyncio.to_thread(fleet.bot.runtime.store.rollouts, service=service, limit=1)
    return found[0] if found else None


async def reaches(fleet: Scenario, service: str, state: str, percent: int | None = None) -> StoredRollout:
    """Wait until the service's rollout is in `state` (with the candidate routed `percent`, when given)."""
    seen: list[StoredRollout] = []

    async def there() -> bool:
        stored = await latest(fleet, service)
        if stored is None or stored.rollout.state.value != state:
            return False
        seen[:] = [stored]
        return percent is None or fleet.routed(service).get(stored.rollout.candidate, 0) == percent

    await fleet.until(there, 30, f"{service} in {state}" + (f" at {percent}%" if percent is not None else ""))
    return seen[0]


async def admin_api_down_for_a_while(fleet: Scenario, service: str, writes: int | None = None) -> dict[str, int]:
    """UpdateService answers 503 (fault `writes`, when already set) until the bot has tried its next write twice;
    then GetService too, until the bot has found it cannot read the service (its reads retry for
    `google_timeout` first); then both are cleared. Returns the calls each method's faults hit."""
    writes = writes or await inject(fleet, method="UpdateService", status=503)
    await until(lambda: hits(fleet.world, writes) >= 2, 20, "the bot's write refused twice")
    await inject(fleet, method="GetService", status=503)

    async def unreadable() -> bool:
        stored = await latest(fleet, service)
        return stored is not None and stored.rollout.unreadable_since is not None

    await fleet.until(unreadable, 20, f"the bot finding it cannot read {service}")
    return await clear(fleet)


async def converges(fleet: Scenario, service: str, *ends: str) -> tuple[StoredRollout, list[str]]:
    """The rollout ends in one of `ends`, all traffic on one revision, no tag of chatops' left; returns it and the
    replies in its thread."""
    done = await fleet.rollout_state(service, *ends, timeout=60)
    routed = fleet.routed(service)
    assert list(routed.values()) == [100], f"traffic left split: {routed}"
    assert "canary" not in fleet.tags(service)
    figures.count(f"{CONVERGED}: {done.rollout.state.value}")
    return done, [text_of(m) for m in await fleet.thread(done)]


def said(replies: list[str], words: str) -> int:
    """How many replies say `words`."""
    return sum(words in reply for reply in replies)


async def thread_says(fleet: Scenario, service: str, words: str, timeout: float = 20) -> str:
    """The text of the service's rollout thread once it holds `words` (Slack takes a post a second)."""
    said: list[str] = []

    async def holds() -> bool:
        stored = await latest(fleet, service)
        said[:] = ["\n".join(text_of(m) for m in await fleet.thread(stored))] if stored else []
        return bool(said) and words in said[0]

    await fleet.until(holds, timeout, f"{words!r} in the thread of {service}'s rollout")
    return said[0]


def image(fleet: Scenario, service: str, tag: str) -> str:
    return f"{fleet.world.config.services[service].image}:{tag}"


async def test_cloud_run_errors_while_deploying_delay_the_candidate_and_the_rollout_still_promotes(
        fleet: Scenario) -> None:
    service = "prediction-coordinator"
    writes = await inject(fleet, method="UpdateService", status=503)  # /deploy reads the service, never writes
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    stored = await reaches(fleet, service, "deploying")
    faulted = await admin_api_down_for_a_while(fleet, service, writes)
    done, replies = await converges(fleet, service, "promoted")
    assert done.rollout.id == stored.rollout.id and fleet.routed(service) == {done.rollout.candidate: 100}
    assert said(replies, f"Cloud Run did not take the new revision `{done.rollout.candidate}` (503") == 1
    assert said(replies, f"cannot read {service}") == 1
    assert faulted["UpdateService"] >= 2 and faulted["GetService"] >= 1


async def test_cloud_run_errors_while_verifying_hold_the_first_stage_until_they_pass(fleet: Scenario) -> None:
    service = "mlb-prediction-worker"
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    await reaches(fleet, service, "verifying")
    faulted = await admin_api_down_for_a_while(fleet, service)
    done, replies = await converges(fleet, service, "promoted")
    assert fleet.routed(service) == {done.rollout.candidate: 100}
    assert said(replies, "Cloud Run did not take the traffic change") == 1 and said(replies, f"cannot read {service}")
    assert tuple(s.percent for s in done.rollout.results) == STAGES, "every stage judged once"
    assert faulted["UpdateService"] >= 2 and faulted["GetService"] >= 1


async def test_cloud_run_errors_while_analysing_hold_the_next_stage_until_they_pass(fleet: Scenario) -> None:
    service = "nba-admin-dashboard"
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    at_five = await reaches(fleet, service, "analysing", percent=5)
    faulted = await admin_api_down_for_a_while(fleet, service)
    done, replies = await converges(fleet, service, "promoted")
    assert done.rollout.id == at_five.rollout.id and fleet.routed(service) == {done.rollout.candidate: 100}
    assert said(replies, "Cloud Run did not take the traffic change") == 1 and said(replies, f"cannot read {service}")
    history = [split.get(done.rollout.candidate, 0) for split in fleet.world.run.traffic_history(service)]
    assert history == [0, 5, 100, 100], "each stage asked for once, none skipped or repeated"
    assert faulted["UpdateService"] >= 2


async def test_cloud_run_errors_while_promoting_still_end_all_on_the_candidate(fleet: Scenario) -> None:
    service = "nba-phase3-analytics-processors"
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    await reaches(fleet, service, "analysing", percent=100)
    faulted = await admin_api_down_for_a_while(fleet, service)
    done, replies = await converges(fleet, service, "promoted")
    assert fleet.routed(service) == {done.rollout.candidate: 100}
    assert said(replies, "Cloud Run did not take the traffic change") == 1
    assert said(replies, "serves 100% of traffic") == 1, "promoted once"
    assert faulted["UpdateService"] >= 2


async def test_a_rollback_with_the_admin_api_down_is_retried_said_and_lands_once_it_is_back(fleet: Scenario) -> None:
    """Rolling back is never given up (README: "a rollback is never given up and the thread says so")."""
    service = "nba-phase4-precompute-processors"
    stable = fleet.serving_revision(service)
    await fleet.declare(image(fleet, service, "v3-broken"), error_rate=0.6)
    await fleet.command("oncall", f"/deploy {service} tag=v3-broken")
    at_ten = await reaches(fleet, service, "analysing", percent=10)
    candidate = at_ten.rollout.candidate
    writes = await inject(fleet, method="UpdateService", status=503)
    await until(lambda: hits(fleet.world, writes) >= 4, 30, "the rollback tried four times")
    rolling = await latest(fleet, service)
    assert rolling is not None and rolling.rollout.state.value == "rolled_back" and rolling.rollout.pending
    assert fleet.routed(service) == {stable: 90, candidate: 10}, "nothing lands while Cloud Run refuses"
    thread = await thread_says(fleet, service, "still trying")
    assert f"Traffic is {stable} 90%, {candidate} 10% until it does" in thread
    faulted = await admin_api_down_for_a_while(fleet, service, writes)
    done, replies = await converges(fleet, service, "rolled_back")
    assert done.rollout.id == at_ten.rollout.id and fleet.routed(service) == {stable: 100}
    assert fleet.world.run.traffic_history(service).count({stable: 100}) == 1, "the rollback landed exactly once"
    assert said(replies, "stage 10% failed") == 1 and said(replies, f"cannot read {service}") == 1
    assert faulted["UpdateService"] >= 4 and faulted["GetService"] >= 1


