"""The shared grammar: `/cmd <service|all> [word ...] [key=value ...]`.

Mistakes come back as values with a message for the person who typed them: what was wrong and what to
type instead. Service names match exactly or by a unique prefix; near misses get a "did you mean".
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from bot.render.mrkdwn import echoed

MAX_TEXT = 4000
"""The longest command text the bot reads. Slack documents no limit for a slash command's `text`. For messages it
says "Previously, we asked you only to keep messages under 4,000 bytes", and truncates past 40,000 characters
(https://api.slack.com/changelog/2018-04-truncating-really-long-messages); the stricter 4,000 is taken here, an
assumption. No command needs a tenth of it; longer text is refused unread, so shlex and difflib never chew on
megabytes before the ack, which Slack wants within 3 s."""

_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})  # noqa: RUF001
"""Slack clients turn quotes into typographic ones; shlex would not recognise them."""


@dataclass(frozen=True)
class UserError:
    problem: str
    instead: str = ""

    def text(self) -> str:
        return f":warning: {self.problem}" + (f"\nTry {self.instead}" if self.instead else "")


@dataclass(frozen=True)
class Args:
    positional: tuple[str, ...] = ()
    options: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> str | None:
        return self.positional[0] if self.positional else None

    @property
    def words(self) -> tuple[str, ...]:
        return self.positional[1:]


def tokenize(text: str, usage: str) -> Args | UserError:
    if len(text) > MAX_TEXT:
        return UserError(f"that is {len(text):,} characters; a command takes at most {MAX_TEXT:,}, and none needs "
                         "that many.", f"`{usage}`")
    try:
        tokens = shlex.split(text.translate(_QUOTES))
    except ValueError:
        return UserError("there is an unclosed quote in what you typed.", f"`{usage}`")
    positional: list[str] = []
    options: dict[str, str] = {}
    for token in tokens:
        key, eq, value = token.partition("=")
        if eq:
            if not key or not value:
                return UserError(f"`{echoed(token)}` needs a key and a value, like `image=...`.", f"`{usage}`")
            if key.lower() in options:
                return UserError(f"`{echoed(key)}=` is given twice.", f"`{usage}`")
            options[key.lower()] = value
        else:
            positional.append(token)
    return Args(tuple(positional), options)


def as_value(text: str) -> str:
    """`text` typed as one word of a command, whatever blanks or quotes (straight or curly) it holds: a form's free
    text becomes the words it would have been typed as, and never an unclosed quote."""
    return shlex.quote(text.translate(_QUOTES))


def check_words(args: Args, allowed: Collection[str], usage: str) -> UserError | None:
    for word in args.words:
        if word.lower() not in allowed:
            return UserError(f"I don't know `{echoed(word)}` here{_suggest(word, allowed)}.", f"`{usage}`")
    return None


def check_options(args: Args, allowed: Collection[str], usage: str) -> UserError | None:
    for key in args.options:
        if key not in allowed:
            known = ", ".join(f"`{k}=`" for k in sorted(allowed)) or "none"
            return UserError(f"`{echoed(key)}=` is not an option of this command{_suggest(key, allowed)} "
                             f"(options: {known}).", f"`{usage}`")
    return None


def resolve_service(name: str | None, services: Sequence[str], *, command: str,
                    allow_all: bool = False) -> str | UserError:
    """Exact name, `all` where allowed, or a unique prefix; otherwise a message that helps."""
    example = services[0] if services else "my-service"
    instead = f"`{command} all` or `{command} {example}`" if allow_all else f"`{command} {example}`"
    if not name:
        return UserError("which service?", instead)
    lowered = name.lower()
    if allow_all and lowered == "all":
        return "all"
    if lowered in services:
        return lowered
    prefixed = [s for s in services if s.startswith(lowered)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        listed = ", ".join(f"`{s}`" for s in prefixed[:6])
        return UserError(f"`{echoed(name)}` matches several services: {listed}.", f"`{command} {prefixed[0]}`")
    close = difflib.get_close_matches(lowered, services, n=3, cutoff=0.6)
    if close:
        return UserError(f"there is no service `{echoed(name)}`. Did you mean `{close[0]}`?", f"`{command} {close[0]}`")
    known = ", ".join(f"`{s}`" for s in services[:12]) + (" …" if len(services) > 12 else "")
    return UserError(f"there is no service `{echoed(name)}`. Services: {known}.", instead)


def _suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""
