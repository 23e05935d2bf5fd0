"""An incident's parent message (redrawn in place as it changes) and its thread replies.

The parent answers the first minute's questions at a glance: what is failing since when, what the runbook says
to do, whose it is, and who has it; with the buttons to take it, to have its timeline uploaded to the thread,
and to open the runbook.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.domain.incidents import Incident
from bot.render.blocks import Block, actions, button, clip, context, link, section
from bot.render.mrkdwn import escape

RunbookLink = Callable[[str, str | None], str | None]

_COLOR = {"open": "#e01e5a", "acknowledged": "#e8a317", "resolved": "#2eb67d", "watching": "#9ca3af"}


@dataclass(frozen=True)
class Rendered:
    text: str
    blocks: list[Block]
    attachments: list[dict[str, object]]


def mention(member: str) -> str:
    return f"<!subteam^{member}>" if member.startswith("S") else f"<@{member}>"


def _when(moment: datetime | None) -> str:
    return f"{moment:%H:%M} UTC" if moment is not None else "just now"


def incident_message(incident: Incident, runbook: RunbookLink, *, owners: Sequence[str],
                     oncall: Sequence[str]) -> Rendered:
    state = "resolved" if incident.state == "resolved" else (
        "acknowledged" if incident.acknowledged_by else "open")
    service = incident.service
    if state == "resolved":
        title = f":large_green_circle: *{service}* recovered · incident #{incident.id}"
    else:
        title = f":red_circle: *{service}* is failing · incident #{incident.id}"
    lines = []
    for check in incident.checks:
        step = link(runbook(service, check.check), "runbook step")
        source = " (Cloud Monitoring)" if check.source == "monitoring" else ""
        lines.append(f"• `{escape(check.check)}`{source} since {_when(check.since)}: "
                     f"{escape(clip(check.detail, 400))} · {step}")
    if incident.recovered and state != "resolved":
        lines.append("Recovered: " + ", ".join(f"`{escape(name)}`" for name in incident.recovered))
    blocks: list[Block] = [section(clip(title + ("\n" + "\n".join(lines) if lines else ""), 2900))]
    who = []
    if owners:
        who.append("owners " + " ".join(mention(m) for m in owners))
    if incident.acknowledged_by:
        who.append(f"acknowledged by <@{incident.acknowledged_by}> at {_when(incident.acknowledged_at)}")
    elif state == "open" and oncall:
        who.append("on call " + " ".join(mention(m) for m in oncall))
    detected = f"detected {_when(incident.detected_at)}"
    if state == "resolved":
        detected += f", resolved {_when(incident.resolved_at)}"
    blocks.append(context(" · ".join([detected, *who])))
    runbook_top = runbook(service, incident.checks[0].check if incident.checks else None)
    buttons = []
    if state == "open":
        buttons.append(button("Acknowledge", "incident_ack", str(incident.id), "primary"))
    buttons.append(button("Timeline", "incident_timeline", str(incident.id)))
    if runbook_top:
        buttons.append({"type": "button", "action_id": "incident_runbook", "url": runbook_top,
                        "text": {"type": "plain_text", "text": "Open runbook"}})
    if buttons:
        blocks.append(actions(*buttons))
    failing = ", ".join(c.check for c in incident.checks) or "recovered"
    text = f"{service}: {state} incident #{incident.id} ({failing})"
    return Rendered(clip(text, 3000), [], [{"color": _COLOR[state], "fallback": text, "blocks": blocks}])


def reply(text: str) -> Rendered:
    return Rendered(clip(text, 3000), [section(clip(text, 2900))], [])
