#!/usr/bin/env python3
"""Rollback time: how long a canary that starts failing keeps its share of traffic, against the analysis window
W, and how many Cloud Run Admin API writes putting all traffic back on the stable revision takes.

How: for each W (10 s by default, then 5 s and 20 s), `chatops sandbox --headless --window W` runs the example
fleet with its bot on the strict sandbox's defaults (Cloud Logging's 60 reads a minute and its ingestion delay,
Monitoring's 60 s samples and 180 s delay, Slack's rate limits), except Cloud Run's operation times: the
`cloud_run` limit group models 20 s to start a revision and 5 s to route a traffic change; this bench routes at
that modelled figure (--route-ms, 5,000 ms by default) and shortens only the start of a revision (--start-ms,
300 ms), which a rollback does not wait for.
`--window W` also sets the bot's engine (`sandbox/runner.py`: check interval min(1 s, W / 8), log lag 2.5 s);
the figures used are read back from the config the sandbox wrote for its bot. Each run takes one service of
the fleet whose first canary stage is 5% (a different one each run, cycling), raises its simulated traffic to
--requests-per-s (`PATCH /services/<svc>`), and sends
`/deploy <svc> tag=<fresh tag>` as the on-call user through the sandbox's Slack user side (`POST /commands`);
the image is undeclared, so healthy. `GET /state` is polled until the service's `traffic_statuses` (what Cloud
Run routes now) give a revision other than the stable one 5%: that is the candidate, in stage 1's window. At
once the candidate is made to fail every request (`PATCH /revisions/<candidate> {"error_rate": 1.0}`), and
`GET /state` is polled every --poll-ms until `traffic_statuses` route 100% to the stable revision again.
  * rollback time: from just before the PATCH is sent to the first poll that sees all traffic on the stable;
  * detect: from the same instant to the bot's first Admin API write after it (`admin_api.calls`, timed by the
    emulator), i.e. the analysis finding the fault; route: from that write to traffic being back; and, to see
    where detection time goes, the bot's reads of the service (each check reads it first): the first one after
    the fault, how many there were up to the rollback write, and the longest gap between two of them since the
    5% write (a gap much longer than the check interval is the reconciler's loop held up);
  * expected detection, computed from the bot's config: the bot judges the candidate from its request logs and
    error lines, read once they are `engine.log_lag` old (Logging shows an entry only after its ingestion
    delay), in reads it makes at most every 120 s / `engine.logging_reads_per_minute` while a window is open
    (twice its budget's pace), in a tick of the rollout's check interval (`plan_for`'s `interval_s`): so
    between the log lag and log lag + read period + check interval after the fault;
  * writes: `admin_api.writes` (Create/Update/DeleteService, DeleteRevision) counted between the fault and
    traffic being back;
  * told: from the fault to the thread reply in #deploys that says why it rolled back (the Slack emulator's
    receive ts); the reason's failing findings (error logs, success rate, a log check...) are the signals
    that caught it, read from that reply (`GET /messages?channel=deploys&user=oncall`).
Runs are one after another, each once the previous rollout has ended (its reason is posted), so no two
rollouts share the Admin API counters. A rollout shown by more than one top-level message in #deploys is
reported (its thread's replies are then split between them). The emulated Slack keeps Slack's pace (about
one post a second per channel, --slack-rate to change it), and the bot's posts are part of its ticks.

Goal: all traffic routed back within 1 W + Cloud Run's routing time of the fault, in 1 Admin API write.

    .venv/bin/python bench/rollback.py            # W = 10, 5, 20 s, 5 runs each; about 3 minutes
    .venv/bin/python bench/rollback.py --quick    # W = 10 s, 2 runs; about 30 s
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from common import (
    EXAMPLE_CONFIG,
    BenchError,
    Control,
    elapsed_note,
    fmt,
    median,
    remove_workdir,
    routed,
    run_main,
    start_sandbox,
    table,
    workdir,
)

from bot.config import load_config
from commands.deploy import plan_for
from sandbox.cloudrun_rules import CloudRunLimits

WRITES = ("CreateService", "UpdateService", "DeleteService", "DeleteRevision")
FIRST_STAGE = 5


@dataclass
class Run:
    window_s: float
    service: str
    candidate: str
    stage_wait_s: float  # /deploy sent -> candidate seen at 5%
    rollback_s: float  # fault -> all traffic seen back on the stable
    detect_s: float  # fault -> the bot's rollback write reached the Admin API
    route_s: float  # that write -> traffic seen back
    writes: int  # admin_api.writes between the fault and traffic back
    write_calls: list[str]  # those writes' methods, from admin_api.calls
    told_s: float  # fault -> the reason posted in the rollout's thread
    reason: str
    signals: list[str]
    messages: int  # top-level #deploys messages showing this rollout (should be 1)
    first_check_s: float  # fault -> the bot's first read of the service after it
    checks: int  # the bot's reads of the service from the fault to its rollback write
    max_gap_s: float  # longest gap between the bot's reads of the service, stage-1 write to rollback write


@dataclass(frozen=True)
class Expected:
    """The detection time the sandbox's bot config implies: logs are read once `log_lag_s` old, in reads at most
    every `read_period_s` while a window is open, in ticks of the rollout's check interval."""

    log_lag_s: float  # engine.log_lag
    read_period_s: float  # 120 s / engine.logging_reads_per_minute: the bot's early reads, twice its budget's pace
    interval_s: float  # the plan's check interval (plan_for)

    @property
    def worst_s(self) -> float:
        return self.log_lag_s + self.read_period_s + self.interval_s

    def __str__(self) -> str:
        return (f"{self.log_lag_s:g}-{self.worst_s:.2f} s: log lag {self.log_lag_s:g} + read period "
                f"{self.read_period_s:g} + check interval {self.interval_s:.2f}")


