"""Drift history and drift events, in a small SQL database (SQLAlchemy Core).

SQLite on the embedded stack, PostgreSQL in production (``DRIFTLOOP_DATABASE_URL``). The
history keeps each check's per-feature breach levels, which is what k-of-n hysteresis
needs, and which reference it was measured against and why; events carry the life cycle of
a detected drift::

    NEEDS_REVIEW ─► ACTIONED ─► RETRAINING_FAILED ─► (ACTIONED again: a retraining by hand)
         │             │                │
         └─────────────┴────────────────┴─► RESOLVED  a retraining for it was promoted champion
                                           ACCEPTED  an operator accepted the new normal
                                           IGNORED   an operator said: not drift worth acting on

The first three are *open* (:data:`OPEN_EVENT_STATUSES`): the drift is not dealt with. An
open event measured against a sliding reference freezes that reference
(:func:`driftloop.drift.baselines.freezing_event`); an accepted one makes the accepted window
the baseline (:func:`driftloop.drift.baselines.accepted_sliding_reference`). See
``docs/architecture.md``, "Life cycle of a drift event"."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from driftloop.config.drift_policy import OVERRIDE_SUFFIX

#: the drift is not dealt with yet: someone has to answer, or its retraining is under way or
#: failed (a failed or rejected retraining fixed nothing)
OPEN_EVENT_STATUSES = ("NEEDS_REVIEW", "ACTIONED", "RETRAINING_FAILED")
#: how a drift event ends: a promoted retraining, an accepted new normal, or "not drift"
CLOSED_EVENT_STATUSES = ("RESOLVED", "ACCEPTED", "IGNORED")
EVENT_STATUSES = OPEN_EVENT_STATUSES + CLOSED_EVENT_STATUSES
#: how a check's reference was chosen (``drift_checks.reference_rule``)
REFERENCE_RULES = ("champion", "sliding", "frozen", "accepted")
EVENT_KINDS = ("input", "performance")  # drift_events.kind: the inputs/outputs, or accuracy

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
    # why the reference is what it is (NULL on checks recorded before revision 0004)
    sa.Column("reference_rule", sa.String(16)),
    sa.Column("reference_event_id", sa.Integer),
    sa.Column("reference_reason", sa.Text),
    # JSON {feature: {effect, method, score, window, ...}} (driftloop.drift.feature_scores;
    # revision 0005, NULL on older checks)
    sa.Column("feature_scores", sa.Text),
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
    sa.Column("closed_at", sa.DateTime(timezone=True)),  # how it was closed (revision 0004)
    sa.Column("resolved_model_version", sa.String(64)),
    sa.Column("accepted_window_start", sa.Date),
    sa.Column("accepted_window_end", sa.Date),
    sa.Column("accepted_check_run_id", sa.String(250)),
    sa.Column("kind", sa.String(16), nullable=False, server_default="input"),  # 0005: EVENT_KINDS
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
    reference_rule: str | None = None
    reference_event_id: int | None = None
    reference_reason: str | None = None
    feature_scores: dict[str, dict[str, Any]] | None = None  # feature_scores.feature_scores


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
        "reference_rule": record.reference_rule,
        "reference_event_id": record.reference_event_id,
        "reference_reason": record.reference_reason,
        "feature_scores": None
        if record.feature_scores is None
        else json.dumps(record.feature_scores, sort_keys=True, allow_nan=False),
    }
    if record.reference_rule is not None and record.reference_rule not in REFERENCE_RULES:
        raise ValueError(
            f"reference rule must be one of {REFERENCE_RULES}, got {record.reference_rule!r}"
        )
    with engine.begin() as conn:
        conn.execute(sa.delete(drift_checks).where(drift_checks.c.run_id == record.run_id))
        conn.execute(sa.insert(drift_checks).values(**values))


def same_baseline(reference: Mapping[str, Any]):
    """Checks measured against the baseline of ``reference`` (a check's reference: ``kind``,
    ``reference_id``, ``rule``): a pinned or stable bundle (champion, frozen, accepted) by its
    id; the plain sliding reference, whose bundle changes every day, by its rule (checks
    recorded before rules were, NULL, were plain sliding or champion ones)."""
    rule = reference.get("rule") or ("champion" if reference["kind"] == "champion" else "sliding")
    if rule == "sliding":
        return (drift_checks.c.reference_kind == "sliding") & (
            drift_checks.c.reference_rule.is_(None) | (drift_checks.c.reference_rule == "sliding")
        )
    return drift_checks.c.reference_id == reference["reference_id"]


def previous_levels(
    engine: sa.Engine,
    window_end,
    *,
    exclude_run_id: str,
    limit: int,
    reference: Mapping[str, Any] | None = None,
) -> list[dict[str, str]]:
    """Per-feature levels of the daily checks of the ``limit`` days before ``window_end``,
    newest first.

    Only windows ending on those days count, one check per day (its latest run): a backfill
    never looks into its own future, re-runs are not counted twice, and a check from months
    ago does not stand in for a missed day. Checks under a run's Params (policy version
    ``…+override``) never count: a manual run with lenient thresholds must not quiet the
    alerts of the checks after it. With ``reference``, only checks against the same baseline
    count (:func:`same_baseline`): breaches measured against a baseline that has since been
    replaced — an accepted new normal, a new champion — are not breaches of this one.
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
    if reference is not None:
        query = query.where(same_baseline(reference))
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
    return check_as_dict(row)


