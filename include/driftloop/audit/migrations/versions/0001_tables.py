"""The drift history and audit ledger tables as ``metadata.create_all`` made them.

A database created by the old ``create_all`` has these tables and no version table: each
table that already exists is adopted as it is, the missing ones are created. The definitions
are frozen here (later changes are later revisions), not imported from the live metadata.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "drift_checks" not in existing:
        op.create_table(
            "drift_checks",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("run_id", sa.String(250), nullable=False, unique=True),
            sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("window_start", sa.Date, nullable=False),
            sa.Column("window_end", sa.Date, nullable=False, index=True),
            sa.Column("reference_kind", sa.String(32), nullable=False),
            sa.Column("reference_id", sa.String(128), nullable=False),
            sa.Column("severity", sa.String(16), nullable=False),
            sa.Column("policy_version", sa.String(64), nullable=False),
            sa.Column("feature_levels", sa.Text, nullable=False),
            sa.Column("drifted_features", sa.Text, nullable=False),
            sa.Column("report_uri", sa.String(1024)),
            sa.Column("mlflow_run_id", sa.String(64)),
        )
    if "drift_events" not in existing:
        op.create_table(
            "drift_events",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("run_id", sa.String(250), nullable=False, unique=True),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("severity", sa.String(16), nullable=False),
            sa.Column("features", sa.Text, nullable=False),
            sa.Column("status", sa.String(32), nullable=False),
            sa.Column("actor", sa.String(250)),
            sa.Column("note", sa.Text),
        )
    if "audit_ledger" not in existing:
        op.create_table(
            "audit_ledger",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("recorded_at", sa.String(40), nullable=False),
            sa.Column("kind", sa.String(64), nullable=False, index=True),
            sa.Column("actor", sa.String(250), nullable=False),
            sa.Column("subject", sa.String(500), nullable=False, index=True),
            sa.Column("idempotency_key", sa.String(500), nullable=False, unique=True),
            sa.Column("payload", sa.Text, nullable=False),
            sa.Column("input_hashes", sa.Text, nullable=False),
            sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
            sa.Column("row_hash", sa.String(64), nullable=False, unique=True),
        )


def downgrade() -> None:
    for table in ("audit_ledger", "drift_events", "drift_checks"):
        op.drop_table(table)
