"""The life cycle of a drift event: how it was closed, and which baseline each check used.

``drift_events`` gains ``closed_at`` and what closed it: ``resolved_model_version`` (a
promoted retraining: RESOLVED) or the accepted new normal (ACCEPTED: the accepted window
and the check it was taken from).
``drift_checks`` gains why its reference is what it is: ``reference_rule`` (``champion``,
``sliding``, ``frozen``, ``accepted``), ``reference_event_id`` (the event that froze or
accepted it) and ``reference_reason`` (one sentence). Rows written before keep NULLs: they
were plain sliding or champion references.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

EVENT_COLUMNS = (
    ("closed_at", sa.DateTime(timezone=True)),
    ("resolved_model_version", sa.String(64)),
    ("accepted_window_start", sa.Date),
    ("accepted_window_end", sa.Date),
    ("accepted_check_run_id", sa.String(250)),
)
CHECK_COLUMNS = (
    ("reference_rule", sa.String(16)),
    ("reference_event_id", sa.Integer),
    ("reference_reason", sa.Text),
)


def _add_missing(table: str, columns) -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    for name, column_type in columns:
        if name not in present:
            op.add_column(table, sa.Column(name, column_type, nullable=True))


def upgrade() -> None:
    _add_missing("drift_events", EVENT_COLUMNS)
    _add_missing("drift_checks", CHECK_COLUMNS)


def downgrade() -> None:
    with op.batch_alter_table("drift_checks") as batch:
        for name, _ in reversed(CHECK_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("drift_events") as batch:
        for name, _ in reversed(EVENT_COLUMNS):
            batch.drop_column(name)
