"""What a queued deploy's requester was last told holds it (a lock, a freeze window), so each hold is said once
whichever instance finds it."""

import sqlalchemy as sa
from alembic import op

revision = "0010_held"
down_revision: str | None = "0009_events"


def upgrade() -> None:
    op.add_column("deploy_requests", sa.Column("held", sa.Text(), nullable=False, server_default=""))
