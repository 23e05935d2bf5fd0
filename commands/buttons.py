"""The buttons on the bot's messages: the same commands and the same permissions as their slash commands.

A rollout's Promote, Pause, Resume and Roll back are /promote, /pause, /resume and /rollback; an incident's
Acknowledge is /ack; the post-deploy watch's Roll back is /rollback. A rollout button carries the stage it was
drawn at, so a double click or a stale message cannot push a rollout two stages; everything a button names is
looked up again on click, never trusted from the message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal

from bot.domain.policy import Refused, decide, groups_of
from bot.domain.rollout import Command as RolloutCommand
from commands.framework import Ack, Invocation, Runtime
from commands.incidents import acknowledge
from commands.rollback import Rollback
from commands.rollout_control import ServiceRequest, hand_over

Verb = Literal["promote", "pause", "resume", "rollback", "ack"]
ACTIONS: dict[str, Verb] = {"rollout_promote": "promote", "rollout_pause": "pause", "rollout_resume": "resume",
                            "rollout_rollback": "rollback", "incident_ack": "ack", "watch_rollback": "rollback"}
LINK_BUTTONS = ("incident_runbook",)
"""URL buttons: Slack opens the link itself, and the action it also sends only needs acknowledging."""


async def handle_button(body: Mapping[str, Any], ack: Ack, runtime: Runtime) -> None:
    await ack()
    user = body.get("user", {})
    action = (body.get("actions") or [{}])[0]
    action_id = str(action.get("action_id", ""))
    value = str(action.get("value", ""))
    invocation = Invocation(command=f"button:{action_id}", text=value, user_id=str(user.get("id", "")),
                            user_name=str(user.get("username") or user.get("name", "")),
                            channel_id=str(body.get("channel", {}).get("id", "")),
                            response_url=str(body.get("response_url", "")))
    verb = ACTIONS.get(action_id)
    subject, _, stage = value.partition(":")
    if verb is None or not subject.isdigit():
        await runtime.audit(invocation, action_id or "button", None, "invalid", "unknown button")
        return
    if verb == "ack":
        incident = await asyncio.to_thread(runtime.incidents.incidents.by_id, int(subject))
        service = incident.incident.service if incident else None
    else:
        stored = await asyncio.to_thread(runtime.store.rollout, int(subject))
        service = stored.rollout.service if stored else None
    groups = groups_of(invocation.user_id, runtime.config.slack.usergroups)
    decision = decide(runtime.grants, invocation.user_id, groups, verb, service)
    if isinstance(decision, Refused):
        await runtime.audit(invocation, verb, service, "refused", decision.message())
        await runtime.slack.respond(invocation.response_url, f":no_entry: {decision.message()}")
        return
    if verb == "ack":
        if service is None:
            await runtime.audit(invocation, verb, None, "invalid", "no such incident")
            await runtime.slack.respond(invocation.response_url, f"Incident #{subject} is gone; nothing was done.")
            return
        entry = await runtime.audit(invocation, verb, service, "accepted")
        await runtime.slack.respond(invocation.response_url, await acknowledge(runtime, service, invocation.user_id))
        await runtime.finish_audit(entry, "ok")
        return
    if action_id == "watch_rollback" and service is not None:
        # The post-deploy watch's button, on a finished rollout: what `/rollback <service>` does now.
        entry = await runtime.audit(invocation, verb, service, "accepted")
        await Rollback().act(ServiceRequest(service), invocation, runtime)
        await runtime.finish_audit(entry, "ok")
        return
    if stored is not None and verb == "promote" and stage and stage != str(stored.rollout.stage):
        await runtime.audit(invocation, verb, service, "invalid", "stale button")
        await runtime.slack.respond(invocation.response_url,
                                    f"Rollout #{subject} has moved on since; nothing was done.")
        return
    entry = await runtime.audit(invocation, verb, service, "accepted")
    answer = await hand_over(runtime, int(subject), RolloutCommand(verb, invocation.user_id))
    await runtime.slack.respond(invocation.response_url, answer)
    await runtime.finish_audit(entry, "ok")
