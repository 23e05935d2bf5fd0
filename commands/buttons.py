"""The buttons on the bot's messages: the same commands, the same permissions and the same guarded pipeline as
their slash commands.

A rollout's Promote, Pause, Resume and Roll back are /promote, /pause, /resume and /rollback; an incident's
Acknowledge is /ack and its Timeline is /timeline for that incident (decided on the incident's service); the
post-deploy watch's Roll back is /rollback while the revision it warned about still serves. A rollout button carries
the stage it was drawn at, so a double click or a stale message cannot push a rollout two stages; everything a
button names is looked up again on click and the policy asked again, never trusted from the message. A payload
that does not read as one of these buttons is answered and audited as `invalid`, never a 500. A deploy request's
Approve, Deny and Cancel are commands/queue.py's, decided on the request as it is at the click. A lock's Unlock is
/unlock of the lock it was drawn for (its service and when it was taken), never a lock taken since.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

from bot.domain.change_gate import ALL
from bot.domain.rollout import Command as RolloutCommand
from bot.domain.watch import still_serves
from bot.render.change_control import EPOCH, UNLOCK
from bot.render.deploy_request import APPROVE, CANCEL, DENY
from bot.render.watch import no_longer_serves
from commands.change_control import passes
from commands.framework import Ack, Answer, Invalid, Invocation, Plan, Runtime, guarded
from commands.incidents import acknowledge
from commands.lock import UnlockCommand, UnlockRequest
from commands.queue import plan_request_click
from commands.rollback import Rollback
from commands.rollout_control import ServiceRequest, hand_over
from commands.timeline import share_timeline

Verb = Literal["promote", "pause", "resume", "rollback", "ack", "timeline", "approve", "deny", "cancel"]
ACTIONS: dict[str, Verb] = {"rollout_promote": "promote", "rollout_pause": "pause", "rollout_resume": "resume",
                            "rollout_rollback": "rollback", "incident_ack": "ack", "incident_timeline": "timeline",
                            "watch_rollback": "rollback",
                            APPROVE: "approve", DENY: "deny", CANCEL: "cancel"}
_LOCK = re.compile(r"([a-z][a-z0-9-]{0,62})@([0-9]{1,16})")
"""An Unlock button's value: `<service or all>@<microseconds since the epoch the lock was taken>`."""
LINK_BUTTONS = ("incident_runbook",)
"""URL buttons: Slack opens the link itself, and the action it also sends only needs acknowledging."""

_VALUE = re.compile(r"([0-9]{1,18})(?::([0-9]{1,4}))?")
"""What the bot draws into a button's value: `<rollout id>:<stage>` or `<incident id>` / `<rollout id>`. ASCII
digits only (`str.isdigit` also takes '²'), and few enough of them for a database integer."""

_NOTHING_DONE = "nothing was done."


@dataclass(frozen=True)
class Click:
    """One press of one of the bot's buttons: which, on which rollout or incident, and the stage it was drawn at."""

    action_id: str
    verb: Verb
    subject: int
    stage: int | None


@dataclass(frozen=True)
class UnlockClick:
    """A press of a lock's Unlock: which service (or `all`), and when the lock it was drawn for was taken."""

    service: str
    since: datetime


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _first_action(body: Mapping[str, Any]) -> Any:
    actions = body.get("actions")
    return actions[0] if isinstance(actions, list) and actions else None


def routable(body: Mapping[str, Any]) -> bool:
    """Whether Bolt's action matchers can read this payload: they index `actions[0]["action_id"]` of every
    block_actions payload and fail with a 500 on anything else."""
    if body.get("type") != "block_actions":
        return True
    action = _first_action(body)
    return isinstance(action, Mapping) and isinstance(action.get("action_id"), str)


def invocation_of(body: Mapping[str, Any]) -> Invocation:
    """Who clicked what, where, from a block_actions payload of any shape."""
    user, action = _mapping(body.get("user")), _mapping(_first_action(body))
    value = action.get("value")
    shown = value if isinstance(value, str) or value is None else f"<{type(value).__name__}>"
    return Invocation(command=f"button:{_text(action.get('action_id')) or '?'}", text=shown or "",
                      user_id=_text(user.get("id")), user_name=_text(user.get("username")) or _text(user.get("name")),
                      channel_id=_text(_mapping(body.get("channel")).get("id")),
                      response_url=_text(body.get("response_url")))


