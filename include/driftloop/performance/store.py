"""Rows of ``performance_days``: writing a check's rows, reading the series back.

One row per (day, model version, camera, source) — the table's unique key. A check writes
its rows in one transaction, each replacing the row of the same key (a re-run of the check,
or a later check measuring that day again), so the table holds the latest numbers of each
key and the run that wrote them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from driftloop.performance.tables import ALL_CAMERAS, PERFORMANCE_SOURCES, performance_days

KEY = ("day", "model_version", "camera", "source")
VALUES = ("n_frames", "map50", "map50_95", "map50_95_low", "map50_95_high")
COLUMNS = (*KEY, *VALUES, "baseline_map50_95", "run_id", "recorded_at")


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _row(raw: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    missing = [c for c in (*KEY, "n_frames", "run_id") if raw.get(c) in (None, "")]
    if missing:
        raise ValueError(f"performance row {dict(raw)}: missing {missing}")
    if raw["source"] not in PERFORMANCE_SOURCES:
        raise ValueError(f"performance row source must be one of {PERFORMANCE_SOURCES}: {raw}")
    row = {c: raw.get(c) for c in COLUMNS}
    row["day"] = _as_date(raw["day"])
    row["model_version"] = str(raw["model_version"])
    row["recorded_at"] = raw.get("recorded_at") or now
    return row


def write_rows(engine: sa.Engine, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert ``rows``, each replacing the stored row of its key; returns how many."""
    now = datetime.now(UTC)
    prepared = [_row(r, now) for r in rows]
    table = performance_days
    with engine.begin() as conn:
        for row in prepared:
            conn.execute(sa.delete(table).where(*(table.c[k] == row[k] for k in KEY)))
            conn.execute(sa.insert(table).values(**row))
    return len(prepared)


def _as_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {c: row[c] for c in COLUMNS}
    out["day"] = out["day"].isoformat()
    recorded = out["recorded_at"]
    if recorded.tzinfo is None:  # SQLite gives naive datetimes back
        recorded = recorded.replace(tzinfo=UTC)
    out["recorded_at"] = recorded.isoformat()
    return out


def performance_series(
    engine: sa.Engine,
    *,
    model_version: str | None = None,
    since: date | str | None = None,
    camera: str | None = None,
    source: str | None = None,
) -> list[dict[str, Any]]:
    """Stored rows (dicts of :data:`COLUMNS`, ``day`` ISO) ordered by day, then source, camera
    (``'*'`` first) and model version; filtered by version, first day, camera, source."""
    table = performance_days
    query = sa.select(*(table.c[c] for c in COLUMNS))
    if model_version is not None:
        query = query.where(table.c.model_version == str(model_version))
    if since is not None:
        query = query.where(table.c.day >= _as_date(since))
    if camera is not None:
        query = query.where(table.c.camera == camera)
    if source is not None:
        query = query.where(table.c.source == source)
    query = query.order_by(table.c.day, table.c.source, table.c.camera, table.c.model_version)
    with engine.connect() as conn:
        return [_as_dict(r) for r in conn.execute(query).mappings()]


def days_done(
    engine: sa.Engine, model_version: str, source: str, days: Sequence[date], *, except_run: str
) -> set[date]:
    """Days of ``days`` that already have an all-camera ``source`` row of ``model_version``
    written by another run than ``except_run`` (a re-run redoes its own days)."""
    table = performance_days
    query = sa.select(table.c.day).where(
        table.c.model_version == str(model_version),
        table.c.source == source,
        table.c.camera == ALL_CAMERAS,
        table.c.day.in_(list(days)),
        table.c.run_id != except_run,
    )
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(query)}


def estimate_error(engine: sa.Engine, model_version: str) -> tuple[float | None, int]:
    """``(mean |estimated - measured| of map50_95, number of days)`` over the all-camera days
    of ``model_version`` that have both a measured and an estimated number."""
    by_day: dict[str, dict[str, float]] = {}
    for row in performance_series(engine, model_version=model_version, camera=ALL_CAMERAS):
        if row["map50_95"] is not None:
            by_day.setdefault(row["day"], {})[row["source"]] = row["map50_95"]
    pairs = [v for v in by_day.values() if len(v) == len(PERFORMANCE_SOURCES)]
    if not pairs:
        return None, 0
    errors = [abs(v["estimated"] - v["measured"]) for v in pairs]
    return sum(errors) / len(errors), len(errors)
