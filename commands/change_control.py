"""The change gate as commands meet it: `/deploy`, `/promote` and `/resume` (and their buttons) ask `passes` before
they act. A refusal is answered and audited; an override that went past a lock or a freeze window is announced in
the deploy channel (through the outbox) and audited as an `override` row of its own."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bot.adapters.lock_store import LockStore
from bot.adapters.outbox import Message, Outbox
from bot.adapters.usergroups import MembersUnread
from bot.domain.change_gate import Go, Refusal, gate
from bot.domain.policy import Allowed, decide
from bot.render.blocks import section
from bot.render.mrkdwn import escape, printable
from commands.framework import Invocation, Runtime

REASON_MAX = 300


def reason_of(text: str) -> str:
    """A reason someone typed (a lock's, an override's), made safe to quote in Slack where it enters the bot."""
    return escape(printable(text)).strip()[:REASON_MAX]


async def may(runtime: Runtime, user: str, action: str, service: str | None) -> tuple[bool, tuple[str, ...]]:
    """Whether `user` may `action` on `service`, and the roles that could (for a refusal that names them). A group
    whose members were never read from Slack allows nothing (fail closed)."""
    grants = runtime.grants
    try:
        groups, unread = await runtime.groups_of(user), frozenset[str]()
    except MembersUnread as exc:
        groups, unread = exc.known, exc.unread
    decision = decide(grants, user, groups, action, service, unread=unread)
    roles = tuple(g.role for g in grants if g.covers(action, service))
    return isinstance(decision, Allowed), roles


async def announce(runtime: Runtime, key: str, text: str) -> None:
    """A post in the deploy channel, through the outbox: it is sent even if this instance stops now."""
    channel = runtime.config.slack.channels[runtime.config.slack.deploy_channel]
    await asyncio.to_thread(Outbox(runtime.store).add, [Message(key, "post", channel, text, [section(text)])])
    runtime.incidents.sent()


async def passes(runtime: Runtime, invocation: Invocation, service: str, override: str, command: str) -> Go | None:
    """Whether `command` may move `service` forward now: Go, or None once the person was told why not."""
    now = datetime.now(UTC)
    user = invocation.user_id
    locks = await LockStore(runtime.store).locks(now)
    allowed, roles = await may(runtime, user, "override", service)
    verdict = gate(service=service, user=user, now=now, locks=locks, freezes=runtime.config.freeze_windows(),
                   override=override, may_override=allowed, command=command, overriders=roles)
    if isinstance(verdict, Refusal):  # audited first: whoever reads the answer finds the row
        await runtime.audit(invocation, command.lstrip("/"), service, "refused", verdict.text)
        await runtime.slack.respond(invocation.response_url, verdict.text)
        return None
    if verdict.overridden:
        past = "; ".join(verdict.overridden)
        await runtime.audit(invocation, "override", service, "ok", f"{command}: {override} (past: {past})")
        await announce(runtime, f"override:{service}:{now.timestamp():.0f}:{user}",
                       f":warning: <@{user}> overrode change control for `{command} {service}`: {override}\n"
                       f"Gone past: {past}")
    return verdict
