"""The bot as its own process killed (SIGKILL) at every rollout state and while rolling back, and stopped
(SIGTERM) mid-write: the next instance takes over after the lease, or at once when it was released, and every
write and every message is made once."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from tests import figures
from tests.scenario.bot_processes import CONVERGED, STAGES, candidate_history, hits, processes


async def test_a_bot_killed_at_every_rollout_state_is_taken_over_after_its_lease_and_finishes_once(
        tmp_path: Path) -> None:
    """Killed in deploying and promoting while its write hangs, in verifying and at 5% between writes. The thread
    says everything once: what an instance decided is in the outbox with the save that recorded it, so what a
    killed one had not posted yet is posted by the next, and nothing twice."""
    service = "prediction-coordinator"
    async with processes(tmp_path, lease_s=4.0) as p:
        writes = p.world.run.counts["UpdateService"]
        hang = await p.fault(method="UpdateService", hang=True)  # the new revision's write never answers
        await p.command(f"/deploy {service} tag=v3")
        await p.reach(service, lambda r: r.state == "deploying" and hits(p.world, hang) >= 1, "the write in flight")
        killed = [await p.kill_and_replace(service)]
        await p.reach(service, lambda r: r.state == "verifying", "verifying")
        killed.append(await p.kill_and_replace(service))
        at_five = await p.reach(service, lambda r: r.state == "analysing" and p.share(service, r.rollout.candidate)
                                == 5, "analysing at 5%")
        killed.append(await p.kill_and_replace(service))
        candidate = at_five.rollout.candidate
        await p.reach(service, lambda r: r.state == "analysing" and p.share(service, candidate) == 100, "at 100%")
        hang = await p.fault(method="UpdateService", hang=True)  # the promotion never answers
        await p.reach(service, lambda r: r.state == "promoted" and hits(p.world, hang) >= 1, "the promotion in flight")
        killed.append(await p.kill_and_replace(service))
        done = await p.reach(service, lambda r: not r.open, "the rollout finished")
        figures.count(f"{CONVERGED}: {done.state}")
        assert killed == ["deploying", "verifying", "analysing", "promoted"]
        assert done.state == "promoted" and p.world.run.routed_share(service) == {candidate: 100}
        assert not any(s.get("tag") for s in p.world.run.services[service].traffic_statuses)
        assert candidate_history(p, service, candidate) == [0, 5, 100, 100], "each write made once"
        assert p.world.run.counts["UpdateService"] - writes == 4, "new revision, 2 stages, promotion: no more"
        replies = await p.reported("promoted")  # the instance that finished redraws the rollout's message
        for stage in STAGES:
            assert sum(r.startswith(f"stage {stage}% passed") for r in replies) == 1, f"stage {stage}%: {replies}"
        assert sum("serves 100% of traffic" in r for r in replies) == 1, replies
        assert sum("is deploying" in r for r in replies) == 1, replies
        assert all(0 <= late < 10.0 for late in p.takeovers), f"taken over this long after expiry: {p.takeovers}"


async def test_a_bot_killed_while_rolling_back_is_taken_over_after_its_lease_and_the_rollback_lands_once(
        tmp_path: Path) -> None:
    service = "mlb-prediction-worker"
    async with processes(tmp_path, lease_s=4.0) as p:
        stable = p.world.run.services[service].traffic_statuses[0]["revision"]
        await p.http.post(f"{p.world.url('control')}/images", json={
            "image": f"{p.world.config.services[service].image}:v3-broken", "error_rate": 0.6})
        await p.command(f"/deploy {service} tag=v3-broken")
        at_five = await p.reach(service, lambda r: r.state == "analysing" and p.share(service, r.rollout.candidate)
                                == 5, "analysing at 5%")
        hang = await p.fault(method="UpdateService", hang=True)  # the rollback never answers
        await p.reach(service, lambda r: r.state == "rolled_back" and hits(p.world, hang) >= 1,
                      "the rollback in flight")
        assert p.world.run.routed_share(service) == {stable: 95, at_five.rollout.candidate: 5}
        assert await p.kill_and_replace(service) == "rolled_back"
        done = await p.reach(service, lambda r: not r.open, "the rollback landed")
        figures.count(f"{CONVERGED}: {done.state}")
        assert done.state == "rolled_back" and p.world.run.routed_share(service) == {stable: 100}
        assert p.world.run.traffic_history(service).count({stable: 100}) == 1, "the rollback made once"
        replies = await p.reported("rolled back")
        assert sum(r.startswith("stage 5% failed") for r in replies) == 1, replies


async def test_sigterm_releases_the_lease_so_the_next_instance_takes_over_at_once(tmp_path: Path) -> None:
    """Cloud Run sends SIGTERM and "your application will have 10 seconds to exit. If the container does not exit
    by then, a SIGKILL signal ... will be sent" (https://cloud.google.com/blog/topics/developers-practitioners/
    graceful-shutdowns-cloud-run-deep-dive; https://cloud.google.com/run/docs/container-contract#lifecycle).
    SIGTERM arrives while a stage's write is in flight (answered 1.5 s late): the write is finished, the lease
    released, and the next instance carries on at once instead of waiting out the lease."""
    service = "nba-admin-dashboard"
    async with processes(tmp_path, lease_s=10.0) as p:
        await p.command(f"/deploy {service} tag=v3")
        at_five = await p.reach(service, lambda r: r.state == "analysing" and p.share(service, r.rollout.candidate)
                                == 5, "analysing at 5%")
        candidate = at_five.rollout.candidate
        slow = await p.fault(method="UpdateService", latency_ms=1500, count=1)
        await p.reach(service, lambda r: hits(p.world, slow) == 1, "the 100% write in flight")
        held = await p.row(service)
        assert held is not None and held.lease_owner == p.owner and held.lease_expires_at is not None
        logged = p.log.stat().st_size
        p.bot.process.send_signal(signal.SIGTERM)
        figures.count("bot instances stopped (SIGTERM) mid-write, their work finished and handed over")
        signalled = time.monotonic()
        # uvicorn shuts down gracefully, then raises the signal again, so the exit status is SIGTERM's
        assert await asyncio.to_thread(p.bot.process.wait, 10) in (0, -signal.SIGTERM)
        exited = time.monotonic() - signalled
        with p.log.open() as log:
            log.seek(logged)
            assert "Application shutdown complete." in log.read(), "it shut down, it was not cut off"
        left = await p.row(service)
        assert left is not None and left.lease_owner is None, "the lease was released"
        assert left.rollout.pending is None, "the write in flight was finished"
        deadline = time.monotonic() + 5
        while p.share(service, candidate) != 100:  # Cloud Run routes the finished write on its own time
            assert time.monotonic() < deadline, f"the finished write is not routed: {p.share(service, candidate)}%"
            await asyncio.sleep(0.1)
        await p.replace_bot()
        await p.reach(service, lambda r: r.lease_owner == p.owner or not r.open, "the new instance's claim")
        assert time.time() < held.lease_expires_at.timestamp(), "taken over before the old lease would have run out"
        done = await p.reach(service, lambda r: not r.open, "the rollout finished")
        figures.count(f"{CONVERGED}: {done.state}")
        assert done.state == "promoted" and p.world.run.routed_share(service) == {candidate: 100}
        assert candidate_history(p, service, candidate) == [0, 5, 100, 100], "each write made once"
        replies = await p.reported("promoted")
        for stage in STAGES:
            assert sum(r.startswith(f"stage {stage}% passed") for r in replies) == 1, "said once, none lost"
        assert exited < 10