def canary_services(config: Path) -> list[str]:
    """The config's services that deploy as a canary whose first stage is 5%, and need nobody's approval (the bench
    measures the bot, not how fast a second person clicks)."""
    data: dict[str, Any] = yaml.safe_load(config.read_text())
    defaults = data.get("defaults", {}).get("canary", {})
    found = []
    for name, service in data.get("services", {}).items():
        canary = {**defaults, **(service.get("canary") or {})}
        stages = list(canary.get("stages") or [FIRST_STAGE])
        approval = bool(service.get("approval")) and service["approval"].get("required", True)
        if canary.get("strategy", "canary") == "canary" and stages[0] == FIRST_STAGE and not approval:
            found.append(name)
    if not found:
        raise BenchError(f"{config} has no service whose first canary stage is {FIRST_STAGE}%")
    return found


def rollout_parents(messages: list[dict[str, Any]], candidate: str) -> list[str]:
    """The ts of every top-level message that shows the rollout of `candidate` (it names the candidate in its
    attachment); a rollout should have exactly one."""
    return [str(m["ts"]) for m in messages if m.get("thread_ts") in (None, m.get("ts"))
            and candidate in json.dumps(m.get("attachments", []))]


def rollback_reply(messages: list[dict[str, Any]], parents: list[str]) -> dict[str, Any] | None:
    """The reply saying why the rollout rolled back, in the thread of one of its messages."""
    return next((m for m in messages if m.get("thread_ts") in parents and m.get("ts") not in parents
                 and " failed: " in str(m.get("text", ""))), None)


def signals_of(reason: str) -> list[str]:
    """`stage 5% failed: error logs: 3+ ERROR entries (> 0); success rate: ...` -> the failing findings."""
    _, _, findings = reason.partition(" failed: ")
    return [part.split(": ", 1)[0].strip() for part in findings.split("; ") if part.strip()]


