"""Drift history and drift events, in a small SQL database (SQLAlchemy Core).

SQLite on the embedded stack, PostgreSQL in production (``DRIFTLOOP_DATABASE_URL``). The
history keeps each check's per-feature breach levels, which is what k-of-n hysteresis
needs; events carry the lifecycle of a detected drift:
``NEEDS_REVIEW`` → ``ACTIONED`` | ``IGNORED`` → (``RETRAINING_FAILED``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from driftloop.config.drift_policy import OVERRIDE_SUFFIX

EVENT_STATUSES = ("NEEDS_REVIEW", "ACTIONED", "IGNORED", "RETRAINING_FAILED")

metadata = sa.MetaData()

drift_checks = sa.Table(
    "drift_checks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(250), nullable=False, unique=True),
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_start", sa.Date, nullable=False),
    sa.Column("window_end", sa.Date, nullable=False, index=True),
    sa.Column("reference_kind", sa.String(32), nullable=False),
    sa.Column("reference_id", sa.String(128), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("policy_version", sa.String(64), nullable=False),
    sa.Column("feature_levels", sa.Text, nullable=False),  # JSON {feature: level}
    sa.Column("drifted_features", sa.Text, nullable=False),  # JSON [feature, ...]
    sa.Column("report_uri", sa.String(1024)),
    sa.Column("mlflow_run_id", sa.String(64)),
)

drift_events = sa.Table(
    "drift_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(250), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("features", sa.Text, nullable=False),  # JSON list
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(250)),
    sa.Column("note", sa.Text),
)


def engine_for(url: str) -> sa.Engine:
    """An engine for ``url`` with the schema migrated to head: these tables change through
    Alembic revisions (:mod:`driftloop.audit.schema`), never ``create_all``."""
    from driftloop.audit.schema import engine_at_head

    return engine_at_head(url)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CheckRecord:
    run_id: str
    window_start: Any
    window_end: Any
    reference_kind: str
    reference_id: str
    severity: str
    policy_version: str
    feature_levels: dict[str, str]
    drifted_features: list[str]
    report_uri: str | None = None
    mlflow_run_id: str | None = None


def record_check(engine: sa.Engine, record: CheckRecord) -> None:
    """Insert or replace the check of ``record.run_id`` (a re-run of a DAG run updates it)."""
    values = {
        "run_id": record.run_id,
        "checked_at": _now(),
        "window_start": record.window_start,
        "window_end": record.window_end,
        "reference_kind": record.reference_kind,
        "reference_id": record.reference_id,
        "severity": record.severity,
        "policy_version": record.policy_version,
        "feature_levels": json.dumps(record.feature_levels, sort_keys=True),
        "drifted_features": json.dumps(record.drifted_features),
        "report_uri": record.report_uri,
        "mlflow_run_id": record.mlflow_run_id,
    }
    with engine.begin() as conn:
        conn.execute(sa.delete(drift_checks).where(drift_checks.c.run_id == record.run_id))
        conn.execute(sa.insert(drift_checks).values(**values))


def previous_levels(
    engine: sa.Engine, window_end, *, exclude_run_id: str, limit: int
) -> list[dict[str, str]]:
    """Per-feature levels of the daily checks of the ``limit`` days before ``window_end``,
    newest first.

    Only windows ending on those days count, one check per day (its latest run): a backfill
    never looks into its own future, re-runs are not counted twice, and a check from months
    ago does not stand in for a missed day. Checks under a run's Params (policy version
    ``…+override``) never count: a manual run with lenient thresholds must not quiet the
    alerts of the checks after it.
    """
    if limit <= 0:
        return []
    earliest = window_end - timedelta(days=limit)
    query = (
        sa.select(
            drift_checks.c.window_end, drift_checks.c.feature_levels, drift_checks.c.checked_at
        )
        .where(
            drift_checks.c.window_end < window_end,
            drift_checks.c.window_end >= earliest,
            drift_checks.c.run_id != exclude_run_id,
            drift_checks.c.policy_version.not_like(f"%{OVERRIDE_SUFFIX}"),
        )
        .order_by(drift_checks.c.window_end.desc(), drift_checks.c.checked_at.desc())
    )
    seen, out = set(), []
    with engine.connect() as conn:
        for row in conn.execute(query):
            if row.window_end in seen:
                continue
            seen.add(row.window_end)
            out.append(json.loads(row.feature_levels))
            if len(out) == limit:
                break
    return out


def check_of_window_end(engine: sa.Engine, window_end, *, exclude_run_id: str) -> str | None:
    """The run id of the latest check of the window ending ``window_end`` by another run."""
    query = (
        sa.select(drift_checks.c.run_id)
        .where(drift_checks.c.window_end == window_end, drift_checks.c.run_id != exclude_run_id)
        .order_by(drift_checks.c.checked_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        return conn.execute(query).scalar()


def set_check_links(
    engine: sa.Engine, run_id: str, *, mlflow_run_id: str, report_uri: str | None
) -> None:
    """Where the check was published (its MLflow run, its Evidently report): known only after
    ``record_check``, since the report shows the recorded verdict."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(drift_checks)
            .where(drift_checks.c.run_id == run_id)
            .values(mlflow_run_id=mlflow_run_id, report_uri=report_uri)
        )


