"""ATC: the threshold fitted on the eval split, the estimate, their known cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from driftloop.performance.atc import estimate, fit_threshold, top_confidence


def test_known_case_ten_scores():
    scores = [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95]
    t = fit_threshold(scores, 0.3)  # three images at or above t: between 0.65 and 0.75
    assert t == pytest.approx(0.70)
    assert estimate(scores, t) == pytest.approx(0.3)
    assert estimate([0.9, 0.81, 0.2, 0.1], t) == pytest.approx(0.5)
    assert estimate([], t) is None


def test_on_the_eval_split_itself_the_estimate_is_the_target():
    rng = np.random.default_rng(3)
    scores = rng.uniform(size=257)
    for target in (0.0, 0.013, 0.37, 0.5, 0.88, 1.0):
        t = fit_threshold(scores, target)
        assert abs(estimate(scores, t) - target) <= 0.5 / len(scores) + 1e-12


def test_monotone_higher_target_lower_threshold_and_higher_confidence_higher_estimate():
    rng = np.random.default_rng(7)
    scores = rng.beta(2, 3, size=200)
    thresholds = [fit_threshold(scores, a) for a in np.linspace(0, 1, 21)]
    assert all(a >= b for a, b in itertools.pairwise(thresholds))
    t = fit_threshold(scores, 0.4)
    day = rng.beta(2, 3, size=300)
    shifted = [estimate(np.clip(day + d, 0, 1), t) for d in (-0.2, -0.1, 0.0, 0.1, 0.2)]
    assert shifted == sorted(shifted)
    assert shifted[0] < shifted[-1]


def test_edges_and_bad_input():
    assert estimate([0.2, 0.4], fit_threshold([0.2, 0.4], 0.0)) == 0.0
    assert estimate([0.2, 0.4], fit_threshold([0.2, 0.4], 1.0)) == 1.0
    with pytest.raises(ValueError, match="at least one"):
        fit_threshold([], 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_threshold([0.3], 1.5)
    with pytest.raises(ValueError, match="finite"):
        fit_threshold([0.3, float("nan")], 0.5)
    with pytest.raises(ValueError, match="finite"):
        estimate([float("inf")], 0.5)


def test_top_confidence_is_the_logged_confidence_max():
    assert top_confidence(np.array([0.3, 0.8, 0.5]), 0.8) == pytest.approx(0.8)
    assert top_confidence(np.zeros(0), 0.12) == pytest.approx(0.12)  # none above 0.25