def one_run(control: Control, service: str, window_s: float, args: argparse.Namespace) -> Run:
    poll_s = args.poll_ms / 1000
    control.patch(f"/services/{service}", {"requests_per_s": args.requests_per_s})
    before = control.state()
    shares = routed(before, service)
    stable = next((revision for revision, percent in shares.items() if percent == 100), None)
    if stable is None:
        raise BenchError(f"{service}'s traffic is split ({shares}); no stable revision to canary against")

    sent = time.time()
    control.command(f"/deploy {service} tag=bench-{secrets.token_hex(3)}")

    def at_first_stage(state: dict[str, Any]) -> bool:
        now = routed(state, service)
        return any(r != stable and p == FIRST_STAGE for r, p in now.items())

    seen_stage, state = control.until(at_first_stage, 60 + 10 * window_s, poll_s,
                                    f"{service}'s candidate getting {FIRST_STAGE}% of its traffic")
    candidate = next(r for r, p in routed(state, service).items() if r != stable and p == FIRST_STAGE)
    writes_before = int(state["admin_api"]["writes"])

    fault = time.time()
    control.patch(f"/revisions/{candidate}", {"error_rate": 1.0})
    back, state = control.until(lambda s: routed(s, service) == {stable: 100}, 3 * window_s + 30, poll_s,
                              f"{service}'s traffic back on {stable} after the fault")
    writes = int(state["admin_api"]["writes"]) - writes_before
    made = [c for c in state["admin_api"]["calls"] if c["method"] in WRITES and fault <= c["at"] <= back]
    first_write = made[0]["at"] if made else float("nan")
    calls = [c for c in state["admin_api"]["calls"] if c["target"] == service]
    stage_write = max((c["at"] for c in calls if c["method"] == "UpdateService" and c["at"] < fault), default=fault)
    reads = [c["at"] for c in calls if c["method"] == "GetService" and stage_write <= c["at"] <= first_write]
    after = [at for at in reads if at > fault]
    gaps = [b - a for a, b in zip([stage_write, *reads], [*reads, first_write], strict=True)]

    deadline = time.monotonic() + 30 + 2 * window_s
    while True:
        messages = control.messages()
        parents = rollout_parents(messages, candidate)
        reply = rollback_reply(messages, parents)
        if reply is not None:
            break
        if time.monotonic() > deadline:
            said = [str(m.get("text", ""))[:200] for m in messages if m.get("thread_ts") in parents]
            raise BenchError(f"no reason for {service}'s rollback in its #deploys thread within "
                             f"{30 + 2 * window_s:g} s; {len(parents)} rollout messages; their threads say: {said}")
        time.sleep(0.1)
    reason = str(reply.get("text", ""))
    return Run(window_s, service, candidate, seen_stage - sent, back - fault, first_write - fault,
               back - first_write, writes, [c["method"] for c in made], float(reply["ts"]) - fault, reason,
               signals_of(reason), len(parents), (after[0] if after else first_write) - fault, len(after),
               max(gaps, default=float("nan")))


def measure(window_s: float, args: argparse.Namespace, directory: Path) -> tuple[list[Run], Expected]:
    with elapsed_note(f"W={window_s:g} s: sandbox start"):
        sandbox = start_sandbox(EXAMPLE_CONFIG, directory, window=window_s, slack_rate=args.slack_rate,
                                start_ms=args.start_ms, route_ms=args.route_ms)
    services = canary_services(Path(sandbox["bot_config"]))
    config = load_config(Path(sandbox["bot_config"]))
    expected = Expected(config.engine.log_lag, 120 / config.engine.logging_reads_per_minute,
                        plan_for(config, services[0], "canary").interval_s)
    runs: list[Run] = []
    try:
        with httpx.Client(timeout=10) as client, elapsed_note(f"W={window_s:g} s: {args.repeats} runs"):
            control = Control(sandbox, client)
            for index in range(args.repeats):
                runs.append(one_run(control, services[index % len(services)], window_s, args))
    finally:
        sandbox.stop()
    return runs, expected


