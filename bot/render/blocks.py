"""Block Kit building blocks that respect Slack's limits: 50 blocks a message, 3,000 characters a
section, 10 fields of 2,000, 150 characters of header, 40,000 of message text."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.render.mrkdwn import escape

Block = dict[str, Any]

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_TEXT = 3000


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, MAX_HEADER), "emoji": True}}


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION)}}


def context(*parts: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(p, 2000)} for p in parts[:10]]}


def divider() -> Block:
    return {"type": "divider"}


def confirm(title: str, text: str, yes: str, style: str = "danger") -> Block:
    """A confirmation dialog (https://docs.slack.dev/reference/block-kit/composition-objects/
    confirmation-dialog-object): title at most 100 characters, text 300, each button's 30."""
    return {"title": {"type": "plain_text", "text": clip(title, 100)}, "text": {"type": "plain_text",
            "text": clip(text, 300)}, "confirm": {"type": "plain_text", "text": clip(yes, 30)},
            "deny": {"type": "plain_text", "text": "Cancel"}, "style": style}


def button(text: str, action_id: str, value: str, style: str | None = None, *, asks: Block | None = None) -> Block:
    """`asks`: the confirmation dialog Slack shows before it sends the click."""
    element: Block = {"type": "button", "text": {"type": "plain_text", "text": clip(text, 75), "emoji": True},
                      "action_id": action_id, "value": clip(value, 2000)}
    if style:
        element["style"] = style
    if asks:
        element["confirm"] = asks
    return element


def actions(*buttons: Block) -> Block:
    return {"type": "actions", "elements": list(buttons)}


def link(url: str | None, label: str) -> str:
    return f"<{url}|{escape(label)}>" if url else escape(label)


def chunk_lines(lines: Iterable[str], limit: int = MAX_SECTION, separator: str = "\n") -> list[str]:
    """Pack items into as few texts of at most `limit` characters as possible, never splitting an item."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        line = clip(line, limit)
        if current and len(current) + len(separator) + len(line) > limit:
            chunks.append(current)
            current = line
        else:
            current = f"{current}{separator}{line}" if current else line
    if current:
        chunks.append(current)
    return chunks
