"""Per-feature drift scores (driftloop.drift.feature_scores): effect over the feature's warn
effect, for alerting and charted-only features alike; recorded with each check by
decide_and_record (moto S3 + a SQLite history migrated to head) and read back."""

from __future__ import annotations

import json
import math
from datetime import date

import pytest

from driftloop.config.drift_policy import load_policy
from driftloop.config.settings import DEFAULT_POLICY_PATH, Settings
from driftloop.contracts.storage import put_bytes
from driftloop.drift import history
from driftloop.drift.compare import FeatureComparison
from driftloop.drift.decision import decide
from driftloop.drift.feature_scores import critical_ratio, feature_scores
from tests.unit.conftest import s3_client_for


@pytest.fixture
def policy():
    return load_policy(DEFAULT_POLICY_PATH)


def _comparisons():
    return [
        # brightness: default numeric psi thresholds; its last day is the worse window
        FeatureComparison("brightness", "numeric", "ks", 1e-12, {"psi": 0.03, "ks": 0.1}),
        FeatureComparison(
            "brightness", "numeric", "ks", 1e-12, {"psi": 0.3, "ks": 0.2}, window="last_1d"
        ),
        # sharpness: its own thresholds (warn 0.05, critical 0.30)
        FeatureComparison("sharpness", "numeric", "ks", 0.5, {"psi": 0.01, "ks": 0.01}),
        # latency_ms: charted, never alerts — scored all the same
        FeatureComparison("latency_ms", "numeric", "ks", 1e-12, {"psi": 0.5, "ks": 0.3}),
    ]


def test_scores_are_effects_over_each_features_warn_effect(policy):
    decision = decide(_comparisons(), policy)
    scores = feature_scores(decision.features, policy)
    assert set(scores) == {"brightness", "sharpness", "latency_ms"}
    numeric = policy.threshold("brightness", "numeric")
    bright = scores["brightness"]
    # the verdict's reported window: the critical last day
    assert (bright["window"], bright["method"], bright["effect"]) == ("last_1d", "psi", 0.3)
    assert bright["score"] == pytest.approx(0.3 / numeric.warn)
    assert (bright["warn"], bright["critical"], bright["alert"]) == (
        numeric.warn,
        numeric.critical,
        True,
    )
    sharp = policy.threshold("sharpness", "numeric")
    assert scores["sharpness"]["score"] == pytest.approx(0.01 / sharp.warn)
    assert scores["sharpness"]["warn"] == sharp.warn != numeric.warn
    latency = scores["latency_ms"]
    assert latency["alert"] is False
    assert latency["score"] == pytest.approx(0.5 / policy.threshold("latency_ms", "numeric").warn)
    assert critical_ratio(bright) == pytest.approx(numeric.critical / numeric.warn)
    json.dumps(scores, allow_nan=False)  # JSON-ready


def test_no_score_without_a_finite_effect_or_a_warn_threshold(policy):
    zero_warn = load_policy(
        DEFAULT_POLICY_PATH, {"features": {"contrast": {"warn": 0.0, "critical": 0.1}}}
    )
    comps = [
        FeatureComparison("contrast", "numeric", "ks", 0.5, {"psi": 0.01, "ks": 0.0}),
        FeatureComparison("brightness", "numeric", "ks", 0.5, {"psi": math.inf, "ks": 0.0}),
    ]
    scores = feature_scores(decide(comps, zero_warn).features, zero_warn)
    assert scores["contrast"]["effect"] == 0.01
    assert scores["contrast"]["score"] is None
    assert critical_ratio(scores["contrast"]) is None
    assert (scores["brightness"]["effect"], scores["brightness"]["score"]) == (None, None)
    json.dumps(scores, allow_nan=False)


def test_record_and_read_back_and_older_checks_have_none(tmp_path):
    engine = history.engine_for(f"sqlite:///{tmp_path / 'driftloop.db'}")
    scores = {"brightness": {"effect": 0.3, "method": "psi", "score": 15.0, "window": "full"}}
    base = dict(
        window_start=date(2026, 11, 1),
        window_end=date(2026, 11, 7),
        reference_kind="sliding",
        reference_id="r",
        severity="critical",
        policy_version="p",
        feature_levels={"brightness": "critical"},
        drifted_features=["brightness"],
    )
    history.record_check(engine, history.CheckRecord(run_id="new", feature_scores=scores, **base))
    history.record_check(engine, history.CheckRecord(run_id="old", **base))
    assert history.get_check(engine, "new")["feature_scores"] == scores
    assert history.get_check(engine, "old")["feature_scores"] is None
    bad = {"x": {"effect": math.nan}}
    with pytest.raises(ValueError, match="JSON"):
        history.record_check(engine, history.CheckRecord(run_id="bad", feature_scores=bad, **base))


def test_decide_and_record_keeps_the_scores_with_the_check(tmp_path, monkeypatch, moto_endpoint):
    from driftloop.drift.verdict import decide_and_record

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    s3 = s3_client_for(moto_endpoint)
    s3.create_bucket(Bucket="scores-tests")
    settings = Settings(bucket="scores-tests", database_url=f"sqlite:///{tmp_path / 'd.db'}")
    policy = load_policy(DEFAULT_POLICY_PATH)
    comps = _comparisons()
    document = {
        "features": [c.to_dict() for c in comps if c.window == "full"],
        "windows": {"last_1d": [c.to_dict() for c in comps if c.window == "last_1d"]},
    }
    uri = put_bytes(
        s3, "scores-tests", "stats/statistics.json", json.dumps(document).encode(), "text/json"
    )
    decision = decide_and_record(
        s3,
        settings,
        plan={"current_days": ["2026-11-01", "2026-11-07"], "missing_days": []},
        reference={"kind": "sliding", "reference_id": "ref-1", "rule": "sliding"},
        statistics={"statistics_uri": uri},
        validated={"quarantined": [], "warnings": []},
        policy=policy,
        run_id="scheduled__2026-11-07",
    )
    stored = history.get_check(history.engine_for(settings.database_url), decision["run_id"])
    expected = feature_scores(decide(comps, policy).features, policy)
    assert stored["feature_scores"] == expected
    warn = policy.threshold("brightness", "numeric").warn
    assert stored["feature_scores"]["brightness"]["score"] == pytest.approx(0.3 / warn)
    assert stored["feature_levels"]["brightness"] == "critical"
