"""The outbox: every rollout report, alert and digest bound for Slack is a row before it is a message.

A row is written in the same transaction as what it reports (an incident's new state, a digest's claim), so
nothing is decided without being said. Rows of one thread (`thread_key`) go out in order: a thread's next row
is claimed only once every earlier one is sent, so a reply never overtakes its parent. A claim is a lease:
an instance killed mid-send leaves the row `sending`, and whoever takes it over first looks for it in Slack
(each post carries its row id as message metadata) before posting it again, so it is neither lost nor doubled.
The sender renews its lease while it works (`renew`) and only calls Slack just after a renewal it won; every
mark (`sent`, `retry`, `give_up`) is fenced on the lease's owner, so a sender that lost its row changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot.adapters.store import RolloutRow, Store
from bot.adapters.tables import OutboxRow

Action = Literal["post", "reply", "update", "upload"]
Write = Callable[[Session], None]
"""Rows to add inside someone else's transaction."""

_ROLLOUT = "rollout:"


def rollout_thread(rollout_id: int) -> str:
    """The thread of a rollout's message: its post, its redraws, its notes and the post-deploy watch's warning."""
    return f"{_ROLLOUT}{rollout_id}"


@dataclass(frozen=True)
class Message:
    """What to send. `post` starts the thread `thread_key`; `reply` goes into it; `update` redraws its first
    message; `upload` shares a file into it (Slack's upload flow), once, like a reply."""

    thread_key: str
    action: Action
    channel: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    thread_ts: str = ""  # a reply into a thread the outbox did not start (a rollout's message)
    file: dict[str, Any] | None = None
    """An `upload`'s file: `filename`, `title`, and either `markdown` (the text itself) or `chart` and `data` (what
    to draw, drawn by the sender: a row holds a few hundred bytes of figures, not the PNG)."""


@dataclass(frozen=True)
class Queued:
    id: int
    message: Message
    state: str
    attempts: int
    """Claims of the row whose call may have reached Slack: all of them but those Slack answered 429."""
    created_at: datetime


@dataclass(frozen=True)
class Sent:
    """A message as it was sent: written at `at` (the time of the event it tells), now in Slack at (channel, ts)."""

    at: datetime
    first: bool
    channel: str
    text: str
    ts: str


def enqueue(session: Session, messages: Iterable[Message], now: datetime | None = None) -> None:
    """Add messages inside the caller's transaction."""
    at = now or datetime.now(UTC)
    for message in messages:
        session.add(OutboxRow(thread_key=message.thread_key, action=message.action, channel=message.channel,
                              text=message.text,
                              payload=json.dumps({"blocks": message.blocks, "attachments": message.attachments,
                                                  "thread_ts": message.thread_ts, "file": message.file}),
                              state="pending", attempts=0, next_at=at, created_at=at, error=""))


def last_drawn(session: Session, thread_key: str) -> Message | None:
    """The thread's first message as it was last queued (posted or redrawn), None before it is posted."""
    query = (select(OutboxRow).where(OutboxRow.thread_key == thread_key, OutboxRow.action.in_(("post", "update")))
             .order_by(OutboxRow.id.desc()).limit(1))
    row = session.scalars(query).first()
    return _queued(row).message if row is not None else None


def thread_writer(thread_key: str, compose: Callable[[Message | None], list[Message]]) -> Write:
    """Writes, inside a caller's transaction, what `compose` makes of the thread's first message as last queued:
    a redraw that would show the same need not be queued again."""
    def write(session: Session) -> None:
        enqueue(session, compose(last_drawn(session, thread_key)))

    return write


def _queued(row: OutboxRow) -> Queued:
    payload = json.loads(row.payload)
    message = Message(row.thread_key, row.action, row.channel, row.text,  # type: ignore[arg-type]
                      payload.get("blocks") or [], payload.get("attachments") or [], payload.get("thread_ts") or "",
                      payload.get("file"))
    return Queued(row.id, message, row.state, row.attempts, row.created_at)


