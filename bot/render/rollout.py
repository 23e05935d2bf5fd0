"""The rollout's one message (updated in place) and the replies in its thread.

The message answers "where is it and what can I do" at a glance: state by colour and emoji, the stages as
a progress line, the last verdict, and the buttons that act on it. The thread keeps the evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.domain.analysis import Verdict
from bot.domain.rollout import Note, Plan, Rollout, State
from bot.render.blocks import Block, actions, button, clip, confirm, context, link, section
from bot.render.mrkdwn import escape

RunbookLink = Callable[[str, str | None], str | None]

_LOOK = {
    State.DEPLOYING: (":hourglass_flowing_sand:", "#9ca3af", "deploying"),
    State.VERIFYING: (":mag:", "#1d9bd1", "checking the candidate before it gets traffic"),
    State.ANALYSING: (":large_blue_circle:", "#1d9bd1", "analysing"),
    State.PAUSED: (":double_vertical_bar:", "#e8a317", "paused"),
    State.PROMOTED: (":white_check_mark:", "#2eb67d", "promoted"),
    State.ROLLED_BACK: (":rewind:", "#e01e5a", "rolled back"),
    State.FAILED: (":x:", "#e01e5a", "failed"),
}
_NOTE_EMOJI = {"created": ":rocket:", "ready": ":package:", "stage": ":arrow_right:", "passed": ":white_check_mark:",
               "promoted": ":tada:", "rolled_back": ":rewind:", "failed": ":x:", "paused": ":double_vertical_bar:",
               "resumed": ":arrow_forward:", "inconclusive": ":grey_question:", "refused": ":no_entry_sign:",
               "retrying": ":warning:", "extended": ":hourglass:"}


@dataclass(frozen=True)
class Rendered:
    text: str
    blocks: list[Block]
    attachments: list[dict[str, Any]]


def progress(rollout: Rollout) -> str:
    """`5% ✓ → *50%* → 100%`: done stages ticked, the current one bold, a failed one crossed."""
    marks = []
    for index, percent in enumerate(rollout.plan.stages):
        label = f"{percent}%"
        result = rollout.results[index] if index < len(rollout.results) else None
        if result is not None:
            marks.append(f"~{label}~ :x:" if result.outcome == "fail" else f"{label} :heavy_check_mark:")
        elif index == rollout.stage and not rollout.state.ended:
            marks.append(f"*{label}* :hourglass_flowing_sand:")
        else:
            marks.append(label)
    return "  →  ".join(["0%", *marks])


def _state_line(rollout: Rollout) -> str:
    emoji, _, label = _LOOK[rollout.state]
    if rollout.pending is not None and rollout.state.ended:
        label = f"{label} (applying)"
    if rollout.state is State.ANALYSING and rollout.stage_started_at is not None:
        ends = rollout.stage_started_at + timedelta(seconds=rollout.plan.window_s)
        label += f" · {rollout.plan.stages[rollout.stage]}% on the candidate until {ends:%H:%M:%S} UTC"
    return f"{emoji} *{label}*"


def rollout_message(rollout: Rollout, control: Sequence[str] = ()) -> Rendered:
    """`control`: what holds the service now (locks, a freeze window), one line each."""
    _, color, label = _LOOK[rollout.state]
    tag = rollout.image.rpartition(":")[2] if ":" in rollout.image.rpartition("/")[2] else rollout.image
    blocks: list[Block] = [
        section(f"*{rollout.service}* · `{escape(tag)}` · rollout #{rollout.id}\n{_state_line(rollout)}"),
        section(f"{progress(rollout)}\ncandidate `{rollout.candidate}`"
                + (f" · stable `{rollout.stable}`" if rollout.stable else " · new service")),
    ]
    if rollout.reason:
        blocks.append(section(clip(escape(rollout.reason), 2900)))
    elif rollout.last_verdict:
        blocks.append(section(f"Last check: {clip(escape(rollout.last_verdict), 2800)}"))
    value = f"{rollout.id}:{rollout.stage}"
    back = button("Roll back", "rollout_rollback", value, "danger", asks=rollback_dialog(rollout))
    if rollout.state in (State.DEPLOYING, State.VERIFYING, State.ANALYSING):
        blocks.append(actions(button("Promote", "rollout_promote", value, "primary", asks=promote_dialog(rollout)),
                              button("Pause", "rollout_pause", value), back))
    elif rollout.state is State.PAUSED:
        blocks.append(actions(button("Resume", "rollout_resume", value, "primary"),
                              button("Promote", "rollout_promote", value, asks=promote_dialog(rollout)), back))
    if control:
        blocks.append(context("\n".join(control)))
    blocks.append(context(f"requested by <@{rollout.requested_by}> · {rollout.image}"
                          + (f" · freeze windows overridden by {rollout.override}" if rollout.override else "")))
    applying = " (applying)" if rollout.state.ended and rollout.pending is not None else ""
    text = f"{rollout.service}: {tag} {label}{applying}" + (
        f" at {rollout.percent}%" if rollout.state in (State.ANALYSING, State.PAUSED) else "")
    return Rendered(text, [], [{"color": color, "fallback": text, "blocks": blocks}])


def rollback_dialog(rollout: Rollout) -> Block:
    """What Roll back does, to which revision."""
    stops = f"{rollout.candidate} stops serving."
    text = f"Send 100% of {rollout.service} to {rollout.stable}; {stops}" if rollout.stable else (
        f"{rollout.service} is new: {stops}")
    return confirm(f"Roll back {rollout.service}?", text, "Roll back")


def promote_dialog(rollout: Rollout) -> Block:
    """What Promote does: the next stage's share on the candidate, or all of it."""
    stages = rollout.plan.stages
    percent = stages[rollout.stage + 1] if rollout.stage + 1 < len(stages) else 100
    if percent >= 100 or not rollout.stable:
        text = f"Send 100% of {rollout.service} to {rollout.candidate}" + (
            f"; {rollout.stable} stops serving." if rollout.stable else ".")
    else:
        text = (f"Send {percent}% of {rollout.service} to {rollout.candidate}; {100 - percent}% stays on "
                f"{rollout.stable}.")
    return confirm(f"Promote {rollout.service}?", text, "Promote", style="primary")


