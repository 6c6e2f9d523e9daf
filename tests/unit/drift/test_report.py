"""Evidently drift report on bounded samples (driftloop.drift.report)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from driftloop.contracts import schema
from driftloop.drift.report import EvidentlyReport, evidently_report

REPORTED = (*schema.NUMERIC_FEATURES, *schema.CATEGORICAL_FEATURES)


def make_frame(n: int, seed: int, *, brightness_shift: float = 0.0) -> pd.DataFrame:
    """An inference-log sample with every contract column; features are independent."""
    rng = np.random.default_rng(seed)
    n_det = rng.poisson(4.0, n).astype("int32")
    top = np.where(n_det == 0, "none", rng.choice(["ball", "player"], n, p=[0.3, 0.7]))
    conf_mean = rng.beta(8, 3, n)
    frame = pd.DataFrame(
        {
            "ts": pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="s"),
            "image_id": [f"img-{seed}-{i}" for i in range(n)],
            "camera_id": rng.choice(["cam-01", "cam-02", "cam-03", "cam-04"], n),
            "model_version": "3",
            "brightness": np.clip(rng.normal(120.0 + brightness_shift, 25.0, n), 0, 255),
            "contrast": np.clip(rng.normal(45.0, 10.0, n), 0, 128),
            "saturation": rng.beta(4, 4, n),
            "sharpness": rng.lognormal(5.0, 0.5, n),
            "mean_r": np.clip(rng.normal(110.0, 20.0, n), 0, 255),
            "mean_g": np.clip(rng.normal(125.0, 20.0, n), 0, 255),
            "mean_b": np.clip(rng.normal(100.0, 20.0, n), 0, 255),
            "embedding": list(rng.normal(0, 1, (n, schema.EMBEDDING_DIM)).astype("float32")),
            "n_detections": n_det,
            "top_class": top,
            "confidence_mean": conf_mean,
            "confidence_max": np.clip(conf_mean + rng.uniform(0, 0.2, n), 0, 1),
            "latency_ms": rng.lognormal(3.0, 0.3, n),
        }
    )
    assert list(frame.columns) == list(schema.COLUMN_NAMES)
    return frame


@pytest.fixture(scope="module")
def same_report() -> EvidentlyReport:
    return evidently_report(make_frame(1000, 1), make_frame(1000, 2), title="same distribution")


@pytest.fixture(scope="module")
def shift_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    # 1200 rows: above Evidently's 1000-row cut, so it picks effect-size distances
    # (normed Wasserstein / Jensen-Shannon) as driftloop does for reservoir samples.
    return make_frame(1200, 3), make_frame(1200, 4, brightness_shift=-35.0)


@pytest.fixture(scope="module")
def shift_report(shift_frames) -> EvidentlyReport:
    return evidently_report(*shift_frames, title="brightness shift")


def test_same_distribution_has_small_drifted_share(same_report):
    s = same_report.summary
    assert s["n_columns"] == len(REPORTED)
    assert set(s["columns"]) == set(REPORTED)
    assert schema.EMBEDDING_COLUMN not in s["columns"]
    assert s["share_of_drifted_columns"] <= 0.2
    assert s["dataset_drift"] is False
    assert s["n_reference"] == s["n_current"] == 1000


def test_brightness_shift_flags_only_brightness(shift_report):
    s = shift_report.summary
    assert s["drifted_columns"] == ["brightness"]
    b = s["columns"]["brightness"]
    assert b["drifted"] is True
    assert b["column_type"] == "numerical"
    assert b["stattest"] == "Wasserstein distance (normed)"
    assert b["drift_score"] > 1.0 > b["threshold"]  # |shift| / sd = 1.4
    for name, col in s["columns"].items():
        if name != "brightness":
            assert col["drifted"] is False, (name, col)
    assert s["columns"]["camera_id"]["column_type"] == "categorical"
    assert s["n_drifted_columns"] == 1
    assert s["share_of_drifted_columns"] == pytest.approx(1 / len(REPORTED))


def test_summary_json_serialisable_and_deterministic(shift_frames, shift_report):
    again = evidently_report(*shift_frames, title="brightness shift")
    first = json.dumps(shift_report.summary, sort_keys=True, allow_nan=False)
    assert first == json.dumps(again.summary, sort_keys=True, allow_nan=False)
    raw = json.loads(shift_report.raw_json)
    assert {"metrics", "tests"} <= set(raw)


def test_html_is_standalone(shift_report):
    html = shift_report.html
    assert "<html" in html
    assert "<title>brightness shift</title>" in html
    lowered = html.lower()
    assert "<script src=" not in lowered and "<link " not in lowered  # JS is inlined


@pytest.mark.parametrize("side", ["reference", "current"])
def test_missing_column_raises_naming_it(side):
    ref, cur = make_frame(50, 5), make_frame(50, 6)
    if side == "reference":
        ref = ref.drop(columns=["sharpness"])
    else:
        cur = cur.drop(columns=["top_class"])
    missing = "sharpness" if side == "reference" else "top_class"
    with pytest.raises(ValueError, match=rf"{side} frame is missing column\(s\) {missing}"):
        evidently_report(ref, cur, title="x")


def test_pinned_methods_are_used():
    rep = evidently_report(
        make_frame(300, 7),
        make_frame(300, 8, brightness_shift=-35.0),
        title="pinned",
        num_method="psi",
        cat_method="jensenshannon",
    )
    cols = rep.summary["columns"]
    # a pinned method is recorded under the name it was given
    assert cols["brightness"]["stattest"] == "psi"
    assert cols["brightness"]["drifted"] is True
    assert cols["top_class"]["stattest"] == "jensenshannon"
