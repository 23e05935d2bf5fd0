"""A health digest as one Slack message that stays within Slack's limits for a fleet of any size.

Slack takes "up to 50 blocks in each message" (https://docs.slack.dev/reference/block-kit/blocks), a section's text
of "maximum length ... 3000 characters" (https://docs.slack.dev/reference/block-kit/blocks/section-block) and a
header's of 150 (https://docs.slack.dev/reference/block-kit/blocks/header-block).
Besides these, chat.postMessage refuses blocks whose text adds up to too much with `msg_blocks_too_long`, a limit
Slack does not document: a reply in https://github.com/slackapi/bolt-js/issues/2509 put it at "12,000 text
characters with a buffer for block containers", and https://github.com/slackapi/bolt-js/issues/2867 reports a message
of 11,341 block-text characters refused while one of 9,597 went through. The digest
therefore keeps all its text, the notification text included, within TEXT_BUDGET (an assumption, below the largest
message seen accepted). A thousand services never fit that: each list shows its worst items first and ends with
how many it leaves out and the command that lists them all, so nothing is cut without saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from bot.domain.digest import Change, Digest, OpenIncident
from bot.domain.health import ServiceHealth, Status
from bot.domain.rollout import Rollout, State
from bot.render.blocks import Block, chunk_lines, clip, context, divider, header, link, section
from bot.render.change_control import control_lines
from bot.render.health import EMOJI, Rendered, RunbookLink
from bot.render.mrkdwn import escape, spoken
from bot.render.stats import compact

TEXT_BUDGET = 9_000
"""Characters of text in the whole message (blocks and notification text); see the module's docstring."""
TOP_PROBLEMS = 15
TOP_CHANGES = 10
TOP_INCIDENTS = 10
_CHECKS_PER_SERVICE = 3
_MORE_LINE = 100  # room for a list's closing "…and K more" line
_REASON = 100

T = TypeVar("T")

_OUTCOME = {
    State.PROMOTED: (":white_check_mark:", "promoted"),
    State.ROLLED_BACK: (":leftwards_arrow_with_hook:", "rolled back"),
    State.FAILED: (":x:", "failed"),
}


def mention(member: str) -> str:
    """A user as `<@U…>` and a user group as `<!subteam^S…>`, Slack's syntax for each
    (https://api.slack.com/messaging/composing/formatting); anything else is shown as written."""
    if member[:1] in ("U", "W") and member.isalnum():
        return f"<@{member}>"
    if member[:1] == "S" and member.isalnum():
        return f"<!subteam^{member}>"
    return escape(member)


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def headline(digest: Digest) -> str:
    if digest.services == 0:
        return "no services"
    if digest.count(Status.HEALTHY) == digest.services:
        return f"all {digest.services} healthy"
    return " · ".join(f"{n} {status.label}" for status, n in digest.counts if n)


# --- the lists --------------------------------------------------------------------------------------------


def _problem_line(health: ServiceHealth, runbook: RunbookLink) -> str:
    """A service and its failing checks, each check's name linking to its runbook step; the details are what
    `/health <service>` is for."""
    title = f"{EMOJI[health.status]} *{escape(health.service)}* {health.status.label}"
    problems = health.problems
    if not problems:
        return f"{title}: {escape(clip(health.reason, _REASON))} · {link(runbook(health.service, None), 'runbook')}"
    checks = ", ".join(link(runbook(health.service, c.name), clip(c.name, 100)) for c in problems[:_CHECKS_PER_SERVICE])
    hidden = len(problems) - _CHECKS_PER_SERVICE
    more = f" +{hidden} more: `/health {health.service}`" if hidden > 0 else ""
    return f"{title}: {checks}{more}"


def _change_line(change: Change) -> str:
    rollout = change.rollout
    mark, outcome = _OUTCOME[rollout.state]
    if change.undone_by_hand:
        mark, outcome = ":leftwards_arrow_with_hook:", "promoted, then rolled back by hand"
    image = escape(rollout.image.rpartition("/")[2])
    ended = _when(rollout.ended_at) if rollout.ended_at else ""
    why = f" — {escape(clip(rollout.reason, _REASON))}" if change.failed and rollout.reason else ""
    return f"{mark} *{escape(rollout.service)}* `{image}` {outcome} {ended} · <@{rollout.requested_by}>{why}"


