"""Read budgets in the database, shared by every instance: one row per quota, changed under the row's lock
(`SELECT ... FOR UPDATE` on PostgreSQL; SQLite's write lock, taken at BEGIN IMMEDIATE), so instances spending the
same quota at once take turns and never both spend the last read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy.exc import IntegrityError

from bot.adapters.store import Store
from bot.adapters.tables import ReadBudgetRow
from bot.domain.budget import Bucket, full

T = TypeVar("T")


class BudgetStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def change(self, name: str, per_minute: int, now: datetime, step: Callable[[Bucket], tuple[Bucket, T]]) -> T:
        """Apply `step` to the bucket under its lock and keep its result; the first instance to ask makes it, full.
        Two instances making it at once: one insert loses on the primary key and that one starts over."""
        try:
            return self._change(name, per_minute, now, step)
        except IntegrityError:
            return self._change(name, per_minute, now, step)  # the row is there now: this one only updates it

    def _change(self, name: str, per_minute: int, now: datetime, step: Callable[[Bucket], tuple[Bucket, T]]) -> T:
        with self.store.writing() as session:
            row = session.get(ReadBudgetRow, name, with_for_update=True)
            if row is None:
                row = ReadBudgetRow(name=name, tokens=0.0, refilled_at=now, blocked_until=None, spent=0)
                bucket = full(per_minute, now)
                session.add(row)
            else:
                bucket = Bucket(row.tokens, row.refilled_at, row.blocked_until, row.spent)
            changed, result = step(bucket)
            row.tokens, row.refilled_at = changed.tokens, changed.at
            row.blocked_until, row.spent = changed.blocked_until, changed.spent
            session.flush()
            return result