class Outbox:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, messages: Sequence[Message]) -> None:
        with self.store.writing() as session:
            enqueue(session, messages)

    def claim(self, owner: str, now: datetime, lease_s: float, limit: int = 20) -> list[Queued]:
        """The first unsent row of each thread that is due (or whose sender's lease ran out), leased to `owner`."""
        unsent = OutboxRow.state.in_(("pending", "sending"))
        heads = select(func.min(OutboxRow.id)).where(unsent).group_by(OutboxRow.thread_key)
        due = ((OutboxRow.state == "pending") & (OutboxRow.next_at <= now)) | (
            (OutboxRow.state == "sending") & (OutboxRow.lease_expires_at < now))
        query = (select(OutboxRow.id).where(OutboxRow.id.in_(heads), due).order_by(OutboxRow.id).limit(limit)
                 .with_for_update(skip_locked=True))
        claimed: list[Queued] = []
        with self.store.writing() as session:
            for row_id in session.scalars(query).all():
                row = session.get(OutboxRow, row_id, populate_existing=True)
                if row is None:
                    continue
                was = row.state
                row.state, row.lease_owner = "sending", owner
                row.lease_expires_at = now + timedelta(seconds=lease_s)
                row.attempts += 1
                claimed.append(Queued(row.id, _queued(row).message, was, row.attempts, row.created_at))
        return claimed

    def renew(self, row_ids: Collection[int], owner: str, now: datetime, lease_s: float) -> set[int]:
        """Extend `owner`'s lease on those of `row_ids` it still holds; returns them. A row another sender has
        claimed since (its lease had run out) is not returned: its owner has lost it."""
        if not row_ids:
            return set()
        held = ((OutboxRow.id.in_(list(row_ids))) & (OutboxRow.state == "sending")
                & (OutboxRow.lease_owner == owner))
        with self.store.writing() as session:
            session.execute(update(OutboxRow).where(held).values(lease_expires_at=now + timedelta(seconds=lease_s)))
            return set(session.scalars(select(OutboxRow.id).where(held)))

    def superseded(self, row_id: int, thread_key: str) -> bool:
        """Whether a later redraw of the thread's first message is queued: this one need not be made."""
        query = select(OutboxRow.id).where(OutboxRow.thread_key == thread_key, OutboxRow.id > row_id,
                                           OutboxRow.action == "update").limit(1)
        with self.store.reading() as session:
            return session.scalar(query) is not None

    def thread_root(self, thread_key: str) -> tuple[str, str] | None:
        """(channel, ts) of the thread's first message, once it is sent."""
        query = (select(OutboxRow.channel, OutboxRow.ts)
                 .where(OutboxRow.thread_key == thread_key, OutboxRow.action == "post", OutboxRow.state == "sent")
                 .order_by(OutboxRow.id).limit(1))
        with self.store.reading() as session:
            found = session.execute(query).first()
        return (found[0], found[1]) if found is not None and found[1] else None

    def said(self, thread_key: str) -> list[Sent]:
        """The thread's first message and replies as they were sent, in order (not redraws, not uploads)."""
        query = (select(OutboxRow).where(OutboxRow.thread_key == thread_key, OutboxRow.state == "sent",
                                         OutboxRow.action.in_(("post", "reply")))
                 .order_by(OutboxRow.id))
        with self.store.reading() as session:
            return [Sent(row.created_at, row.action == "post", row.channel, row.text, row.ts or "")
                    for row in session.scalars(query)]

    def sent(self, row_id: int, owner: str, ts: str, now: datetime) -> None:
        """Mark the row sent; a rollout's first message also becomes the rollout's `message_ts`, which its
        buttons' thread and the post-deploy watch look for."""
        with self.store.writing() as session:
            done = session.execute(update(OutboxRow).where(OutboxRow.id == row_id, OutboxRow.lease_owner == owner)
                                   .values(state="sent", ts=ts, sent_at=now, lease_owner=None, lease_expires_at=None,
                                           error=""))
            row = session.get(OutboxRow, row_id) if done.rowcount == 1 else None  # type: ignore[attr-defined]
            if row is not None and row.action == "post" and row.thread_key.startswith(_ROLLOUT):
                rollout_id = int(row.thread_key.removeprefix(_ROLLOUT))
                session.execute(update(RolloutRow).where(RolloutRow.id == rollout_id)
                                .values(channel=row.channel, message_ts=ts))

    def release(self, owner: str, now: datetime) -> int:
        """Give up the rows `owner` is sending (shutting down): whoever claims one next asks Slack whether it
        arrived before sending it again, as after a crash, but without waiting out the lease."""
        with self.store.writing() as session:
            result = session.execute(update(OutboxRow).where(OutboxRow.state == "sending",
                                                             OutboxRow.lease_owner == owner)
                                     .values(lease_expires_at=now - timedelta(seconds=1)))
        return int(result.rowcount)  # type: ignore[attr-defined]

    def retry(self, row_id: int, owner: str, later: datetime, error: str, *, reached_slack: bool = True) -> None:
        """Send the row again from `later`. `reached_slack=False` (Slack answered 429: it did not act) takes the
        claim back from `attempts`, so the next sender need not look for a message that cannot be there."""
        attempts = OutboxRow.attempts if reached_slack else OutboxRow.attempts - 1
        with self.store.writing() as session:
            session.execute(update(OutboxRow).where(OutboxRow.id == row_id, OutboxRow.lease_owner == owner)
                            .values(state="pending", next_at=later, lease_owner=None, lease_expires_at=None,
                                    attempts=attempts, error=error[:500]))

    def give_up(self, row_id: int, owner: str, error: str) -> None:
        """Slack will never take this row (a channel that is gone, a malformed message): the rest of its thread,
        which cannot be threaded under it, goes with it, and the error is kept for whoever looks."""
        with self.store.writing() as session:
            row = session.get(OutboxRow, row_id)
            if row is None or row.lease_owner != owner:
                return
            query = update(OutboxRow).where(OutboxRow.thread_key == row.thread_key, OutboxRow.id >= row_id,
                                            OutboxRow.state != "sent")
            if row.action != "post":
                query = query.where(OutboxRow.id == row_id)
            session.execute(query.values(state="failed", lease_owner=None, lease_expires_at=None,
                                         error=error[:500]))

    def pending(self, thread_key: str | None = None) -> int:
        """Rows not sent yet, of one thread or of all."""
        query = select(func.count()).select_from(OutboxRow).where(OutboxRow.state.in_(("pending", "sending")))
        if thread_key is not None:
            query = query.where(OutboxRow.thread_key == thread_key)
        with self.store.reading() as session:
            return int(session.scalar(query) or 0)

    def next_due(self) -> datetime | None:
        with self.store.reading() as session:
            found: datetime | None = session.scalar(select(func.min(OutboxRow.next_at))
                                                    .where(OutboxRow.state == "pending"))
            return found