def _rollback_line(rollout: Rollout) -> str:
    ended = _when(rollout.ended_at or rollout.created_at)
    return f":rewind: *{escape(rollout.service)}* {escape(rollout.image)} by <@{rollout.requested_by}> {ended}"


def _deploy_line(item: Change | Rollout) -> str:
    return _change_line(item) if isinstance(item, Change) else _rollback_line(item)


def _incident_line(incident: OpenIncident, now: datetime) -> str:
    checks = ", ".join(f"`{escape(clip(c, 100))}`" for c in incident.checks[:_CHECKS_PER_SERVICE])
    if len(incident.checks) > _CHECKS_PER_SERVICE:
        checks += f" +{len(incident.checks) - _CHECKS_PER_SERVICE} more"
    if incident.acknowledged_by:
        who = f"acknowledged by {mention(incident.acknowledged_by)}"
    else:
        owners = ", ".join(mention(o) for o in incident.owners)
        who = "*unacknowledged*" + (f", owners {owners}" if owners else ", no owner configured")
    what = f" {checks}" if checks else ""
    return f":rotating_light: *{escape(incident.service)}*{what} · open {spoken(incident.age(now))} · {who}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _size(lines: Sequence[str]) -> int:
    return sum(len(line) + 1 for line in lines)


def _fit(items: Sequence[T], line: Callable[[T], str], room: int, top: int, more: Callable[[int], str]) -> list[str]:
    """The lines of the first `top` items that fit in `room` characters, then one line saying how many were left
    out. Only those first items are rendered: at a thousand services the rest would be work thrown away."""
    lines = [line(item) for item in items[:top]]
    if len(items) <= top and _size(lines) <= room:
        return lines
    room -= len(more(len(items))) + 1
    kept: list[str] = []
    for text in lines:
        if _size(kept) + len(text) + 1 > room:
            break
        kept.append(text)
    return [*kept, more(len(items) - len(kept))]


# --- the message ------------------------------------------------------------------------------------------


def _fleet_heading(digest: Digest) -> str:
    if digest.services == 0:
        return "*Fleet*: no services to report on."
    counts = " · ".join(f"{EMOJI[status]} {n} {status.label}" for status, n in digest.counts if n)
    return f"*Fleet*: {counts}"


def _deploys_heading(digest: Digest) -> str:
    deploys = digest.deploys
    period = spoken(digest.now - digest.since)
    if deploys.count:
        rate = deploys.change_failure_rate or 0.0
        text = (f"*Deploys*: {deploys.count} in {period} · {deploys.per_day:.1f} a day · change failure rate "
                f"{rate:.0%} ({deploys.failed} of {deploys.count} rolled back or failed)")
    else:
        text = f"*Deploys*: none ended in {period}"
    if deploys.rollbacks:
        text += f" · {len(deploys.rollbacks)} `/rollback`"
    if deploys.in_progress:
        text += f" · {len(deploys.in_progress)} in progress: `/status`"
    return text


def _incidents_heading(digest: Digest) -> str:
    if not digest.incidents:
        return "*Open incidents*: none"
    unacked = sum(1 for i in digest.incidents if not i.acknowledged_by)
    return f"*Open incidents*: {len(digest.incidents)} ({unacked} unacknowledged)"


def _mttr_text(digest: Digest) -> str:
    mttr = digest.mttr
    title = f"*MTTR, last {mttr.window / timedelta(days=1):g} days*"
    still = (f" · {mttr.still_open} still open, the oldest for {spoken(mttr.oldest_open)}"
             if mttr.oldest_open is not None else "")
    if mttr.mean_to_resolve is None:
        return f"{title}: no incidents resolved · goal {spoken(mttr.goal)}{still}"
    if mttr.mean_to_acknowledge is None:
        ack = "none acknowledged"
    else:
        ack = f"acknowledged in {spoken(mttr.mean_to_acknowledge)} on average ({mttr.acknowledged} of {mttr.resolved})"
    verdict = ":white_check_mark: within" if mttr.within_goal else ":warning: over"
    return (f"{title}: {_plural(mttr.resolved, 'incident')} resolved · {ack} · resolved in "
            f"{spoken(mttr.mean_to_resolve)} on average · {verdict} the {spoken(mttr.goal)} goal{still}")


