"""The bot's database: the audit trail and rollouts (with their leases); incidents and digests to come.

State lives here so that a restart, a crash or a second instance changes nothing. SQLite is the
embedded default (sandbox, one instance); PostgreSQL is required for more than one instance. The API
is synchronous: the async app calls it through `asyncio.to_thread`, and one Engine's pool serves
those threads. The schema is owned by Alembic revisions in `bot/migrations/versions/`, never by
`create_all`, so every database reaches the same shape by the same steps.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Boolean,
    Connection,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

from bot.adapters.rollout_json import dumps, loads
from bot.adapters.tables import ID as _ID
from bot.adapters.tables import Base, UTCDateTime
from bot.domain.rollout import Answer, Command, Rollout

OUTCOMES = ("ok", "accepted", "refused", "invalid", "failed")
"""What became of a request: done, started (finishes later), not allowed, not understood, broke.

`accepted` is never final: the row is finished as `ok` or `failed` once the work after the ack ends."""

MIGRATIONS = "bot:migrations"
"""Alembic's script_location as a package reference, so it resolves wherever the bot is installed."""

_MIGRATION_LOCK = 0x6368_6174_6F70_73
"""pg_advisory_xact_lock key ("chatops"): instances starting together migrate one after another."""

_ALEMBIC = threading.Lock()
"""Alembic's `context` and `op` are process-global proxies, so one migration at a time per process."""

_SQLITE_BEGIN = "chatops_sqlite_begin"
"""Execution option naming the BEGIN statement our SQLite hook emits (see `_sqlite_engine`)."""

_SQLITE_BUSY_TIMEOUT_MS = 10_000
_PG_CONNECT_TIMEOUT_S = 5


class StoreUnavailable(Exception):
    """The database can't be reached or used: an outage, not a bug. The message is safe to show."""


@dataclass(frozen=True)
class AuditEntry:
    """One request to the bot and what came of it; `at` and `id` are filled in by the store."""

    user_id: str
    user_name: str
    channel_id: str
    command: str
    text: str
    action: str
    service: str | None
    outcome: str
    detail: str = ""
    at: datetime | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"audit outcome {self.outcome!r} is not one of {', '.join(OUTCOMES)}")
        if self.at is not None and self.at.utcoffset() is None:
            raise ValueError("audit time must be timezone-aware; use datetime.now(UTC)")


class AuditRow(Base):
    """Table `audit`; its shape is created by revision 0001_audit and must match it (a test checks)."""

    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_service_at", "service", "at"), Index("ix_audit_at", "at"))

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    user_id: Mapped[str] = mapped_column(String())
    user_name: Mapped[str] = mapped_column(String())
    channel_id: Mapped[str] = mapped_column(String())
    command: Mapped[str] = mapped_column(String())
    text: Mapped[str] = mapped_column(Text())
    action: Mapped[str] = mapped_column(String())
    service: Mapped[str | None] = mapped_column(String())
    outcome: Mapped[str] = mapped_column(String())
    detail: Mapped[str] = mapped_column(Text())

    def entry(self) -> AuditEntry:
        return AuditEntry(
            user_id=self.user_id, user_name=self.user_name, channel_id=self.channel_id, command=self.command,
            text=self.text, action=self.action, service=self.service, outcome=self.outcome, detail=self.detail,
            at=self.at, id=self.id,
        )


class RolloutRow(Base):
    """Table `rollouts` (revision 0002): the rollout as JSON plus what claims and listings filter on.

    `open` is true while the reconciler has work: the rollout has not ended, or a last write is pending.
    One open rollout per service is enforced by a partial unique index, so two instances receiving the
    same /deploy at once cannot both start it.
    """

    __tablename__ = "rollouts"
    __table_args__ = (
        Index("ix_rollouts_service_created_at", "service", "created_at"),
        Index("ix_rollouts_open_next_check_at", "open", "next_check_at"),
        Index("uq_rollouts_open_service", "service", unique=True, postgresql_where=text("open"),
              sqlite_where=text("open")),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    service: Mapped[str] = mapped_column(String())
    state: Mapped[str] = mapped_column(String())
    open: Mapped[bool] = mapped_column(Boolean())
    next_check_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String())
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    generation: Mapped[int] = mapped_column(Integer())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    requested_by: Mapped[str] = mapped_column(String())
    image: Mapped[str] = mapped_column(Text())
    channel: Mapped[str] = mapped_column(String())
    message_ts: Mapped[str | None] = mapped_column(String())
    data: Mapped[str] = mapped_column(Text())

    def stored(self, commands: tuple[Command, ...] = ()) -> StoredRollout:
        rollout = replace(loads(self.data), commands=commands)
        return StoredRollout(rollout, self.channel, self.message_ts, self.generation, self.lease_owner)


