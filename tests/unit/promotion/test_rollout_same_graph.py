"""The rollout's latency rule follows the gate's: a subject whose serving graph has the
baseline's signature (known from its evaluation against that baseline) gets the wider
same-graph tolerance; anything else keeps the policy's."""

from __future__ import annotations

import pytest

from driftloop.config.settings import Settings
from driftloop.promotion.rollout_steps import same_graph_as_baseline
from driftloop.retrain.records import ledger


@pytest.fixture
def settings(tmp_path):
    return Settings(database_url=f"sqlite:///{tmp_path / 'driftloop.db'}")


def _evaluation(settings, version: str, champion: str | None, fingerprints: tuple[str, str]):
    latency = {
        "candidate": {"p95_ms": 5.0},
        "champion": {"p95_ms": 5.0},
        "candidate_graph": {"fingerprint": fingerprints[0]},
        "champion_graph": {"fingerprint": fingerprints[1]},
    }
    ledger(settings).append(
        "evaluation",
        actor="airflow:test",
        subject=f"model:{settings.registered_model}/v{version}",
        payload={
            "candidate": {"version": version},
            "champion": None if champion is None else {"version": champion},
            "latency": latency,
        },
        idempotency_key=f"retrain_detector/run-{version}/evaluate",
    )


def test_same_signature_against_the_baseline_is_same_graph(settings):
    _evaluation(settings, "2", "1", ("abc", "abc"))
    assert same_graph_as_baseline(settings, "2", "1") is True


def test_another_signature_is_not(settings):
    _evaluation(settings, "3", "1", ("big", "abc"))
    assert same_graph_as_baseline(settings, "3", "1") is False


def test_an_evaluation_against_another_baseline_says_nothing(settings):
    # v4 was evaluated against v2; a guard comparing it with v1 cannot use that signature pair
    _evaluation(settings, "4", "2", ("abc", "abc"))
    assert same_graph_as_baseline(settings, "4", "1") is None
    assert same_graph_as_baseline(settings, "5", "1") is None  # never evaluated