def _dora_text(digest: Digest) -> str:
    """The five figures in one line (bot.render.stats), over their own period: a week, not the digest's day."""
    if digest.dora is None:
        return ""
    figures = digest.dora
    return f"*DORA, last {spoken(figures.now - figures.since)}*: {compact(figures)} · `/stats` for each service"


def _late_text(digest: Digest) -> str:
    return (f":hourglass: *Late*: this is the digest due at {_when(digest.due_at)}, caught up "
            f"{spoken(digest.late_by)} late.")


def _notification(digest: Digest) -> str:
    """The message's `text`: what a notification shows, so the figures that matter, briefly."""
    late = f" (late, due {_when(digest.due_at)})" if digest.late else ""
    deploys = digest.deploys
    rate = f", change failure rate {deploys.change_failure_rate:.0%}" if deploys.change_failure_rate is not None else ""
    mttr = digest.mttr.mean_to_resolve
    restore = f"; MTTR {spoken(mttr)} (goal {spoken(digest.mttr.goal)})" if mttr is not None else ""
    return (f"Health digest{late}: {headline(digest)}; {deploys.count} deploys{rate}; "
            f"{len(digest.incidents)} open incidents{restore}")


def render_digest(digest: Digest, runbook: RunbookLink, *, budget: int = TEXT_BUDGET) -> Rendered:
    """One message. The fixed parts come first; the problems, then the open incidents, then the deploys share
    what is left of `budget`, the lists after the problems each keeping up to a quarter for themselves."""
    title = f"Health digest · {headline(digest)}"
    period = f"{_when(digest.since)} → {_when(digest.now)} · {digest.services} services"
    late = _late_text(digest) if digest.late else ""
    headings = [_fleet_heading(digest), _deploys_heading(digest), _incidents_heading(digest)]
    mttr, dora, text = _mttr_text(digest), _dora_text(digest), _notification(digest)
    control = control_lines(digest.locks[:TOP_CHANGES], digest.freeze, digest.next_freeze)
    if len(digest.locks) > TOP_CHANGES:
        control.append(f"…and {len(digest.locks) - TOP_CHANGES} more locks: `/status` lists them")
    room = budget - sum(len(part) + 1 for part in (title, period, late, *headings, mttr, dora, text, *control))

    changes: list[Change | Rollout] = [*digest.deploys.changes, *digest.deploys.rollbacks]
    reserve_changes = min(_size([_deploy_line(c) for c in changes[:TOP_CHANGES]]) + _MORE_LINE, room // 4)
    reserve_incidents = min(_size([_incident_line(i, digest.now) for i in digest.incidents[:TOP_INCIDENTS]])
                            + _MORE_LINE, room // 4)
    shown_problems = _fit(digest.problems, lambda s: _problem_line(s, runbook),
                          room - reserve_changes - reserve_incidents, TOP_PROBLEMS,
                          lambda n: f"…and {n} more services need attention: `/health all` lists every one")
    room -= _size(shown_problems)
    shown_incidents = _fit(digest.incidents, lambda i: _incident_line(i, digest.now), room - reserve_changes,
                           TOP_INCIDENTS, lambda n: f"…and {n} more open incidents")
    room -= _size(shown_incidents)
    shown_changes = _fit(changes, _deploy_line, room, TOP_CHANGES,
                         lambda n: f"…and {n} more deploys and rollbacks: `/history <service>` lists a service's")

    blocks: list[Block] = [header(title)]
    if late:
        blocks.append(section(late))
    blocks.append(context(period))
    blocks += [section(chunk) for chunk in chunk_lines([headings[0], *shown_problems])]
    blocks.append(divider())
    blocks += [section(chunk) for chunk in chunk_lines([headings[1], *shown_changes])]
    blocks.append(divider())
    blocks += [section(chunk) for chunk in chunk_lines([headings[2], *shown_incidents])]
    blocks.append(section(mttr))
    if dora:
        blocks.append(section(dora))
    if control:
        blocks += [section(chunk) for chunk in chunk_lines(["*Change control*", *control])]
    return Rendered(text, blocks)
