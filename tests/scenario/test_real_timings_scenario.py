"""Canaries and rollbacks on Cloud Run's own timings: a traffic change takes 5 s to route and a revision 10 s to
start (sandbox/cloudrun_rules.py CloudRunLimits), not the 20 ms the other scenarios use; the plans' windows are
shortened, the Cloud Run timings are not.

A rollback asked while chatops' own stage write is still routing ends with all traffic on the stable revision and
stays there, through a 503 that comes after routing ended and a write that times out yet lands; a promote asked a
moment after it is refused; and no write of chatops' is ever reported as a person's change. The whole fleet on
these timings is in test_real_timings_fleet_scenario.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.adapters.store import StoredRollout
from bot.config import Config
from sandbox.blockkit_text import text_of
from tests import figures
from tests.scenario.harness import Scenario, fast, scenario

ROUTE_MS, START_MS = 5_000, 10_000
"""Cloud Run's timings as the sandbox models them by default (sandbox/cloudrun_rules.py, CloudRunLimits)."""

HELD_S = 3.0
"""How long the stable revision must keep all traffic after the rollback routes: longer than any retry's backoff."""


@pytest.fixture(scope="module")
async def slow(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    config = fast(example_config, min_requests=5, stages=(5, 50, 100), progress_deadline=90.0)
    async with scenario(config, tmp_path_factory.mktemp("real-timings"), requests_per_s=60,
                        start_ms=START_MS, route_ms=ROUTE_MS) as running:
        yield running


async def latest(fleet: Scenario, service: str) -> StoredRollout | None:
    found = await asyncio.to_thread(fleet.bot.runtime.store.rollouts, service=service, limit=1)
    return found[0] if found else None


async def routing_the_half_stage(fleet: Scenario, service: str) -> StoredRollout:
    """Deploy, and wait until chatops' own 50% write was accepted and Cloud Run is still routing it."""
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    seen: list[StoredRollout] = []

    async def routing() -> bool:
        stored = await latest(fleet, service)
        if stored is None:
            return False
        seen[:] = [stored]
        pending = stored.rollout.pending
        return (seen[0].rollout.stage == 1 and pending is not None and pending.generation > 0
                and fleet.routed(service).get(seen[0].rollout.candidate, 0) == 5)

    await fleet.until(routing, 90, f"{service}'s 50% write accepted and still routing")
    return seen[0]


async def rolled_back_and_held(fleet: Scenario, service: str, stable: str) -> list[str]:
    """The rollout ends rolled back with all traffic on `stable`, which keeps it; returns the thread's replies."""
    done = await fleet.rollout_state(service, "rolled_back", timeout=60)
    assert fleet.routed(service) == {stable: 100}, fleet.routed(service)
    await asyncio.sleep(HELD_S)
    assert fleet.routed(service) == {stable: 100}, "held: nothing routed the candidate again"
    assert "canary" not in fleet.tags(service)
    replies = [text_of(m) for m in await fleet.thread(done)]
    assert not [r for r in replies if "outside chatops" in r], "chatops' own write taken for a person's"
    figures.count("rollbacks on Cloud Run's routing time (5 s), ended on the stable revision and held")
    return replies


async def test_a_rollback_while_the_stage_routes_ends_on_the_stable_revision(slow: Scenario) -> None:
    service = "nba-admin-dashboard"
    routing = await routing_the_half_stage(slow, service)
    await slow.command("oncall", f"/rollback {service}")
    await rolled_back_and_held(slow, service, routing.rollout.stable)


async def test_a_rollback_answered_503_after_routing_ended_is_made_again(slow: Scenario) -> None:
    """The rollback's write is answered 503 six seconds late (past the client's timeout, and past the end of the
    stage's routing, which moves the etag): the next look sees chatops' own 50% routed and makes the rollback
    again, instead of taking the 50% for a change by hand."""
    service = "prediction-coordinator"
    routing = await routing_the_half_stage(slow, service)
    fault = await slow.http.post(f"{slow.control}/faults", json={"method": "UpdateService", "status": 503,
                                                                 "latency_ms": 6000, "count": 1})
    assert fault.status_code == 201
    await slow.command("oncall", f"/rollback {service}")
    await rolled_back_and_held(slow, service, routing.rollout.stable)
    await slow.http.delete(f"{slow.control}/faults")


async def test_a_rollback_whose_write_times_out_and_lands_late_is_not_taken_for_a_person(slow: Scenario) -> None:
    """No status: the call reaches Cloud Run three seconds late, after the bot's client gave up (google_timeout
    2 s). Whichever of the two writes lands, the rollout ends rolled back and held."""
    service = "mlb-prediction-worker"
    routing = await routing_the_half_stage(slow, service)
    fault = await slow.http.post(f"{slow.control}/faults", json={"method": "UpdateService", "latency_ms": 3000,
                                                                 "count": 1})
    assert fault.status_code == 201
    await slow.command("oncall", f"/rollback {service}")
    await rolled_back_and_held(slow, service, routing.rollout.stable)
    await slow.http.delete(f"{slow.control}/faults")


async def test_a_promote_a_moment_after_a_rollback_is_refused_and_traffic_ends_stable(slow: Scenario) -> None:
    service = "nba-phase3-analytics-processors"
    routing = await routing_the_half_stage(slow, service)
    before = await slow.latest_ts("lead")
    await slow.command("oncall", f"/rollback {service}")
    await asyncio.sleep(0.3)
    await slow.command("lead", f"/promote {service}")
    replies = await rolled_back_and_held(slow, service, routing.rollout.stable)
    told = await slow.wait_for("lead", lambda m: "can't promote" in text_of(m) or ("promote" in text_of(m)
                               and "was not done" in text_of(m)), after=before)
    assert "rollback" in text_of(told) or "rolling back" in text_of(told), "the lead is told a rollback came first"
    assert not [r for r in replies if "promoted by" in r]
