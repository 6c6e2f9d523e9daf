"""The gate step reads the per-camera evidence from the evaluation on record (the ledger) and
the model card shows it: a camera that regresses is named in the rejection."""

from __future__ import annotations

import pytest

from driftloop.audit.ledger import Ledger
from driftloop.config.settings import Settings
from driftloop.promotion.gate import DEFAULT_PROMOTION_POLICY_PATH, load_promotion_policy
from driftloop.retrain.decision import gate
from driftloop.retrain.model_card import model_card
from tests.unit.promotion.test_gate import latency

SUMMARY = {"map50": 0.9, "map50_95": 0.6, "map50_int8": 0.9, "p95_latency_ms": 5.0,
           "p50_latency_ms": 4.0, "n_images": 100}  # fmt: skip
DELTA = {"metric": "map50_95", "point": 0.03, "low": 0.01, "high": 0.05, "confidence": 0.95,
         "n_images": 100, "n_resamples": 1000, "seed": 0}  # fmt: skip


def _slice(camera, n, point, low, high, confidence=1 - 0.05 / 2):
    delta = {**DELTA, "point": point, "low": low, "high": high, "n_images": n,
             "confidence": confidence}  # fmt: skip
    return {"camera": camera, "n_images": n, "status": "judged", "delta": delta,
            "candidate": {"map50": 0.8, "map50_95": 0.5 + point},
            "champion": {"map50": 0.8, "map50_95": 0.5}}  # fmt: skip


SLICES = {
    "by": "camera_id",
    "metric": "map50_95",
    "tolerance": 0.02,
    "min_images": 20,
    "confidence": 0.95,
    "slice_confidence": 1 - 0.05 / 2,
    "slices": [
        _slice("cam-01", 40, 0.06, 0.03, 0.09),
        _slice("cam-03", 30, -0.081, -0.12, -0.05),
        {"camera": "cam-05", "n_images": 6, "status": "too_few", "delta": None,
         "candidate": {"map50": 0.7, "map50_95": 0.4}, "champion": {"map50": 0.8, "map50_95": 0.5}},
    ],
    "unattributed": 24,
}  # fmt: skip


@pytest.fixture
def settings(tmp_path):
    return Settings(database_url=f"sqlite:///{tmp_path / 'driftloop.db'}")


def _evaluation(settings, run_id, slices):
    payload = {
        "candidate": {"version": "7", **SUMMARY},
        "champion": {"version": "6", **SUMMARY},
        "delta": DELTA,
        "latency": latency().to_dict(),
        "uri": "s3://b/evaluation.json",
    }
    if slices is not None:
        payload["slices"] = slices
    Ledger(settings.database_url).append(
        "evaluation",
        actor=f"airflow:{run_id}",
        subject="model:driftloop-detector/v7",
        payload=payload,
        idempotency_key=f"retrain_detector/{run_id}/evaluate",
    )
    return payload


def test_a_camera_that_regresses_rejects_the_candidate_by_name(settings):
    policy = load_promotion_policy(DEFAULT_PROMOTION_POLICY_PATH, {"min_map50_95": 0.3})
    evaluation = _evaluation(settings, "run-1", SLICES)
    decision = gate(settings, "7", policy, "run-1")
    assert decision["promote"] is False
    assert decision["reasons"] == [
        "camera cam-03: mAP50-95 delta -0.081 (CI -0.120…-0.050) below -0.02"
    ]
    assert decision["evidence"]["slices"] == SLICES
    assert "camera cam-03" in decision["table"]

    card = model_card(
        {"sha256": "f" * 64, "counts": {}},
        evaluation,
        decision,
        {"version": "7"},
        {"days": ["2031-01-01"], "trigger": {"kind": "manual", "reason": "test"}},
    )
    assert "| cam-03 | 30 | 0.4190 | 0.5000 | -0.0810 [-0.1200, -0.0500] |" in card
    assert "| cam-05 | 6 | 0.4000 | 0.5000 | too few to judge (< 20 images) |" in card
    assert "unattributed images: 24" in card


def test_an_evaluation_without_per_camera_evidence_fails_closed(settings):
    policy = load_promotion_policy(DEFAULT_PROMOTION_POLICY_PATH, {"min_map50_95": 0.3})
    _evaluation(settings, "run-2", None)
    decision = gate(settings, "7", policy, "run-2")
    assert decision["promote"] is False
    assert decision["reasons"] == [
        "camera_slices: no per-camera evidence in the evaluation: fail closed"
    ]
