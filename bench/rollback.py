#!/usr/bin/env python3
"""Rollback time: how long a canary that starts failing keeps its share of traffic, against the analysis window
W, and how many Cloud Run Admin API writes putting all traffic back on the stable revision takes.

How: for each W (10 s by default, then 5 s and 20 s), `chatops sandbox --headless --window W` runs the example
fleet with its bot. Each run takes one service of the fleet whose first canary stage is 5% (a different one
each run, cycling), raises its simulated traffic to --requests-per-s (`PATCH /services/<svc>`), and sends
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
  * writes: `admin_api.writes` (Create/Update/DeleteService, DeleteRevision) counted between the fault and
    traffic being back;
  * told: from the fault to the thread reply in #deploys that says why it rolled back (the Slack emulator's
    receive ts); the reason's failing findings (error logs, success rate, a log check...) are the signals
    that caught it, read from that reply (`GET /messages?channel=deploys&user=oncall`).
Runs are one after another, each once the previous rollout has ended (its reason is posted), so no two
rollouts share the Admin API counters. A rollout shown by more than one top-level message in #deploys is
reported (its thread's replies are then split between them). The emulated Slack keeps Slack's pace (about
one post a second per channel, --slack-rate to change it), and the bot's posts are part of its ticks.
The bot's analysis interval for a window W is what `/deploy` plans: min(10 s, max(engine interval, W / 6)),
with the sandbox's engine interval min(1 s, W / 8).

Goal: rollback within 1 W + 2 s of the fault, in 1 Admin API write.

    .venv/bin/python bench/rollback.py            # W = 10, 5, 20 s, 5 runs each; about 110 s
    .venv/bin/python bench/rollback.py --quick    # W = 10 s, 2 runs
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from common import (
    EXAMPLE_CONFIG,
    BenchError,
    Sandbox,
    elapsed_note,
    fmt,
    median,
    remove_workdir,
    run_main,
    start_sandbox,
    table,
    workdir,
)

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


def canary_services(config: Path) -> list[str]:
    """The config's services that deploy as a canary whose first stage is 5%."""
    data: dict[str, Any] = yaml.safe_load(config.read_text())
    defaults = data.get("defaults", {}).get("canary", {})
    found = []
    for name, service in data.get("services", {}).items():
        canary = {**defaults, **(service.get("canary") or {})}
        stages = list(canary.get("stages") or [FIRST_STAGE])
        if canary.get("strategy", "canary") == "canary" and stages[0] == FIRST_STAGE:
            found.append(name)
    if not found:
        raise BenchError(f"{config} has no service whose first canary stage is {FIRST_STAGE}%")
    return found


def routed(state: Mapping[str, Any], service: str) -> dict[str, int]:
    """revision -> percent that Cloud Run routes now (the service's trafficStatuses)."""
    shares: dict[str, int] = {}
    for status in state["services"][service]["traffic_statuses"]:
        if status.get("revision") and status.get("percent"):
            shares[status["revision"]] = shares.get(status["revision"], 0) + int(status["percent"])
    return shares


