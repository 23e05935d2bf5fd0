"""The App Home tab: one person's view of the fleet, what is moving, what is burning and what they may do.

A Home tab holds at most 100 blocks (https://docs.slack.dev/reference/block-kit/blocks), so every list is cut to
a fixed number of entries with "and N more" and the command that shows the rest: the tab of a 1,000-service fleet
stays well inside the limit whatever state it is in. Problems come first, the viewer's own incidents first among
incidents. The rollout buttons are the rollout message's own (bot/render/rollout.py), so a click goes through the
same pipeline as a click in the channel; the ones that move traffic carry a Block Kit `confirm` dialog
(https://docs.slack.dev/reference/block-kit/composition-objects/confirmation-dialog-object) saying what will happen
to which revision. Pure: everything shown is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.domain.change_gate import Lock
from bot.domain.freeze import Window
from bot.domain.health import FleetHealth, ServiceHealth, Status
from bot.domain.incidents import Incident
from bot.domain.rollout import Rollout
from bot.render.blocks import Block, chunk_lines, clip, context, divider, header, link, section
from bot.render.change_control import lock_line, unlock_button, window_lines
from bot.render.health import EMOJI
from bot.render.mrkdwn import escape
from bot.render.rollout import progress, rollout_message

RunbookLink = Callable[[str, str | None], str | None]

MAX_VIEW_BLOCKS = 100
PROBLEMS_SHOWN = 15
ROLLOUTS_SHOWN = 10
INCIDENTS_SHOWN = 10
DEPLOYS_SHOWN = 5
LOCKS_SHOWN = 5


@dataclass(frozen=True)
class HomeData:
    viewer: str
    now: datetime
    fleet: FleetHealth | None
    fleet_at: datetime | None
    rollouts: Sequence[Rollout]
    incidents: Sequence[Incident]
    locks: Sequence[Lock]
    freeze_now: Window | None
    freeze_next: Window | None
    my_deploys: Sequence[Rollout]
    may: Sequence[str]
    """The actions the viewer may take, as the policy answers for them (`deploy`, `rollback`, ...)."""
    notice: str = ""
    """What became of the viewer's last click here (a Home tab has no response_url to answer in)."""
    runbook: RunbookLink = field(default=lambda service, check: None)


def _more(count: int, what: str, command: str) -> Block:
    return context(f"…and {count} more {what}: `{command}`")


def _problem_line(health: ServiceHealth, runbook: RunbookLink) -> str:
    check = health.problems[0].name if health.problems else None
    return (f"{EMOJI[health.status]} *{health.service}* {health.status.label}: {escape(clip(health.reason, 160))}"
            f" · {link(runbook(health.service, check), 'runbook')}")


def _fleet(data: HomeData) -> list[Block]:
    fleet = data.fleet
    if fleet is None:
        return [section("*Fleet*\nNo health sweep has reported here yet; `/health all` probes the fleet now.")]
    counts = " · ".join(f"{EMOJI[s]} {fleet.count(s)} {s.label}" for s in Status if fleet.count(s))
    when = f" · swept {data.fleet_at:%H:%M} UTC" if data.fleet_at else ""
    blocks = [section(f"*Fleet* · {len(fleet.services)} services{when}\n{counts}")]
    problems = [s for s in fleet.ordered() if s.status is not Status.HEALTHY]
    shown = [_problem_line(s, data.runbook) for s in problems[:PROBLEMS_SHOWN]]
    blocks += [section(chunk) for chunk in chunk_lines(shown)]
    if len(problems) > PROBLEMS_SHOWN:
        blocks.append(_more(len(problems) - PROBLEMS_SHOWN, "services need attention", "/health all"))
    return blocks


def _buttons(rollout: Rollout) -> Block | None:
    """The rollout message's own buttons, each traffic-moving one with the dialog it carries there."""
    drawn = rollout_message(rollout).attachments[0]["blocks"]
    row = next((block for block in drawn if block["type"] == "actions"), None)
    if row is None:
        return None
    return {"type": "actions", "block_id": f"rollout:{rollout.id}", "elements": row["elements"]}


