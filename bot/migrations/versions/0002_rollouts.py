"""Rollouts: one row per deploy, the whole rollout as JSON, with the columns leases and queries need."""

import sqlalchemy as sa
from alembic import op

revision = "0002_rollouts"
down_revision: str | None = "0001_audit"


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requested_by", sa.String(), nullable=False),
        sa.Column("image", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("message_ts", sa.String(), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("command", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rollouts"),
    )
    op.create_index("ix_rollouts_service_created_at", "rollouts", ["service", "created_at"])
    op.create_index("ix_rollouts_open_next_check_at", "rollouts", ["open", "next_check_at"])
    op.create_index("uq_rollouts_open_service", "rollouts", ["service"], unique=True,
                    postgresql_where=sa.text("open"), sqlite_where=sa.text("open"))
