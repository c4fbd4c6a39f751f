"""golden sets: labelled captures attached to a program revision, and the test runs over them

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

SHA = sa.CHAR(64)
NOW = sa.text("now()")
REVISION = (
    ["program_id", "revision"],
    ["program_revisions.program_id", "program_revisions.revision"],
)


def upgrade() -> None:
    op.create_table(
        "golden_images",
        sa.Column("program_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("revision", sa.Integer, primary_key=True),
        sa.Column("capture_sha256", SHA, primary_key=True),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("added_by", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(*REVISION, name="golden_images_revision", ondelete="CASCADE"),
        sa.CheckConstraint("label IN ('good', 'bad')", name="golden_label"),
    )
    op.create_table(
        "golden_runs",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("program_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("started_by", sa.Text, nullable=False),
        sa.Column("data_checksum", sa.Text, nullable=False),
        # true_accepts, false_rejects, true_rejects, false_accepts, errors
        sa.Column("confusion", pg.JSONB, nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        # One entry per image: sha256, label, verdict, reason, defects, processing_ms.
        sa.Column("images", pg.JSONB, nullable=False),
        sa.ForeignKeyConstraint(*REVISION, name="golden_runs_revision", ondelete="CASCADE"),
    )
    op.create_index(
        "golden_runs_by_revision", "golden_runs", ["program_id", "revision", "started_at"]
    )


def downgrade() -> None:
    op.drop_index("golden_runs_by_revision", table_name="golden_runs")
    op.drop_table("golden_runs")
    op.drop_table("golden_images")
