"""``performance_days``: round trip, a re-run replacing its rows, the days already done and
the estimate's error."""

from __future__ import annotations

from datetime import date

import pytest

from driftloop.drift import history
from driftloop.performance import store


@pytest.fixture
def engine(tmp_path):
    return history.engine_for(f"sqlite:///{tmp_path / 'h.db'}")


def row(day, source="measured", camera="*", value=0.5, run="run-1", version="3", **extra):
    return {
        "day": day,
        "model_version": version,
        "camera": camera,
        "source": source,
        "n_frames": 10,
        "map50": None if source == "estimated" else value + 0.3,
        "map50_95": value,
        "map50_95_low": None if source == "estimated" else value - 0.1,
        "map50_95_high": None if source == "estimated" else value + 0.1,
        "baseline_map50_95": 0.52,
        "run_id": run,
        **extra,
    }


def test_round_trip_in_day_order(engine):
    store.write_rows(
        engine,
        [
            row("2026-11-29", camera="cam-02"),
            row("2026-11-28", source="estimated", value=0.4),
            row(date(2026, 11, 29)),
        ],
    )
    series = store.performance_series(engine)
    assert [(r["day"], r["source"], r["camera"]) for r in series] == [
        ("2026-11-28", "estimated", "*"),
        ("2026-11-29", "measured", "*"),
        ("2026-11-29", "measured", "cam-02"),
    ]
    first = series[1]
    assert first["map50_95"] == pytest.approx(0.5)
    assert first["map50_95_low"] == pytest.approx(0.4)
    assert first["baseline_map50_95"] == pytest.approx(0.52)
    assert first["model_version"] == "3"
    assert first["run_id"] == "run-1"
    assert first["recorded_at"].endswith("+00:00")
    assert store.performance_series(engine, since="2026-11-29", camera="*") == [first]
    assert store.performance_series(engine, model_version="4") == []


def test_a_rerun_replaces_its_rows(engine):
    store.write_rows(engine, [row("2026-11-29", value=0.5), row("2026-11-29", camera="cam-01")])
    store.write_rows(engine, [row("2026-11-29", value=0.45, run="run-2")])
    series = store.performance_series(engine, camera="*")
    assert len(series) == 1
    assert series[0]["map50_95"] == pytest.approx(0.45)
    assert series[0]["run_id"] == "run-2"
    assert len(store.performance_series(engine)) == 2  # the camera row stays


def test_days_done_skip_only_other_runs(engine):
    store.write_rows(engine, [row("2026-11-28"), row("2026-11-29", run="run-2")])
    days = [date(2026, 11, 27), date(2026, 11, 28), date(2026, 11, 29)]
    assert store.days_done(engine, "3", "measured", days, except_run="run-2") == {
        date(2026, 11, 28)
    }
    assert store.days_done(engine, "3", "estimated", days, except_run="run-9") == set()
    assert store.days_done(engine, "4", "measured", days, except_run="run-9") == set()


def test_estimate_error_over_days_with_both(engine):
    assert store.estimate_error(engine, "3") == (None, 0)
    store.write_rows(
        engine,
        [
            row("2026-11-27", value=0.50),
            row("2026-11-27", source="estimated", value=0.46),
            row("2026-11-28", value=0.40),
            row("2026-11-28", source="estimated", value=0.50),
            row("2026-11-29", source="estimated", value=0.9),  # no label that day
            row("2026-11-28", camera="cam-01", value=0.0),  # camera rows do not count
        ],
    )
    mae, n = store.estimate_error(engine, "3")
    assert n == 2
    assert mae == pytest.approx((0.04 + 0.10) / 2)


def test_bad_rows_are_refused(engine):
    with pytest.raises(ValueError, match="source"):
        store.write_rows(engine, [row("2026-11-29", source="guessed")])
    with pytest.raises(ValueError, match="run_id"):
        store.write_rows(engine, [row("2026-11-29", run="")])
    assert store.performance_series(engine) == []
