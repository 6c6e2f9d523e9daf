"""Labels close the loop: measured (and estimated) performance per day, and event kinds.

``performance_days`` holds one row per (day, model version, camera, source): the champion's
mAP on that day's labeled frames (``source = measured``, with a bootstrap CI) or the
label-free estimate from its confidences (``source = estimated``). ``camera = '*'`` is every
camera together. A re-run of the same check replaces its rows.
``drift_events`` gains ``kind``: ``input`` (the inputs or outputs drifted, as before) or
``performance`` (measured mAP fell below the champion's own evaluation). Rows written before
are ``input``.
``drift_checks`` gains ``feature_scores``: JSON ``{feature: {effect, method, score, window,
warn, critical, alert}}`` (:mod:`driftloop.drift.feature_scores`; score = effect / the
feature's warn effect), what the Drift page charts. Checks recorded before keep NULL.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = {c["name"] for c in inspector.get_columns("drift_events")}
    if "kind" not in present:
        op.add_column(
            "drift_events",
            sa.Column("kind", sa.String(16), nullable=False, server_default="input"),
        )
    checks = {c["name"] for c in inspector.get_columns("drift_checks")}
    if "feature_scores" not in checks:
        op.add_column("drift_checks", sa.Column("feature_scores", sa.Text, nullable=True))
    if not inspector.has_table("performance_days"):
        op.create_table(
            "performance_days",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("day", sa.Date, nullable=False, index=True),
            sa.Column("model_version", sa.String(64), nullable=False),
            sa.Column("camera", sa.String(128), nullable=False),
            sa.Column("source", sa.String(16), nullable=False),
            sa.Column("n_frames", sa.Integer, nullable=False),
            sa.Column("map50", sa.Float),
            sa.Column("map50_95", sa.Float),
            sa.Column("map50_95_low", sa.Float),
            sa.Column("map50_95_high", sa.Float),
            sa.Column("baseline_map50_95", sa.Float),
            sa.Column("run_id", sa.String(250), nullable=False),
            sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
            sa.UniqueConstraint(
                "day", "model_version", "camera", "source", name="uq_performance_day"
            ),
        )


def downgrade() -> None:
    op.drop_table("performance_days")
    with op.batch_alter_table("drift_checks") as batch:
        batch.drop_column("feature_scores")
    with op.batch_alter_table("drift_events") as batch:
        batch.drop_column("kind")
