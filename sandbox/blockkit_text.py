"""Block Kit as a person reads it in a terminal: one message from Slack's user side (`GET /messages`) turned
into lines of text, so the sandbox console shows what Slack would show, down to the buttons one can click.

Slack's mrkdwn is converted rather than printed raw, because `<@U07ONCALL01>` or `:red_circle:` says
nothing at a glance; styles become ANSI codes only when asked, so pipes and tests see plain text.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import zip_longest
from typing import Any

Json = dict[str, Any]

RESET = "\x1b[0m"
BOLD, DIM, ITALIC, UNDERLINE, STRIKE = "\x1b[1m", "\x1b[2m", "\x1b[3m", "\x1b[4m", "\x1b[9m"
RED, GREEN, YELLOW, CYAN = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[36m"

EMOJI: Mapping[str, str] = {
    "red_circle": "🔴", "large_green_circle": "🟢", "large_yellow_circle": "🟡", "large_orange_circle": "🟠",
    "large_blue_circle": "🔵", "black_circle": "⚫", "white_circle": "⚪", "warning": "⚠️",
    "white_check_mark": "✅", "heavy_check_mark": "✔️", "x": "❌", "hourglass_flowing_sand": "⏳",
    "hourglass": "⌛", "rotating_light": "🚨", "arrow_right": "➡️", "arrow_up": "⬆️", "arrow_down": "⬇️",
    "arrows_counterclockwise": "🔄", "leftwards_arrow_with_hook": "↩️", "rewind": "⏪", "fast_forward": "⏩",
    "double_vertical_bar": "⏸️", "pause_button": "⏸️", "arrow_forward": "▶️", "rocket": "🚀", "fire": "🔥",
    "tada": "🎉", "eyes": "👀", "no_entry": "⛔", "no_entry_sign": "🚫", "octagonal_sign": "🛑",
    "bell": "🔔", "mag": "🔍", "bulb": "💡", "memo": "📝", "clipboard": "📋",
    "link": "🔗", "book": "📖", "books": "📚", "package": "📦", "wrench": "🔧", "hammer_and_wrench": "🛠️",
    "stopwatch": "⏱️", "clock1": "🕐", "calendar": "📆", "chart_with_upwards_trend": "📈",
    "chart_with_downwards_trend": "📉", "bar_chart": "📊", "checkered_flag": "🏁", "sos": "🆘",
    "question": "❓", "grey_question": "❔",
    "exclamation": "❗", "heavy_exclamation_mark": "❗", "thumbsup": "👍", "+1": "👍", "thumbsdown": "👎",
    "-1": "👎", "point_right": "👉", "wave": "👋", "pray": "🙏", "zzz": "💤", "skull": "💀",
}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FENCE = re.compile(r"```(.*?)```", re.DOTALL)
_CODE = re.compile(r"`([^`\n]+)`")
_ENTITY = re.compile(r"<([^<>\n]+)>")
_SHORTCODE = re.compile(r":([a-z0-9_+'-]+):")
_STASHED = re.compile(r"\ue000(\d+)\ue001")
_QUOTE = re.compile(r"^(?:>|&gt;) ?")
_BROADCASTS = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}


def _marked(marker: str) -> re.Pattern[str]:
    """Slack's emphasis: the marker hugs the text and does not sit inside a word, as in `snake_case`."""
    m = re.escape(marker)
    return re.compile(rf"(?<![\w{m}]){m}(?![\s{m}])(.+?)(?<!\s){m}(?![\w{m}])")


_EMPHASIS = ((_marked("_"), ITALIC), (_marked("~"), STRIKE), (_marked("*"), BOLD))


