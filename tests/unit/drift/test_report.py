"""The Evidently drift report shows the verdict (driftloop.drift.report)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from driftloop.config.drift_policy import load_policy
from driftloop.config.settings import DEFAULT_POLICY_PATH
from driftloop.contracts import schema
from driftloop.drift.report import (
    ColumnVerdict,
    EvidentlyReport,
    column_verdicts,
    evidently_report,
    headline_drift_share,
    with_embedding_components,
)

TABULAR = (*schema.NUMERIC_FEATURES, *schema.CATEGORICAL_FEATURES)


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


def verdicts_of(levels: dict[str, str]) -> list[ColumnVerdict]:
    """Verdicts of the contract's features and the embedding; ``levels``: the alerting ones."""
    out = []
    for name in (*TABULAR, schema.EMBEDDING_COLUMN):
        kind = (
            "embedding"
            if name == schema.EMBEDDING_COLUMN
            else "categorical"
            if name in schema.CATEGORICAL_FEATURES
            else "numeric"
        )
        level = levels.get(name, "none")
        method, warn = ("mmd", 0.01) if kind == "embedding" else ("psi", 0.1)
        effect = {"none": warn / 2, "warn": warn * 1.5, "critical": warn * 3}[level]
        out.append(ColumnVerdict(name, kind, method, effect, warn, level, level))
    return out


@pytest.fixture(scope="module")
def shift_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_frame(600, 3), make_frame(600, 4, brightness_shift=-35.0)


@pytest.fixture(scope="module")
def critical_report(shift_frames) -> EvidentlyReport:
    levels = {"brightness": "critical", "camera_id": "warn", "embedding": "critical"}
    return evidently_report(*shift_frames, verdicts=verdicts_of(levels), title="critical")


def test_report_columns_and_headline_are_the_verdicts(critical_report):
    s = critical_report.summary
    assert s["drifted_columns"] == ["brightness", "camera_id", "embedding"]
    assert set(s["columns"]) == {*TABULAR, schema.EMBEDDING_COLUMN}  # the embedding is in it
    brightness = s["columns"]["brightness"]
    assert (brightness["stattest"], brightness["threshold"]) == ("psi", 0.1)
    assert brightness["drift_score"] == pytest.approx(0.3)  # the verdict's full-data effect
    assert s["columns"]["embedding"]["column_type"] == "embedding"
    assert s["columns"]["embedding"]["drift_score"] == pytest.approx(0.03)
    # 2 of 13 tabular columns: under Evidently's default 50 % rule this read "NOT detected"
    assert s["dataset_drift"] is True
    assert "Dataset Drift is detected" in critical_report.html
    assert "Dataset Drift is NOT detected" not in critical_report.html


def test_no_alert_reads_no_drift_even_where_the_sample_differs(shift_frames):
    # brightness is shifted in the sample, but the verdict (hysteresis held it) does not alert
    rep = evidently_report(*shift_frames, verdicts=verdicts_of({}), title="quiet")
    assert rep.summary["drifted_columns"] == []
    assert rep.summary["dataset_drift"] is False
    assert "Dataset Drift is NOT detected" in rep.html


def test_embedding_alone_still_makes_the_headline():
    verdicts = verdicts_of({"embedding": "critical"})
    assert headline_drift_share(verdicts) == 0.0
    assert headline_drift_share(verdicts_of({})) == pytest.approx(0.5 / len(TABULAR))
    rep = evidently_report(make_frame(200, 5), make_frame(200, 6), verdicts=verdicts, title="e")
    assert rep.summary["drifted_columns"] == ["embedding"]
    assert "Dataset Drift is detected" in rep.html


def test_summary_json_serialisable_and_deterministic(shift_frames, critical_report):
    levels = {"brightness": "critical", "camera_id": "warn", "embedding": "critical"}
    again = evidently_report(*shift_frames, verdicts=verdicts_of(levels), title="critical")
    first = json.dumps(critical_report.summary, sort_keys=True, allow_nan=False)
    assert first == json.dumps(again.summary, sort_keys=True, allow_nan=False)
    raw = json.loads(critical_report.raw_json)
    assert {"metrics", "tests"} <= set(raw)


def test_html_is_standalone(critical_report):
    html = critical_report.html
    assert "<title>critical</title>" in html
    lowered = html.lower()
    assert "<script src=" not in lowered
    assert "<link " not in lowered


