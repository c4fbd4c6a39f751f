"""programs with immutable revisions, image records, audit log, outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

SHA = sa.CHAR(64)
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "image_records",
        sa.Column("sha256", SHA, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("thumbnails", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("source", sa.Text, nullable=False, server_default="event"),
        sa.CheckConstraint("kind IN ('master', 'capture', 'overlay')", name="image_kind"),
    )
    op.create_table(
        "programs",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("tags", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("current_revision", sa.Integer, nullable=False),
        # Copies of the current revision's, so lists need no join.
        sa.Column("master_image_sha256", SHA),
        sa.Column("data_checksum", SHA, nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("archived_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("last_backup_at", sa.DateTime(timezone=True)),
        sa.Column("migration_status", sa.Text, nullable=False, server_default="native"),
        sa.Column("legacy_id", sa.Text, unique=True),
    )
    op.create_index(
        "programs_active_name_key",
        "programs",
        [sa.text("lower(name)")],
        unique=True,
        postgresql_where=sa.text("archived_at IS NULL"),
    )
    op.create_index("programs_name_id", "programs", [sa.text("lower(name)"), "id"])
    op.create_index("programs_updated_id", "programs", ["updated_at", "id"])
    op.create_index("programs_created_id", "programs", ["created_at", "id"])
    op.create_index("programs_tags", "programs", ["tags"], postgresql_using="gin")
    # Name search (`?q=`) is a substring match: trigrams make it an index lookup.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE INDEX programs_name_trgm ON programs USING gin (name gin_trgm_ops)")
    op.create_table(
        "program_revisions",
        sa.Column(
            "program_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("programs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("revision", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("tags", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("config", pg.JSONB, nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("master_image_sha256", SHA, sa.ForeignKey("image_records.sha256")),
        sa.Column("data_checksum", SHA, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("program_revisions_master", "program_revisions", ["master_image_sha256"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("actor_token_id", sa.Text),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text),
        sa.Column("before_checksum", sa.Text),
        sa.Column("after_checksum", sa.Text),
        sa.Column("details", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        # Set for rows that came as `audit.recorded` events: makes their delivery idempotent.
        sa.Column("event_id", sa.Text, unique=True),
    )
    op.create_index("audit_log_at", "audit_log", ["at", "id"])
    op.create_index("audit_log_target", "audit_log", ["target", "id"])
    op.create_index("audit_log_actor", "audit_log", ["actor", "id"])
    # Append-only: rows can be added, never changed or removed (TRUNCATE stays possible for a
    # restore, which replaces the whole log).
    op.execute(
        """
        CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False, unique=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("payload", pg.JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index(
        "outbox_pending", "outbox", ["id"], postgresql_where=sa.text("published_at IS NULL")
    )


def downgrade() -> None:
    op.drop_table("outbox")
    op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
    op.execute("DROP FUNCTION audit_log_append_only()")
    op.drop_table("audit_log")
    op.drop_table("program_revisions")
    op.drop_table("programs")
    op.execute("DROP EXTENSION IF EXISTS pg_trgm")
    op.drop_table("image_records")
