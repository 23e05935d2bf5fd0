"""Locks (one row per service, or `all`) and the reason a person gave to move a rollout forward during a freeze
window (`override`, on the command that carries it)."""

import sqlalchemy as sa
from alembic import op

revision = "0006_locks"
down_revision: str | None = "0005_commands"


def upgrade() -> None:
    op.create_table(
        "locks",
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("service", name="pk_locks"),
    )
    with op.batch_alter_table("rollout_commands") as batch:
        batch.add_column(sa.Column("override", sa.Text(), nullable=False, server_default=""))
