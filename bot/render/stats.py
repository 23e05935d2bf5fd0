"""DORA's five figures as Slack messages: `/stats` (the fleet or one service) and the digest's line.

Every figure that has no data says so in words ("no deploys", "no failed deploys", "unknown"), never as 0 or 0 %:
a quiet week is not a perfect one. Per-service lines are capped so a fleet of any size fits one message (Slack: 50
blocks, 3,000 characters a section, https://docs.slack.dev/reference/block-kit/blocks).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from bot.domain.dora import Figures
from bot.render.blocks import Block, chunk_lines, clip, context, header, section
from bot.render.health import Rendered
from bot.render.mrkdwn import escape, spoken

DEFINITIONS = "https://dora.dev/guides/dora-metrics-four-keys/"
TOP_SERVICES = 25


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _period(figures: Figures) -> str:
    return spoken(figures.now - figures.since)


def _percent(share: float) -> str:
    return f"{share:.0%}"


def frequency(figures: Figures) -> str:
    if figures.per_day is None:
        return f"no deploys in {_period(figures)}"
    return f"{_plural(figures.deploys, 'deploy')} in {_period(figures)} · {figures.per_day:.1f} a day"


def lead_time(figures: Figures, unknown_why: str = "") -> str:
    if figures.promoted == 0:
        return "no promotions" if figures.deploys else "no deploys"
    why = f": {unknown_why}" if unknown_why else ""
    unknown = f"; {figures.lead_unknown} unknown{why}" if figures.lead_unknown else ""
    if figures.lead_time is None:
        return f"unknown for all {_plural(figures.promoted, 'promotion')}{why}"
    return (f"median {spoken(figures.lead_time)}, image upload to promotion "
            f"({len(figures.lead_times)} of {_plural(figures.promoted, 'promotion')}{unknown})")


def failure_rate(figures: Figures) -> str:
    rate = figures.change_failure_rate
    if rate is None:
        return "no deploys"
    return f"{_percent(rate)} ({figures.failed} of {figures.deploys} rolled back, failed or undone by `/rollback`)"


def recovery(figures: Figures) -> str:
    if figures.failed == 0:
        return "no failed deploys" if figures.deploys else "no deploys"
    failing = f"; {figures.still_failing} not recovered yet" if figures.still_failing else ""
    if figures.recovery_time is None:
        return f"none recovered yet: {figures.still_failing} still failing"
    return (f"median {spoken(figures.recovery_time)}, deploy start to a good revision serving "
            f"({_plural(len(figures.recoveries), 'failed deploy')}{failing})")


def rework(figures: Figures, window: timedelta) -> str:
    rate = figures.rework_rate
    if rate is None:
        return "no deploys"
    return (f"{_percent(rate)} ({figures.rework} of {figures.deploys} started within {spoken(window)} of a failure "
            "or during an incident)")


def figure_lines(figures: Figures, window: timedelta, unknown_why: str = "") -> list[str]:
    return [f"*Deployment frequency*: {frequency(figures)}",
            f"*Lead time for changes*: {lead_time(figures, unknown_why)}",
            f"*Change failure rate*: {failure_rate(figures)}",
            f"*Failed deployment recovery time*: {recovery(figures)}",
            f"*Deployment rework rate*: {rework(figures, window)}"]


def compact(figures: Figures) -> str:
    """One line: the five figures, each "—" where it has no data, for a service in a list and the digest."""
    if not figures.deploys:
        return f"no deploys in {_period(figures)}"
    lead = spoken(figures.lead_time) if figures.lead_time is not None else "unknown"
    restore = spoken(figures.recovery_time) if figures.recovery_time is not None else (
        "—" if not figures.failed else "not recovered")
    assert figures.change_failure_rate is not None and figures.rework_rate is not None
    return (f"{_plural(figures.deploys, 'deploy')} ({figures.per_day or 0:.1f}/day) · lead time {lead} · "
            f"change failure {_percent(figures.change_failure_rate)} · recovery {restore} · "
            f"rework {_percent(figures.rework_rate)}")


def render_stats(fleet: Figures, services: Sequence[Figures], *, window: timedelta, unknown_why: str = "",
                 service: str | None = None) -> Rendered:
    """`/stats`: the fleet's five figures then each service's in one line (those with deploys, most first), or one
    service's five figures when `service` is given (`fleet` is then that service's)."""
    title = f"DORA figures · {service or 'fleet'} · last {_period(fleet)}"
    blocks: list[Block] = [header(title)]
    blocks += [section(chunk) for chunk in chunk_lines(figure_lines(fleet, window, escape(unknown_why)))]
    if service is None:
        busy = [f for f in services if f.deploys]
        quiet = [escape(f.service or "") for f in services if not f.deploys]
        lines = [f"*{escape(f.service or '')}*: {compact(f)}" for f in busy[:TOP_SERVICES]]
        if len(busy) > TOP_SERVICES:
            lines.append(f"…and {len(busy) - TOP_SERVICES} more services with deploys: `/stats <service>`")
        if quiet:
            lines.append(clip(f"No deploys: {', '.join(quiet)}", 1000))
        blocks += [section(chunk) for chunk in chunk_lines(lines)]
    blocks.append(context(f"Definitions: <{DEFINITIONS}|dora.dev>; how chatops reads each one: the README's "
                          "*DORA figures*. `/stats [service] [7d|30d]`"))
    rate = fleet.change_failure_rate
    text = f"{title}: {frequency(fleet)}" + (f"; change failure rate {_percent(rate)}" if rate is not None else "")
    return Rendered(text, blocks)
