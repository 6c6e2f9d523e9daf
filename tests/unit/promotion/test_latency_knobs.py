"""The latency knobs of the promotion policy: a trigger Param that would make the gate reject
less (fewer rounds, a higher interval confidence, a wider same-graph tolerance) loosens it and
needs an operator's approval; the other way round is stricter and needs none."""

from __future__ import annotations

import pytest

from driftloop.config.promotion_overrides import STRICTER, TRIGGER_OVERRIDABLE, loosened_knobs
from driftloop.config.promotion_policy import load_promotion_policy
from driftloop.config.settings import Settings
from driftloop.retrain.policy import run_policy

LATENCY_KNOBS = [("latency", "rounds"), ("latency", "confidence"), ("latency", "same_graph_tolerance")]  # fmt: skip


def test_every_latency_knob_is_overridable_and_has_a_direction():
    for path in LATENCY_KNOBS:
        assert path in TRIGGER_OVERRIDABLE
        assert STRICTER[path] in ("higher", "lower")
    assert set(STRICTER) == set(TRIGGER_OVERRIDABLE)


@pytest.mark.parametrize(
    ("param", "value", "named"),
    [
        ("latency_rounds", 50, "latency_rounds 150 → 50"),
        ("latency_confidence", 0.99, "latency_confidence 0.95 → 0.99"),
        ("latency_same_graph_tolerance", 0.9, "latency_same_graph_tolerance 0.5 → 0.9"),
        ("latency_tolerance", 0.3, "latency_tolerance 0.1 → 0.3"),
    ],
)
def test_a_param_that_rejects_less_needs_approval(tmp_path, param, value, named):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'driftloop.db'}")
    with pytest.raises(ValueError, match="only when an operator approves") as refused:
        run_policy(settings, {param: value})
    assert named in str(refused.value)
    approved = run_policy(settings, {param: value, "approval": "required"})
    assert approved.version.endswith("+override")


def test_stricter_latency_params_need_no_approval(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'driftloop.db'}")
    params = {"latency_rounds": 400, "latency_confidence": 0.9,
              "latency_same_graph_tolerance": 0.2, "latency_tolerance": 0.05}  # fmt: skip
    policy = run_policy(settings, params)
    assert (policy.latency_rounds, policy.latency_confidence) == (400, 0.9)
    assert (policy.latency_same_graph_tolerance, policy.latency_tolerance) == (0.2, 0.05)
    assert policy.approval == "none"
    assert loosened_knobs(load_promotion_policy(), {"latency": {"rounds": 150}}) == []
