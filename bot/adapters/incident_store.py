"""Incidents, silences and claims of scheduled runs, in the bot's database.

An incident is saved together with the Slack messages it decided on (outbox rows, in one transaction), and
with a version that must match the one read: two instances acting on one service at once cannot both win. The
open-resolve cycle a save closes is written in the same transaction (`incident_cycles`), once: the version
check lets only one instance close it, and the cycle's key (incident, number) refuses a second copy.
A scheduled run (a sweep, a digest) is claimed by inserting (job, fire time): the primary key lets exactly one
instance have it, whatever the number of instances.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bot.adapters.outbox import Message, enqueue
from bot.adapters.rollout_json import decode, encode
from bot.adapters.store import Store
from bot.adapters.tables import IncidentCycleRow, IncidentRow, ScheduleRunRow, SilenceRow
from bot.domain.incidents import Cycle, Incident


@dataclass(frozen=True)
class StoredIncident:
    incident: Incident
    channel: str
    version: int

    @property
    def thread_key(self) -> str:
        return thread_key(self.incident.id)


MessagesFor = Callable[[StoredIncident], Sequence[Message]]
"""The messages to send once the incident is saved: they need its id (its thread) and are written with it."""


def thread_key(incident_id: int) -> str:
    return f"incident:{incident_id}"


@dataclass(frozen=True)
class Silence:
    service: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str


class Stale(Exception):
    """The incident changed since it was read (another instance saved it first)."""


def _stored(row: IncidentRow) -> StoredIncident:
    return StoredIncident(replace(decode(Incident, row.data), id=row.id), row.channel, row.version)


class IncidentStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def current(self, service: str) -> StoredIncident | None:
        """The service's active incident, else its last resolved one (a flap within the cooldown reopens it)."""
        with self.store.reading() as session:
            row = session.scalars(select(IncidentRow).where(IncidentRow.service == service, IncidentRow.active)).first()
            if row is None:
                row = session.scalars(select(IncidentRow).where(IncidentRow.service == service,
                                                                IncidentRow.state == "resolved")
                                      .order_by(IncidentRow.id.desc()).limit(1)).first()
            return _stored(row) if row is not None else None

    def current_all(self) -> dict[str, StoredIncident]:
        """`current` for every service at once: a sweep of the whole fleet reads them in one query."""
        rows: dict[str, IncidentRow] = {}
        with self.store.reading() as session:
            for row in session.scalars(select(IncidentRow).where(IncidentRow.state != "forgotten")
                                       .order_by(IncidentRow.id)):
                kept = rows.get(row.service)
                if kept is None or row.active or not kept.active:
                    rows[row.service] = row
            return {service: _stored(row) for service, row in rows.items()}

    def save(self, before: StoredIncident | None, incident: Incident | None, channel: str, now: datetime,
             messages: MessagesFor | None = None, cycle: Cycle | None = None) -> StoredIncident | None:
        """Write the incident's next state, its messages and the cycle it closed, or forget a watching incident
        (None). Raises Stale when someone else saved it since `before` was read."""
        with self.store.writing() as session:
            if incident is None:
                if before is not None and before.incident.state == "watching":
                    done = session.execute(update(IncidentRow).where(IncidentRow.id == before.incident.id,
                                                                     IncidentRow.version == before.version)
                                           .values(active=False, state="forgotten", version=before.version + 1,
                                                   updated_at=now))
                    if done.rowcount != 1:  # type: ignore[attr-defined]
                        raise Stale(before.incident.service)
                return None
            active = incident.state in ("watching", "open")
            values = {"service": incident.service, "state": incident.state, "active": active, "channel": channel,
                      "opened_at": incident.opened_at, "resolved_at": incident.resolved_at, "updated_at": now}
            if before is None or before.incident.id == 0 or incident.id != before.incident.id:
                row = IncidentRow(**values, version=1, data="{}")
                session.add(row)
                try:
                    session.flush()
                except IntegrityError:
                    raise Stale(incident.service) from None
                saved = replace(incident, id=row.id)
                row.data = encode(saved)
                stored = StoredIncident(saved, channel, 1)
            else:
                done = session.execute(update(IncidentRow).where(IncidentRow.id == incident.id,
                                                                 IncidentRow.version == before.version)
                                       .values(**values, version=before.version + 1, data=encode(incident)))
                if done.rowcount != 1:  # type: ignore[attr-defined]
                    raise Stale(incident.service)
                stored = StoredIncident(incident, channel, before.version + 1)
            if cycle is not None:
                session.add(IncidentCycleRow(incident_id=stored.incident.id, number=cycle.number,
                                             service=cycle.service, detected_at=cycle.detected_at,
                                             acknowledged_at=cycle.acknowledged_at, resolved_at=cycle.resolved_at))
            if messages is not None:
                enqueue(session, messages(stored), now)
            return stored

    def open_incidents(self) -> list[StoredIncident]:
        with self.store.reading() as session:
            rows = session.scalars(select(IncidentRow).where(IncidentRow.state == "open").order_by(IncidentRow.id))
            return [_stored(row) for row in rows]

    def cycles_since(self, since: datetime) -> list[Cycle]:
        """Every open-resolve cycle resolved since `since`, a flapping incident's each on its own, oldest first."""
        with self.store.reading() as session:
            rows = session.scalars(select(IncidentCycleRow).where(IncidentCycleRow.resolved_at >= since)
                                   .order_by(IncidentCycleRow.resolved_at))
            return [Cycle(row.service, row.number, row.detected_at, row.acknowledged_at, row.resolved_at)
                    for row in rows]

    def by_id(self, incident_id: int) -> StoredIncident | None:
        with self.store.reading() as session:
            row = session.get(IncidentRow, incident_id)
            return _stored(row) if row is not None else None

    def store_messages(self, messages: Sequence[Message]) -> None:
        """Messages that change no incident (an alert about something outside the fleet)."""
        with self.store.writing() as session:
            enqueue(session, messages)

    # -- silences ---------------------------------------------------------------------------------------

    def silence(self, silence: Silence, messages: Sequence[Message] = ()) -> None:
        with self.store.writing() as session:
            session.add(SilenceRow(service=silence.service, starts_at=silence.starts_at, ends_at=silence.ends_at,
                                   reason=silence.reason, created_by=silence.created_by))
            enqueue(session, messages, silence.starts_at)

    def silences(self, now: datetime) -> dict[str, Silence]:
        """The silence in force for each service now (the one that ends last)."""
        found: dict[str, Silence] = {}
        with self.store.reading() as session:
            rows = session.scalars(select(SilenceRow).where(SilenceRow.starts_at <= now, SilenceRow.ends_at > now)
                                   .order_by(SilenceRow.ends_at))
            for row in rows:
                found[row.service] = Silence(row.service, row.starts_at, row.ends_at, row.reason, row.created_by)
        return found

    # -- scheduled runs -----------------------------------------------------------------------------------

    def claim_run(self, job: str, fire_time: datetime, owner: str, now: datetime, *, late: bool = False,
                  messages: Sequence[Message] = ()) -> bool:
        """Claim (job, fire_time) for `owner`, with the messages the run decided on; False if another instance
        already has it."""
        try:
            with self.store.writing() as session:
                session.add(ScheduleRunRow(job=job, fire_time=fire_time, claimed_by=owner, claimed_at=now, late=late))
                session.flush()
                enqueue(session, messages, now)
        except IntegrityError:
            return False
        return True

    def last_run(self, job: str) -> datetime | None:
        with self.store.reading() as session:
            found: datetime | None = session.scalar(select(ScheduleRunRow.fire_time).where(ScheduleRunRow.job == job)
                                                    .order_by(ScheduleRunRow.fire_time.desc()).limit(1))
            return found

