"""Text from outside made safe for Slack's mrkdwn: Google's messages, Cloud Logging lines, probe bodies, alert
policies, and what people type when it is quoted back to them.

Slack reads `<...>` as a link, a mention or a broadcast, so a log line holding `<!channel>` would ping a whole
channel. Slack's rule ("Escaping text", https://api.slack.com/reference/surfaces/formatting#escaping, and as
https://api.slack.com/docs/message-formatting words it): "There are three characters you must convert to HTML
entities and only three: &, <, and >", as `&amp;`, `&lt;`, `&gt;`; "Don't HTML entity-encode the entire message".

`escape` is idempotent: an `&` that already starts one of those three entities is kept. Outside text is escaped
where it enters the bot (the adapters) and again by the renderers of fields that hold nothing else, so a text
escaped twice must read as once. Its output holds no `<` or `>` at all, so nothing in it can become a control
sequence; the only cost is that an outside text quoting a literal `&lt;` shows `<`.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta

_BARE_AMPERSAND = re.compile(r"&(?!(?:amp|lt|gt);)")
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Unicode's explicit directional marks, embeddings, overrides and isolates (https://www.unicode.org/reports/tr9/,
section 2): they can make a quoted name read as something else ("Trojan Source")."""


def escape(text: str) -> str:
    return _BARE_AMPERSAND.sub("&amp;", text).replace("<", "&lt;").replace(">", "&gt;")


def printable(text: str) -> str:
    """`text` without control characters (Unicode category Cc, and the directional ones): a line break or tab
    becomes a space, anything else is dropped, so what is quoted back stays on its line and reads as typed."""
    spaced = text.replace("\r\n", " ").replace("\n", " ").replace("\t", " ").replace("\r", " ")
    return "".join(ch for ch in spaced if unicodedata.category(ch) != "Cc" and ch not in _BIDI)


def echoed(text: str) -> str:
    """What someone typed, to quote back inside a code span: printable, escaped, and with no backtick to end the
    span early."""
    return escape(printable(text).replace("`", "'"))


def spoken(duration: timedelta) -> str:
    """Durations as on-call people say them: seconds only under a minute, minutes to the second under an hour."""
    seconds = max(int(duration.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, second = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {second} s" if second else f"{minutes} min"
    hours, minute = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minute} min" if minute else f"{hours} h"
    days, hour = divmod(hours, 24)
    return f"{days} d {hour} h" if hour else f"{days} d"
