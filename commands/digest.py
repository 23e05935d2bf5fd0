"""`/digest [name]`: the health digest as it would be posted now, to the person who asked only."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from bot.config import Config
from bot.render.mrkdwn import echoed
from commands.framework import Command, Invocation, Runtime
from commands.grammar import Args, UserError


@dataclass(frozen=True)
class DigestRequest:
    name: str  # "" for the digest of the channel it was asked in, else the first one


class DigestCommand(Command[DigestRequest]):
    name = "digest"
    action = "digest"
    usage = "/digest [name]"
    summary = "The health digest now, shown only to you: fleet status, deploys, open incidents, MTTR."
    examples = ("/digest", "/digest morning")

    def parse(self, args: Args, config: Config) -> DigestRequest | UserError:
        if not config.digests:
            return UserError("no digest is configured (`digests:` in the config).", "`/health all`")
        if args.options or len(args.positional) > 1:
            return UserError("`/digest` takes at most a digest's name.", "`/digest`")
        name = args.target or ""
        known = [d.name for d in config.digests]
        if name and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f" Did you mean `{close[0]}`?" if close else f" Digests: {', '.join(known)}."
            return UserError(f"there is no digest `{echoed(name)}`.{hint}", f"`/digest {known[0]}`")
        return DigestRequest(name)

    async def act(self, request: DigestRequest, invocation: Invocation, runtime: Runtime) -> None:
        config = runtime.config
        here = [d for d in config.digests if config.slack.channels.get(d.channel) == invocation.channel_id]
        chosen = next((d for d in config.digests if d.name == request.name), None) or (here or config.digests)[0]
        text, blocks = await runtime.digests.now(chosen)
        await runtime.slack.respond(invocation.response_url, text, blocks)
