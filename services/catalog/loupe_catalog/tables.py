"""The catalog's tables as SQLAlchemy Core objects, for building queries. They mirror the
migrations, which alone create and change the schema: change both together."""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData()
SHA = sa.CHAR(64)
TS = sa.DateTime(timezone=True)

image_records = sa.Table(
    "image_records",
    metadata,
    sa.Column("sha256", SHA, primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("thumbnails", pg.JSONB, nullable=False),
    sa.Column("first_seen_at", TS, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("line_id", sa.Text, nullable=False),
    sa.Column("thumbnail_bytes", sa.BigInteger, nullable=False),
    sa.Column("deleted_at", TS),
)

image_tombstones = sa.Table(
    "image_tombstones",
    metadata,
    sa.Column("sha256", SHA, primary_key=True),
    sa.Column("claimed_at", TS, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("claimed_by", sa.Text, nullable=False),
    sa.Column("forced", sa.Boolean, nullable=False),
)

programs = sa.Table(
    "programs",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("tags", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("current_revision", sa.Integer, nullable=False),
    sa.Column("master_image_sha256", SHA),
    sa.Column("data_checksum", SHA, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("archived_at", TS),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("last_backup_at", TS),
    sa.Column("migration_status", sa.Text, nullable=False),
    sa.Column("legacy_id", sa.Text),
)

program_revisions = sa.Table(
    "program_revisions",
    metadata,
    sa.Column("program_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("tags", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("config", pg.JSONB, nullable=False),
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("master_image_sha256", SHA),
    sa.Column("data_checksum", SHA, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("actor_token_id", sa.Text),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("request_id", sa.Text),
    sa.Column("before_checksum", sa.Text),
    sa.Column("after_checksum", sa.Text),
    sa.Column("details", pg.JSONB, nullable=False),
    sa.Column("event_id", sa.Text, unique=True),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("payload", pg.JSONB, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("published_at", TS),
    sa.Column("attempts", sa.Integer, nullable=False),
)


results = sa.Table(
    "results",
    metadata,
    sa.Column("result_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("captured_at", TS, primary_key=True),
    sa.Column("line_id", sa.Text, nullable=False),
    sa.Column("program_id", pg.UUID(as_uuid=True)),
    sa.Column("verdict", sa.Text, nullable=False),
    sa.Column("capture_sha256", SHA),
    # The other columns are read and written with plain SQL (results/).
)
