"""Locks in the database: one row per service (or `all`), so two people locking the same service at once end with
one holder, whichever instance each asked. A lock past its end is as good as gone: it is not returned, and the next
lock of the service replaces it. What a lock change announces is queued in the outbox in the same transaction, so a
lock is never taken or broken without the deploy channel being told, and one whose time is up is said to have ended
once, by whichever instance removes it (unless a new lock of the service replaced it first: that one is announced).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError

from bot.adapters.outbox import Message, enqueue
from bot.adapters.store import Store
from bot.adapters.tables import LockRow
from bot.domain.change_gate import Lock


def _lock(row: LockRow) -> Lock:
    return Lock(row.service, row.holder, row.reason, row.since, row.until)


class LockStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def locks(self, now: datetime) -> list[Lock]:
        """The locks in force at `now`."""
        return await asyncio.to_thread(self._locks, now)

    async def take(self, lock: Lock, messages: Sequence[Message] = ()) -> Lock:
        """Take `lock` unless someone else holds the service: returns the lock that holds it now (`lock`, or the other
        holder's, unchanged). Its holder taking it again changes its reason and end. `messages` are queued only
        when the lock was taken."""
        try:
            return await asyncio.to_thread(self._take, lock, messages)
        except IntegrityError:  # another instance inserted the row first: take it, or find it held, now it is there
            return await asyncio.to_thread(self._take, lock, messages)

    async def release(self, lock: Lock, now: datetime, messages: Sequence[Message] = ()) -> bool:
        """Remove `lock` if it still holds at `now`; False when it does not (it ended, or was broken, replaced or
        taken again meanwhile). `messages` are queued only when it was removed."""
        return await asyncio.to_thread(self._release, lock, now, messages)

    async def end_expired(self, now: datetime, say: Callable[[Lock], Sequence[Message]]) -> bool:
        """Remove the locks whose end has passed, queueing what `say` makes of each once, whichever instance gets
        there first; whether any was removed."""
        return await asyncio.to_thread(self._end_expired, now, say)

    def _end_expired(self, now: datetime, say: Callable[[Lock], Sequence[Message]]) -> bool:
        over = select(LockRow).where(LockRow.until.is_not(None), LockRow.until <= now)
        with self.store.reading() as session:  # every instance looks every tick: the write lock only when it must
            if session.scalars(over.limit(1)).first() is None:
                return False
        with self.store.writing() as session:
            ended = False
            for lock in [_lock(row) for row in session.scalars(over).all()]:
                result = session.execute(delete(LockRow).where(
                    LockRow.service == lock.service, LockRow.holder == lock.holder, LockRow.since == lock.since,
                    LockRow.until <= now))
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    enqueue(session, say(lock), now)
                    ended = True
            return ended

    def _locks(self, now: datetime) -> list[Lock]:
        with self.store.reading() as session:
            rows = session.scalars(select(LockRow).where(or_(LockRow.until.is_(None), LockRow.until > now))
                                   .order_by(LockRow.service))
            return [_lock(row) for row in rows]

    def _take(self, lock: Lock, messages: Sequence[Message]) -> Lock:
        with self.store.writing() as session:
            row = session.get(LockRow, lock.service, with_for_update=True)
            if row is not None and row.holder != lock.holder and _lock(row).active(lock.since):
                return _lock(row)
            if row is None:
                session.add(LockRow(service=lock.service, holder=lock.holder, reason=lock.reason, since=lock.since,
                                    until=lock.until))
            else:
                row.holder, row.reason, row.since, row.until = lock.holder, lock.reason, lock.since, lock.until
            session.flush()
            enqueue(session, messages, lock.since)
            return lock

    def _release(self, lock: Lock, now: datetime, messages: Sequence[Message]) -> bool:
        with self.store.writing() as session:
            result = session.execute(delete(LockRow).where(
                LockRow.service == lock.service, LockRow.holder == lock.holder, LockRow.since == lock.since,
                or_(LockRow.until.is_(None), LockRow.until > now)))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return False
            enqueue(session, messages, now)
            return True
