"""The golden-set tables (migration 0006)."""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from loupe_catalog.tables import metadata

golden_images = sa.Table(
    "golden_images",
    metadata,
    sa.Column("program_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True),
    sa.Column("capture_sha256", sa.CHAR(64), primary_key=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("added_by", sa.Text, nullable=False),
)

golden_runs = sa.Table(
    "golden_runs",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("program_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_by", sa.Text, nullable=False),
    sa.Column("data_checksum", sa.Text, nullable=False),
    sa.Column("confusion", pg.JSONB, nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("images", pg.JSONB, nullable=False),
)
