"""image tombstones (deletion claims), line and thumbnail bytes on image records

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None
NOW = sa.text("now()")


def upgrade() -> None:
    # A claim to delete an image's blob: while it exists, no program save may reference the
    # image. Taken under an exclusive advisory lock on the hash, released when the deletion
    # is announced (`images.deleted`).
    op.create_table(
        "image_tombstones",
        sa.Column("sha256", sa.CHAR(64), primary_key=True),
        sa.Column(
            "claimed_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("claimed_by", sa.Text, nullable=False),
        sa.Column("forced", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.add_column("image_records", sa.Column("line_id", sa.Text, nullable=False, server_default=""))
    op.add_column(
        "image_records",
        sa.Column("thumbnail_bytes", sa.BigInteger, nullable=False, server_default="0"),
    )
    # Set when an admin forced the deletion of a blob that revisions still reference (the
    # record stays, so those revisions keep their foreign key).
    op.add_column("image_records", sa.Column("deleted_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("image_records", "deleted_at")
    op.drop_column("image_records", "thumbnail_bytes")
    op.drop_column("image_records", "line_id")
    op.drop_table("image_tombstones")
