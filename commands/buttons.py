"""The rollout message's buttons: the same commands and the same permissions as /promote, /pause, /resume and
/rollback. A button carries the stage it was drawn at, so a double click or a stale message cannot push a
rollout two stages."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal

from bot.domain.policy import Refused, decide, groups_of
from bot.domain.rollout import Command as RolloutCommand
from commands.framework import Ack, Invocation, Runtime
from commands.rollout_control import hand_over

Verb = Literal["promote", "pause", "resume", "rollback"]
ACTIONS: dict[str, Verb] = {"rollout_promote": "promote", "rollout_pause": "pause", "rollout_resume": "resume",
           "rollout_rollback": "rollback"}


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
    rollout_id, _, stage = value.partition(":")
    if verb is None or not rollout_id.isdigit():
        await runtime.audit(invocation, action_id or "button", None, "invalid", "unknown button")
        return
    stored = await asyncio.to_thread(runtime.store.rollout, int(rollout_id))
    service = stored.rollout.service if stored else None
    groups = groups_of(invocation.user_id, runtime.config.slack.usergroups)
    decision = decide(runtime.grants, invocation.user_id, groups, verb, service)
    if isinstance(decision, Refused):
        await runtime.audit(invocation, verb, service, "refused", decision.message())
        await runtime.slack.respond(invocation.response_url, f":no_entry: {decision.message()}")
        return
    if stored is not None and verb == "promote" and stage and stage != str(stored.rollout.stage):
        await runtime.audit(invocation, verb, service, "invalid", "stale button")
        await runtime.slack.respond(invocation.response_url,
                                    f"Rollout #{rollout_id} has moved on since; nothing was done.")
        return
    entry = await runtime.audit(invocation, verb, service, "accepted")
    answer = await hand_over(runtime, int(rollout_id), RolloutCommand(verb, invocation.user_id))
    await runtime.slack.respond(invocation.response_url, answer)
    await runtime.finish_audit(entry, "ok")