def render_message(message: Json, *, users: Mapping[str, str], width: int = 100, color: bool = False) -> str:
    """One message as the terminal shows it; `users` maps user ids to the names shown for them."""
    reply = message.get("thread_ts") not in (None, message["ts"])
    indent = 6 if reply else 2
    ambiguous = {k for k, n in Counter(str(b.get("action_id")) for b in buttons(message)).items() if n > 1}
    render = _Renderer(users, max(width - indent, 20), color, frozenset(ambiguous))
    text = message.get("text") or ""
    body = render.blocks(message["blocks"]) if message.get("blocks") else render.mrkdwn(text) if text else []
    inset = replace(render, width=render.width - 2)
    for attachment in message.get("attachments") or []:
        body += [f"{render.paint('┃', DIM)} {line}" for line in inset.attachment(attachment)]
    if message.get("reactions"):
        body.append(render.paint("  ".join(f"{_emoji(r['name'])} {r['count']}" for r in message["reactions"]),
                                 DIM, whole=True))
    pad = " " * indent
    return "\n".join([render.heading(message, reply), *(f"{pad}{line}".rstrip() for line in body)])


def text_of(message: Json) -> str:
    """Every text a person can read in a message, unformatted: what tests and the demo search in."""
    parts = [str(message.get("text", ""))]
    stack: list[Any] = [message.get("blocks", []), [a.get("blocks", []) for a in message.get("attachments") or []]]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    parts.append(value)
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return "\n".join(parts)


def buttons(message: Json) -> Iterable[Json]:
    """The buttons of a message, where Slack lets a person click them: actions blocks and section accessories."""
    blocks = list(message.get("blocks") or [])
    for attachment in message.get("attachments") or []:
        blocks += attachment.get("blocks") or []
    for block in blocks:
        elements = block.get("elements", []) if block.get("type") == "actions" else [block.get("accessory")]
        yield from (e for e in elements if isinstance(e, dict) and e.get("type") == "button")


def _clock(ts: str) -> str:
    return datetime.fromtimestamp(float(ts)).strftime("%H:%M:%S")


def _emoji(name: str) -> str:
    return EMOJI.get(name, f":{name}:")


def _cells(text: str) -> int:
    """Terminal columns: wide characters take two, combining marks none, and the emoji presentation selector
    makes a narrow symbol before it (⚠ in ⚠️) two wide."""
    width = last = 0
    for char in _ANSI.sub("", text):
        if char == "\ufe0f":
            width, last = width + (last == 1), 2
        elif not (unicodedata.combining(char) or char in "\u200d\ufe0e"):
            last = 2 if unicodedata.east_asian_width(char) in "WF" else 1
            width += last
    return width


def _cut(word: str, width: int) -> tuple[str, str]:
    """The longest head of `word` that fits `width` columns (one character at least, so wrapping always moves
    on), never splitting an ANSI code."""
    used = 0
    for match in re.finditer(r"\x1b\[[0-9;]*m|.", word, re.DOTALL):
        size = _cells(match.group())
        if used and used + size > width:
            return word[:match.start()], word[match.start():]
        used += size
    return word, ""


