"""`/help [command]`: what each command does, its arguments, an example, and who may use it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.adapters.usergroups import MembersUnread
from bot.config import Config
from bot.domain.policy import Allowed, decide
from bot.render.blocks import Block, context, divider, header, section
from bot.render.mrkdwn import echoed
from commands.framework import Command, Invocation, Runtime
from commands.grammar import Args, UserError, check_options, resolve_service


@dataclass(frozen=True)
class HelpRequest:
    topic: str | None


class Help(Command[HelpRequest]):
    name = "help"
    action = None
    usage = "/help [command]"
    summary = "What each command does, with an example; `/help <command>` for one command in detail."
    examples = ("/help", "/help deploy")

    def __init__(self, commands: Sequence[Command[Any]]) -> None:
        self.commands = [*commands, self]

    def parse(self, args: Args, config: Config) -> HelpRequest | UserError:
        problem = check_options(args, (), self.usage)
        if problem:
            return problem
        if args.target is None:
            return HelpRequest(None)
        names = [c.name for c in self.commands]
        topic = resolve_service(args.target.lstrip("/"), names, command="/help")
        if isinstance(topic, UserError):
            listed = " ".join(f"`/{n}`" for n in names)
            named = echoed(args.target.lstrip("/"))
            return UserError(f"there is no command `/{named}`. Commands: {listed}.", "`/help`")
        return HelpRequest(topic)

    async def act(self, request: HelpRequest, invocation: Invocation, runtime: Runtime) -> None:
        try:
            groups = await runtime.groups_of(invocation.user_id)
        except MembersUnread as exc:
            groups = exc.known
        blocks = self.render(request, invocation.user_id, groups, runtime)
        await runtime.slack.respond(invocation.response_url, "chatops help", blocks)

    def render(self, request: HelpRequest, user_id: str, groups: frozenset[str], runtime: Runtime) -> list[Block]:
        """`groups`: the user groups the user is known to be in. A command is open to them if they may use it on
        the fleet or on some service (a team's role covers its own services only)."""
        grants = runtime.grants
        targets: tuple[str | None, ...] = (None, *runtime.config.services)

        def may(command: Command[Any]) -> bool:
            action = command.action
            if action is None:
                return True
            return any(isinstance(decide(grants, user_id, groups, action, target), Allowed) for target in targets)

        if request.topic is None:
            blocks: list[Block] = [header("chatops: operate Cloud Run from Slack")]
            for command in self.commands:
                lock = "" if may(command) else " :lock:"
                blocks.append(section(f"*`{command.usage}`*{lock}\n{command.summary}\n_e.g._ `{command.examples[0]}`"))
            blocks.append(context(":lock: needs a role you don't have. `/help <command>` shows who may use it."))
            return blocks
        command = next(c for c in self.commands if c.name == request.topic)
        roles = [name for name, role in runtime.config.roles.items()
                 if "*" in role.may or command.action in role.may] if command.action else ["everyone"]
        teams = [f"{name} ({team.role} on {', '.join(team.services)})" for name, team in runtime.config.teams.items()
                 if command.action and {command.action, "*"} & set(runtime.config.roles[team.role].may)]
        examples = "\n".join(f"• `{e}`" for e in command.examples)
        return [
            header(command.slash),
            section(f"*Usage:* `{command.usage}`\n{command.summary}\n{command.details}".rstrip()),
            section(f"*Examples*\n{examples}"),
            divider(),
            context(f"Who may: {', '.join(roles) or 'nobody (no role allows it)'}"
                    + (f"; teams: {'; '.join(teams)}" if teams else "")
                    + ("" if may(command) else " · you don't have this role")),
        ]
