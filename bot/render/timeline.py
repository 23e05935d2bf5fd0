"""An incident's timeline as a Markdown postmortem draft: the summary and durations, then one line per moment with
its UTC time and a link to the message that told it, then the headings a postmortem fills in."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta

from bot.domain.timeline import Entry, Timeline

Links = Mapping[tuple[str, str], str]
"""(channel, ts) -> the message's permalink."""

_LABEL = {"detected": "detected", "opened": "incident opened", "failure": "check failing", "recovery": "recovered",
          "alert": "Cloud Monitoring alert", "acknowledged": "acknowledged", "escalated": "escalated",
          "resolved": "resolved", "deploy": "deploy", "rollback": "rollback", "note": "note"}
_MENTION = re.compile(r"<(@|!subteam\^)([A-Z0-9]+)>")
_SLACK_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")


def utc(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def spoken(delta: timedelta | None, missing: str) -> str:
    if delta is None:
        return missing
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def plain(text: str) -> str:
    """Slack's mrkdwn as Markdown: mentions as @id, links as Markdown links, one line."""
    text = _SLACK_LINK.sub(lambda m: f"[{m.group(2)}]({m.group(1)})", text)
    text = _MENTION.sub(lambda m: f"@{m.group(2)}", text)
    return " ".join(text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").split())


def _line(entry: Entry, links: Links) -> str:
    url = links.get((entry.channel, entry.ts)) if entry.ts else None
    where = f" ([message]({url}))" if url else ""
    return f"- `{utc(entry.at)}` **{_LABEL[entry.kind]}**: {plain(entry.text)}{where}"


def timeline_markdown(timeline: Timeline, links: Links) -> str:
    detected = utc(timeline.detected_at) if timeline.detected_at else "unknown"
    acked = f" by @{timeline.acknowledged_by}" if timeline.acknowledged_by else ""
    lines = [
        f"# Incident #{timeline.incident_id}: {timeline.service} (postmortem draft)",
        "",
        f"- Detected: {detected}",
        f"- Time to acknowledge: {spoken(timeline.time_to_acknowledge, 'not acknowledged')}{acked}",
        f"- Time to resolve: {spoken(timeline.time_to_resolve, 'not resolved yet')}",
        "",
        "## Timeline (UTC)",
        "",
        *(_line(entry, links) for entry in timeline.entries),
        "",
        "## Impact",
        "",
        "_Who noticed, what was affected, for how long._",
        "",
        "## Cause",
        "",
        "## Follow-ups",
        "",
        "- [ ] ",
    ]
    return "\n".join(lines) + "\n"
