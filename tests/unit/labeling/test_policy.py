"""The ``labeling:`` section of the drift policy (driftloop.config.labeling_policy)."""

from __future__ import annotations

import pytest
import yaml

from driftloop.config.drift_policy import load_policy, parse_policy
from driftloop.config.labeling_policy import SIGNALS
from driftloop.config.policies import PolicyError
from driftloop.config.settings import DEFAULT_POLICY_PATH


def test_the_shipped_policy_has_a_labeling_section():
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    labeling = load_policy(DEFAULT_POLICY_PATH).labeling
    assert labeling.model_dump() == raw["labeling"]
    assert set(raw["labeling"]["weights"]) == set(SIGNALS) == set(raw["labeling"]["quotas"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"budget_per_day": 0}, "labeling.budget_per_day"),
        ({"quotas": {"novelty": 0.9, "uncertainty": 0.9}}, "quotas add up to 2"),
        ({"embedding": {"distance": "manhattan"}}, "labeling.embedding.distance"),
        ({"weights": {s: 0 for s in SIGNALS}}, "at least one signal"),
        ({"budget": 10}, "labeling.budget"),
    ],
)
def test_a_bad_labeling_section_names_the_key(change, message):
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    raw["labeling"] = {**raw["labeling"], **change}
    with pytest.raises(PolicyError, match=message):
        parse_policy(raw, "drift_policy.yaml")