def _verdict_lines(verdict: Verdict) -> list[str]:
    marks = {"pass": ":heavy_check_mark:", "fail": ":x:", "insufficient": ":grey_question:",
             "unavailable": ":warning:", "waiting": ":hourglass_flowing_sand:"}
    return [f"{marks[f.outcome]} {escape(f.check)}: {escape(f.summary)}" for f in verdict.findings]


def note_reply(rollout: Rollout, note: Note, runbook: RunbookLink) -> Rendered:
    lines = [f"{_NOTE_EMOJI[note.kind]} {note.text}"]
    if note.verdict is not None:
        lines.extend(_verdict_lines(note.verdict))
    blocks = [section(clip("\n".join(lines), 2900))]
    if note.verdict is not None and note.verdict.top_errors:
        errors = "\n".join(clip(escape(e), 300) for e in note.verdict.top_errors)
        blocks.append(section(f"Newest errors of `{rollout.candidate}`:\n```{clip(errors, 2700)}```"))
    if note.kind in ("rolled_back", "failed", "paused", "retrying"):
        failing = note.verdict.failures[0].runbook_check if note.verdict and note.verdict.failures else None
        step = runbook(rollout.service, note.step or failing or "canary-failed")
        blocks.append(context(f"Runbook: {link(step, 'what to do now')}" if step else
                              f"No runbook is configured for {rollout.service}."))
    return Rendered(clip(note.text, 3000), blocks, [])


def plan_lines(plan: Plan) -> list[str]:
    limits = plan.thresholds
    lines = [
        f"*Stages:* {'  →  '.join(f'{p}%' for p in plan.stages)}, {plan.window_s:g} s of analysis each "
        f"(checked every {plan.interval_s:g} s; a failure rolls back at once)",
        f"*Pass:* success rate ≥ {limits.min_success_rate:g}% and p99 ≤ {limits.max_p99_ms:g} ms (judged from "
        f"{limits.min_requests} requests), ≤ {limits.max_error_logs} ERROR logs, /health /ready /health/deep pass",
        f"*Deadline:* the candidate must be ready within {plan.progress_deadline_s / 60:g} min",
    ]
    for check in plan.log_checks:
        bound = " and ".join(b for b in (f"≥ {check.at_least}" if check.at_least is not None else "",
                                         f"≤ {check.at_most}" if check.at_most is not None else "") if b)
        lines.append(f"*Log check* `{check.name}`: `{escape(check.filter)}` {bound} entries")
    for http in plan.http_checks:
        lines.append(f"*HTTP check* `{http.name}`: {http.path} answers {http.expect_status}")
    return lines