class Control:
    """The sandbox's control API and Slack user side, through one keep-alive client."""

    def __init__(self, sandbox: Sandbox, client: httpx.Client) -> None:
        self.control = sandbox["control_url"]
        self.user_side = sandbox["slack_user_url"]
        self.client = client

    def state(self) -> dict[str, Any]:
        response = self.client.get(f"{self.control}/state")
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    def until(self, found: Callable[[dict[str, Any]], bool], timeout: float, poll_s: float,
              what: str) -> tuple[float, dict[str, Any]]:
        """Poll /state until `found` accepts it; (time.time() just after that answer, the state)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            seen = time.time()
            if found(state):
                return seen, state
            if time.monotonic() > deadline:
                raise BenchError(f"not within {timeout:g} s: {what}")
            time.sleep(poll_s)

    def patch(self, path: str, body: dict[str, Any]) -> None:
        response = self.client.patch(f"{self.control}{path}", json=body)
        if response.status_code != 200:
            raise BenchError(f"PATCH {path} answered {response.status_code}: {response.text[:200]}")

    def command(self, text: str) -> None:
        command, _, rest = text.partition(" ")
        delivery = self.client.post(f"{self.user_side}/commands", json={
            "user": "oncall", "channel": "deploys", "command": command, "text": rest}).json()
        if delivery.get("status") != 200 or delivery.get("error"):
            raise BenchError(f"{text} was not acknowledged: {delivery}")

    def messages(self) -> list[dict[str, Any]]:
        response = self.client.get(f"{self.user_side}/messages", params={"channel": "deploys", "user": "oncall"})
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
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


def measure(window_s: float, args: argparse.Namespace, directory: Path) -> list[Run]:
    with elapsed_note(f"W={window_s:g} s: sandbox start"):
        sandbox = start_sandbox(EXAMPLE_CONFIG, directory, window=window_s, slack_rate=args.slack_rate)
    services = canary_services(Path(sandbox["bot_config"]))
    runs: list[Run] = []
    try:
        with httpx.Client(timeout=10) as client, elapsed_note(f"W={window_s:g} s: {args.repeats} runs"):
            control = Control(sandbox, client)
            for index in range(args.repeats):
                runs.append(one_run(control, services[index % len(services)], window_s, args))
    finally:
        sandbox.stop()
    return runs


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
    parser.add_argument("--quick", action="store_true", help="W = 10 s only, 2 runs")
    args = parser.parse_args()
    if args.quick:
        args.windows, args.repeats = [10.0], 2
    directory = workdir("rollback")
    try:
        results = [(w, measure(w, args, directory)) for w in args.windows]
    finally:
        remove_workdir(directory)

    print(f"rollback of a canary that fails every request from the start of its {FIRST_STAGE}% stage; "
          f"{args.requests_per_s:g} requests/s to the service; median (min-max) of {args.repeats} runs per W")
    rows = []
    for window_s, runs in results:
        rollback = [r.rollback_s for r in runs]
        writes = [float(r.writes) for r in runs]
        interval = min(10.0, max(min(1.0, window_s / 8), window_s / 6))
        rows.append([f"{window_s:g}", f"{interval:.2f}", spread(rollback),
                     spread([r / window_s for r in rollback]) + " W",
                     spread([r.detect_s for r in runs]), spread([r.first_check_s for r in runs]),
                     spread([float(r.checks) for r in runs], 0), spread([r.max_gap_s for r in runs]),
                     spread([r.route_s for r in runs], 3),
                     spread([r.told_s for r in runs]), f"{fmt(median(writes), 0)} ({min(r.writes for r in runs)}-"
                     f"{max(r.writes for r in runs)})", spread([r.stage_wait_s for r in runs], 1)])
    print(table(["W s", "check every s", "rollback s", "rollback / W", "detect s", "1st check s", "checks",
                 "max gap s", "route s", "told s", "Admin API writes", "deploy -> 5% s"], rows))
    print("rollback: fault -> all traffic routed to the stable again; detect: fault -> the bot's rollback write; "
          "1st check: fault -> the bot's first read of the service after it; checks: its reads of the service from "
          "the fault to the rollback write; max gap: longest time between two of its reads of the service from the "
          "5% write to the rollback write; route: rollback write -> routed; told: fault -> the reason in the "
          "rollout's thread (times from the Admin API emulator's call log)")

    caught: Counter[str] = Counter(s for _, runs in results for r in runs for s in r.signals)
    total = sum(len(runs) for _, runs in results)
    print(f"signals that caught it (failing findings in the rollback reason, over {total} runs): "
          + ", ".join(f"{name} {count}/{total}" for name, count in caught.most_common()))
    seen: set[tuple[str, ...]] = set()
    for _, runs in results:
        for r in runs:  # one example of each combination of signals
            if tuple(r.signals) not in seen:
                seen.add(tuple(r.signals))
                print(f"  {r.service} (W={r.window_s:g} s): {r.reason[:220]}")
    for r in (r for _, runs in results for r in runs if r.messages != 1):
        print(f"  note: W={r.window_s:g} s {r.service}: the rollout has {r.messages} top-level messages in #deploys "
              "(expected 1); its thread replies are split between them")
    odd = [r for _, runs in results for r in runs if r.write_calls != ["UpdateService"]]
    for r in odd:
        print(f"  note: W={r.window_s:g} s {r.service}: writes between fault and traffic back: {r.write_calls}")

    for window_s, runs in results:
        worst = max(r.rollback_s for r in runs)
        most = max(r.writes for r in runs)
        print(f"W={window_s:g} s: rollback {median([r.rollback_s for r in runs]):.2f} s median, worst "
              f"{worst:.2f} s = {worst / window_s:.2f} W (goal <= 1 W + 2 s = {window_s + 2:g} s); "
              f"{most} Admin API write{'s' if most != 1 else ''} at most (goal 1)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
