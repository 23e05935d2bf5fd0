#!/usr/bin/env python3
"""The outbox through a Slack that answers 429 to half of all posts: is every message posted once, none lost?

How: the storm of tests/scenario/outbox_storm.py, for `duration` seconds (the first argument, 600 by default)
instead of the scenario test's 10. Three instances of the bot (the real `build`, each served on its own port with
its own database connection, outbox sender and instance id) share one fresh schema of the PostgreSQL at
CHATOPS_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test), in one in-process sandbox
world whose Slack keeps its published rate limits and, through `POST /faults`, also answers 429 (Retry-After: 1)
to --limited of all chat.postMessage and chat.update calls, and, of the posts it takes, lets the first land and
lose its answer (the connection drops) and then --lost of them. Meanwhile two services are deployed again as soon
as their last rollout ends (two canary stages, 2 s windows) and two others are broken and mended every 8 s, so
incidents open and resolve. Then the storm stops, and the outbox is let drain (every rollout ended, nothing unsent
for 3 s, or --drain-timeout).

Counted afterwards, against the outbox table: every post and reply row should have exactly one message in Slack
carrying its row id (message metadata), found in every channel and thread of the sandbox's workspace; every row
marked sent; every thread's first message showing what was last drawn for it. The 429s are the fault's (Slack's
own rate limits answer more, and are waited out the same way).

Goal: no message posted twice, none lost, every row sent.

    .venv/bin/python bench/outbox_429.py                   # ten minutes of storm
    .venv/bin/python bench/outbox_429.py 120               # two
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from common import BenchError, remove_workdir, run_main

from tests.scenario.outbox_storm import Figures, storm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("duration", nargs="?", type=float, default=600.0, help="seconds of storm (default 600)")
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--limited", type=float, default=0.5, help="share of posts and redraws answered 429")
    parser.add_argument("--lost", type=float, default=0.05, help="share of landed posts whose answer is lost")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    args = parser.parse_args()
    duration = args.duration
    if duration <= 0 or args.instances < 1 or not 0 < args.limited < 1 or not 0 <= args.lost < 1:
        raise BenchError("duration > 0, instances >= 1, 0 < limited < 1, 0 <= lost < 1")
    directory = Path(tempfile.mkdtemp(prefix="chatops-outbox-429-"))
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"  [{time.monotonic() - started:5.0f} s] {line}", file=sys.stderr, flush=True)

    try:
        figures: Figures = asyncio.run(storm(directory, duration_s=duration, instances=args.instances,
                                             limited=args.limited, lost=args.lost, lost_first=1,
                                             drain_timeout_s=args.drain_timeout, say=say))
    finally:
        remove_workdir(directory)
    print(f"outbox storm: {args.instances} instances on one PostgreSQL, Slack answering 429 to {args.limited:.0%} "
          f"of posts and redraws and losing the answer to {args.lost:.0%} of the posts it took, "
          f"for {duration:g} s of rollouts and incidents")
    print("\n".join(figures.lines()))
    met = figures.duplicates == 0 and figures.lost == 0 and figures.unsent == 0 and figures.stale == 0
    print(f"goal (no message twice, none lost, every row sent): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(run_main(main))
