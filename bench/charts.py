#!/usr/bin/env python3
"""Charts in threads: how long drawing each chart takes (what the outbox sender runs in a thread before an upload)
and the memory it adds, against baselines measured in the same run.

How: in this process, no sandbox. Each chart is drawn from figures the size the bot gives it: a stage's evidence
(two sources), an incident's check history (--checks checks, each with a failing span, three marks), the digest's
week (7 days, 4 recovery times a day). Baselines: an empty figure of the same size saved as PNG (matplotlib's floor:
what any chart costs before drawing anything), and the incident's Markdown timeline of 60 lines (the text a person
would otherwise read). Time: `time.perf_counter`, one warm-up, then the median of --repeats runs, interleaved.
Memory: tracemalloc's peak of Python allocations while one chart is drawn, and the process's resident set
(VmRSS) before matplotlib is imported, after the import, and after every run.

Goal: a chart under 250 ms (the outbox's lease is 30 s; a stage window is minutes), and the resident set added by
charts, import included, under 80 MB.

    .venv/bin/python bench/charts.py            # 21 runs each; a few seconds
    .venv/bin/python bench/charts.py --quick    # 5 runs each
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import BenchError, add_repeats, fmt, median, ratio, repeats, run_main, table


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError("no VmRSS in /proc/self/status")


BEFORE_IMPORT = rss_mb()

import io  # noqa: E402  (the resident set is read before matplotlib comes in)

from matplotlib.figure import Figure  # noqa: E402

from bot.domain.incidents import Incident  # noqa: E402
from bot.domain.timeline import Said, build  # noqa: E402
from bot.render.chart_data import IncidentHistory, Measured, StageEvidence, Week, WeekDay  # noqa: E402
from bot.render.charts import incident_chart, stage_chart, week_chart  # noqa: E402
from bot.render.timeline import timeline_markdown  # noqa: E402

AFTER_IMPORT = rss_mb()
T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


def iso(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def empty_png() -> bytes:
    buffer = io.BytesIO()
    Figure(figsize=(8, 3.6), dpi=100).savefig(buffer, format="png")
    return buffer.getvalue()


def subjects(checks: int) -> dict[str, Callable[[], bytes]]:
    stage = StageEvidence("prediction-worker", "prediction-worker-00042-new", "prediction-worker-00041-old", 25,
                          "pass", 99.0, 800.0, 20,
                          (Measured("request logs", 4000, 3, 420.0), Measured("Cloud Monitoring", 3900, 2, 450.0)),
                          Measured("stable, Cloud Monitoring", 74000, 20, 390.0))
    history = IncidentHistory("prediction-worker", 7,
                              tuple((f"check_{i}", iso(i), iso(i + 10)) for i in range(checks)),
                              (("acknowledged", iso(3)), ("escalated", iso(6)), ("resolved", iso(checks + 10))))
    week = Week(tuple(WeekDay(f"2026-12-0{d}", 12, d % 3, (15.0, 40.0, 75.0, 120.0)) for d in range(1, 8)), 60.0)
    incident = Incident("prediction-worker", id=7, state="resolved", detected_at=T0, opened_at=T0,
                        acknowledged_by="U07ONCALL01", acknowledged_at=T0 + timedelta(minutes=3),
                        resolved_at=T0 + timedelta(minutes=60), announced=True)
    said = [Said(T0 + timedelta(minutes=i), f"`check_{i}` recovered", "C1", f"1.{i:06d}", first=i == 0)
            for i in range(60)]
    timeline = build(incident, said, (), T0 + timedelta(hours=2))
    links = {("C1", s.ts): f"https://nba-props.slack.com/archives/C1/p1{s.ts[2:]}" for s in said}
    return {"empty figure (baseline)": empty_png,
            "Markdown timeline (baseline)": lambda: timeline_markdown(timeline, links).encode(),
            "stage evidence": lambda: stage_chart(stage),
            f"incident history ({checks} checks)": lambda: incident_chart(history),
            "digest week": lambda: week_chart(week)}


def peak_kb(draw: Callable[[], bytes]) -> float:
    tracemalloc.start()
    try:
        draw()
        return tracemalloc.get_traced_memory()[1] / 1024
    finally:
        tracemalloc.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_repeats(parser, 21)
    parser.add_argument("--checks", type=int, default=8)
    args = parser.parse_args()
    args.repeats = repeats(args)
    drawn = subjects(args.checks)
    sizes = {name: len(draw()) for name, draw in drawn.items()}  # the warm-up
    times: dict[str, list[float]] = {name: [] for name in drawn}
    for _ in range(args.repeats):
        for name, draw in drawn.items():
            started = time.perf_counter()
            draw()
            times[name].append((time.perf_counter() - started) * 1000)
    after_runs = rss_mb()
    peaks = {name: peak_kb(draw) for name, draw in drawn.items()}
    floor, text = median(times["empty figure (baseline)"]), median(times["Markdown timeline (baseline)"])
    print(f"charts: median of {args.repeats} runs after 1 warm-up, in-process, time.perf_counter; "
          "peak: tracemalloc while one is drawn")
    rows = [[name, fmt(median(t), 1), fmt(ratio(median(t), floor), 2) + "x", fmt(ratio(median(t), text), 0) + "x",
             f"{sizes[name] / 1024:,.1f}", fmt(peaks[name], 0)] for name, t in times.items()]
    print(table(["drawn", "ms", "/ empty figure", "/ Markdown", "bytes (KB)", "peak KB"], rows))
    added = after_runs - BEFORE_IMPORT
    print(f"resident set: {BEFORE_IMPORT:.1f} MB before matplotlib, {AFTER_IMPORT:.1f} MB after importing it "
          f"(+{AFTER_IMPORT - BEFORE_IMPORT:.1f}), {after_runs:.1f} MB after every run (+{added:.1f} in all)")
    charts = [n for n in drawn if "baseline" not in n]
    met = all(median(times[n]) < 250 for n in charts) and added < 80
    print(f"goal (each chart under 250 ms, under 80 MB added): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
