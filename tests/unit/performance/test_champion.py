"""The champion's baseline (its own evaluation in the audit ledger) and its eval snapshot."""

from __future__ import annotations

import pytest

from driftloop.config.settings import Settings
from driftloop.performance.champion import (
    Champion,
    NoBaselineError,
    PerformanceCheckError,
    baseline_of,
    champion_onnx,
    eval_dataset,
    no_baseline_note,
)
from driftloop.retrain.records import ledger

SHA_A, SHA_B = "a" * 64, "b" * 64


@pytest.fixture
def settings(tmp_path):
    return Settings(database_url=f"sqlite:///{tmp_path / 'ledger.db'}", registered_model="det")


def evaluation(settings, run, candidate, champion=None, dataset=SHA_A, **numbers):
    """A row as ``retrain/evaluate.py`` appends it."""
    payload = {
        "candidate": {"version": candidate, "map50": 0.8, "map50_95": 0.5, **numbers},
        "champion": None if champion is None else {"version": champion, "map50_95": 0.1},
        "delta": None,
        "latency": None,
        "uri": f"s3://b/reports/retrain/{run}/evaluation.json",
    }
    ledger(settings).append(
        "evaluation",
        actor=f"airflow:{run}",
        subject=f"model:det/v{candidate}",
        payload=payload,
        input_hashes={"dataset": dataset},
        idempotency_key=f"retrain_detector/{run}/evaluate",
    )


def test_the_baseline_is_the_newest_evaluation_of_the_version_as_candidate(settings):
    champion = Champion("det", "3", uris={}, dataset_sha256=SHA_A)
    evaluation(settings, "r1", "3", map50=0.70, map50_95=0.40)
    evaluation(settings, "r2", "3", map50=0.88, map50_95=0.52)
    evaluation(settings, "r3", "4", champion="3")  # v3 as the champion of v4's gate
    baseline = baseline_of(settings, champion)
    assert baseline["map50"] == pytest.approx(0.88)
    assert baseline["map50_95"] == pytest.approx(0.52)
    assert baseline["source"].startswith("ledger evaluation row ")
    assert baseline["source"].endswith("(s3://b/reports/retrain/r2/evaluation.json)")
    assert baseline["dataset_sha256"] == SHA_A
    assert eval_dataset(champion, baseline) == SHA_A


def test_a_never_evaluated_champion_has_no_baseline_but_one_without_map_fails(settings):
    evaluation(settings, "r3", "4", champion="3")
    assert baseline_of(settings, Champion("det", "3", uris={})) is None  # never evaluated
    assert "det v3 has no evaluation of its own" in no_baseline_note(Champion("det", "3", uris={}))
    evaluation(settings, "r4", "3", map50_95=None)
    with pytest.raises(NoBaselineError, match="has no mAP"):
        baseline_of(settings, Champion("det", "3", uris={}))


def test_the_eval_snapshot_must_be_known_and_agree():
    baseline = {"source": "ledger evaluation row 1", "dataset_sha256": SHA_B}
    assert eval_dataset(Champion("det", "3", {}), baseline) == SHA_B
    with pytest.raises(PerformanceCheckError, match="ran on dataset"):
        eval_dataset(Champion("det", "3", {}, dataset_sha256=SHA_A), baseline)
    with pytest.raises(PerformanceCheckError, match="unknown"):
        eval_dataset(Champion("det", "3", {}), {"source": "x", "dataset_sha256": None})


def test_an_unrecorded_model_file_is_never_scored(tmp_path):
    champion = Champion("det", "3", uris={"fp32": "models:/m-1"}, hashes={"int8": SHA_A})
    with pytest.raises(PerformanceCheckError, match="no recorded SHA-256 of its fp32"):
        champion_onnx(champion, "fp32", tmp_path)


def test_a_version_without_onnx_models_is_a_champion_that_cannot_be_scored(tmp_path):
    from types import SimpleNamespace

    from driftloop.performance import champion as module

    version = SimpleNamespace(
        name="det", version="5", source="models:/m-9f", run_id="r", tags={}, aliases=["champion"]
    )
    client = SimpleNamespace(
        get_registered_model=lambda name: SimpleNamespace(aliases={"champion": "5"}),
        get_model_version=lambda name, number: version,
    )
    found = module.current_champion(client, "det")
    assert (found.version, found.uris, found.hashes) == ("5", {}, {})  # no FP32 tag: no models
    with pytest.raises(PerformanceCheckError, match="names no fp32 ONNX model"):
        champion_onnx(found, "fp32", tmp_path)
