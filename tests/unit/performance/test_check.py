"""``run_performance_check``'s bookkeeping: what is new, the rows it stores, the document's
shape, a re-run. The champion and the scoring are stand-ins here (the integration test
``tests/integration/test_performance_check.py`` runs a real ONNX champion)."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from driftloop.config.settings import Settings
from driftloop.contracts import storage
from driftloop.drift import history
from driftloop.performance import check, store
from driftloop.performance.champion import Champion
from tests.unit.conftest import s3_client_for

DOC_KEYS = {
    "model_version", "baseline", "days", "estimate_mae", "estimate_days", "rejected", "note"
}  # fmt: skip
DAY_KEYS = {
    "day",
    "source",
    "camera",
    "n_frames",
    "map50",
    "map50_95",
    "map50_95_low",
    "map50_95_high",
}
BASELINE = {
    "map50": 0.88,
    "map50_95": 0.52,
    "source": "ledger evaluation row 7",
    "dataset_sha256": "ab",
}


@pytest.fixture
def s3(moto_endpoint):
    return s3_client_for(moto_endpoint)


@pytest.fixture(autouse=True)
def _no_registry(monkeypatch):
    """The champion is a stand-in: no MLflow client (nor its default local database)."""
    monkeypatch.setattr("driftloop.drift.tracking.client", lambda tracking_uri: None)


@pytest.fixture
def settings(s3, tmp_path):
    bucket = f"perf-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    return Settings(bucket=bucket, database_url=f"sqlite:///{tmp_path / 'h.db'}")


def test_without_a_champion_nothing_is_measured(s3, settings, monkeypatch):
    monkeypatch.setattr(check, "current_champion", lambda client, name: None)
    doc = check.run_performance_check(
        settings, run_id="scheduled__2026-11-30", window_start=date(2026, 11, 28),
        window_end=date(2026, 11, 29), s3=s3,
    )  # fmt: skip
    assert doc == {
        "model_version": None,
        "baseline": None,
        "days": [],
        "estimate_mae": None,
        "estimate_days": 0,
        "rejected": [],
        "note": None,
    }
    key = "reports/drift/scheduled__2026-11-30/performance.json"
    assert storage.get_json(s3, settings.bucket, key) == doc


def test_a_champion_the_gate_never_evaluated_is_not_measured(s3, settings, monkeypatch):
    monkeypatch.setattr(check, "current_champion", lambda c, n: Champion("det", "3", uris={}))
    monkeypatch.setattr(check, "baseline_of", lambda settings, champ: None)
    monkeypatch.setattr(check, "measure_day", lambda *a, **k: pytest.fail("measured"))
    storage.put_bytes(s3, settings.bucket, storage.labeled_prefix("2026-11-29") + "_SUCCESS", b"")
    doc = check.run_performance_check(
        settings, run_id="r0", window_start=date(2026, 11, 28), window_end=date(2026, 11, 29),
        s3=s3,
    )  # fmt: skip
    assert set(doc) == DOC_KEYS
    assert (doc["model_version"], doc["baseline"], doc["days"]) == ("3", None, [])
    assert doc["note"].startswith("det v3 has no evaluation of its own in the audit ledger")
    assert storage.get_json(s3, settings.bucket, check.document_key("r0")) == doc


def test_new_days_are_measured_estimated_stored_and_documented(s3, settings, monkeypatch):
    champion = Champion("det", "3", uris={})
    monkeypatch.setattr(check, "current_champion", lambda client, name: champion)
    monkeypatch.setattr(check, "baseline_of", lambda settings, champ: BASELINE)
    measured_days, estimated_days = [], []

    def measure(s3, bucket, champ, onnx, day, work, **bootstrap):
        measured_days.append(day)
        rows = [
            {"day": day.isoformat(), "source": "measured", "camera": camera, "n_frames": n}
            | {"map50": 0.8, "map50_95": v, "map50_95_low": v - 0.05, "map50_95_high": v + 0.05}
            for camera, n, v in (("cam-02", 3, 0.4), ("*", 5, 0.5))
        ]
        return rows, [{"key": "labeled/x", "reason": "malformed label: line 1"}]

    def estimate(s3, settings, champ, baseline, onnx, days, work):
        estimated_days.extend(days)
        rows = [
            {"day": d.isoformat(), "source": "estimated", "camera": "*", "n_frames": 50}
            | {"map50": None, "map50_95": 0.44, "map50_95_low": None, "map50_95_high": None}
            for d in days
        ]
        return rows, []

    monkeypatch.setattr(check, "measure_day", measure)
    monkeypatch.setattr(check, "estimate_logged_days", estimate)
    for day in ("2026-11-28", "2026-11-29"):  # the 28th is still being labeled
        storage.put_bytes(s3, settings.bucket, storage.labeled_prefix(day) + "images/a.png", b"")
    storage.put_bytes(s3, settings.bucket, storage.labeled_prefix("2026-11-29") + "_SUCCESS", b"")
    window = {"window_start": date(2026, 11, 28), "window_end": date(2026, 11, 29), "s3": s3}

    doc = check.run_performance_check(settings, run_id="r1", **window)
    assert set(doc) == DOC_KEYS
    assert doc["model_version"] == "3"
    assert doc["baseline"] == {"map50": 0.88, "map50_95": 0.52, "source": "ledger evaluation row 7"}
    assert all(set(d) == DAY_KEYS for d in doc["days"])
    assert [(d["day"], d["source"], d["camera"]) for d in doc["days"]] == [
        ("2026-11-28", "estimated", "*"),
        ("2026-11-29", "estimated", "*"),
        ("2026-11-29", "measured", "*"),
        ("2026-11-29", "measured", "cam-02"),
    ]
    assert measured_days == [date(2026, 11, 29)]  # the only complete labeled day
    assert doc["estimate_days"] == 1
    assert doc["estimate_mae"] == pytest.approx(0.06)
    assert doc["rejected"] == [{"key": "labeled/x", "reason": "malformed label: line 1"}]
    engine = history.engine_for(settings.database_url)
    rows = store.performance_series(engine, model_version="3")
    assert len(rows) == 4
    assert {r["run_id"] for r in rows} == {"r1"}
    assert {r["baseline_map50_95"] for r in rows} == {0.52}

    # the next check of an overlapping window: nothing new for this champion
    measured_days.clear()
    estimated_days.clear()
    later = check.run_performance_check(settings, run_id="r2", **window)
    assert later["days"] == []
    assert measured_days == []
    assert estimated_days == []
    assert later["estimate_days"] == 1
    assert later["estimate_mae"] == pytest.approx(0.06)

    # a re-run of r1 returns what r1 wrote, computing nothing
    again = check.run_performance_check(settings, run_id="r1", **window)
    assert again == doc
    assert measured_days == []


def test_a_rerun_after_a_crash_redoes_its_own_days(s3, settings, monkeypatch):
    """Rows of the same run but no document yet (the first attempt died before writing it):
    the retry measures those days again and replaces the rows."""
    engine = history.engine_for(settings.database_url)
    store.write_rows(
        engine,
        [
            {"day": "2026-11-28", "model_version": "3", "camera": "*", "source": "estimated"}
            | {"n_frames": 1, "map50_95": 0.1, "run_id": "r1"}
        ],
    )
    monkeypatch.setattr(check, "current_champion", lambda client, name: Champion("d", "3", {}))
    monkeypatch.setattr(check, "baseline_of", lambda settings, champ: BASELINE)
    seen = []

    def estimate(s3, settings, champ, baseline, onnx, days, work):
        seen.extend(days)
        return [], []

    monkeypatch.setattr(check, "estimate_logged_days", estimate)
    check.run_performance_check(
        settings, run_id="r1", window_start=date(2026, 11, 28), window_end=date(2026, 11, 28), s3=s3
    )
    assert seen == [date(2026, 11, 28)]


def test_window_days():
    assert check.window_days(date(2026, 11, 28), date(2026, 11, 30)) == [
        date(2026, 11, 28),
        date(2026, 11, 29),
        date(2026, 11, 30),
    ]
    with pytest.raises(ValueError, match="before"):
        check.window_days(date(2026, 11, 30), date(2026, 11, 28))
