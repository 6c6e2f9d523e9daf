"""driftloop.drift.history_views on a SQLite database migrated to head: events page (filters,
paging, the opening check's window and top features), per-check scores (the recorded
per-feature drift scores, None on older checks), performance series."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from driftloop.drift import history
from driftloop.drift import history_views as views
from driftloop.performance.tables import performance_days


def _check(engine, run_id, end, levels, severity, policy="2026.11.3", scores=None):
    history.record_check(
        engine,
        history.CheckRecord(
            run_id=run_id,
            window_start=date(2026, 11, end - 6),
            window_end=date(2026, 11, end),
            reference_kind="sliding",
            reference_id=f"ref-{end}",
            severity=severity,
            policy_version=policy,
            feature_levels=levels,
            drifted_features=[f for f, lv in levels.items() if lv != "none"],
            report_uri=f"s3://driftloop/reports/drift/{run_id}/report.html",
            mlflow_run_id=f"mlf-{end}",
            reference_rule="sliding",
            feature_scores=scores,
        ),
    )


SCORES_12 = {
    "embedding": {"effect": 0.05, "method": "mmd", "score": 5.0, "window": "full",
                  "warn": 0.01, "critical": 0.03, "alert": True},
    "brightness": {"effect": 0.3, "method": "psi", "score": 15.0, "window": "last_1d",
                   "warn": 0.02, "critical": 0.25, "alert": True},
}  # fmt: skip


def _perf(conn, day, source, value, low=None, high=None, camera="*", version="3"):
    conn.execute(
        sa.insert(performance_days).values(
            day=day,
            model_version=version,
            camera=camera,
            source=source,
            n_frames=40,
            map50=value + 0.2,
            map50_95=value,
            map50_95_low=low,
            map50_95_high=high,
            baseline_map50_95=0.5,
            run_id=f"perf-{day}-{source}-{camera}",
            recorded_at=datetime(2026, 11, 30, tzinfo=UTC),
        )
    )


@pytest.fixture
def engine(tmp_path):
    engine = history.engine_for(f"sqlite:///{tmp_path / 'driftloop.db'}")
    levels = {"brightness": "critical", "contrast": "warn", "sharpness": "none"}
    _check(engine, "scheduled__10", 10, levels, "critical")
    _check(engine, "scheduled__11", 11, {"brightness": "warn", "contrast": "none"}, "warn")
    _check(engine, "manual__11", 11, {"brightness": "none", "contrast": "none"}, "none",
           policy="2026.11.3+override")  # fmt: skip
    _check(engine, "scheduled__12", 12, {"embedding": "critical", "brightness": "critical"},
           "critical", scores=SCORES_12)  # fmt: skip
    first = history.open_event(engine, "scheduled__10", "critical", ["contrast", "brightness"])
    second = history.open_event(engine, "scheduled__12", "critical", ["embedding", "brightness"])
    history.close_event(engine, first, "IGNORED", actor="alice", note="a camera was cleaned")
    with engine.begin() as conn:
        conn.execute(
            sa.update(history.drift_events)
            .where(history.drift_events.c.id == second)
            .values(kind="performance")
        )
    return engine


def test_events_newest_first_with_window_features_and_links(engine):
    page = views.events_page(engine)
    assert page["total"] == 2
    assert (page["limit"], page["offset"]) == (20, 0)
    newest, oldest = page["events"]
    assert newest["status"] == "NEEDS_REVIEW"
    assert newest["open"] is True
    assert newest["kind"] == "performance"
    assert newest["window"] == {"start": "2026-11-06", "end": "2026-11-12"}
    assert oldest["status"] == "IGNORED"
    assert oldest["open"] is False
    assert oldest["actor"] == "alice"
    assert oldest["note"] == "a camera was cleaned"
    assert oldest["closed_at"] is not None
    # critical before warn, whatever order the decision listed them in
    assert oldest["top_features"] == [
        {"feature": "brightness", "level": "critical"},
        {"feature": "contrast", "level": "warn"},
    ]
    assert oldest["mlflow_run_id"] == "mlf-10"
    assert oldest["report_uri"].endswith("scheduled__10/report.html")
    assert oldest["kind"] == "input"


def test_events_filters_and_paging(engine):
    assert [e["status"] for e in views.events_page(engine, status="IGNORED")["events"]] == [
        "IGNORED"
    ]
    assert views.events_page(engine, status="RESOLVED") == {
        "total": 0,
        "limit": 20,
        "offset": 0,
        "events": [],
    }
    kinds = views.events_page(engine, kind="performance")
    assert kinds["total"] == 1
    assert kinds["events"][0]["kind"] == "performance"
    second = views.events_page(engine, limit=1, offset=1)
    assert second["total"] == 2
    assert [e["status"] for e in second["events"]] == ["IGNORED"]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"status": "OPEN"}, "status"),
        ({"kind": "concept"}, "kind"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"offset": -1}, "offset"),
    ],
)
def test_events_bad_filters_are_named(engine, kwargs, named):
    with pytest.raises(ValueError, match=named):
        views.events_page(engine, **kwargs)


def test_event_without_a_recorded_check(engine):
    history.open_event(engine, "manual__by_hand", "critical", ["x"])
    event = views.events_page(engine, limit=1)["events"][0]
    assert event["window"] == {"start": None, "end": None}
    assert event["top_features"] == [{"feature": "x", "level": "unknown"}]


def test_check_scores_one_point_per_day_oldest_first(engine):
    scores = views.check_scores(engine)
    assert [s["window"]["end"] for s in scores] == ["2026-11-10", "2026-11-11", "2026-11-12"]
    first, middle, last = scores
    assert (first["n_critical"], first["n_warn"], first["n_features"]) == (1, 1, 3)
    # the day's latest check (the override re-run of the 11th), flagged as such
    assert middle["run_id"] == "manual__11"
    assert middle["override"] is True
    assert (middle["n_critical"], middle["n_warn"]) == (0, 0)
    assert (last["n_critical"], last["severity"]) == (2, "critical")
    # each point's scores as recorded; checks from before revision 0005 kept none
    assert last["scores"] == SCORES_12
    assert first["scores"] is None
    assert middle["scores"] is None
    assert [s["run_id"] for s in views.check_scores(engine, limit=1)] == ["scheduled__12"]


def test_performance_series(engine):
    assert views.performance_series(engine) == {"measured": [], "estimated": []}
    with engine.begin() as conn:
        _perf(conn, date(2026, 8, 1), "measured", 0.9)  # outside 90 days of the newest
        _perf(conn, date(2026, 11, 10), "measured", 0.61, 0.55, 0.66)
        _perf(conn, date(2026, 11, 12), "measured", 0.42, 0.35, 0.48)
        _perf(conn, date(2026, 11, 11), "estimated", 0.58)
        _perf(conn, date(2026, 11, 11), "measured", 0.1, camera="cam-3")
    series = views.performance_series(engine)
    assert [p["day"] for p in series["measured"]] == ["2026-11-10", "2026-11-12"]
    assert series["measured"][1] == {
        "day": "2026-11-12",
        "model_version": "3",
        "map50": pytest.approx(0.62),
        "map50_95": 0.42,
        "map50_95_low": 0.35,
        "map50_95_high": 0.48,
        "baseline_map50_95": 0.5,
        "n_frames": 40,
    }
    assert [p["day"] for p in series["estimated"]] == ["2026-11-11"]
    cam = views.performance_series(engine, camera="cam-3")
    assert [p["map50_95"] for p in cam["measured"]] == [0.1]
    assert cam["estimated"] == []
    assert len(views.performance_series(engine, days=200)["measured"]) == 3