class CommandRow(Base):
    """Table `rollout_commands` (revision 0005): a person's command, kept until it is applied or refused (`outcome`),
    with what its sender was told (`answer`)."""

    __tablename__ = "rollout_commands"
    __table_args__ = (Index("ix_rollout_commands_rollout_id_outcome", "rollout_id", "outcome"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(_ID)
    action: Mapped[str] = mapped_column(String())
    user_id: Mapped[str] = mapped_column(String())
    target: Mapped[str] = mapped_column(String())
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(String())
    answer: Mapped[str] = mapped_column(Text())
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    override: Mapped[str] = mapped_column(Text(), server_default="")  # revision 0006

    def command(self) -> Command:
        return Command(self.action, self.user_id, self.target, id=self.id, at=self.asked_at,  # type: ignore[arg-type]
                       override=self.override)


@dataclass(frozen=True)
class StoredRollout:
    """A rollout as the store has it: with the Slack message it owns and its fencing generation."""

    rollout: Rollout
    channel: str
    message_ts: str | None
    generation: int
    lease_owner: str | None = None


class RolloutConflict(Exception):
    """Another rollout of the same service is open."""

    def __init__(self, existing: StoredRollout) -> None:
        super().__init__(f"rollout {existing.rollout.id} of {existing.rollout.service} is open")
        self.existing = existing


def _with_commands(session: Session, rows: Sequence[RolloutRow]) -> list[StoredRollout]:
    """The rollouts with the commands still waiting for them, oldest first."""
    waiting: dict[int, list[Command]] = {}
    if rows:
        query = (select(CommandRow).where(CommandRow.rollout_id.in_([row.id for row in rows]),
                                          CommandRow.outcome.is_(None)).order_by(CommandRow.id))
        for command in session.scalars(query):
            waiting.setdefault(command.rollout_id, []).append(command.command())
    return [row.stored(tuple(waiting.get(row.id, ()))) for row in rows]


def _database_now(session: Session) -> datetime:
    """The database's clock: leases are judged on it, so instances whose clocks differ still agree who holds one."""
    if session.get_bind().dialect.name == "postgresql":
        value: datetime = session.scalar(text("SELECT clock_timestamp()"))
        return value.astimezone(UTC)
    stamp: str = session.scalar(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"))
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC)


def default_url() -> str:
    """CHATOPS_DATABASE_URL, else a SQLite file in the working directory (the single-instance default)."""
    return os.environ.get("CHATOPS_DATABASE_URL") or f"sqlite:///{Path.cwd() / 'chatops.db'}"


def redact(url: str) -> str:
    """The URL with its password replaced by ***, fit for logs and error messages."""
    return make_url(url).render_as_string(hide_password=True)


class Store:
    """All database access: one Engine and its pool, a short session per call.

    `url` is the database URL with its password hidden, for logs and messages.
    """

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            # Not echoed: where its password is can't be told, and a log must not show it.
            raise StoreUnavailable(
                "the database URL does not parse; use sqlite:///path/to/chatops.db "
                "or postgresql+psycopg://user:password@host:5432/database"
            ) from None
        if parsed.drivername in ("postgres", "postgresql"):
            parsed = parsed.set(drivername="postgresql+psycopg")  # the driver we ship, not psycopg2
        self._url = parsed
        self.url = parsed.render_as_string(hide_password=True)
        if parsed.get_backend_name() == "sqlite":
            self._engine = _sqlite_engine(parsed)
        elif parsed.get_backend_name() == "postgresql":
            connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": _PG_CONNECT_TIMEOUT_S}
            # pre_ping and recycle: Cloud SQL and its proxy drop idle connections without telling us.
            self._engine = create_engine(
                parsed, pool_size=5, max_overflow=10, pool_timeout=10, pool_recycle=1800, pool_pre_ping=True,
                connect_args=connect_args,
            )
        else:
            raise StoreUnavailable(f"database at {self.url}: only sqlite and postgresql are supported")
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        # Writes take SQLite's write lock when they begin: a transaction that reads and then writes under a plain
        # BEGIN gets "database is locked" at once, without waiting, when another writer came first.
        self._writes = sessionmaker(self._engine.execution_options(**{_SQLITE_BEGIN: "BEGIN IMMEDIATE"}),
                                    expire_on_commit=False)

    @property
    def embedded(self) -> bool:
        """SQLite: one process's file, fine for the sandbox and a single instance on a real disk."""
        return self._url.get_backend_name() == "sqlite"

    def migrate(self) -> None:
        """Bring the schema to the newest revision; a no-op when it is there already.

        All pending revisions run in one transaction (DDL is transactional on both backends, see
        `_sqlite_engine`), under a lock that a concurrently starting instance waits for: an advisory
        transaction lock on PostgreSQL, BEGIN IMMEDIATE's write lock on SQLite. The lock ends with the
        transaction, so a crashed instance can't leave it held.
        """
        config = alembic_config()
        engine = self._engine.execution_options(**{_SQLITE_BEGIN: "BEGIN IMMEDIATE"})
        with self._reachable(), _ALEMBIC, engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def revision(self) -> str | None:
        """The schema revision the database is at; None before the first migrate()."""
        with self._reachable(), self._engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def record(self, entry: AuditEntry) -> AuditEntry:
        """Append to the audit trail; returns the entry with the id and UTC time the store gave it."""
        row = AuditRow(
            at=entry.at or datetime.now(UTC), user_id=entry.user_id, user_name=entry.user_name,
            channel_id=entry.channel_id, command=entry.command, text=entry.text, action=entry.action,
            service=entry.service, outcome=entry.outcome, detail=entry.detail,
        )
        with self._reachable(), self._writes.begin() as session:
            session.add(row)
        return replace(entry, id=row.id, at=row.at.astimezone(UTC))

    def finish(self, entry_id: int, outcome: str, detail: str = "") -> None:
        """End an accepted request's row as `ok` or `failed`; a finished row is never changed again."""
        if outcome not in ("ok", "failed"):
            raise ValueError(f"an accepted request ends ok or failed, not {outcome!r}")
        with self._reachable(), self._writes.begin() as session:
            session.execute(update(AuditRow).where(AuditRow.id == entry_id, AuditRow.outcome == "accepted")
                            .values(outcome=outcome, detail=detail[:500]))

    def audit(self, *, limit: int = 50, service: str | None = None, user_id: str | None = None) -> list[AuditEntry]:
        """The newest `limit` entries first, optionally for one service and/or one user."""
        if limit < 1:
            raise ValueError(f"audit limit must be at least 1, not {limit}")
        query = select(AuditRow).order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit)
        if service is not None:
            query = query.where(AuditRow.service == service)
        if user_id is not None:
            query = query.where(AuditRow.user_id == user_id)
        with self._reachable(), self._sessions() as session:
            return [row.entry() for row in session.scalars(query)]

    # -- rollouts -------------------------------------------------------------------------------------

    def create_rollout(self, rollout: Rollout, channel: str,
                       also: Callable[[Session, int], object] | None = None) -> StoredRollout:
        """Insert a rollout; its id is assigned here. Raises RolloutConflict if the service has one open. `also`
        writes in the same transaction, given the new rollout's id (the deploy request it starts); what it raises
        undoes the insert."""
        now = datetime.now(UTC)
        row = RolloutRow(service=rollout.service, state=rollout.state.value, open=True,
                         next_check_at=rollout.next_check_at, generation=0, created_at=rollout.created_at,
                         updated_at=now, requested_by=rollout.requested_by, image=rollout.image, channel=channel,
                         data=dumps(rollout))
        try:
            with self._reachable(), self._writes.begin() as session:
                session.add(row)
                session.flush()
                row.data = dumps(replace(rollout, id=row.id))
                if also is not None:
                    also(session, row.id)
        except IntegrityError:
            existing = self.open_rollout(rollout.service)
            if existing is None:
                raise
            raise RolloutConflict(existing) from None
        return row.stored()

    def open_rollout(self, service: str) -> StoredRollout | None:
        query = select(RolloutRow).where(RolloutRow.service == service, RolloutRow.open)
        with self._reachable(), self._sessions() as session:
            row = session.scalars(query).first()
            return _with_commands(session, [row])[0] if row else None

    def rollout(self, rollout_id: int) -> StoredRollout | None:
        with self._reachable(), self._sessions() as session:
            row = session.get(RolloutRow, rollout_id)
            return _with_commands(session, [row])[0] if row else None

    def rollouts(self, *, service: str | None = None, open_only: bool = False, limit: int = 20) -> list[StoredRollout]:
        """Newest first."""
        query = select(RolloutRow).order_by(RolloutRow.created_at.desc(), RolloutRow.id.desc()).limit(limit)
        if service is not None:
            query = query.where(RolloutRow.service == service)
        if open_only:
            query = query.where(RolloutRow.open)
        with self._reachable(), self._sessions() as session:
            return [row.stored() for row in session.scalars(query)]

    def ended_since(self, since: datetime) -> list[Rollout]:
        """The rollouts (restores included) that ended at or after `since`, oldest first: what DORA's figures read."""
        query = (select(RolloutRow).where(RolloutRow.ended_at >= since)
                 .order_by(RolloutRow.ended_at, RolloutRow.id))
        with self._reachable(), self._sessions() as session:
            return [row.stored().rollout for row in session.scalars(query)]

    def request(self, rollout_id: int, command: Command) -> Command | None:
        """Queue a person's command for the reconciler and make the rollout due now; None if it has closed.

        Returns the command as queued (its id and time): it is kept until the reconciler applies or refuses it,
        whatever other commands arrive meanwhile."""
        now = datetime.now(UTC)
        with self._reachable(), self._writes.begin() as session:
            row = session.get(RolloutRow, rollout_id, with_for_update=True)
            if row is None or not row.open:
                return None
            queued = CommandRow(rollout_id=rollout_id, action=command.action, user_id=command.user,
                                target=command.to, asked_at=now, answer="", override=command.override)
            session.add(queued)
            row.next_check_at = now
            row.updated_at = now
            session.flush()
            return queued.command()

    def answers(self, rollout_id: int) -> list[tuple[Command, str | None, str]]:
        """Every command given to a rollout, oldest first: (command, "applied" | "refused" | None, answer)."""
        query = select(CommandRow).where(CommandRow.rollout_id == rollout_id).order_by(CommandRow.id)
        with self._reachable(), self._sessions() as session:
            return [(row.command(), row.outcome, row.answer) for row in session.scalars(query)]

    def set_message(self, rollout_id: int, channel: str, ts: str) -> None:
        with self._reachable(), self._writes.begin() as session:
            session.execute(update(RolloutRow).where(RolloutRow.id == rollout_id)
                            .values(channel=channel, message_ts=ts))

    def claim_due(self, owner: str, now: datetime | None, lease_s: float, limit: int = 50) -> list[StoredRollout]:
        """Lease the open rollouts that are due (or already ours), raising each one's fencing generation, with the
        commands queued for them. `now` None: the database's clock, the one every instance shares.

        Candidates are read with FOR UPDATE SKIP LOCKED on PostgreSQL so instances don't queue behind
        each other; the conditional UPDATE is what makes the claim safe on every backend.
        """
        claimed: list[RolloutRow] = []
        with self._reachable(), self._writes.begin() as session:
            at = now or _database_now(session)
            expires = at + timedelta(seconds=lease_s)
            free = (RolloutRow.lease_owner.is_(None)) | (RolloutRow.lease_expires_at < at) | (
                RolloutRow.lease_owner == owner)
            query = (select(RolloutRow.id).where(RolloutRow.open, RolloutRow.next_check_at <= at, free)
                     .order_by(RolloutRow.next_check_at).limit(limit).with_for_update(skip_locked=True))
            for rollout_id in session.scalars(query).all():
                result = session.execute(
                    update(RolloutRow).where(RolloutRow.id == rollout_id, free)
                    .values(lease_owner=owner, lease_expires_at=expires, generation=RolloutRow.generation + 1))
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    row = session.get(RolloutRow, rollout_id, populate_existing=True)
                    if row is not None:
                        claimed.append(row)
            return _with_commands(session, claimed)

    def save(self, claim: StoredRollout, rollout: Rollout, *, release: bool = False,
             answers: Sequence[Answer] = (), renew_s: float | None = None,
             also: Callable[[Session], object] | None = None) -> bool:
        """Persist the reconciler's next rollout, fenced: False when the lease passed to someone else.

        `renew_s`: the save before a Cloud Run write also checks, on the database's clock, that the lease is still
        held, and renews it for `renew_s` (more than the write and its wait can take: config.py holds the lease to
        over twice google_timeout); False when it ran out, so no write is made on a lease someone else may be
        taking. `answers` ends the commands the rollout
        applied or refused. A rollout is not closed while a command that came during the tick waits: it stays
        open, due now, so that command is answered too. `also` writes in the same transaction (what the rollout
        tells Slack), so what is decided and what is said are kept together or not at all.
        """
        now = datetime.now(UTC)
        values: dict[str, object] = {
            "state": rollout.state.value, "open": rollout.open, "next_check_at": rollout.next_check_at,
            "updated_at": now, "ended_at": rollout.ended_at, "data": dumps(replace(rollout, commands=())),
        }
        fenced = (RolloutRow.id == rollout.id) & (RolloutRow.generation == claim.generation) & (
            RolloutRow.lease_owner == claim.lease_owner)
        with self._reachable(), self._writes.begin() as session:
            if renew_s is not None:
                clock = _database_now(session)
                fenced &= RolloutRow.lease_expires_at > clock
                values["lease_expires_at"] = clock + timedelta(seconds=renew_s)
            answered = {answer.command.id for answer in answers}
            if not rollout.open and session.scalar(select(func.count()).select_from(CommandRow).where(
                    CommandRow.rollout_id == rollout.id, CommandRow.outcome.is_(None),
                    CommandRow.id.not_in(answered))):
                values.update(open=True, next_check_at=now)
            elif release or not rollout.open:
                values.update(lease_owner=None, lease_expires_at=None)
            result = session.execute(update(RolloutRow).where(fenced).values(**values))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return False
            for answer in answers:
                session.execute(update(CommandRow).where(CommandRow.id == answer.command.id,
                                                         CommandRow.outcome.is_(None))
                                .values(outcome="applied" if answer.applied else "refused", answer=answer.text,
                                        answered_at=now))
            if also is not None:
                also(session)
        return True

    def release_rollouts(self, owner: str, keep: Collection[int] = ()) -> int:
        """Give up every rollout lease `owner` holds, so another instance takes them over at once rather than
        when they run out: an instance shutting down (SIGTERM) says it is gone. The rollouts in `keep` (a write
        still in flight) keep their leases until they run out. Returns how many were given up."""
        with self._reachable(), self._writes.begin() as session:
            result = session.execute(update(RolloutRow).where(RolloutRow.lease_owner == owner,
                                                              RolloutRow.id.not_in(list(keep)))
                                     .values(lease_owner=None, lease_expires_at=None))
        return int(result.rowcount)  # type: ignore[attr-defined]

    def ping(self) -> None:
        """Raise StoreUnavailable unless a round trip to the database works (readiness checks, startup)."""
        with self._reachable(), self._engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """One transaction that writes (SQLite's write lock taken at BEGIN), committed when the block ends: for the
        other stores of the bot (incidents, schedule claims, the outbox), which share this engine."""
        with self._reachable(), self._writes.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._reachable(), self._sessions() as session:
            yield session

    def close(self) -> None:
        """Close pooled connections; the Store can't be used afterwards."""
        self._engine.dispose()

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """Turn driver-level connection failures into one exception type whose message is safe to show."""
        try:
            yield
        except (OperationalError, InterfaceError) as exc:
            reason = " ".join(str(exc.orig or exc).split())
            if self._url.password:
                reason = reason.replace(str(self._url.password), "***")
            if self._url.get_backend_name() == "sqlite":
                check = "that the file's directory exists and the bot may write to it"
            else:
                check = "that PostgreSQL is running at that host and port and the user and database exist"
            raise StoreUnavailable(f"database at {self.url} is unavailable: {reason}; check {check}") from exc


def alembic_config() -> Config:
    """Alembic's configuration, built in code: the bot ships no alembic.ini."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


def _sqlite_engine(url: URL) -> Engine:
    """SQLite set up so that two processes (`chatops serve` and `chatops migrate`) can share the file.

    WAL lets readers run beside the writer and busy_timeout makes a writer wait rather than fail.
    pysqlite's own transaction handling skips BEGIN for DDL and SELECT, so it is switched off and
    SQLAlchemy emits BEGIN itself: migrations become atomic, and migrate() can ask for BEGIN IMMEDIATE.
    """
    if url.database in (None, "", ":memory:"):
        # One shared connection, or every pooled connection (and thread) would see its own empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        dbapi_connection.execute("PRAGMA journal_mode = WAL")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get(_SQLITE_BEGIN, "BEGIN"))

    return engine


def migrate_command(url: str) -> int:
    """`chatops migrate`: bring the database to the newest schema and say where it is."""
    try:
        store = Store(url)
        try:
            store.migrate()
            print(f"database at {store.url} is at revision {store.revision()}")
        finally:
            store.close()
    except StoreUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0
