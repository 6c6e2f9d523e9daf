"""Read-only views of the drift history for the operator's drift page (plain, JSON-ready dicts).

Three queries, nothing written:

* :func:`events_page` — drift events, newest first, filtered by status and kind, paged; each
  with the window of the check that opened it, its top features (critical before warn) and
  where its report is (the check's Evidently HTML, its MLflow run);
* :func:`check_scores` — per daily check, each feature's drift score (its effect over its
  warn effect, :mod:`driftloop.drift.feature_scores`; ``None`` on checks recorded before
  scores were kept), how many features breached at warn and at critical, and the check's
  severity: the drift over time;
* :func:`performance_series` — measured and estimated mAP per day (``performance_days``),
  with the bootstrap CI and the champion's own evaluation as the baseline.

Dates and times are ISO strings. The driftloop page (:mod:`driftloop.airflow.drift_page`)
serves these; tests read them on a SQLite database migrated to head.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from driftloop.config.drift_policy import OVERRIDE_SUFFIX
from driftloop.drift.history import (
    EVENT_KINDS,
    EVENT_STATUSES,
    OPEN_EVENT_STATUSES,
    drift_checks,
    drift_events,
)
from driftloop.performance.tables import ALL_CAMERAS, PERFORMANCE_SOURCES, performance_days

#: how many events one page holds at most
MAX_PAGE = 100
#: features shown per event (the rest are counted)
TOP_FEATURES = 5
_LEVEL_RANK = {"critical": 0, "warn": 1}


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (date, datetime)) else value


def _check_filter(name: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def top_features(features: list[str], levels: dict[str, str] | None) -> list[dict[str, str]]:
    """The event's drifted features with their level in the opening check, critical first
    (then in the order the decision listed them), at most :data:`TOP_FEATURES`."""
    levels = levels or {}
    ranked = sorted(
        enumerate(features), key=lambda item: (_LEVEL_RANK.get(levels.get(item[1]), 2), item[0])
    )
    return [
        {"feature": name, "level": levels.get(name, "unknown")} for _, name in ranked[:TOP_FEATURES]
    ]


def events_page(
    engine: sa.Engine,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> dict[str, Any]:
    """Drift events, newest first: ``{"total", "limit", "offset", "events": [...]}``.
    ``status`` (one of ``EVENT_STATUSES``) and ``kind`` (``EVENT_KINDS``) filter; a bad filter
    or page raises ValueError naming it."""
    _check_filter("status", status, EVENT_STATUSES)
    _check_filter("kind", kind, EVENT_KINDS)
    if not 1 <= int(limit) <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    if int(offset) < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    condition = sa.true()
    if status is not None:
        condition = condition & (drift_events.c.status == status)
    if kind is not None:
        condition = condition & (drift_events.c.kind == kind)
    query = (
        sa.select(
            drift_events,
            drift_checks.c.window_start,
            drift_checks.c.window_end,
            drift_checks.c.feature_levels,
            drift_checks.c.report_uri,
            drift_checks.c.mlflow_run_id,
            drift_checks.c.reference_rule,
        )
        .select_from(
            drift_events.outerjoin(drift_checks, drift_checks.c.run_id == drift_events.c.run_id)
        )
        .where(condition)
        .order_by(drift_events.c.id.desc())
        .limit(int(limit))
        .offset(int(offset))
    )
    count = sa.select(sa.func.count()).select_from(drift_events).where(condition)
    with engine.connect() as conn:
        total = int(conn.execute(count).scalar() or 0)
        rows = conn.execute(query).mappings().all()
    return {
        "total": total,
        "limit": int(limit),
        "offset": int(offset),
        "events": [_event(row) for row in rows],
    }


def _event(row) -> dict[str, Any]:
    features = json.loads(row["features"])
    levels = json.loads(row["feature_levels"]) if row["feature_levels"] else None
    return {
        "id": int(row["id"]),
        "run_id": row["run_id"],
        "status": row["status"],
        "open": row["status"] in OPEN_EVENT_STATUSES,
        "kind": row["kind"],
        "severity": row["severity"],
        "window": {"start": _iso(row["window_start"]), "end": _iso(row["window_end"])},
        "top_features": top_features(features, levels),
        "n_features": len(features),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "closed_at": _iso(row["closed_at"]),
        "actor": row["actor"],
        "note": row["note"],
        "resolved_model_version": row["resolved_model_version"],
        "report_uri": row["report_uri"],
        "mlflow_run_id": row["mlflow_run_id"],
        "reference_rule": row["reference_rule"],
    }


def check_scores(engine: sa.Engine, *, limit: int = 90) -> list[dict[str, Any]]:
    """One point per day a window ended on, for the newest ``limit`` days, oldest first: the
    latest check of that day, with its severity, the number of features at warn and at
    critical, whether it ran under a run's Params (``override``), and ``scores``: every
    feature's ``{effect, method, score, window, warn, critical, alert}`` (None: recorded
    before revision 0005 kept scores)."""
    if not 1 <= int(limit) <= 3660:
        raise ValueError(f"limit must be between 1 and 3660, got {limit}")
    query = sa.select(
        drift_checks.c.run_id,
        drift_checks.c.window_start,
        drift_checks.c.window_end,
        drift_checks.c.checked_at,
        drift_checks.c.severity,
        drift_checks.c.feature_levels,
        drift_checks.c.policy_version,
        drift_checks.c.reference_rule,
        drift_checks.c.feature_scores,
    ).order_by(drift_checks.c.window_end.desc(), drift_checks.c.checked_at.desc())
    points: list[dict[str, Any]] = []
    seen: set[Any] = set()
    with engine.connect() as conn:
        for row in conn.execute(query).mappings():
            if row["window_end"] in seen:
                continue
            seen.add(row["window_end"])
            levels = json.loads(row["feature_levels"]).values()
            points.append(
                {
                    "run_id": row["run_id"],
                    "window": {"start": _iso(row["window_start"]), "end": _iso(row["window_end"])},
                    "checked_at": _iso(row["checked_at"]),
                    "severity": row["severity"],
                    "n_warn": sum(1 for level in levels if level == "warn"),
                    "n_critical": sum(1 for level in levels if level == "critical"),
                    "n_features": len(levels),
                    "override": str(row["policy_version"]).endswith(OVERRIDE_SUFFIX),
                    "reference_rule": row["reference_rule"],
                    "scores": None
                    if row["feature_scores"] is None
                    else json.loads(row["feature_scores"]),
                }
            )
            if len(points) == int(limit):
                break
    return points[::-1]


def performance_series(
    engine: sa.Engine, *, camera: str = ALL_CAMERAS, days: int = 90
) -> dict[str, list[dict[str, Any]]]:
    """``{"measured": [...], "estimated": [...]}``: the rows of ``camera`` (default every
    camera together) for the newest ``days`` days, oldest first; each with the day, model
    version, mAP@0.5, mAP@0.5:0.95 and its CI, the baseline and the number of frames."""
    if not 1 <= int(days) <= 3660:
        raise ValueError(f"days must be between 1 and 3660, got {days}")
    newest = sa.select(sa.func.max(performance_days.c.day)).where(
        performance_days.c.camera == camera
    )
    out: dict[str, list[dict[str, Any]]] = {source: [] for source in PERFORMANCE_SOURCES}
    with engine.connect() as conn:
        last = conn.execute(newest).scalar()
        if last is None:
            return out
        first = _day(last) - timedelta(days=int(days) - 1)
        rows = conn.execute(
            sa.select(performance_days)
            .where(performance_days.c.camera == camera, performance_days.c.day >= first)
            .order_by(performance_days.c.day, performance_days.c.model_version)
        ).mappings()
        for row in rows:
            if row["source"] not in out:
                continue
            out[row["source"]].append(
                {
                    "day": _iso(row["day"]),
                    "model_version": row["model_version"],
                    "map50": row["map50"],
                    "map50_95": row["map50_95"],
                    "map50_95_low": row["map50_95_low"],
                    "map50_95_high": row["map50_95_high"],
                    "baseline_map50_95": row["baseline_map50_95"],
                    "n_frames": int(row["n_frames"]),
                }
            )
    return out


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
