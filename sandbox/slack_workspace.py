"""One Slack workspace as Slack keeps it: people, channels, messages and threads, ephemerals, reactions,
response_urls, the app's granted scopes and the rate limits of its `slack` limit group.

The Web API (slack_api.py) and the emulated people (slack_user.py) act on the same Workspace, so what the
bot posts is what a person sees, and a button a person clicks is the one the bot drew. Slack's rules live
here, not in the HTTP layers, so both sides refuse the same malformed message the same way.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.home_tabs import HomeTabs
from sandbox.slack_errors import SlackError
from sandbox.slack_files import FileStore
from sandbox.slack_limits import ChannelMeter, MethodMeter, SlackLimits

Json = dict[str, Any]
Content = tuple[str, list[Json] | None, list[Json] | None]


@dataclass(frozen=True)
class User:
    id: str
    name: str
    real_name: str
    is_bot: bool = False


@dataclass(frozen=True)
class Channel:
    id: str
    name: str


BOT = User("U07CHATOPS1", "chatops", "chatops", is_bot=True)
BOT_ID = "B07CHATOPS1"
APP_ID = "A07CHATOPS1"
SLACKBOT = User("USLACKBOT", "slackbot", "Slackbot")
PEOPLE = (
    User("U07ONCALL01", "oncall", "On-call Engineer"),
    User("U07VIEWER01", "viewer", "Viewer"),
    User("U07LEAD0001", "lead", "Platform Lead"),
    User("U07GRADER01", "grader", "Grading Engineer"),
    User("U07MODELER1", "modeler", "Model Engineer"),
)


@dataclass
class UserGroup:
    """A user group as usergroups.list describes it (https://docs.slack.dev/reference/methods/usergroups.list):
    an id (S...), a mention handle, a name, its members; a disabled one keeps its members."""

    id: str
    handle: str
    name: str
    users: list[str]
    disabled: bool = False


DEFAULT_USERGROUPS: Mapping[str, tuple[str, str, Sequence[str]]] = {
    "S07SREONCAL": ("sre-oncall", "SRE on-call", ("U07ONCALL01", "U07LEAD0001")),
    "S07GRADING1": ("grading", "Grading", ("U07GRADER01",)),
    "S07MODELS01": ("models", "Prediction models", ("U07MODELER1",)),
}
"""id -> (handle, name, members): the on-call rotation, and the two teams of chatops.example.yaml."""

MAX_TEXT = 40_000
MAX_BLOCKS = 50
TOMBSTONE = "This message was deleted."
_TS = re.compile(r"^\d+(\.\d+)?$")
_EMOJI = re.compile(r"^[a-z0-9_+'-]+(::skin-tone-[2-6])?$")


@dataclass
class Message:
    channel: str
    ts: str
    user: str
    text: str
    blocks: list[Json] | None = None
    attachments: list[Json] | None = None
    thread_ts: str | None = None  # a reply's parent; a parent's own ts once it has replies
    parent_user: str | None = None
    ephemeral_to: str | None = None
    subtype: str | None = None
    edited: str | None = None  # ts of the last chat.update
    replies: list[Message] = field(default_factory=list)
    reactions: dict[str, list[str]] = field(default_factory=dict)
    metadata: Json | None = None  # {"event_type", "event_payload"}: https://docs.slack.dev/messaging/message-metadata
    files: list[Json] | None = None  # file objects shared by files.completeUploadExternal (slack_files.py)

    @property
    def bot_id(self) -> str | None:
        return BOT_ID if self.user == BOT.id else None

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts


@dataclass
class _ResponseUrl:
    channel: str
    user: str
    original: str | None
    opened: float = field(default_factory=time.monotonic)
    uses: int = 0


class Workspace:
    """`scopes` are the bot token's, in the order granted; none unless given, so a method nobody granted fails."""

    def __init__(self, *, team_id: str = "T07SANDBOX1", team_domain: str = "nba-props", bot_token: str,
                 channels: Mapping[str, str], usergroups: Mapping[str, Sequence[str]] = {},
                 scopes: Sequence[str] = (), limits: SlackLimits | None = None) -> None:
        self.team_id = team_id
        self.team_domain = team_domain
        self.bot_token = bot_token
        self.created = int(time.time())
        self.users: dict[str, User] = {u.id: u for u in (BOT, SLACKBOT, *PEOPLE)}
        self.channels: dict[str, Channel] = {cid: Channel(cid, name) for name, cid in channels.items()}
        self.usergroups: dict[str, UserGroup] = {
            group: UserGroup(group, handle, name, list(members))
            for group, (handle, name, members) in DEFAULT_USERGROUPS.items()}
        for group, members in usergroups.items():
            known = self.usergroups.get(group)
            if known is not None:
                known.users = list(members)
            else:
                self.usergroups[group] = UserGroup(group, group.lower(), group, list(members))
        self.scopes = tuple(scopes)
        self.limits = limits or SlackLimits()
        self.calls: Counter[str] = Counter()
        self.files = FileStore()
        self._posts: dict[str, dict[str, Message]] = {cid: {} for cid in self.channels}
        self._ephemerals: dict[str, dict[str, Message]] = {cid: {} for cid in self.channels}
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._method_meter = MethodMeter(self.limits)
        self._channel_meter = ChannelMeter(self.limits)
        self._last_us = 0
        self.homes = HomeTabs()

    # --- names and ids -------------------------------------------------------------------------------

    def user_named(self, name: str) -> User:
        for user in self.users.values():
            if user.name == name:
                return user
        raise KeyError(name)

    def channel_named(self, name: str) -> Channel:
        for channel in self.channels.values():
            if channel.name == name:
                return channel
        raise KeyError(name)

    def lookup_user(self, ref: str) -> User:
        """By id or name, as people type them; KeyError if neither."""
        return self.users[ref] if ref in self.users else self.user_named(ref.removeprefix("@"))

    def lookup_channel(self, ref: str) -> Channel:
        return self.channels[ref] if ref in self.channels else self.channel_named(ref.removeprefix("#"))

    # --- messages ------------------------------------------------------------------------------------

    def next_ts(self) -> str:
        """Wall-clock microseconds, forced to increase, so every ts is unique and sorts as it reads."""
        self._last_us = max(self._last_us + 1, time.time_ns() // 1000)
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def check_rate(self, method: str) -> None:
        """The method's tier, per method per workspace per app; RateLimited past it."""
        self._method_meter.admit(method)

    def check_post_rate(self, channel_id: str) -> None:
        """chat.postMessage's own limit: about one message a second per channel, with short bursts."""
        self._channel_meter.admit(channel_id)

    def post(self, channel_id: str, user_id: str, text: str, blocks: object = None,
             attachments: object = None, *, thread_ts: str | None = None, metadata: Json | None = None,
             files: list[Json] | None = None) -> Message:
        """A reply to a reply joins the parent's thread; a reply to an unknown ts is accepted and never shown,
        as Slack does. A message sharing `files` needs no text."""
        posts = self._channel_posts(channel_id)
        content = (text, None, None) if files else _content(text, blocks, attachments)
        message = Message(channel_id, self.next_ts(), user_id, *content, metadata=metadata, files=files)
        if thread_ts is not None:
            _check_ts(thread_ts, "invalid_thread_ts")
            parent = posts.get(thread_ts)
            if parent is not None and parent.is_reply:
                parent = posts.get(parent.thread_ts or "")
            message.thread_ts = parent.ts if parent else thread_ts
            if parent is not None:
                parent.thread_ts = parent.ts
                parent.replies.append(message)
                message.parent_user = parent.user
        posts[message.ts] = message
        return message

    def post_ephemeral(self, channel_id: str, to_user: str, text: str, blocks: object = None,
                       attachments: object = None, *, thread_ts: str | None = None,
                       sender: str = BOT.id) -> Message:
        self._channel_posts(channel_id)
        if to_user not in self.users:
            raise SlackError("user_not_in_channel")
        message = Message(channel_id, self.next_ts(), sender, *_content(text, blocks, attachments),
                          thread_ts=thread_ts, ephemeral_to=to_user)
        self._ephemerals[channel_id][message.ts] = message
        return message

    def message(self, channel_id: str, ts: str) -> Message:
        """A channel post or thread reply (not an ephemeral: the Web API cannot touch those)."""
        message = self._channel_posts(channel_id).get(ts)
        if message is None:
            raise SlackError("message_not_found")
        return message

    def clickable(self, channel_id: str, ts: str, user_id: str) -> Message:
        """A message this person has on screen: a post, or an ephemeral shown to them."""
        ephemeral = self._ephemerals.get(channel_id, {}).get(ts)
        if ephemeral is not None and ephemeral.ephemeral_to == user_id:
            return ephemeral
        return self.message(channel_id, ts)

    def update(self, channel_id: str, ts: str, by_user: str, text: str, blocks: object = None,
               attachments: object = None) -> Message:
        """Blocks and attachments not given are kept, as Slack does; an empty list removes them."""
        message = self.message(channel_id, ts)
        if message.user != by_user:
            raise SlackError("cant_update_message")
        message.text, message.blocks, message.attachments = _content(
            text, message.blocks if blocks is None else blocks,
            message.attachments if attachments is None else attachments)
        message.edited = self.next_ts()
        return message

    def delete(self, channel_id: str, ts: str, by_user: str) -> None:
        message = self.message(channel_id, ts)
        if message.user != by_user:
            raise SlackError("cant_delete_message")
        self._remove(message)

    def react(self, channel_id: str, ts: str, user_id: str, name: str) -> None:
        if not _EMOJI.match(name):
            raise SlackError("invalid_name")
        users = self.message(channel_id, ts).reactions.setdefault(name, [])
        if user_id in users:
            raise SlackError("already_reacted")
        users.append(user_id)

    def parents(self, channel_id: str) -> list[Message]:
        """What the channel shows, oldest first: messages that are not thread replies."""
        return [m for m in self._channel_posts(channel_id).values() if m.thread_ts in (None, m.ts)]

    def thread(self, channel_id: str, ts: str) -> list[Message]:
        """The parent, then its replies; `ts` may name the parent or any reply."""
        message = self._channel_posts(channel_id).get(ts)
        if message is None:
            raise SlackError("thread_not_found")
        parent = self._posts[channel_id].get(message.thread_ts or "") if message.is_reply else message
        if parent is None:
            raise SlackError("thread_not_found")
        return [parent, *parent.replies]

    def seen_by(self, channel_id: str, user_id: str) -> list[Json]:
        """Everything this person sees in the channel, in ts order: posts, thread replies (marked by
        `thread_ts`) and the ephemerals shown to them. KeyError for an unknown channel or person."""
        posts, user = self._posts[channel_id], self.users[user_id]
        visible = [m for m in posts.values() if not m.is_reply or (m.thread_ts or "") in posts]
        visible += [m for m in self._ephemerals[channel_id].values() if m.ephemeral_to == user.id]
        return [_seen(m) for m in sorted(visible, key=lambda m: m.ts)]

    # --- response_url --------------------------------------------------------------------------------

    def open_response_url(self, channel_id: str, user_id: str, original: str | None = None) -> str:
        """A response_url for one slash command or click; `original` is the clicked message's ts."""
        url_id = secrets.token_urlsafe(18)
        self._response_urls[url_id] = _ResponseUrl(channel_id, user_id, original)
        return url_id

    def respond(self, url_id: str, payload: Mapping[str, Any]) -> None:
        """A POST to a response_url: "up to five times within 30 minutes"
        (https://api.slack.com/interactivity/handling#message_responses), both figures from the limit group.
        The error codes are the sandbox's own: Slack documents none for a spent or expired response_url."""
        url = self._response_urls.get(url_id)
        if url is None:
            raise SlackError("no_service")
        if time.monotonic() - url.opened > self.limits.response_url_lifetime_s:
            raise SlackError("expired_url")
        if url.uses >= self.limits.response_url_uses:
            raise SlackError("used_url")
        self._show(url, payload)
        url.uses += 1

    def acknowledge(self, url_id: str, payload: Mapping[str, Any]) -> None:
        """The bot's HTTP answer to a slash command, shown like a response; it does not use up the URL."""
        self._show(self._response_urls[url_id], payload)

    def _show(self, url: _ResponseUrl, payload: Mapping[str, Any]) -> None:
        original = self._original(url)
        if _flag(payload.get("delete_original")):
            if original is not None:
                self._remove(original)
            return
        content = _content(str(payload.get("text") or ""), payload.get("blocks"), payload.get("attachments"))
        if _flag(payload.get("replace_original")) and original is not None:
            original.text, original.blocks, original.attachments = content
            return
        thread_ts = payload.get("thread_ts")
        thread_ts = str(thread_ts) if thread_ts is not None else None
        if payload.get("response_type") == "in_channel":
            message = self.post(url.channel, BOT.id, *content, thread_ts=thread_ts)
        else:
            message = self.post_ephemeral(url.channel, url.user, *content, thread_ts=thread_ts)
        url.original = url.original or message.ts

    def _original(self, url: _ResponseUrl) -> Message | None:
        ts = url.original or ""
        return self._ephemerals[url.channel].get(ts) or self._posts[url.channel].get(ts)

    def _remove(self, message: Message) -> None:
        """A parent with replies leaves a tombstone, as in Slack, so its thread stays readable."""
        if message.ephemeral_to is not None:
            del self._ephemerals[message.channel][message.ts]
        elif message.replies:
            message.user, message.subtype, message.text = SLACKBOT.id, "tombstone", TOMBSTONE
            message.blocks, message.attachments, message.edited, message.reactions = None, None, None, {}
        else:
            del self._posts[message.channel][message.ts]
            parent = self._posts[message.channel].get(message.thread_ts or "") if message.is_reply else None
            if parent is not None:
                parent.replies.remove(message)

    def _channel_posts(self, channel_id: str) -> dict[str, Message]:
        posts = self._posts.get(channel_id)
        if posts is None:
            raise SlackError("channel_not_found")
        return posts


def _flag(value: object) -> bool:
    return value is True or value in ("true", "1", 1)


def _check_ts(value: str, error: str) -> None:
    if not _TS.match(value):
        raise SlackError(error)


def _content(text: str, blocks: object, attachments: object) -> Content:
    """Slack's checks on what a message may hold; blocks get the block_id Slack gives those without one."""
    if len(text) > MAX_TEXT:
        raise SlackError("msg_too_long")
    checked = _checked_blocks(blocks) if blocks is not None else None
    if attachments is not None and not (
            isinstance(attachments, list) and all(isinstance(a, dict) for a in attachments)):
        raise SlackError("invalid_attachments")
    if not text and not checked and not attachments:
        raise SlackError("no_text")
    return text, checked or None, attachments or None


def _checked_blocks(blocks: object) -> list[Json]:
    if not isinstance(blocks, list):
        raise SlackError("invalid_blocks_format")
    problems: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"must provide an array with no more than {MAX_BLOCKS} items [json-pointer:/blocks]")
    block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        pointer = f"/blocks/{index}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            problems.append(f"missing required field: type [json-pointer:{pointer}]")
            continue
        problems += block_problems(block, pointer)
        block_id = block.get("block_id")
        if block_id in block_ids:
            problems.append(f"duplicate block_id [json-pointer:{pointer}/block_id]")
        if isinstance(block_id, str):
            block_ids.add(block_id)
    if problems:
        raise SlackError("invalid_blocks", problems)
    return [b if "block_id" in b else {**b, "block_id": secrets.token_urlsafe(3)} for b in blocks]


_BLOCK_TYPES = {"section", "header", "context", "actions", "divider", "image", "rich_text", "markdown",
                "input", "file", "video"}


def block_problems(block: Json, pointer: str) -> list[str]:
    """The limits a chatops message can run into: section and header text, fields, element counts."""
    kind = block["type"]
    if kind not in _BLOCK_TYPES:
        return [f"unsupported type: {kind} [json-pointer:{pointer}/type]"]
    problems: list[str] = []
    if kind == "section":
        if "text" not in block and "fields" not in block:
            problems.append(f"must provide text or fields [json-pointer:{pointer}]")
        if "text" in block:
            problems += text_problems(block["text"], f"{pointer}/text", 3000)
        fields = block.get("fields", [])
        if not isinstance(fields, list) or len(fields) > 10:
            problems.append(f"must provide an array of at most 10 items [json-pointer:{pointer}/fields]")
        else:
            for i, item in enumerate(fields):
                problems += text_problems(item, f"{pointer}/fields/{i}", 2000)
        if "accessory" in block:
            problems += _element_problems(block["accessory"], f"{pointer}/accessory")
    elif kind == "header":
        problems += text_problems(block.get("text"), f"{pointer}/text", 150, plain_only=True)
    elif kind in ("context", "actions"):
        most = 10 if kind == "context" else 25
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= most:
            problems.append(f"must provide an array of 1 to {most} items [json-pointer:{pointer}/elements]")
        elif kind == "actions":
            for i, element in enumerate(elements):
                problems += _element_problems(element, f"{pointer}/elements/{i}")
    return problems


def text_problems(text: object, pointer: str, most: int, *, plain_only: bool = False) -> list[str]:
    """A text object's type (`plain_only`: plain_text alone) and length, as Slack words its refusal."""
    kinds = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if not isinstance(text, dict) or text.get("type") not in kinds or not isinstance(text.get("text"), str):
        return [f"failed to match all allowed schemas [json-pointer:{pointer}]"]
    if len(text["text"]) > most:
        return [f"must be less than {most + 1} characters [json-pointer:{pointer}/text]"]
    return []


def _element_problems(element: object, pointer: str) -> list[str]:
    if not isinstance(element, dict) or not isinstance(element.get("type"), str):
        return [f"missing required field: type [json-pointer:{pointer}]"]
    if element["type"] != "button":
        return []
    problems = text_problems(element.get("text"), f"{pointer}/text", 75, plain_only=True)
    for name, most in (("action_id", 255), ("value", 2000)):
        if len(str(element.get(name, ""))) > most:
            problems.append(f"must be less than {most + 1} characters [json-pointer:{pointer}/{name}]")
    return problems


def _seen(message: Message) -> Json:
    kind = "ephemeral" if message.ephemeral_to else "reply" if message.is_reply else "message"
    entry: Json = {"kind": kind, "ts": message.ts, "user": message.user, "text": message.text,
                   "blocks": message.blocks or []}
    optional: Json = {
        "bot_id": message.bot_id,
        "subtype": message.subtype,
        "attachments": message.attachments,
        "thread_ts": message.thread_ts,
        "reply_count": len(message.replies) or None,
        "reactions": [{"name": n, "users": u, "count": len(u)} for n, u in message.reactions.items()] or None,
        "edited": {"user": message.user, "ts": message.edited} if message.edited else None,
        "ephemeral": True if message.ephemeral_to else None,
        "files": [{"name": f["name"], "title": f["title"], "permalink": f["permalink"]} for f in message.files]
        if message.files else None,
    }
    return entry | {k: v for k, v in optional.items() if v is not None}
