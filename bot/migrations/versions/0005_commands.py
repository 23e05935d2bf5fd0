"""People's commands to a rollout as a queue: each one kept until it is applied or refused with an answer, instead
of one column that a later command overwrote."""

import json

import sqlalchemy as sa
from alembic import op

revision = "0005_commands"
down_revision: str | None = "0004_shared_budget"

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rollout_commands",
        sa.Column("id", _ID, nullable=False),
        sa.Column("rollout_id", _ID, nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rollout_commands"),
    )
    op.create_index("ix_rollout_commands_rollout_id_outcome", "rollout_commands", ["rollout_id", "outcome"])
    conn = op.get_bind()
    waiting = conn.execute(sa.text("SELECT id, command, updated_at FROM rollouts WHERE command IS NOT NULL"))
    for rollout_id, command, updated_at in waiting.all():
        asked = json.loads(command)
        conn.execute(sa.text("INSERT INTO rollout_commands (rollout_id, action, user_id, target, asked_at, answer) "
                             "VALUES (:rollout, :action, :user, :target, :at, '')"),
                     {"rollout": rollout_id, "action": asked["action"], "user": asked["user"],
                      "target": asked.get("to", ""), "at": updated_at})
    with op.batch_alter_table("rollouts") as batch:
        batch.drop_column("command")
