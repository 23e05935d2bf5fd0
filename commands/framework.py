"""How every slash command runs: parse -> authorize -> ack -> act, with an audit entry for each.

Parsing and policy are fast and pure, so their answers go back in the ack itself; the work continues
after the ack (Slack gives 3 seconds) and reports by posting, through the response_url while Slack takes it
and ephemerally once it is spent or expired. A bug never reaches Slack as a traceback: the user gets a
reference to find it in the logs, and nothing half-done is left unsaid.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from bot.adapters.cloudrun import CloudRunGateway
from bot.adapters.logs import LogsGateway
from bot.adapters.prober import Prober
from bot.adapters.slack import SlackGateway
from bot.adapters.store import AuditEntry, Store
from bot.config import Config
from bot.domain.policy import Grant, Refused, decide, groups_of
from bot.engine.budget import ReadBudget
from bot.engine.digests import Digests
from bot.engine.incidents import IncidentEngine
from bot.runbooks import RunbookLinker
from commands.grammar import Args, UserError, tokenize

log = logging.getLogger(__name__)

Request = TypeVar("Request")


@dataclass(frozen=True)
class Invocation:
    command: str
    text: str
    user_id: str
    user_name: str
    channel_id: str
    response_url: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Invocation:
        return cls(command=str(body.get("command", "")), text=str(body.get("text", "")).strip(),
                   user_id=str(body.get("user_id", "")), user_name=str(body.get("user_name", "")),
                   channel_id=str(body.get("channel_id", "")), response_url=str(body.get("response_url", "")))


@dataclass
class Runtime:
    """Everything a command acts with; built once by the composition root."""

    config: Config
    slack: SlackGateway
    prober: Prober
    cloudrun: CloudRunGateway
    store: Store
    runbook_link: RunbookLinker
    wake: Callable[[], None]
    logs: LogsGateway
    log_budget: ReadBudget
    incidents: IncidentEngine
    digests: Digests

    @property
    def grants(self) -> tuple[Grant, ...]:
        return tuple(Grant(name, frozenset(role.members), frozenset(role.may), frozenset(role.services))
                     for name, role in self.config.roles.items())

    async def audit(self, invocation: Invocation, action: str, service: str | None, outcome: str,
                    detail: str = "") -> int | None:
        """Write the request's row; returns its id (None if the store could not take it)."""
        entry = AuditEntry(user_id=invocation.user_id, user_name=invocation.user_name,
                           channel_id=invocation.channel_id, command=invocation.command, text=invocation.text,
                           action=action, service=service, outcome=outcome, detail=detail[:500])
        try:
            return (await asyncio.to_thread(self.store.record, entry)).id
        except Exception:
            log.exception("could not write the audit entry for %s %s", invocation.command, invocation.text)
            return None

    async def finish_audit(self, entry_id: int | None, outcome: str, detail: str = "") -> None:
        if entry_id is None:
            return
        try:
            await asyncio.to_thread(self.store.finish, entry_id, outcome, detail)
        except Exception:
            log.exception("could not finish audit entry %s as %s", entry_id, outcome)


class Command(ABC, Generic[Request]):
    name: ClassVar[str]
    summary: ClassVar[str]
    usage: ClassVar[str]
    examples: ClassVar[tuple[str, ...]]
    details: ClassVar[str] = ""
    action: ClassVar[str | None]
    """The policy action this command needs; None for commands anyone may use (help)."""

    @property
    def slash(self) -> str:
        return f"/{self.name}"

    @abstractmethod
    def parse(self, args: Args, config: Config) -> Request | UserError: ...

    def target(self, request: Request) -> str | None:
        """The service the policy decides about; None for fleet-wide or read-only commands."""
        return None

    def acknowledgement(self, request: Request, config: Config) -> str:
        return ""

    @abstractmethod
    async def act(self, request: Request, invocation: Invocation, runtime: Runtime) -> None: ...


Ack = Callable[..., Awaitable[Any]]


async def handle(command: Command[Any], body: Mapping[str, Any], ack: Ack, runtime: Runtime) -> None:
    invocation = Invocation.from_body(body)
    args = tokenize(invocation.text, command.usage)
    request = args if isinstance(args, UserError) else command.parse(args, runtime.config)
    if isinstance(request, UserError):
        await ack(text=request.text() + f"\nUsage: `{command.usage}` · `/help {command.name}` explains it.")
        await runtime.audit(invocation, command.action or command.name, None, "invalid", request.problem)
        return
    service = command.target(request)
    action = command.action or command.name
    if command.action is not None:
        groups = groups_of(invocation.user_id, runtime.config.slack.usergroups)
        decision = decide(runtime.grants, invocation.user_id, groups, command.action, service)
        if isinstance(decision, Refused):
            await ack(text=f":no_entry: {decision.message()} Ask someone who has it, or the on-call.")
            await runtime.audit(invocation, action, service, "refused", decision.message())
            return
    await ack(text=command.acknowledgement(request, runtime.config))
    entry = await runtime.audit(invocation, action, service, "accepted")
    with runtime.slack.answering(invocation.response_url, invocation.channel_id, invocation.user_id):
        try:
            await command.act(request, invocation, runtime)
        except Exception as exc:
            reference = secrets.token_hex(4)
            log.exception("%s failed (ref %s)", command.slash, reference)
            await runtime.finish_audit(entry, "failed", f"ref {reference}: {exc}")
            await _apologise(runtime, invocation, reference)
        else:
            await runtime.finish_audit(entry, "ok")


async def _apologise(runtime: Runtime, invocation: Invocation, reference: str) -> None:
    text = (f":x: `{invocation.command} {invocation.text}` failed on our side (ref `{reference}` in the bot's "
            "logs). Try again, or `/status` to see where things stand.")
    try:
        await runtime.slack.respond(invocation.response_url, text)
    except Exception:
        log.exception("could not tell %s that %s failed (ref %s)", invocation.user_id, invocation.command, reference)