def check_as_dict(row) -> dict[str, Any] | None:
    if row is None:
        return None
    out = dict(row)
    out["feature_levels"] = json.loads(out["feature_levels"])
    out["drifted_features"] = json.loads(out["drifted_features"])
    if out.get("feature_scores") is not None:
        out["feature_scores"] = json.loads(out["feature_scores"])
    return out


def open_event(
    engine: sa.Engine, run_id: str, severity: str, features: list[str], *, kind: str = "input"
) -> int:
    """Open (or return the already opened) drift event of a DAG run, status NEEDS_REVIEW;
    ``kind`` (:data:`EVENT_KINDS`): input drift, or the champion's accuracy alone."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"event kind must be one of {EVENT_KINDS}, got {kind!r}")
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
                kind=kind,
            )
        )
        return int(result.inserted_primary_key[0])


#: a drift event a new critical check of the same baseline belongs to: any open one (a
#: failed retraining fixed nothing: retrain for it by hand, accept or ignore it); see
#: :func:`driftloop.drift.event_lookup.ongoing_event`
ONGOING_EVENT_STATUSES = OPEN_EVENT_STATUSES


def event_of_run(engine: sa.Engine, run_id: str) -> int | None:
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(drift_events.c.id).where(drift_events.c.run_id == run_id)
        ).scalar()
    return None if found is None else int(found)


def set_event_status(
    engine: sa.Engine,
    event_id: int,
    status: str,
    *,
    actor: str | None,
    note: str | None = None,
    only_from: tuple[str, ...] | None = None,
) -> bool:
    """Set the status of event ``event_id``; with ``only_from``, only when its status is one
    of those (one conditional UPDATE: a concurrent close is never overwritten). Returns
    whether it changed; LookupError when there is no such event. A closing status stamps
    ``closed_at``; an open one clears it (a retraining by hand after Ignore reopens)."""
    if status not in EVENT_STATUSES:
        raise ValueError(f"event status must be one of {EVENT_STATUSES}, got {status!r}")
    now = _now()
    closed_at = now if status in CLOSED_EVENT_STATUSES else None
    condition = drift_events.c.id == event_id
    if only_from is not None:
        condition = condition & drift_events.c.status.in_(only_from)
    with engine.begin() as conn:
        updated = conn.execute(
            sa.update(drift_events)
            .where(condition)
            .values(status=status, actor=actor, note=note, updated_at=now, closed_at=closed_at)
        ).rowcount
    if updated == 1:
        return True
    if get_event(engine, event_id) is None:
        raise LookupError(f"no drift event with id {event_id}")
    return False


class EventClosedError(ValueError):
    """The drift event was already closed another way: what was asked no longer applies."""


@dataclass(frozen=True)
class AcceptedWindow:
    """The new normal an operator accepted: the current window of check ``check_run_id``."""

    start: Any
    end: Any
    check_run_id: str


def close_event(
    engine: sa.Engine,
    event_id: int,
    status: str,
    *,
    actor: str,
    note: str | None,
    resolved_model_version: str | None = None,
    accepted: AcceptedWindow | None = None,
) -> dict[str, Any]:
    """Close an open drift event as RESOLVED (``resolved_model_version``), ACCEPTED
    (``accepted``) or IGNORED, in one conditional UPDATE; returns the event as stored.

    Idempotent: an event already closed with ``status`` is returned unchanged (a task's
    re-run). An event closed another way raises :class:`EventClosedError`; no such event,
    LookupError."""
    if status not in CLOSED_EVENT_STATUSES:
        raise ValueError(f"a closing status is one of {CLOSED_EVENT_STATUSES}, got {status!r}")
    if (status == "RESOLVED") != (resolved_model_version is not None):
        raise ValueError("RESOLVED, and only RESOLVED, names the promoted model version")
    if (status == "ACCEPTED") != (accepted is not None):
        raise ValueError("ACCEPTED, and only ACCEPTED, names the accepted window")
    now = _now()
    values: dict[str, Any] = {
        "status": status,
        "actor": actor,
        "note": note,
        "updated_at": now,
        "closed_at": now,
        "resolved_model_version": resolved_model_version,
    }
    if accepted is not None:
        values.update(
            accepted_window_start=accepted.start,
            accepted_window_end=accepted.end,
            accepted_check_run_id=accepted.check_run_id,
        )
    with engine.begin() as conn:
        conn.execute(
            sa.update(drift_events)
            .where(drift_events.c.id == event_id, drift_events.c.status.in_(OPEN_EVENT_STATUSES))
            .values(**values)
        )
    event = get_event(engine, event_id)
    if event is None:
        raise LookupError(f"no drift event with id {event_id}")
    if event["status"] != status:
        raise EventClosedError(
            f"drift event {event_id} is {event['status']} (by {event['actor']} at "
            f"{event['closed_at'] or event['updated_at']}), not open: it cannot become {status}"
        )
    return event


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
