"""legacy migration: runs with per-item outcomes, and the legacy id each program came from

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

SHA = sa.CHAR(64)
NOW = sa.text("now()")


def upgrade() -> None:
    # One row per applied run (dry runs write nothing).
    op.create_table(
        "migration_runs",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("started_by", sa.Text, nullable=False),
        sa.Column("actor_token_id", sa.Text),
        sa.Column("request_id", sa.Text),
        sa.Column("input_sha256", SHA, nullable=False),
        sa.Column("input_shape", sa.Text, nullable=False),
        sa.Column("totals", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("rolled_back_at", sa.DateTime(timezone=True)),
        sa.Column("rolled_back_by", sa.Text),
        sa.Column("rollback", pg.JSONB),
        sa.CheckConstraint("source IN ('legacy-localstorage')", name="migration_source"),
    )
    op.create_index("migration_runs_started", "migration_runs", ["started_at", "id"])
    op.create_index("migration_runs_input", "migration_runs", ["input_sha256"])
    op.create_table(
        "migration_items",
        sa.Column(
            "run_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("migration_runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("legacy_id", sa.Text),
        sa.Column("name", sa.Text),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("reason_code", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("warnings", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        # No foreign key: the run's record outlives any later change to the program.
        sa.Column("program_id", pg.UUID(as_uuid=True)),
        sa.Column("revision", sa.Integer),
        sa.Column("previous_revision", sa.Integer),
        sa.Column("master_image_sha256", SHA),
        sa.Column("data_checksum", SHA),
        # SHA-256 of the legacy entry as it came (canonical JSON): what makes a re-run a no-op.
        sa.Column("source_checksum", SHA),
        sa.Column("previous_source_checksum", SHA),
        sa.CheckConstraint(
            "outcome IN ('imported', 'revised', 'already_migrated', 'duplicate', 'invalid', "
            "'failed')",
            name="migration_item_outcome",
        ),
    )
    op.create_index("migration_items_legacy", "migration_items", ["legacy_id"])
    op.create_index("migration_items_program", "migration_items", ["program_id"])
    # Which program each legacy id became, and the legacy entry's checksum when it was last
    # migrated (`programs.legacy_id` carries the same id for readers of the program).
    op.create_table(
        "legacy_programs",
        sa.Column("legacy_id", sa.Text, primary_key=True),
        sa.Column(
            "program_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("programs.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("source_checksum", SHA, nullable=False),
        sa.Column(
            "run_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("migration_runs.id"),
            nullable=False,
        ),
        sa.Column("migrated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )


def downgrade() -> None:
    op.drop_table("legacy_programs")
    op.drop_table("migration_items")
    op.drop_table("migration_runs")
