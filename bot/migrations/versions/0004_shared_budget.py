"""State every instance shares: incident cycles (MTTR counts each open-resolve cycle), the Cloud Logging read
budget, and what the post-deploy watch measured.

Incidents resolved before this revision get their last cycle backfilled from their row (a flap's earlier cycles
were overwritten then and cannot be recovered)."""

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004_shared_budget"
down_revision: str | None = "0003_alerts"

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC)


def _backfill(cycles: sa.Table) -> None:
    incidents = sa.table("incidents", sa.column("id", _ID), sa.column("service", sa.String()),
                         sa.column("state", sa.String()), sa.column("opened_at", sa.DateTime(timezone=True)),
                         sa.column("resolved_at", sa.DateTime(timezone=True)), sa.column("data", sa.Text()))
    bind = op.get_bind()
    rows = []
    for row in bind.execute(sa.select(incidents).where(incidents.c.state == "resolved",
                                                       incidents.c.resolved_at.is_not(None))):
        data = json.loads(row.data or "{}")
        resolved = _moment(data.get("resolved_at")) or row.resolved_at
        detected = _moment(data.get("detected_at")) or row.opened_at or resolved
        acknowledged = _moment(data.get("acknowledged_at"))
        rows.append({"incident_id": row.id, "number": int(data.get("reopened") or 0), "service": row.service,
                     "detected_at": detected, "acknowledged_at": acknowledged, "resolved_at": resolved})
    if rows:
        op.bulk_insert(cycles, rows)


def upgrade() -> None:
    cycles = op.create_table(
        "incident_cycles",
        sa.Column("incident_id", _ID, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "number", name="pk_incident_cycles"),
    )
    op.create_index("ix_incident_cycles_resolved_at", "incident_cycles", ["resolved_at"])
    op.create_table(
        "read_budgets",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("refilled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_read_budgets"),
    )
    op.create_table(
        "watches",
        sa.Column("rollout_id", _ID, nullable=False),
        sa.Column("baseline_per_min", sa.Float(), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("rollout_id", name="pk_watches"),
    )
    _backfill(cycles)
