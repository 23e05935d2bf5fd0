"""Images' upload times as Artifact Registry told them, so DORA's lead time reads the registry once per image."""

import sqlalchemy as sa
from alembic import op

revision = "0008_dora"
down_revision: str | None = "0007_deploy_requests"


def upgrade() -> None:
    op.create_table(
        "image_uploads",
        sa.Column("image", sa.String(), nullable=False),
        sa.Column("upload_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("build_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("image", name="pk_image_uploads"),
    )

