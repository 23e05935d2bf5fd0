"""What `/health` posts: problems first with their runbook steps, healthy services summarised.

A fleet of seven reads at a glance; a fleet of a thousand still fits Slack's limits, because what does
not fit in the message goes to its thread instead of being cut off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.domain.health import Check, FleetHealth, Probe, ServiceHealth, Status
from bot.render.blocks import (
    MAX_BLOCKS,
    MAX_SECTION,
    Block,
    chunk_lines,
    clip,
    context,
    divider,
    header,
    link,
    section,
)
from bot.render.mrkdwn import escape

RunbookLink = Callable[[str, str | None], str | None]

EMOJI = {
    Status.UNREACHABLE: ":black_circle:",
    Status.UNHEALTHY: ":red_circle:",
    Status.DEGRADED: ":large_yellow_circle:",
    Status.HEALTHY: ":large_green_circle:",
}
_CHECK_EMOJI = {"pass": ":white_check_mark:", "warn": ":warning:", "fail": ":x:"}
_PROBLEMS_PER_SERVICE = 5
_HEALTHY_NAMES = 2400


@dataclass(frozen=True)
class Rendered:
    text: str
    blocks: list[Block]


def _problem_line(service: str, check: Check, runbook: RunbookLink) -> str:
    where = {"liveness": "live", "readiness": "ready", "deep": "deep"}[check.endpoint]
    step = link(runbook(service, check.name), "runbook")
    detail = f" — {escape(clip(check.detail, 300))}" if check.detail else ""
    return f"{_CHECK_EMOJI[check.state]} `{escape(check.name)}` ({where}){detail} · {step}"


def _service_section(health: ServiceHealth, runbook: RunbookLink) -> str:
    revision = f" · `{health.revision}`" if health.revision else ""
    title = f"{EMOJI[health.status]} *{health.service}* is *{health.status.label}*{revision}"
    if health.status is Status.UNREACHABLE:
        return f"{title}\n{escape(health.reason)} · {link(runbook(health.service, None), 'runbook')}"
    problems = health.problems
    lines = [_problem_line(health.service, c, runbook) for c in problems[:_PROBLEMS_PER_SERVICE]]
    if len(problems) > _PROBLEMS_PER_SERVICE:
        lines.append(f"+{len(problems) - _PROBLEMS_PER_SERVICE} more: `/health {health.service}`")
    body = title + "\n" + "\n".join(lines)
    return body if len(body) <= MAX_SECTION else clip(body, MAX_SECTION - 40) + f"\n`/health {health.service}`"


def _compact(health: ServiceHealth) -> str:
    return f"{EMOJI[health.status]} *{health.service}* {health.status.label}: {escape(clip(health.reason, 200))}"


def _headline(fleet: FleetHealth) -> str:
    total = len(fleet.services)
    if fleet.count(Status.HEALTHY) == total:
        return f"all {total} healthy"
    parts = [f"{fleet.count(s)} {s.label}" for s in Status if fleet.count(s)]
    return " · ".join(parts)


def fleet_report(fleet: FleetHealth, *, project: str, region: str, elapsed_s: float, now: datetime,
                 runbook: RunbookLink) -> list[Rendered]:
    """The message, then any thread replies holding what did not fit."""
    ordered = fleet.ordered()
    problems = [s for s in ordered if s.status is not Status.HEALTHY]
    healthy = [s.service for s in ordered if s.status is Status.HEALTHY]
    blocks: list[Block] = [
        header(f"Fleet health · {_headline(fleet)}"),
        context(f"`{project}` · {region} · {len(ordered)} services probed in {elapsed_s:.2f} s · "
                f"{now:%H:%M:%S} UTC"),
    ]
    room = MAX_BLOCKS - len(blocks) - 3
    shown, overflow = (problems, []) if len(problems) <= room else (problems[: room - 1], problems[room - 1:])
    blocks += [section(_service_section(s, runbook)) for s in shown]
    if overflow:
        blocks.append(section(f":arrow_down: *{len(overflow)} more services need attention*; "
                              "they are listed in this message's thread."))
    thread: list[Rendered] = []
    if overflow:
        for start in range(0, len(overflow), 40):
            part = overflow[start:start + 40]
            sections = [section(chunk) for chunk in chunk_lines(_compact(s) for s in part)]
            thread.append(Rendered(f"{len(part)} more services need attention", sections[:MAX_BLOCKS]))
    if healthy:
        names = ", ".join(healthy)
        if len(names) > _HEALTHY_NAMES:
            cut = names[:_HEALTHY_NAMES].rsplit(", ", 1)[0]
            rest = len(healthy) - cut.count(", ") - 1
            names = f"{cut} … and {rest} more (all listed in the thread)"
            sections = [section(chunk) for chunk in chunk_lines(healthy, separator=", ")]
            for start in range(0, len(sections), MAX_BLOCKS):
                thread.append(Rendered(f"{len(healthy)} healthy services", sections[start:start + MAX_BLOCKS]))
        if problems:
            blocks.append(divider())
        blocks.append(section(f"{EMOJI[Status.HEALTHY]} *{len(healthy)} healthy*: {names}"))
    summary = ", ".join(f"{s.service} {s.status.label}" for s in problems[:5])
    text = f"Fleet health: {_headline(fleet)}" + (f" ({summary})" if summary else "")
    return [Rendered(clip(text, 3000), blocks), *thread]


def _probe_title(probe: Probe) -> str:
    outcome = f"HTTP {probe.status}" if probe.status is not None else escape(probe.error or "no answer")
    return f"*{escape(probe.path)}* · {outcome} · {probe.latency_ms:.0f} ms"


def service_report(health: ServiceHealth, probes: Sequence[Probe], *, url: str, now: datetime,
                   runbook: RunbookLink) -> Rendered:
    revision = f"revision `{health.revision}` answered" if health.revision else "no revision answered"
    blocks: list[Block] = [
        header(f"{health.service} · {health.status.label}"),
        context(f"{EMOJI[health.status]} {escape(health.reason)} · {revision} · <{url}|service URL> · "
                f"{now:%H:%M:%S} UTC"),
    ]
    for probe in probes:
        lines = [_probe_title(probe)]
        for check in health.checks:
            if check.endpoint != probe.endpoint:
                continue
            latency = f" {check.duration_ms:.0f} ms" if check.duration_ms is not None else ""
            detail = f" — {escape(clip(check.detail, 300))}" if check.detail else ""
            step = f" · {link(runbook(health.service, check.name), 'runbook')}" if check.state != "pass" else ""
            lines.append(f"{_CHECK_EMOJI[check.state]} `{escape(check.name)}`{latency}{detail}{step}")
        blocks.extend(section(chunk) for chunk in chunk_lines(lines))
    if health.status is not Status.HEALTHY:
        blocks.append(context(f"Runbook: {link(runbook(health.service, None), health.service)}"))
    text = f"{health.service} is {health.status.label}: {health.reason}"
    return Rendered(clip(text, 3000), blocks[:MAX_BLOCKS])