@pytest.mark.parametrize("side", ["reference", "current"])
def test_missing_column_raises_naming_it(side):
    ref, cur = make_frame(50, 5), make_frame(50, 6)
    if side == "reference":
        ref = ref.drop(columns=["sharpness"])
    else:
        cur = cur.drop(columns=["embedding"])
    missing = "sharpness" if side == "reference" else "embedding"
    with pytest.raises(ValueError, match=rf"{side} frame is missing column\(s\) {missing}"):
        evidently_report(ref, cur, verdicts=verdicts_of({}), title="x")


# --- on the synthetic worlds: the report names what decide names --------------------------


def _world_check(scenario: str):
    """A whole check in memory on a synthetic world: sketches of the full windows, ``decide``
    (k=1 of n=1, so one check alerts), then the report on bounded samples."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from driftloop.drift.compare import compare_windows
    from driftloop.drift.decision import decide
    from driftloop.drift.sketch import Binning, sketch_partition
    from driftloop_dev.synth import MemorySink, generate_world

    sink = MemorySink()
    truth = generate_world(
        sink, scenario, days=28, drift_day=14, end_date="2025-06-30", rows_per_day=250,
        labeled_per_day=0,
    )  # fmt: skip
    days = sorted({k.split("/")[1] for k in sink.keys("inference/") if k.endswith(".parquet")})

    def window(selected):
        keys = [k for k in sink.keys("inference/") if k.split("/")[1] in selected]
        tables = [pq.read_table(pa.BufferReader(sink[k])) for k in keys if k.endswith(".parquet")]
        return pa.concat_tables(tables)

    policy = load_policy(DEFAULT_POLICY_PATH, {"hysteresis": {"k": 1, "n": 1}})
    reference, current = window(days[:14]), window(days[14:])
    _, reference_sample = sketch_partition(
        reference.to_batches(), binning=None, day="r", seed_key="r", sample_size=2000
    )
    binning = Binning.fit(reference_sample)
    profiles = [
        sketch_partition(t.to_batches(), binning=binning, day=d, seed_key=d, sample_size=2000)
        for t, d in ((reference, "r"), (current, "c"))
    ]
    comparisons = compare_windows(
        profiles[0][0], profiles[1][0], profiles[0][1], profiles[1][1],
        mmd_sample_size=300, mmd_permutations=50,
    )  # fmt: skip
    decision = decide(comparisons, policy)
    frames = [with_embedding_components(p[1].to_pandas(), binning) for p in profiles]
    report = evidently_report(
        *frames, verdicts=column_verdicts(decision.to_dict(), policy), title=scenario
    )
    return truth, decision, report


def test_abrupt_world_report_names_what_decide_names():
    _truth, decision, report = _world_check("abrupt")
    assert decision.severity == "critical"
    assert set(report.summary["drifted_columns"]) == set(decision.drifted_features)
    assert {"brightness", "camera_id", "embedding"} <= set(decision.drifted_features)
    assert report.summary["dataset_drift"] is True
    judged = {f.feature for f in decision.features}
    assert set(report.summary["columns"]) == judged  # PCA components and embedding included
    assert "Dataset Drift is detected" in report.html


def test_stable_world_neither_names_anything():
    _, decision, report = _world_check("stable")
    assert decision.drifted_features == []
    assert report.summary["drifted_columns"] == []
    assert report.summary["dataset_drift"] is False


def test_the_embedding_plot_projects_a_bounded_sample_and_restores_evidently(monkeypatch):
    """Evidently's t-SNE of 2 × 2,500 rows was 77 s of an 81 s report: the plot gets
    EMBEDDING_PLOT_ROWS per side; Evidently's constant is back afterwards."""
    from evidently.legacy.metrics.data_drift import embeddings_drift

    from driftloop.drift.report import EMBEDDING_PLOT_ROWS

    projected: list[int] = []
    real_tsne = embeddings_drift.TSNE

    class CountingTSNE(real_tsne):
        def fit_transform(self, X, y=None):
            projected.append(len(X))
            return super().fit_transform(X, y)

    monkeypatch.setattr(embeddings_drift, "TSNE", CountingTSNE)
    before = embeddings_drift.SAMPLE_CONSTANT
    verdicts = verdicts_of({"embedding": "critical"})
    rep = evidently_report(
        make_frame(1500, 5), make_frame(1500, 6), verdicts=verdicts, title="embedding"
    )
    assert projected == [2 * EMBEDDING_PLOT_ROWS]
    assert embeddings_drift.SAMPLE_CONSTANT == before == 2500
    assert rep.summary["columns"]["embedding"]["drifted"] is True
