"""Slack's Events API deliveries already taken, by event_id: retries are acknowledged, not acted on twice."""

import sqlalchemy as sa
from alembic import op

revision = "0009_events"
down_revision: str | None = "0008_dora"


def upgrade() -> None:
    op.create_table(
        "slack_events",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_slack_events"),
    )
    op.create_index("ix_slack_events_received_at", "slack_events", ["received_at"])
