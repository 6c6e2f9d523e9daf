"""The ``performance_days`` table (revision 0005) on the drift history's metadata."""

from __future__ import annotations

import sqlalchemy as sa

from driftloop.drift.history import metadata

#: ``measured``: mAP on the day's labeled frames; ``estimated``: from confidences, no labels
PERFORMANCE_SOURCES = ("measured", "estimated")
#: the ``camera`` of a row over every camera together
ALL_CAMERAS = "*"

performance_days = sa.Table(
    "performance_days",
    metadata,
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
    sa.UniqueConstraint("day", "model_version", "camera", "source", name="uq_performance_day"),
)
