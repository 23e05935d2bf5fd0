#!/usr/bin/env python3
"""App Home tab at 1,000 services: how long rendering the tab (`home_view`) and publishing it (`views.publish`
through the bot's own SlackGateway) take, against rendering the `/health all` report (`fleet_report`) of the same
fleet and posting it (`chat.postMessage`, same gateway) in the same run; and how many blocks and bytes the tab is.

How: in this process, with the Slack Web API emulator (sandbox/slack_api.py) on 127.0.0.1 and slack_sdk's real
AsyncWebClient. The fleets are bench/digest_render.py's: "typical" (1% unreachable, 5% unhealthy, 10% degraded) and
"all in trouble" (every service unreachable, unhealthy or degraded). Each tab also has --rollouts rollouts in
progress (each with its buttons), --incidents open incidents (every third acknowledged by the viewer), 20 locks and
20 of the viewer's deploys. The emulator's rate limits are lifted for the run (both calls would otherwise be paced
by Slack's tiers, which is not what is measured); its checks of what it is sent are not. One warm-up of each, then
the median of --repeats runs, the two interleaved.

Goal at 1,000 services: the tab within 100 blocks and accepted by the emulator in every scenario, and rendered and
published no slower than 2x the /health report's render and post.

    .venv/bin/python bench/home_tab.py            # 1,000 services; 31 runs each; a few seconds
    .venv/bin/python bench/home_tab.py --quick    # 5 runs each
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from common import BenchError, add_repeats, fmt, median, ratio, repeats, run_main, table
from digest_render import NOW, PLAN, fleet, runbook

from bot.adapters.slack import SlackGateway
from bot.domain.change_gate import Lock
from bot.domain.health import FleetHealth
from bot.domain.incidents import CheckState, Incident
from bot.domain.rollout import Rollout, State, make_split
from bot.render.health import fleet_report
from bot.render.home import MAX_VIEW_BLOCKS, HomeData, home_view
from sandbox.serving import Listener, start, stop
from sandbox.slack_api import slack_api_app
from sandbox.slack_limits import SlackLimits
from sandbox.slack_workspace import Workspace

VIEWER, OTHER = "U07ONCALL01", "U07LEAD0001"
CHANNEL = "C07DEPLOYS1"


def rollout(i: int, state: State = State.ANALYSING, by: str = OTHER) -> Rollout:
    name = f"svc-{i:04d}"
    return Rollout(id=i + 1, service=name, image=f"us-docker.pkg.dev/p/r/{name}:v{i}", stable=f"{name}-00001-abc",
                   candidate=f"{name}-v{i}", plan=PLAN, requested_by=by, created_at=NOW - timedelta(minutes=i),
                   next_check_at=NOW, traffic=make_split({f"{name}-00001-abc": 95, f"{name}-v{i}": 5}), state=state,
                   stage=0, stage_started_at=NOW)


def home_data(health: FleetHealth, args: argparse.Namespace) -> HomeData:
    incidents = [Incident(f"svc-{i:04d}", id=i + 1, state="open", checks=(CheckState("dependency_0", NOW, 3, "x"),),
                          opened_at=NOW - timedelta(minutes=i), acknowledged_by=VIEWER if i % 3 == 0 else "")
                 for i in range(args.incidents)]
    return HomeData(viewer=VIEWER, now=NOW, fleet=health, fleet_at=NOW,
                    rollouts=[rollout(i) for i in range(args.rollouts)], incidents=incidents,
                    locks=[Lock(f"svc-{i:04d}", OTHER, "database migration", NOW) for i in range(20)],
                    freeze_now=None, freeze_next=None,
                    my_deploys=[rollout(500 + i, State.PROMOTED, VIEWER) for i in range(20)],
                    may=["deploy", "promote", "rollback", "pause", "resume", "ack", "status"], runbook=runbook)


@dataclass
class Result:
    scenario: str
    home_ms: list[float]
    health_ms: list[float]
    blocks: int
    view_bytes: int
    accepted: bool


async def timed(action: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await action()
    return (time.perf_counter() - started) * 1000


async def measure(scenario: str, health: FleetHealth, slack: SlackGateway, args: argparse.Namespace) -> Result:
    data = home_data(health, args)

    async def home() -> None:
        await slack.publish_home(VIEWER, home_view(data))

    async def report() -> None:
        first = fleet_report(health, project="p", region="us-west2", elapsed_s=1.0, now=NOW, runbook=runbook)[0]
        await slack.post(CHANNEL, first.text, first.blocks)

    home_ms, health_ms = [], []
    for run in range(1 + args.repeats):
        times = await timed(home), await timed(report)
        if run:
            home_ms.append(times[0])
            health_ms.append(times[1])
    view = home_view(data)
    return Result(scenario, home_ms, health_ms, len(view["blocks"]), len(json.dumps(view).encode()),
                  accepted=len(view["blocks"]) <= MAX_VIEW_BLOCKS)


async def run(args: argparse.Namespace) -> list[Result]:
    token = f"xoxb-{secrets.token_hex(12)}"
    lifted = SlackLimits(tier4_per_min=10**7, post_per_channel_per_s=1e7, post_burst=10**7,
                         post_per_workspace_per_min=10**9)
    workspace = Workspace(bot_token=token, channels={"deploys": CHANNEL}, scopes=("chat:write",), limits=lifted)
    listener = await start(Listener("slack_api", slack_api_app(workspace)))
    slack = SlackGateway(token, base_url=f"{listener.url}/api/")
    try:
        return [await measure(name, fleet(args.services, all_in_trouble=trouble), slack, args)
                for name, trouble in (("typical", False), ("all in trouble", True))]
    finally:
        await slack.aclose()
        await stop(listener)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=1000, help="size of the fleet")
    parser.add_argument("--rollouts", type=int, default=40, help="rollouts in progress")
    parser.add_argument("--incidents", type=int, default=30, help="open incidents")
    add_repeats(parser, 31)
    args = parser.parse_args()
    args.repeats = repeats(args)
    try:
        results = asyncio.run(run(args))
    except Exception as exc:  # the emulator refused the tab or the report: a finding, not a figure
        raise BenchError(f"{type(exc).__name__}: {exc}") from exc
    print(f"App Home tab of {args.services} services, {args.rollouts} rollouts in progress, {args.incidents} open "
          f"incidents; median of {args.repeats} runs after 1 warm-up, in-process against the Slack emulator on "
          "127.0.0.1, time.perf_counter")
    rows = [[r.scenario, fmt(median(r.home_ms), 2), fmt(median(r.health_ms), 2),
             fmt(ratio(median(r.home_ms), median(r.health_ms)), 2) + "x", str(r.blocks), f"{r.view_bytes:,}",
             "yes" if r.accepted else "NO"] for r in results]
    print(table(["scenario", "home ms", "/health ms", "home / health", "blocks", "view bytes", "within 100"], rows))
    print("home ms = home_view + views.publish; /health ms = fleet_report + chat.postMessage of its message "
          "(the emulator validates both: an invalid one would have stopped the run)")
    met = all(r.accepted and ratio(median(r.home_ms), median(r.health_ms)) <= 2 for r in results)
    print(f"goal (within 100 blocks, no slower than 2x /health): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
