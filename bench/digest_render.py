#!/usr/bin/env python3
"""Health digest at 1,000 services: how long computing (`digest_of`) and rendering (`render_digest`) a digest
takes, against rendering the `/health all` report (`fleet_report`) of the same fleet in the same run, and whether
the digest is a message Slack accepts.

How: in this process, no sandbox. For each scenario a fleet of --services generated `ServiceHealth`s is built:
"typical" has 1% unreachable, 5% unhealthy (1 to 8 failing readiness checks with a 200-character detail each), 10%
degraded and the rest healthy; "all in trouble" has every service unreachable, unhealthy or degraded in the ratio
1:5:10. Each scenario also gets --rollouts rollouts that ended in the 24 h period (promoted, rolled back and failed
in turn, with reasons), 5 in progress, a `/rollback`, --incidents open incidents (every other one acknowledged)
and 100 incidents closed in the last 7 days. Runbook links are 140-character signed URLs, as the bot's own pages
give. Measured with `time.perf_counter`: `digest_of` alone, `render_digest` alone, and `fleet_report` with the
same fleet and links; one warm-up of each, then the median of --repeats runs, the three interleaved.

Checked, not timed: the digest is posted to a `sandbox.slack_workspace.Workspace` (the Slack emulator's own rules:
50 blocks, 3,000 characters a section, 150 a header, 40,000 of text), and all its text, counted as
`sandbox.blockkit_text.text_of` reads it, stays within `bot.render.digest.TEXT_BUDGET`, the digest's allowance for
Slack's undocumented `msg_blocks_too_long` (https://github.com/slackapi/bolt-js/issues/2867). Every message of the
/health report (the report and its thread replies) is posted the same way.

Goal at 1,000 services: a digest computed and rendered in under 20 ms, and no slower than the /health report's
rendering of the same fleet; a digest Slack accepts in every scenario.

    .venv/bin/python bench/digest_render.py            # 1,000 services; 51 runs each; about 1 s
    .venv/bin/python bench/digest_render.py --quick    # 5 runs each
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from common import add_repeats, fmt, median, ratio, repeats, run_main, table

from bot.domain.analysis import Thresholds
from bot.domain.digest import ClosedIncident, Digest, OpenIncident, digest_of
from bot.domain.health import Check, FleetHealth, ServiceHealth, Status
from bot.domain.rollout import Plan, Rollout, State, make_split
from bot.render.digest import TEXT_BUDGET, render_digest
from bot.render.health import Rendered, fleet_report
from sandbox.blockkit_text import text_of
from sandbox.slack_errors import SlackError
from sandbox.slack_workspace import BOT, Workspace

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=1)
CHANNEL = "C07DEPLOYS1"
PLAN = Plan(stages=(5, 50, 100), window_s=300, progress_deadline_s=1800, interval_s=10,
            thresholds=Thresholds(min_requests=20, min_success_rate=99, max_p99_ms=500, max_error_logs=0))
OUTCOMES = (State.PROMOTED, State.ROLLED_BACK, State.FAILED)


def runbook(service: str, check: str | None) -> str:
    return f"https://chatops.example.com/runbooks/{service}.md?sig={'A' * 43}#{check or 'overview'}"


def service(i: int, status: Status) -> ServiceHealth:
    name = f"svc-{i:04d}"
    if status is Status.UNREACHABLE:
        return ServiceHealth(name, status, "connection refused", ())
    if status is Status.HEALTHY:
        return ServiceHealth(name, status, "3 checks pass", (Check("bigquery", "pass", "readiness"),))
    if status is Status.DEGRADED:
        return ServiceHealth(name, status, "freshness failing", (Check("freshness", "warn", "deep", "6 h old"),))
    failing = tuple(Check(f"dependency_{k}", "fail", "readiness", "x" * 200) for k in range(1 + i % 8))
    return ServiceHealth(name, status, "dependency_0 failing", failing, f"{name}-00002-abc")


def fleet(n: int, *, all_in_trouble: bool) -> FleetHealth:
    """Per 100 services: 1 unreachable, 5 unhealthy, 10 degraded, the rest healthy (or, in trouble, the same
    1:5:10 over all of them)."""
    cycle = 16 if all_in_trouble else 100

    def status(i: int) -> Status:
        slot = i % cycle
        return (Status.UNREACHABLE if slot < 1 else Status.UNHEALTHY if slot < 6 else Status.DEGRADED if slot < 16
                else Status.HEALTHY)

    return FleetHealth(tuple(service(i, status(i)) for i in range(n)))


def rollouts(n: int) -> list[Rollout]:
    made = []
    for i in range(n):
        ended = NOW - timedelta(minutes=5 + i * 1440 // max(n, 1))
        made.append(Rollout(id=i + 1, service=f"svc-{i:04d}", image=f"us-docker.pkg.dev/p/r/app:v{i}", stable="r1",
                            candidate="r2", plan=PLAN, requested_by="U07ONCALL01",
                            created_at=ended - timedelta(minutes=30), next_check_at=ended,
                            traffic=make_split({"r1": 100}), state=OUTCOMES[i % 3], ended_at=ended,
                            reason="stage 5%: p99 812 ms > 500 ms over 412 requests"))
    for i in range(5):
        made.append(Rollout(id=n + i + 1, service=f"svc-{i:04d}", image="app:next", stable="r1", candidate="r3",
                            plan=PLAN, requested_by="U07LEAD0001", created_at=NOW - timedelta(minutes=3),
                            next_check_at=NOW, traffic=make_split({"r1": 95, "r3": 5}), state=State.ANALYSING))
    made.append(Rollout(id=n + 10, service="svc-0000", image="(rollback to r1)", stable="r1", candidate="r2",
                        plan=PLAN, requested_by="U07LEAD0001", created_at=NOW - timedelta(minutes=1),
                        next_check_at=NOW, traffic=make_split({"r1": 100}), state=State.ROLLED_BACK,
                        ended_at=NOW - timedelta(minutes=1), reason="rolled back by <@U07LEAD0001> to r1"))
    return made


def incidents(n: int) -> tuple[list[OpenIncident], list[ClosedIncident]]:
    open_ = [OpenIncident(f"svc-{i:04d}", ("liveness", "dependency_0"), NOW - timedelta(minutes=7 * i + 1),
                          acknowledged_by="U07ONCALL01" if i % 2 else None, owners=("S07SREONCAL",)) for i in range(n)]
    closed = [ClosedIncident(f"svc-{i:04d}", NOW - timedelta(hours=i + 1), NOW - timedelta(hours=i + 1, minutes=-4),
                             NOW - timedelta(hours=i, minutes=35)) for i in range(100)]
    return open_, closed


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def slack_refusal(message: Rendered) -> str:
    """'' when the Slack emulator takes the message; otherwise its error and details."""
    workspace = Workspace(bot_token=f"xoxb-{secrets.token_hex(12)}", channels={"deploys": CHANNEL})
    try:
        workspace.post(CHANNEL, BOT.id, message.text, message.blocks)
    except SlackError as refused:
        return f"{refused.error} {refused.details}"
    return ""


@dataclass
class Result:
    scenario: str
    problems: int
    compute_ms: list[float]
    render_ms: list[float]
    health_ms: list[float]
    blocks: int
    chars: int
    refusal: str
    health_messages: int
    health_refusals: int

    @property
    def digest_ms(self) -> float:
        return median([c + r for c, r in zip(self.compute_ms, self.render_ms, strict=True)])


def measure(scenario: str, health: FleetHealth, args: argparse.Namespace) -> Result:
    records = rollouts(args.rollouts)
    open_, closed = incidents(args.incidents)

    def compute() -> Digest:
        return digest_of(health, records, open_, closed, since=SINCE, now=NOW, due_at=NOW)

    def report() -> list[Rendered]:
        return fleet_report(health, project="p", region="us-west2", elapsed_s=1.0, now=NOW, runbook=runbook)

    digest = compute()
    compute_ms, render_ms, health_ms = [], [], []
    for run in range(1 + args.repeats):
        times = timed(compute), timed(lambda: render_digest(digest, runbook)), timed(report)
        if run:  # the first is the warm-up
            compute_ms.append(times[0])
            render_ms.append(times[1])
            health_ms.append(times[2])
    message = render_digest(digest, runbook)
    chars = len(text_of({"text": message.text, "blocks": message.blocks}))
    refusal = slack_refusal(message) or (f"{chars} characters > budget {TEXT_BUDGET}" if chars > TEXT_BUDGET else "")
    reports = report()
    return Result(scenario, len(digest.problems), compute_ms, render_ms, health_ms, len(message.blocks), chars,
                  refusal, len(reports), sum(1 for m in reports if slack_refusal(m)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=1000, help="size of the fleet")
    parser.add_argument("--rollouts", type=int, default=200, help="deploys that ended in the period")
    parser.add_argument("--incidents", type=int, default=50, help="open incidents")
    add_repeats(parser, 51)
    args = parser.parse_args()
    args.repeats = repeats(args)
    results = [measure(name, fleet(args.services, all_in_trouble=trouble), args)
               for name, trouble in (("typical", False), ("all in trouble", True))]

    print(f"health digest of {args.services} services, {args.rollouts} deploys, {args.incidents} open incidents; "
          f"median of {args.repeats} runs after 1 warm-up, in-process, time.perf_counter")
    rows = [[r.scenario, str(r.problems), fmt(median(r.compute_ms), 2), fmt(median(r.render_ms), 2),
             fmt(r.digest_ms, 2), fmt(median(r.health_ms), 2), fmt(ratio(r.digest_ms, median(r.health_ms)), 2) + "x",
             str(r.blocks), f"{r.chars:,}", "yes" if not r.refusal else "NO", f"{r.health_messages}"
             + (f" ({r.health_refusals} refused)" if r.health_refusals else "")]
            for r in results]
    print(table(["scenario", "problems", "digest_of ms", "render ms", "digest ms", "/health ms", "digest / health",
                 "blocks", "text chars", "Slack accepts", "/health messages"], rows))
    print(f"digest ms = digest_of + render_digest; /health ms = fleet_report (the report and its thread replies); "
          f"text chars: every text of the digest, notification included, against a budget of {TEXT_BUDGET:,}")
    failed = [r for r in results if r.refusal]
    for r in failed:
        print(f"  {r.scenario}: the digest would be refused: {r.refusal}")
    met = not failed and all(r.digest_ms < 20 and r.digest_ms <= median(r.health_ms) for r in results)
    print(f"goal (under 20 ms, no slower than /health, accepted by Slack): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