def get_check(engine: sa.Engine, run_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = (
            conn.execute(sa.select(drift_checks).where(drift_checks.c.run_id == run_id))
            .mappings()
            .first()
        )
    if row is None:
        return None
    out = dict(row)
    out["feature_levels"] = json.loads(out["feature_levels"])
    out["drifted_features"] = json.loads(out["drifted_features"])
    return out


def open_event(engine: sa.Engine, run_id: str, severity: str, features: list[str]) -> int:
    """Open (or return the already opened) drift event of a DAG run, status NEEDS_REVIEW."""
    with engine.begin() as conn:
        existing = conn.execute(
            sa.select(drift_events.c.id).where(drift_events.c.run_id == run_id)
        ).scalar()
        if existing is not None:
            return int(existing)
        now = _now()
        result = conn.execute(
            sa.insert(drift_events).values(
                run_id=run_id,
                created_at=now,
                updated_at=now,
                severity=severity,
                features=json.dumps(features),
                status="NEEDS_REVIEW",
            )
        )
        return int(result.inserted_primary_key[0])


#: a drift event someone still has to answer, or whose retraining is under way
ONGOING_EVENT_STATUSES = ("NEEDS_REVIEW", "ACTIONED")


def ongoing_event(
    engine: sa.Engine,
    reference_kind: str,
    reference_id: str,
    *,
    window_end_since,
    exclude_run_id: str,
) -> int | None:
    """The latest ongoing drift event measured against the same baseline whose check's window
    ended on or after ``window_end_since``: the drift a new critical check sees is most likely
    that one. The same baseline: the same champion reference, or — since a sliding reference
    moves with every window — any sliding one."""
    same_baseline = (
        drift_checks.c.reference_id == reference_id
        if reference_kind == "champion"
        else drift_checks.c.reference_kind == reference_kind
    )
    query = (
        sa.select(drift_events.c.id)
        .join(drift_checks, drift_checks.c.run_id == drift_events.c.run_id)
        .where(
            drift_events.c.status.in_(ONGOING_EVENT_STATUSES),
            drift_events.c.run_id != exclude_run_id,
            same_baseline,
            drift_checks.c.window_end >= window_end_since,
        )
        .order_by(drift_events.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        found = conn.execute(query).scalar()
    return None if found is None else int(found)


def event_of_run(engine: sa.Engine, run_id: str) -> int | None:
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(drift_events.c.id).where(drift_events.c.run_id == run_id)
        ).scalar()
    return None if found is None else int(found)


def set_event_status(
    engine: sa.Engine, event_id: int, status: str, *, actor: str | None, note: str | None = None
) -> None:
    if status not in EVENT_STATUSES:
        raise ValueError(f"event status must be one of {EVENT_STATUSES}, got {status!r}")
    with engine.begin() as conn:
        updated = conn.execute(
            sa.update(drift_events)
            .where(drift_events.c.id == event_id)
            .values(status=status, actor=actor, note=note, updated_at=_now())
        ).rowcount
    if updated != 1:
        raise LookupError(f"no drift event with id {event_id}")


def get_event(engine: sa.Engine, event_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = (
            conn.execute(sa.select(drift_events).where(drift_events.c.id == event_id))
            .mappings()
            .first()
        )
    return None if row is None else {**row, "features": json.loads(row["features"])}


def detections_by_severity(engine: sa.Engine) -> dict[str, int]:
    """Cumulative number of checks that detected drift, by severity (the Prometheus counter)."""
    query = (
        sa.select(drift_checks.c.severity, sa.func.count())
        .where(drift_checks.c.severity != "none")
        .group_by(drift_checks.c.severity)
    )
    with engine.connect() as conn:
        counts = {row[0]: int(row[1]) for row in conn.execute(query)}
    return {"warn": counts.get("warn", 0), "critical": counts.get("critical", 0)}