def read_click(body: Mapping[str, Any]) -> Click | UnlockClick | Invalid | None:
    """The button pressed, or what is wrong with the payload; None for a link button (nothing to do)."""
    action = _first_action(body)
    if not isinstance(action, Mapping):
        return Invalid("button", "no action in the payload", f"That click named no button; {_NOTHING_DONE}")
    action_id = _text(action.get("action_id"))
    if action_id in LINK_BUTTONS:
        return None
    if action_id == UNLOCK:
        value = action.get("value")
        lock = _LOCK.fullmatch(value) if isinstance(value, str) else None
        if lock is None:
            return Invalid("lock", "button value is not one the bot draws",
                           f"That button doesn't say which lock it is for; {_NOTHING_DONE}")
        return UnlockClick(lock.group(1), EPOCH + timedelta(microseconds=int(lock.group(2))))
    verb = ACTIONS.get(action_id)
    if verb is None:
        return Invalid("button", "unknown button",
                       f"I don't know that button (it may be from an older version of me); {_NOTHING_DONE}")
    value = action.get("value")
    found = _VALUE.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        return Invalid(verb, "button value is not one the bot draws",
                       f"That button doesn't say which rollout or incident it is for; {_NOTHING_DONE}")
    stage = found.group(2)
    return Click(action_id, verb, int(found.group(1)), int(stage) if stage is not None else None)


def plan_unlock(click: UnlockClick, invocation: Invocation, runtime: Runtime) -> Plan | Invalid:
    """`/unlock` of the lock the button was drawn for, asked of the policy as the typed command is."""
    if click.service != ALL and click.service not in runtime.config.services:
        return Invalid("lock", "no such service", f"No service `{click.service}` is configured now; {_NOTHING_DONE}")
    command, request = UnlockCommand(), UnlockRequest(click.service, drawn=click.since)
    return Plan(command.action, command.target(request), command.needs(request),
                partial(command.act, request, invocation, runtime))


async def plan_click(click: Click, invocation: Invocation, runtime: Runtime, answer: Answer) -> Plan | Invalid:
    """What the click does, with its service looked up again now: the policy decides on what the button acts on
    today, not on what the message said when it was drawn."""
    verb = click.verb
    if verb == "approve" or verb == "deny" or verb == "cancel":
        return await plan_request_click(verb, click.subject, invocation, runtime, answer)
    if verb == "ack":
        incident = await asyncio.to_thread(runtime.incidents.incidents.by_id, click.subject)
        service = incident.incident.service if incident else None

        async def acknowledged() -> None:
            await answer(await acknowledge(runtime, service or "", invocation.user_id))

        return Plan("ack", service, "ack", acknowledged,
                    check=_gone(service, "ack", "incident", click.subject))
    if verb == "timeline":
        found = await asyncio.to_thread(runtime.incidents.incidents.by_id, click.subject)

        async def shared() -> None:
            if found is not None:
                await answer(await share_timeline(runtime, found))

        return Plan("timeline", found.incident.service if found else None, "timeline", shared,
                    check=_gone(found.incident.service if found else None, "timeline", "incident", click.subject))
    stored = await asyncio.to_thread(runtime.store.rollout, click.subject)
    service = stored.rollout.service if stored else None
    gone = _gone(service, click.verb, "rollout", click.subject)
    if click.action_id == "watch_rollback":
        # The post-deploy watch's button, on a finished rollout: what `/rollback <service>` does now, while the
        # revision it warned about (the rollout's candidate) still serves.
        async def still_warned() -> Invalid | None:
            if stored is None:
                return await gone()
            warned = stored.rollout.candidate
            routed = (await runtime.cloudrun.read(stored.rollout.service)).live.traffic
            if still_serves(warned, routed):
                return None
            return Invalid("rollback", "stale button", no_longer_serves(stored.rollout.service, warned, routed))

        return Plan("rollback", service, "rollback",
                    lambda: Rollback().act(ServiceRequest(service or ""), invocation, runtime), check=still_warned)

    async def current() -> Invalid | None:
        if stored is None:
            return await gone()
        if click.verb == "promote" and click.stage is not None and click.stage != stored.rollout.stage:
            return Invalid("promote", "stale button", f"Rollout #{click.subject} has moved on since; {_NOTHING_DONE}")
        return None

    async def handed_over() -> None:
        if verb in ("promote", "resume") and not await passes(runtime, invocation, service or "", "", f"/{verb}"):
            return
        await answer(await hand_over(runtime, click.subject, RolloutCommand(verb, invocation.user_id)))

    return Plan(click.verb, service, click.verb, handed_over, check=current)


def _gone(service: str | None, action: str, thing: str, subject: int) -> Callable[[], Awaitable[Invalid | None]]:
    async def check() -> Invalid | None:
        return None if service is not None else Invalid(action, f"no such {thing}",
                                                         f"{thing.capitalize()} #{subject} is gone; {_NOTHING_DONE}")

    return check


async def handle_button(body: Mapping[str, Any], ack: Ack, runtime: Runtime) -> str | None:
    """Acked at once (Slack wants it within 3 s and shows nothing from it), then the guarded pipeline; returns the
    outcome, or None for a link button."""
    await ack()
    click = read_click(body)
    if click is None:
        return None
    invocation = invocation_of(body)
    answer = Answer(runtime, invocation, None)

    async def prepare() -> Plan | Invalid:
        if isinstance(click, UnlockClick):
            return plan_unlock(click, invocation, runtime)
        return click if isinstance(click, Invalid) else await plan_click(click, invocation, runtime, answer)

    return await guarded(runtime, invocation, prepare, answer)
