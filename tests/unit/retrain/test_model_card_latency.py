"""The model card says how the latency was compared: ratio, interval, rounds, method, graphs."""

from __future__ import annotations

from driftloop.evaluation.latency import METHOD, LatencyComparison
from driftloop.retrain.model_card import model_card

SNAPSHOT = {"sha256": "f" * 64, "counts": {"train": 10, "eval": 4}}
PLAN = {"days": ["2031-01-01", "2031-01-14"], "trigger": {"kind": "manual", "reason": "test"}}
SUMMARY = {"map50": 0.9, "map50_95": 0.6, "map50_int8": 0.9, "p50_latency_ms": 4.1,
           "p95_latency_ms": 5.2, "n_images": 4}  # fmt: skip


def _card(latency):
    evaluation = {
        "candidate": {"version": "3", **SUMMARY},
        "champion": {"version": "2", **SUMMARY},
        "delta": {"metric": "map50_95", "point": 0.01, "low": -0.01, "high": 0.03},
        "latency": latency,
    }
    return model_card(SNAPSHOT, evaluation, {"table": "decision: PROMOTE"}, {"version": "3"}, PLAN)


def test_the_card_reports_the_paired_latency_comparison():
    graph = {"fingerprint": "0123456789abcdef", "flops": 394_716_800, "n_nodes": 704,
             "macs_complete": True}  # fmt: skip
    comparison = LatencyComparison(
        ratio=1.004, low=0.981, high=1.027, confidence=0.95, rounds=200, n_resamples=2000,
        block_rounds=6, seed=0, candidate={"p95_ms": 5.2}, champion={"p95_ms": 5.18},
        candidate_graph=graph, champion_graph=graph,
    )  # fmt: skip
    card = _card(comparison.to_dict())
    assert (
        "Latency (INT8 ONNX): p95 ratio candidate/champion 1.004, 95% CI [0.981, 1.027], "
        "200 paired rounds (2000 bootstrap resamples in blocks of 6 rounds)." in card
    )
    assert f"Method: {METHOD}." in card
    assert (
        "Graph signatures: same graph — candidate 0123456789ab (0.39 GFLOPs, 704 nodes); "
        "champion 0123456789ab (0.39 GFLOPs, 704 nodes)." in card
    )
    assert "| p95_latency_ms | 5.2 | 5.2 |" in card


def test_a_card_without_a_champion_has_no_comparison():
    assert "Latency (INT8 ONNX)" not in _card(None)
