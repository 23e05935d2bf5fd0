"""The database's tables, as SQLAlchemy models, in one place: the Alembic revisions in bot/migrations/versions/
create them, and a test checks that models and revisions agree.

The rows of the alert side (incidents, silences, schedule claims, the Slack outbox) keep their domain object
as JSON in `data` plus the columns that queries filter and lock on, as rollouts do.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Boolean, Dialect, Float, Index, Integer, MetaData, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime, TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend.

    PostgreSQL keeps the offset (timestamptz) but returns it in the session's time zone; SQLite keeps
    none. Storing UTC and re-attaching it on the way out makes both give back the same value.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError("naive datetime given to the store; pass an aware one, e.g. datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


ID = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit ids, except on SQLite where only INTEGER PRIMARY KEY is the auto-assigned rowid."""


class Base(DeclarativeBase):
    """Named constraints, because SQLite's batch migrations can only alter what they can name."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class IncidentRow(Base):
    """Table `incidents` (revision 0003). `active` while watching or open: one active incident per service."""

    __tablename__ = "incidents"
    __table_args__ = (
        Index("uq_incidents_active_service", "service", unique=True, postgresql_where=text("active"),
              sqlite_where=text("active")),
        Index("ix_incidents_service_resolved_at", "service", "resolved_at"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    service: Mapped[str] = mapped_column(String())
    state: Mapped[str] = mapped_column(String())
    active: Mapped[bool] = mapped_column(Boolean())
    channel: Mapped[str] = mapped_column(String())
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer())
    data: Mapped[str] = mapped_column(Text())


class SilenceRow(Base):
    """Table `silences` (revision 0003): alerts of a service held until `ends_at`."""

    __tablename__ = "silences"
    __table_args__ = (Index("ix_silences_service_ends_at", "service", "ends_at"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    service: Mapped[str] = mapped_column(String())
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text())
    created_by: Mapped[str] = mapped_column(String())


class ScheduleRunRow(Base):
    """Table `schedule_runs` (revision 0003): who ran a scheduled job for a fire time. The primary key is what
    makes any number of instances run it once."""

    __tablename__ = "schedule_runs"

    job: Mapped[str] = mapped_column(String(), primary_key=True)
    fire_time: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    claimed_by: Mapped[str] = mapped_column(String())
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    late: Mapped[bool] = mapped_column(Boolean())


class OutboxRow(Base):
    """Table `outbox` (revision 0003): a Slack message written before it is sent, sent in order per thread."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_state_next_at", "state", "next_at"),
        Index("ix_outbox_thread_key_id", "thread_key", "id"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    thread_key: Mapped[str] = mapped_column(String())
    action: Mapped[str] = mapped_column(String())  # post (the thread's first message), reply, update
    channel: Mapped[str] = mapped_column(String())
    text: Mapped[str] = mapped_column(Text())
    payload: Mapped[str] = mapped_column(Text())  # blocks and attachments, JSON
    state: Mapped[str] = mapped_column(String())  # pending, sending, sent
    attempts: Mapped[int] = mapped_column(Integer())
    next_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String())
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ts: Mapped[str | None] = mapped_column(String())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str] = mapped_column(Text())


class IncidentCycleRow(Base):
    """Table `incident_cycles` (revision 0004): one open-resolve cycle of an incident, written when it resolves.
    An incident that flaps within its cooldown keeps one row in `incidents` (one thread) and has a cycle per
    flap here, so MTTR counts each of them."""

    __tablename__ = "incident_cycles"
    __table_args__ = (Index("ix_incident_cycles_resolved_at", "resolved_at"),)

    incident_id: Mapped[int] = mapped_column(ID, primary_key=True)
    number: Mapped[int] = mapped_column(Integer(), primary_key=True)
    service: Mapped[str] = mapped_column(String())
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ReadBudgetRow(Base):
    """Table `read_budgets` (revision 0004): a token bucket of reads shared by every instance, one row per quota
    (Cloud Logging's is per project, whatever the number of instances spending it)."""

    __tablename__ = "read_budgets"

    name: Mapped[str] = mapped_column(String(), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float())
    refilled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    spent: Mapped[int] = mapped_column(BigInteger())


class WatchRow(Base):
    """Table `watches` (revision 0004): what the post-deploy watch of a promoted rollout has measured, so the
    instance that runs the next check need not read the baseline again."""

    __tablename__ = "watches"

    rollout_id: Mapped[int] = mapped_column(ID, primary_key=True)
    baseline_per_min: Mapped[float] = mapped_column(Float())
    measured_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ImageUploadRow(Base):
    """Table `image_uploads` (revision 0008_dora): an image's upload time as Artifact Registry first told it, so no
    figure reads the registry twice for one image. `upload_time` None: the registry did not have it at `read_at`."""

    __tablename__ = "image_uploads"

    image: Mapped[str] = mapped_column(String(), primary_key=True)
    upload_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    build_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    read_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LockRow(Base):
    """Table `locks` (revision 0006): who holds a service (or `all`) and until when. The primary key is what makes
    two people locking one service at once end with one holder."""

    __tablename__ = "locks"

    service: Mapped[str] = mapped_column(String(), primary_key=True)
    holder: Mapped[str] = mapped_column(String())
    reason: Mapped[str] = mapped_column(Text())
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DeployRequestRow(Base):
    """Table `deploy_requests` (revision 0007_deploy_requests): a /deploy waiting for approval or its turn, and how it
    ended. `state` moves only by conditional UPDATEs (from the state it was read in), so a transition happens once
    whichever instance makes it."""

    __tablename__ = "deploy_requests"
    __table_args__ = (
        Index("ix_deploy_requests_service_state", "service", "state"),
        Index("ix_deploy_requests_state_expires_at", "state", "expires_at"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    service: Mapped[str] = mapped_column(String())
    state: Mapped[str] = mapped_column(String())
    image: Mapped[str] = mapped_column(Text())
    strategy: Mapped[str] = mapped_column(String())
    requested_by: Mapped[str] = mapped_column(String())
    channel: Mapped[str] = mapped_column(String())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    needed: Mapped[int] = mapped_column(Integer())
    approvers: Mapped[str] = mapped_column(String())
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str] = mapped_column(String())
    reason: Mapped[str] = mapped_column(Text())
    rollout_id: Mapped[int | None] = mapped_column(ID)
    plan: Mapped[str] = mapped_column(Text())
    override: Mapped[str] = mapped_column(Text())
    held: Mapped[str] = mapped_column(Text(), server_default="")  # revision 0010_held: what it was last told holds it


class DeployApprovalRow(Base):
    """Table `deploy_approvals` (revision 0007_deploy_requests): the primary key counts each person once."""

    __tablename__ = "deploy_approvals"

    request_id: Mapped[int] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class QueueHoldRow(Base):
    """Table `deploy_queue_holds` (revision 0007_deploy_requests): a service's queue held after `rollout_id` was
    rolled back or failed; the primary key makes the hold said once, `resumed_by` ends it."""

    __tablename__ = "deploy_queue_holds"

    service: Mapped[str] = mapped_column(String(), primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ID, primary_key=True)
    held_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resumed_by: Mapped[str | None] = mapped_column(String())
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SlackEventRow(Base):
    """Table `slack_events` (revision 0009_events): the Events API deliveries already taken, by Slack's `event_id`, so
    a retry that reaches another instance is acknowledged and not acted on twice."""

    __tablename__ = "slack_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