def _rollouts(data: HomeData) -> list[Block]:
    if not data.rollouts:
        return [section("*Rollouts in progress*\nNothing is being deployed. `/deploy <service>` starts one.")]
    blocks: list[Block] = [section(f"*Rollouts in progress* · {len(data.rollouts)}")]
    for rollout in data.rollouts[:ROLLOUTS_SHOWN]:
        tag = rollout.image.rpartition(":")[2]
        blocks.append(section(f"*{rollout.service}* · `{escape(tag)}` · {rollout.state.value.replace('_', ' ')} · "
                              f"rollout #{rollout.id} · by <@{rollout.requested_by}>\n{progress(rollout)}"))
        buttons = _buttons(rollout)
        if buttons is not None:
            blocks.append(buttons)
    if len(data.rollouts) > ROLLOUTS_SHOWN:
        blocks.append(_more(len(data.rollouts) - ROLLOUTS_SHOWN, "rollouts", "/status"))
    return blocks


def _incident_block(incident: Incident, viewer: str, runbook: RunbookLink) -> Block:
    since = f" since {incident.opened_at:%H:%M} UTC" if incident.opened_at else ""
    failing = ", ".join(f"`{escape(c.check)}`" for c in incident.checks[:5]) or "recovering"
    who = ("acknowledged by you" if incident.acknowledged_by == viewer else
           f"acknowledged by <@{incident.acknowledged_by}>" if incident.acknowledged_by else "*not acknowledged*")
    block = section(f":rotating_light: *{incident.service}* · incident #{incident.id}{since} · {failing} · {who}"
                    f" · {link(runbook(incident.service, None), 'runbook')}")
    if not incident.acknowledged_by:
        block["accessory"] = {"type": "button", "text": {"type": "plain_text", "text": "Acknowledge"},
                              "action_id": "incident_ack", "value": str(incident.id)}
    return block


def _incidents(data: HomeData) -> list[Block]:
    if not data.incidents:
        return [section("*Open incidents*\nNone. :white_check_mark:")]
    ordered = sorted(data.incidents, key=lambda i: (i.acknowledged_by != data.viewer, bool(i.acknowledged_by),
                                                    i.opened_at or data.now))
    blocks = [section(f"*Open incidents* · {len(ordered)}")]
    blocks += [_incident_block(i, data.viewer, data.runbook) for i in ordered[:INCIDENTS_SHOWN]]
    if len(ordered) > INCIDENTS_SHOWN:
        blocks.append(_more(len(ordered) - INCIDENTS_SHOWN, "incidents", "/incidents"))
    return blocks


def _control(data: HomeData) -> list[Block]:
    """Each lock with its Unlock (asked of the policy on click, like /unlock), then the freeze windows."""
    windows = window_lines(data.freeze_now, data.freeze_next)
    if not data.locks and not windows:
        return []
    blocks = [section("*Locks and freezes*")]
    for lock in data.locks[:LOCKS_SHOWN]:
        blocks.append(section(lock_line(lock)) | {"accessory": unlock_button(lock)})
    if len(data.locks) > LOCKS_SHOWN:
        blocks.append(_more(len(data.locks) - LOCKS_SHOWN, "locks", "/status"))
    blocks += [section(chunk) for chunk in chunk_lines(windows)]
    return blocks


def _deploys(data: HomeData) -> list[Block]:
    if not data.my_deploys:
        return [section("*Your recent deploys*\nNone yet.")]
    lines = [f"*{r.service}* `{escape(r.image.rpartition(':')[2])}` · {r.state.value.replace('_', ' ')} · "
             f"#{r.id} · {r.created_at:%Y-%m-%d %H:%M} UTC" for r in data.my_deploys[:DEPLOYS_SHOWN]]
    return [section("*Your recent deploys*\n" + "\n".join(lines))]


def home_view(data: HomeData) -> dict[str, Any]:
    """The `home` view object for views.publish."""
    blocks: list[Block] = [header("chatops"), context(f"Updated {data.now:%H:%M:%S} UTC for <@{data.viewer}>")]
    if data.notice:
        blocks.append(section(clip(data.notice, 2900)))
    blocks += [*_fleet(data), divider(), *_rollouts(data), divider(), *_incidents(data), divider()]
    blocks += [*_control(data), *_deploys(data)]
    may = ", ".join(f"`{action}`" for action in data.may) or "nothing yet: ask for a role in chatops.yaml"
    blocks.append(context(clip(f"You may: {may}. `/help` says how.", 2000)))
    return {"type": "home", "callback_id": "chatops_home", "blocks": blocks[:MAX_VIEW_BLOCKS]}
