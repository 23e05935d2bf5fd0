"""Charts as PNG bytes, from plain figures: a stage's evidence against its thresholds, an incident's check history,
the digest's week of deploys, failures and recovery times.

Drawn with matplotlib's Agg backend (no display, safe in a thread) through its object API rather than pyplot, so
no global figure state is shared between threads; callers run it with asyncio.to_thread, since a chart takes tens
of milliseconds of CPU.
"""

from __future__ import annotations

import io
from datetime import datetime

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure

from bot.render.chart_data import IncidentHistory, Measured, StageEvidence, Week

_PASS, _FAIL, _LINE, _STABLE = "#2eb67d", "#e01e5a", "#1d1c1d", "#9e9ea6"
_DPI = 100
_MARGINS = {"left": 0.08, "right": 0.98, "top": 0.84, "bottom": 0.2, "wspace": 0.25}
"""Fixed margins rather than a layout engine: constrained layout draws every chart twice, doubling its time."""


def stage_chart(evidence: StageEvidence) -> bytes:
    return _png(stage_figure(evidence))


def stage_figure(evidence: StageEvidence) -> Figure:
    """Success rate and p99 of the candidate, by source, each beside the threshold it was judged against, and the
    stable revision's over the same minutes in grey: what the candidate is held to, and what it would replace."""
    figure = Figure(figsize=(8, 3.6), dpi=_DPI)
    figure.subplots_adjust(**_MARGINS)
    rate_axes, p99_axes = figure.subplots(1, 2)
    shown = [*evidence.measured, *([evidence.baseline] if evidence.baseline else [])]
    names = [_label(m) for m in shown] or ["no requests"]
    stable = [m is evidence.baseline for m in shown] or [False]
    rates = [m.success_rate for m in shown] or [None]
    shown_rates = [r if r is not None else 0.0 for r in rates]
    rate_axes.bar(names, shown_rates, color=[_STABLE if was_stable else _PASS if r is not None and
                                             r >= evidence.min_success_rate else _FAIL
                                             for r, was_stable in zip(rates, stable, strict=True)])
    rate_axes.axhline(evidence.min_success_rate, color=_LINE, linestyle="--",
                      label=f"threshold ≥ {evidence.min_success_rate:g}%")
    low = min([evidence.min_success_rate, *shown_rates])
    rate_axes.set_ylim(max(0.0, low - 5.0), 100.5)
    rate_axes.set_title("success rate (%)")
    rate_axes.legend(loc="lower right", fontsize=8)
    p99s = [m.p99_ms for m in shown] or [None]
    shown_p99 = [p if p is not None else 0.0 for p in p99s]
    p99_axes.bar(names, shown_p99, color=[_STABLE if was_stable else _PASS if p is not None and
                                          p <= evidence.max_p99_ms else _FAIL
                                          for p, was_stable in zip(p99s, stable, strict=True)])
    p99_axes.axhline(evidence.max_p99_ms, color=_LINE, linestyle="--",
                     label=f"threshold ≤ {evidence.max_p99_ms:g} ms")
    p99_axes.set_ylim(0, max([evidence.max_p99_ms, *shown_p99]) * 1.2)
    p99_axes.set_title("p99 latency (ms)")
    p99_axes.legend(loc="upper right", fontsize=8)
    for axes in (rate_axes, p99_axes):
        axes.tick_params(axis="x", labelsize=7)
    figure.suptitle(f"{evidence.service}: stage {evidence.percent}% {evidence.outcome}ed — candidate "
                    f"{evidence.candidate} (stable {evidence.stable}{', in grey' if evidence.baseline else ''})",
                    fontsize=10)
    return figure


def _label(measured: Measured) -> str:
    """`stable, Cloud Monitoring` on two lines, then the counts."""
    source = measured.source.replace(", ", "\n")
    return f"{source}\n{measured.total} req, {measured.errors} 5xx"


def incident_chart(history: IncidentHistory) -> bytes:
    return _png(incident_figure(history))


def incident_figure(history: IncidentHistory) -> Figure:
    """One row per check, a bar for each span it failed, and a line at each marked moment."""
    rows = max(1, len({c for c, _, _ in history.spans}))
    figure = Figure(figsize=(8, 1.6 + 0.45 * rows), dpi=_DPI)
    figure.subplots_adjust(left=0.22, right=0.97, top=1 - 0.45 / (1.6 + 0.45 * rows),
                           bottom=0.55 / (1.6 + 0.45 * rows))
    axes = figure.subplots()
    checks = list(dict.fromkeys(c for c, _, _ in history.spans))
    origin = min([datetime.fromisoformat(a) for _, a, _ in history.spans]
                 + [datetime.fromisoformat(at) for _, at in history.marks], default=None)

    def minutes(iso: str) -> float:
        return (datetime.fromisoformat(iso) - origin).total_seconds() / 60 if origin is not None else 0.0

    for check, start, end in history.spans:
        begin, finish = minutes(start), minutes(end)
        axes.barh(checks.index(check), max(finish - begin, 1e-5), left=begin, height=0.5, color=_FAIL)
    axes.set_yticks(range(len(checks)), checks, fontsize=8)
    for label, at in history.marks:
        axes.axvline(minutes(at), color=_PASS if label == "resolved" else _LINE, linestyle=":",
                     label=label)
    if history.marks:
        axes.legend(loc="lower right", fontsize=8)
    axes.set_xlabel(f"minutes since {origin:%Y-%m-%d %H:%M:%S} UTC" if origin is not None else "minutes")
    axes.set_title(f"{history.service}: incident #{history.incident_id}, checks failing", fontsize=10)
    return figure


def week_chart(week: Week) -> bytes:
    return _png(week_figure(week))


def week_figure(week: Week) -> Figure:
    """Deploys and failed deploys a day as bars; each incident's recovery time as a point, beside the goal."""
    figure = Figure(figsize=(8, 3.6), dpi=_DPI)
    figure.subplots_adjust(**_MARGINS)
    deploys_axes, recovery_axes = figure.subplots(1, 2)
    days = [d.day[5:] for d in week.days]
    deploys_axes.bar(days, [d.deploys - d.failed for d in week.days], color=_PASS, label="deploys")
    deploys_axes.bar(days, [d.failed for d in week.days], bottom=[d.deploys - d.failed for d in week.days],
                     color=_FAIL, label="failed")
    deploys_axes.set_title("deploys a day")
    deploys_axes.legend(loc="upper left", fontsize=8)
    points = [(d.day[5:], m) for d in week.days for m in d.recoveries_min]
    recovery_axes.scatter([p[0] for p in points], [p[1] for p in points], color=_FAIL, zorder=3)
    recovery_axes.set_xticks(range(len(days)), days)
    recovery_axes.axhline(week.goal_min, color=_LINE, linestyle="--", label=f"goal {week.goal_min:g} min")
    recovery_axes.set_ylim(0, max([week.goal_min, *(p[1] for p in points)]) * 1.2)
    recovery_axes.set_title("time to recover (min)")
    recovery_axes.legend(loc="upper left", fontsize=8)
    for axes in (deploys_axes, recovery_axes):
        axes.tick_params(axis="x", labelsize=8)
    figure.suptitle("the week", fontsize=10)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