def _wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap by terminal columns; runs of spaces inside a line are kept, a word longer than the
    line (a URL) is cut."""
    lines: list[str] = []
    line, gap = "", ""
    for token in re.findall(r" +|[^ ]+", text):
        if token.startswith(" "):
            gap += token
        elif _cells(line + gap + token) <= width:
            line, gap = line + gap + token, ""
        else:
            if line:
                lines.append(line)
            gap = ""
            while _cells(token) > width:
                head, token = _cut(token, width)
                lines.append(head)
            line = token
    if line or not lines:
        lines.append(line)
    return lines


@dataclass(frozen=True)
class _Renderer:
    users: Mapping[str, str]
    width: int
    color: bool
    ambiguous: frozenset[str]

    def paint(self, text: str, *codes: str, whole: bool = False) -> str:
        """Style each word on its own, so a wrapped line never carries a style into the next line's
        indentation; `whole` styles a finished line, surviving the resets of styles inside it."""
        if not self.color or not text:
            return text
        on = "".join(codes)
        if whole:
            return on + text.replace(RESET, RESET + on) + RESET
        return re.sub(r"\S+", lambda word: f"{on}{word.group()}{RESET}", text)

    def heading(self, message: Json, reply: bool) -> str:
        author = self.users.get(message.get("user", ""), message.get("user", "?"))
        parts = [self.paint(_clock(message["ts"]), DIM), self.paint(author, BOLD)]
        if reply:
            parts.append(self.paint(f"(thread of {_clock(message['thread_ts'])})", DIM, whole=True))
        if message.get("kind") == "ephemeral":
            parts.append(self.paint("(only visible to you)", DIM, ITALIC, whole=True))
        if message.get("reply_count"):
            count = message["reply_count"]
            parts.append(self.paint(f"· {count} {'reply' if count == 1 else 'replies'}", DIM, whole=True))
        return ("  ↳ " if reply else "") + "  ".join(parts)

    # --- blocks -----------------------------------------------------------------------------------------

    def blocks(self, blocks: Iterable[Json]) -> list[str]:
        kinds: dict[str, Callable[[Json], list[str]]] = {
            "header": self.header, "section": self.section, "divider": self.divider, "context": self.context,
            "actions": self.actions, "image": self.image, "rich_text": self.rich_text,
            "markdown": lambda block: self.plain(str(block.get("text", ""))),
        }
        lines: list[str] = []
        previous = ""
        for block in blocks:
            if block.get("type") == previous == "section":  # Slack spaces sections apart: one per service, say
                lines.append("")
            previous = block.get("type", "")
            kind = kinds.get(previous)
            lines += kind(block) if kind else [self.paint(f"[{previous} block]", DIM)]
        return lines

    def header(self, block: Json) -> list[str]:
        lines = self.text(block.get("text"), self.width)
        if self.color:
            return [self.paint(line, BOLD, UNDERLINE, whole=True) for line in lines]
        return [*lines, "═" * max((_cells(line) for line in lines), default=0)]

    def section(self, block: Json) -> list[str]:
        lines = self.text(block.get("text"), self.width)
        fields = block.get("fields", [])
        if self.width >= 40:
            lines += self.columns(fields)
        else:
            lines += [line for field in fields for line in self.text(field, self.width)]
        accessory = block.get("accessory")
        if isinstance(accessory, dict):
            lines += self.controls([accessory])
        return lines

    def columns(self, fields: list[Json]) -> list[str]:
        """Fields two by two, as Slack lays them out."""
        column = (self.width - 2) // 2
        cells = [self.text(field, column) for field in fields]
        lines: list[str] = []
        empty: list[str] = []
        for left, right in zip_longest(cells[::2], cells[1::2], fillvalue=empty):
            for row in range(max(len(left), len(right))):
                first = left[row] if row < len(left) else ""
                second = right[row] if row < len(right) else ""
                lines.append(f"{first}{' ' * (column - _cells(first))}  {second}" if second else first)
        return lines

    def divider(self, _block: Json) -> list[str]:
        return [self.paint("─" * self.width, DIM, whole=True)]

    def context(self, block: Json) -> list[str]:
        parts = [self.inline(element["text"]) if element.get("type") == "mrkdwn"
                 else self.plain_inline(str(element.get("text", ""))) if element.get("type") == "plain_text"
                 else f"[{element.get('alt_text', element.get('type'))}]"
                 for element in block.get("elements", [])]
        return [self.paint(line, DIM, whole=True) for line in _wrap("   ".join(parts), self.width)]

    def actions(self, block: Json) -> list[str]:
        return self.controls(block.get("elements", []))

    def controls(self, elements: Iterable[Json]) -> list[str]:
        """Buttons in a row with, under each, what to type to click it."""
        cells = [(self.control(element), self.click_hint(element)) for element in elements]
        rows: list[list[tuple[str, str, int]]] = [[]]
        used = 0
        for face, hint in cells:
            size = max(_cells(face), _cells(hint)) + 2
            if rows[-1] and used + size > self.width:
                rows.append([])
                used = 0
            rows[-1].append((face, hint, size))
            used += size
        lines: list[str] = []
        for row in rows:
            lines.append("".join(f"{face}{' ' * (size - _cells(face))}" for face, _, size in row).rstrip())
            hints = "".join(f"{hint}{' ' * (size - _cells(hint))}" for _, hint, size in row).rstrip()
            if hints:
                lines.append(self.paint(hints, DIM, whole=True))
        return lines

    def control(self, element: Json) -> str:
        kind = str(element.get("type", ""))
        if kind == "image":
            return f"[image: {element.get('alt_text', '')}]"
        if kind == "overflow":
            return "[ ⋯ ]"
        label = element.get("text") or element.get("placeholder") or {"text": kind}
        face = f"[ {self.plain_inline(str(label.get('text', '')))}{' ▾' if kind.endswith('select') else ''} ]"
        style = {"primary": GREEN, "danger": RED}.get(str(element.get("style")), "")
        return self.paint(face, BOLD, style, whole=True) if kind == "button" else face

    def click_hint(self, element: Json) -> str:
        if element.get("type") != "button":
            return ""
        action_id = element.get("action_id", "")
        value = f" {element.get('value', '')}" if action_id in self.ambiguous else ""
        return f":click {action_id}{value}"

    def image(self, block: Json) -> list[str]:
        title = block.get("title", {}).get("text")
        alt = f"[image: {block.get('alt_text', '')}]"
        return _wrap(f"{alt} {title}" if title else alt, self.width)

    def rich_text(self, block: Json) -> list[str]:
        """Plain: the words, lists and quotes of a rich_text block, without its inline styles."""
        lines: list[str] = []
        for part in block.get("elements", []):
            kind = part.get("type")
            if kind == "rich_text_list":
                ordered = part.get("style") == "ordered"
                pad = "  " * int(part.get("indent", 0))
                for number, item in enumerate(part.get("elements", []), start=1 + int(part.get("offset", 0))):
                    bullet = f"{pad}{number}. " if ordered else f"{pad}• "
                    wrapped = _wrap(self.rich_inline(item.get("elements", [])), self.width - _cells(bullet))
                    lines += [(bullet if i == 0 else " " * _cells(bullet)) + w for i, w in enumerate(wrapped)]
            elif kind == "rich_text_preformatted":
                lines += self.code_box(self.rich_inline(part.get("elements", []), emoji=False))
            elif kind == "rich_text_quote":
                quote = self.paint("▌", DIM)
                lines += [f"{quote} {line}" for text in self.rich_inline(part.get("elements", [])).split("\n")
                          for line in _wrap(text, self.width - 2)]
            else:
                lines += [line for text in self.rich_inline(part.get("elements", [])).split("\n")
                          for line in _wrap(text, self.width)]
        return lines

    def rich_inline(self, elements: Iterable[Json], *, emoji: bool = True) -> str:
        def one(element: Json) -> str:
            kind = element.get("type")
            if kind == "link":
                url = str(element.get("url", ""))
                return f"{element['text']} ({url})" if element.get("text") not in (None, url) else url
            if kind == "user":
                return f"@{self.users.get(element.get('user_id', ''), element.get('user_id', ''))}"
            if kind == "channel":
                return f"#{element.get('channel_id', '')}"
            if kind == "usergroup":
                return f"@{element.get('usergroup_id', '')}"
            if kind == "broadcast":
                return f"@{element.get('range', 'here')}"
            if kind == "emoji":
                return _unicode(element["unicode"]) if element.get("unicode") else _emoji(element.get("name", ""))
            text = str(element.get("text", element.get("fallback", "")))
            return self.plain_inline(text) if emoji else text

        return "".join(one(element) for element in elements)

    def attachment(self, attachment: Json) -> list[str]:
        if attachment.get("blocks"):
            return self.blocks(attachment["blocks"])
        text = "\n".join(str(attachment[k]) for k in ("title", "text") if attachment.get(k))
        return self.mrkdwn(text or str(attachment.get("fallback", "")))

    # --- text -------------------------------------------------------------------------------------------

    def text(self, obj: object, width: int) -> list[str]:
        """A text object: mrkdwn is converted, plain_text only gets its emoji."""
        if not isinstance(obj, dict):
            return []
        text = str(obj.get("text", ""))
        if obj.get("type") == "mrkdwn":
            return self.mrkdwn(text, width)
        return self.plain(text, width)

    def plain(self, text: str, width: int | None = None) -> list[str]:
        return [line for part in text.split("\n") for line in _wrap(self.plain_inline(part), width or self.width)]

    def plain_inline(self, text: str) -> str:
        return _SHORTCODE.sub(lambda m: _emoji(m.group(1)), text)

    def mrkdwn(self, text: str, width: int | None = None) -> list[str]:
        """Lines of mrkdwn: code blocks are kept as written, quotes keep their bar when wrapped."""
        width = width or self.width
        parts = _FENCE.split(text)
        lines: list[str] = []
        for index, part in enumerate(parts):
            if index % 2:
                lines += self.code_box(_unescape(part.strip("\n")), width)
                continue
            if index > 0:
                part = part.removeprefix("\n")
            if index < len(parts) - 1:
                part = part.removesuffix("\n")
            if not part and len(parts) > 1:
                continue
            for source in part.split("\n"):
                quote = _QUOTE.match(source)
                if quote:
                    bar = self.paint("▌", DIM)
                    lines += [f"{bar} {line}" for line in _wrap(self.inline(source[quote.end():]), width - 2)]
                else:
                    lines += _wrap(self.inline(source), width)
        return lines

    def code_box(self, code: str, width: int | None = None) -> list[str]:
        room = (width or self.width) - 2
        bar = self.paint("│", DIM)
        return [f"{bar} {self.paint(piece, CYAN)}" for line in code.split("\n") for piece in _wrap(line, room)]

    def inline(self, text: str) -> str:
        """One line of mrkdwn: code and entities are set aside first, so emphasis markers or shortcodes inside
        a URL or a code span stay as written."""
        stash: list[str] = []

        def keep(rendered: str) -> str:
            stash.append(rendered)
            return f"\ue000{len(stash) - 1}\ue001"

        text = _CODE.sub(lambda m: keep(self.paint(_unescape(m.group(1)), CYAN) if self.color
                                        else f"`{_unescape(m.group(1))}`"), text)
        text = _ENTITY.sub(lambda m: keep(self.entity(m.group(1))), text)
        for pattern, code in _EMPHASIS:
            text = pattern.sub(self.painter(code), text)
        return _STASHED.sub(lambda m: stash[int(m.group(1))], _unescape(self.plain_inline(text)))

    def painter(self, code: str) -> Callable[[re.Match[str]], str]:
        return lambda match: self.paint(match.group(1), code)

    def entity(self, inner: str) -> str:
        """`<...>`: a mention, a channel, a broadcast or a link, as Slack displays it."""
        target, _, label = inner.partition("|")
        label = _unescape(label)
        if target.startswith("@"):
            return self.paint(f"@{self.users.get(target[1:], label or target[1:])}", BOLD)
        if target.startswith("#"):
            return self.paint(f"#{label or target[1:]}", BOLD)
        if target.startswith("!"):
            name = target[1:].split("^")[0]
            return self.paint(label or _BROADCASTS.get(name, f"@{name}"), BOLD)
        url = _unescape(target)
        if not label or label == url:
            return self.paint(url, UNDERLINE)
        return f"{label} ({self.paint(url, UNDERLINE)})"


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _unicode(codepoints: str) -> str:
    """rich_text's emoji `unicode` field: hex code points joined by dashes."""
    return "".join(chr(int(point, 16)) for point in codepoints.split("-"))
