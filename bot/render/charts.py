"""Charts as PNG bytes, from plain figures: a stage's evidence against its thresholds.

Drawn with matplotlib's Agg backend (no display, safe in a thread) through its object API rather than pyplot, so
no global figure state is shared between threads; callers run it with asyncio.to_thread, since a chart takes tens
of milliseconds of CPU.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure

from bot.render.chart_data import StageEvidence

_PASS, _FAIL, _LINE = "#2eb67d", "#e01e5a", "#1d1c1d"
_DPI = 100


def stage_chart(evidence: StageEvidence) -> bytes:
    return _png(stage_figure(evidence))


def stage_figure(evidence: StageEvidence) -> Figure:
    """Success rate and p99 of the candidate, by source, each beside the threshold it was judged against."""
    figure = Figure(figsize=(8, 3.6), dpi=_DPI, layout="constrained")
    rate_axes, p99_axes = figure.subplots(1, 2)
    names = [f"{m.source}\n{m.total} req, {m.errors} 5xx" for m in evidence.measured] or ["no requests"]
    rates = [m.success_rate for m in evidence.measured] or [None]
    shown_rates = [r if r is not None else 0.0 for r in rates]
    rate_axes.bar(names, shown_rates,
                  color=[_PASS if r is not None and r >= evidence.min_success_rate else _FAIL for r in rates])
    rate_axes.axhline(evidence.min_success_rate, color=_LINE, linestyle="--",
                      label=f"threshold ≥ {evidence.min_success_rate:g}%")
    low = min([evidence.min_success_rate, *shown_rates])
    rate_axes.set_ylim(max(0.0, low - 5.0), 100.5)
    rate_axes.set_title("success rate (%)")
    rate_axes.legend(loc="lower right", fontsize=8)
    p99s = [m.p99_ms for m in evidence.measured] or [None]
    shown_p99 = [p if p is not None else 0.0 for p in p99s]
    p99_axes.bar(names, shown_p99,
                 color=[_PASS if p is not None and p <= evidence.max_p99_ms else _FAIL for p in p99s])
    p99_axes.axhline(evidence.max_p99_ms, color=_LINE, linestyle="--",
                     label=f"threshold ≤ {evidence.max_p99_ms:g} ms")
    p99_axes.set_ylim(0, max([evidence.max_p99_ms, *shown_p99]) * 1.2)
    p99_axes.set_title("p99 latency (ms)")
    p99_axes.legend(loc="upper right", fontsize=8)
    for axes in (rate_axes, p99_axes):
        axes.tick_params(axis="x", labelsize=8)
    figure.suptitle(f"{evidence.service}: stage {evidence.percent}% {evidence.outcome}ed — candidate "
                    f"{evidence.candidate} (stable {evidence.stable})", fontsize=10)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
