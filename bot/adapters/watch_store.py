"""What the post-deploy watch measured, in the database: the instance that runs a watch's next check (whichever
claims that fire time) uses the baseline another instance read, instead of spending a Cloud Logging read on it
again."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError

from bot.adapters.store import Store
from bot.adapters.tables import WatchRow


class WatchStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def baseline(self, rollout_id: int) -> float | None:
        """The stable revision's error lines a minute before the deploy, once measured."""
        with self.store.reading() as session:
            row = session.get(WatchRow, rollout_id)
            return row.baseline_per_min if row is not None else None

    def keep_baseline(self, rollout_id: int, per_min: float, now: datetime) -> None:
        """The first measurement stands: a second one (two instances measuring at once) is dropped."""
        try:
            with self.store.writing() as session:
                session.add(WatchRow(rollout_id=rollout_id, baseline_per_min=per_min, measured_at=now))
        except IntegrityError:
            return
