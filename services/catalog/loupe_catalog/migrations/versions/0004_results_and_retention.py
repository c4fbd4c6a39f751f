"""inspection results (partitioned by month of capture), retention policies and runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

NOW = sa.text("now()")


def upgrade() -> None:
    # Partitioned by the month a part was captured; a result is identified by its id (the
    # key carries captured_at because a partitioned table's keys must hold the partition key;
    # a result keeps its captured_at across every resend). Months are created ahead by the
    # ingester (results/partitions.py); anything outside them lands in the default partition.
    op.execute(
        """
        CREATE TABLE results (
            result_id uuid NOT NULL,
            captured_at timestamptz NOT NULL,
            line_id text NOT NULL,
            station text NOT NULL DEFAULT '',
            program_id uuid,
            program_revision integer,
            part_id text NOT NULL DEFAULT '',
            verdict text NOT NULL CONSTRAINT result_verdict
                CHECK (verdict IN ('pass', 'fail', 'error')),
            score double precision,
            defects jsonb NOT NULL DEFAULT '[]'::jsonb,
            defect_count integer NOT NULL DEFAULT 0,
            processing_ms double precision,
            capture_sha256 char(64),
            capture_released_at timestamptz,
            is_simulated boolean NOT NULL DEFAULT false,
            reason text,
            extra jsonb,
            schema_version integer NOT NULL DEFAULT 1,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (result_id, captured_at)
        ) PARTITION BY RANGE (captured_at)
        """
    )
    op.execute("CREATE TABLE results_default PARTITION OF results DEFAULT")
    op.create_index("results_captured", "results", ["captured_at", "result_id"])
    op.create_index("results_line_captured", "results", ["line_id", "captured_at", "result_id"])
    op.create_index(
        "results_program_captured", "results", ["program_id", "captured_at", "result_id"]
    )
    op.create_index(
        "results_capture",
        "results",
        ["capture_sha256"],
        postgresql_where=sa.text("capture_sha256 IS NOT NULL"),
    )
    op.create_table(
        "retention_policies",
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("results_max_age_days", sa.Integer),
        sa.Column("captures_max_age_days", sa.Integer),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("scope", "target"),
        sa.CheckConstraint("scope IN ('all', 'line', 'program')", name="retention_scope"),
        sa.CheckConstraint(
            "results_max_age_days IS NULL OR results_max_age_days > 0", name="retention_results"
        ),
        sa.CheckConstraint(
            "captures_max_age_days IS NULL OR captures_max_age_days > 0",
            name="retention_captures",
        ),
    )
    op.create_table(
        "retention_runs",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("started_by", sa.Text, nullable=False),
        sa.Column("report", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )


def downgrade() -> None:
    op.drop_table("retention_runs")
    op.drop_table("retention_policies")
    op.execute("DROP TABLE results")