def spread(values: list[float], digits: int = 2) -> str:
    return f"{fmt(median(values), digits)} ({fmt(min(values), digits)}-{fmt(max(values), digits)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--windows", type=float, nargs="+", default=[10.0, 5.0, 20.0], metavar="W",
                        help="canary analysis windows, seconds")
    parser.add_argument("--repeats", type=int, default=5, help="rollbacks per window")
    parser.add_argument("--requests-per-s", type=float, default=100.0, help="simulated traffic of the deployed service")
    parser.add_argument("--poll-ms", type=float, default=20.0, help="how often GET /state is polled")
    parser.add_argument("--slack-rate", type=float, default=None,
                        help="emulated chat.postMessage per s per channel (default: the sandbox's, 1/s like Slack)")
    parser.add_argument("--start-ms", type=float, default=300.0,
                        help="time a new revision takes to start (Cloud Run's, as the sandbox models it: 20,000)")
    parser.add_argument("--route-ms", type=float, default=CloudRunLimits().route_ms,
                        help="time Cloud Run takes to route a traffic change (default: as the sandbox models it)")
    parser.add_argument("--quick", action="store_true", help="W = 10 s only, 2 runs")
    args = parser.parse_args()
    if args.quick:
        args.windows, args.repeats = [10.0], 2
    directory = workdir("rollback")
    try:
        results = [(w, *measure(w, args, directory)) for w in args.windows]
    finally:
        remove_workdir(directory)

    modelled = CloudRunLimits()
    print(f"rollback of a canary that fails every request from the start of its {FIRST_STAGE}% stage; "
          f"{args.requests_per_s:g} requests/s to the service; median (min-max) of {args.repeats} runs per W")
    print(f"strict sandbox defaults; Cloud Run routes in --route-ms {args.route_ms:,.0f} ms (the cloud_run limit "
          f"group models {modelled.route_ms:,.0f} ms), and starts a revision in --start-ms {args.start_ms:g} (it "
          f"models {modelled.revision_start_ms:,.0f} ms; a rollback does not wait for one)")
    rows = []
    for window_s, runs, expected in results:
        rollback = [r.rollback_s for r in runs]
        writes = [float(r.writes) for r in runs]
        rows.append([f"{window_s:g}", f"{expected.interval_s:.2f}", f"{expected.log_lag_s:g}",
                     f"{expected.log_lag_s:g}-{expected.worst_s:.2f}", spread([r.detect_s for r in runs]),
                     spread(rollback), spread([r / window_s for r in rollback]) + " W",
                     spread([r.first_check_s for r in runs]),
                     spread([float(r.checks) for r in runs], 0), spread([r.max_gap_s for r in runs]),
                     spread([r.route_s for r in runs], 3),
                     spread([r.told_s for r in runs]), f"{fmt(median(writes), 0)} ({min(r.writes for r in runs)}-"
                     f"{max(r.writes for r in runs)})", spread([r.stage_wait_s for r in runs], 1)])
    print(table(["W s", "check every s", "log lag s", "expected detect s", "detect s", "rollback s", "rollback / W",
                 "1st check s", "checks", "max gap s", "route s", "told s", "Admin API writes", "deploy -> 5% s"],
                rows))
    print("detect: fault -> the bot's rollback write; expected detect: the log lag (engine.log_lag, which the "
          "sandbox's config sets) to log lag + read period (120 s / engine.logging_reads_per_minute) + check interval; "
          "rollback: fault -> all traffic routed to the stable again; 1st check: fault -> the bot's first read of the "
          "service after it; checks: its reads of the service from the fault to the rollback write; max gap: longest "
          "time between two of its reads of the service from the 5% write to the rollback write; route: rollback "
          "write -> routed; told: fault -> the reason in the rollout's thread (times from the Admin API emulator's "
          "call log)")

    caught: Counter[str] = Counter(s for _, runs, _ in results for r in runs for s in r.signals)
    total = sum(len(runs) for _, runs, _ in results)
    print(f"signals that caught it (failing findings in the rollback reason, over {total} runs): "
          + ", ".join(f"{name} {count}/{total}" for name, count in caught.most_common()))
    seen: set[tuple[str, ...]] = set()
    for _, runs, _ in results:
        for r in runs:  # one example of each combination of signals
            if tuple(r.signals) not in seen:
                seen.add(tuple(r.signals))
                print(f"  {r.service} (W={r.window_s:g} s): {r.reason[:220]}")
    for r in (r for _, runs, _ in results for r in runs if r.messages != 1):
        print(f"  note: W={r.window_s:g} s {r.service}: the rollout has {r.messages} top-level messages in #deploys "
              "(expected 1); its thread replies are split between them")
    odd = [r for _, runs, _ in results for r in runs if r.write_calls != ["UpdateService"]]
    for r in odd:
        print(f"  note: W={r.window_s:g} s {r.service}: writes between fault and traffic back: {r.write_calls}")

    routing_s = args.route_ms / 1000
    for window_s, runs, expected in results:
        worst = max(r.rollback_s for r in runs)
        worst_detect = max(r.detect_s for r in runs)
        most = max(r.writes for r in runs)
        goal = window_s + routing_s
        print(f"W={window_s:g} s: detect {median([r.detect_s for r in runs]):.2f} s median, worst {worst_detect:.2f} s "
              f"(expected {expected}); rollback routed {median([r.rollback_s for r in runs]):.2f} s median, worst "
              f"{worst:.2f} s = {worst / window_s:.2f} W (goal <= 1 W + routing {routing_s:g} s = {goal:g} s: "
              f"{'met' if worst <= goal else 'NOT met'}); {most} Admin API write{'s' if most != 1 else ''} at most "
              f"(goal 1)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
