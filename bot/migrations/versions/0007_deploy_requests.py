"""Deploy requests: a second person's approval and a queue per service (deploy_requests, deploy_approvals,
deploy_queue_holds)."""

import sqlalchemy as sa
from alembic import op

revision = "0007_deploy_requests"
down_revision: str | None = "0006_locks"

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "deploy_requests",
        sa.Column("id", _ID, nullable=False),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("image", sa.Text(), nullable=False),
        sa.Column("strategy", sa.String(), nullable=False),
        sa.Column("requested_by", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("needed", sa.Integer(), nullable=False),
        sa.Column("approvers", sa.String(), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("rollout_id", _ID, nullable=True),
        sa.Column("plan", sa.Text(), nullable=False),
        sa.Column("override", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deploy_requests"),
    )
    op.create_index("ix_deploy_requests_service_state", "deploy_requests", ["service", "state"])
    op.create_index("ix_deploy_requests_state_expires_at", "deploy_requests", ["state", "expires_at"])
    op.create_table(
        "deploy_approvals",
        sa.Column("request_id", _ID, nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "user_id", name="pk_deploy_approvals"),
    )
    op.create_table(
        "deploy_queue_holds",
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("rollout_id", _ID, nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resumed_by", sa.String(), nullable=True),
        sa.Column("resumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("service", "rollout_id", name="pk_deploy_queue_holds"),
    )
