"""A deploy request's message in the deploy channel: what, who asked, the plan, and the buttons that still apply.

Approve and Deny while it awaits approval, Cancel while it waits at all; once it has ended, none. Buttons carry
the request's id only: what it is now is looked up again on click.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain.deploy_queue import QueuedDeploy, RequestState, shown_approvers
from bot.render.blocks import Block, actions, button, confirm, context, header, section

APPROVE, DENY, CANCEL = "deploy_approve", "deploy_deny", "deploy_cancel"


@dataclass(frozen=True)
class Rendered:
    text: str
    blocks: list[Block]


def _approvals(request: QueuedDeploy) -> str:
    given = ", ".join(f"<@{user}>" for user in request.approvals) or "none yet"
    return (f"*Approvals:* {len(request.approvals)} of {request.needed} ({given}), from "
            f"{shown_approvers(request.approvers)}; not <@{request.requested_by}>, who asked")


def cancel_button(request_id: int) -> Block:
    return button("Cancel", CANCEL, str(request_id))


def request_message(request: QueuedDeploy) -> Rendered:
    """The request's message as it stands now."""
    what = f"deploy of {request.tag} to {request.service}"
    lines = [f"*Image:* `{request.image}` ({request.strategy})", f"*Asked by:* <@{request.requested_by}>"]
    if request.needed:
        lines.append(_approvals(request))
    blocks: list[Block]
    if request.state is RequestState.AWAITING:
        expires = request.expires_at
        if expires is not None:
            stamp = int(expires.timestamp())
            lines.append(f"*Expires:* <!date^{stamp}^{{date_short_pretty}} {{time}}|{expires:%Y-%m-%d %H:%M} UTC>")
        title = f":raised_hand: Approval needed: {what}"
        blocks = [header(title), section("\n".join(lines))]
        if request.plan:
            blocks.append(section(request.plan))
        blocks.append(actions(button("Approve", APPROVE, str(request.id), "primary"),
                              button("Deny", DENY, str(request.id), "danger", asks=confirm(
                                  f"Deny request #{request.id}?", f"{request.image} will not be deployed to "
                                  f"{request.service}; the request ends.", "Deny")), cancel_button(request.id)))
        blocks.append(context(f"Request #{request.id}. Typed: `/approve {request.id}`, or a denial with its reason: "
                              f"`/deny {request.id} <reason>`."))
    elif request.state is RequestState.QUEUED:
        title = f":hourglass_flowing_sand: Queued: {what}"
        blocks = [header(title), section("\n".join(lines)), actions(cancel_button(request.id)),
                  context(f"Request #{request.id}: it starts when the rollout ahead of it ends. `/queue "
                          f"{request.service}` shows the queue.")]
    else:
        icon = ":rocket:" if request.state is RequestState.STARTED else ":no_entry_sign:"
        title = f"{icon} D{what[1:]}: {request.state.value}"
        blocks = [header(title), section("\n".join([*lines, f"*Outcome:* {request.ended()}"])),
                  context(f"Request #{request.id}.")]
    return Rendered(title, blocks)
