"""Sample-size-aware significance (issue 10, item 1): the null draws compute each statistic
exactly as the check does, the p-values are calibrated on stable data with and without
day-to-day variation, and the same effect is noise at 200 rows and drift at 28,000."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.drift import calibration as cal
from driftloop.drift import stats


def _shares(rng, k):
    p = rng.dirichlet(np.ones(k))
    p[rng.integers(k)] = 0.0  # an empty bin exercises the empty-bin rule
    return p / p.sum()


@pytest.mark.parametrize("method", ["psi", "js", "kl", "ks"])
def test_vectorised_statistics_equal_the_checks_own(method):
    rng = np.random.default_rng(3)
    scalar = {
        "psi": stats.psi,
        "js": stats.js_distance,
        "kl": stats.kl_divergence,
        "ks": lambda r, c: stats.ks_from_counts(r, c)[0],
    }[method]
    r = np.array([_shares(rng, 12) for _ in range(20)])
    c = np.array([_shares(rng, 12) for _ in range(20)])
    vectorised = cal.statistic_rows(method, r, c)
    expected = [scalar(r[i], c[i]) for i in range(20)]
    np.testing.assert_allclose(vectorised, expected, rtol=1e-9, atol=1e-12)


def test_vectorised_chi_square_cramers_v_and_wasserstein_equal_the_checks_own():
    rng = np.random.default_rng(4)
    r_counts = rng.integers(1, 500, size=8).astype(float)
    c_counts = rng.integers(1, 500, size=8).astype(float)
    r, c = r_counts / r_counts.sum(), c_counts / c_counts.sum()
    rows = (r_counts.sum(), c_counts.sum())
    chi2, _, v = stats.chi_square(r_counts, c_counts)
    assert cal.statistic_rows("chi2", r, c, rows=rows)[0] == pytest.approx(chi2, rel=1e-9)
    assert cal.statistic_rows("cramers_v", r, c, rows=rows)[0] == pytest.approx(v, rel=1e-9)
    positions = np.sort(rng.normal(size=8))
    w = stats.wasserstein_from_bins(r_counts, r_counts * positions, c_counts, c_counts * positions)
    got = cal.statistic_rows("wasserstein_norm", r, c, positions=positions, scale=2.0)[0]
    assert got == pytest.approx(w / 2.0, rel=1e-9)


def test_an_uncalibratable_method_is_named():
    with pytest.raises(ValueError, match="hellinger"):
        cal.statistic_rows("hellinger", np.ones((1, 3)) / 3, np.ones((1, 3)) / 3)


def _days(rng, p, days, rows, tau):
    """Per-day counts whose shares vary between days with excess variance ``tau``."""
    out = []
    for _ in range(days):
        if tau > 0:
            concentration = 1.0 / tau
            day_p = rng.dirichlet(p * concentration)
        else:
            day_p = p
        out.append(rng.multinomial(rows, day_p).astype(float))
    return out


def test_day_to_day_variation_is_measured():
    rng = np.random.default_rng(5)
    p = np.full(10, 0.1)
    assert cal.between_day_excess(_days(rng, p, 14, 2000, 0.0)) < 2e-4
    estimates = [cal.between_day_excess(_days(rng, p, 14, 2000, 0.002)) for _ in range(20)]
    # a Dirichlet with concentration 1/tau has share variance p(1-p) * tau / (1 + 1/tau) ~ tau
    assert np.median(estimates) == pytest.approx(0.002, rel=0.3)
    assert cal.between_day_excess(_days(rng, p, 2, 2000, 0.01)) == 0.0  # too few days


def _false_alarm_rate(rng, *, tau_true, use_tau, checks=300, alpha=0.01):
    p = np.array([0.05, 0.1, 0.15, 0.2, 0.2, 0.15, 0.1, 0.05])
    alarms = 0
    for i in range(checks):
        reference_days = _days(rng, p, 14, 2000, tau_true)
        current_days = _days(rng, p, 14, 2000, tau_true)
        reference = np.sum(reference_days, axis=0)
        current = np.sum(current_days, axis=0)
        tau = cal.between_day_excess(reference_days) if use_tau else 0.0
        observed = stats.psi(stats.shares(reference), stats.shares(current))
        null = cal.null_draws(
            "psi",
            reference,
            reference=cal.WindowSize(reference.sum(), 14),
            current=cal.WindowSize(current.sum(), 14),
            tau=tau,
            draws=400,
            seed=i,
        )
        alarms += null.p_value(observed) < alpha
    return alarms / checks


def test_p_values_are_calibrated_on_stable_data():
    rng = np.random.default_rng(6)
    assert _false_alarm_rate(rng, tau_true=0.0, use_tau=True) <= 0.03


def test_day_to_day_variation_is_what_keeps_them_calibrated():
    rng = np.random.default_rng(7)
    # days that differ beyond sampling: without tau the null is far too narrow
    assert _false_alarm_rate(rng, tau_true=0.003, use_tau=False, checks=120) > 0.2
    assert _false_alarm_rate(rng, tau_true=0.003, use_tau=True, checks=120) <= 0.05


def test_the_same_effect_is_noise_at_200_rows_and_drift_at_28000():
    p = np.full(10, 0.1)
    effect = 0.03  # PSI of a ~0.18 sd shift

    def p_value(rows):
        null = cal.null_draws(
            "psi",
            p * 1e6,
            reference=cal.WindowSize(rows, 14),
            current=cal.WindowSize(rows, 14),
            draws=500,
        )
        return null.p_value(effect)

    assert p_value(200) > 0.5
    assert p_value(28_000) < 1e-12


def test_effective_rows_shrink_with_day_to_day_variation():
    assert cal.effective_rows(28_000, 14, 0.0) == pytest.approx(28_000)
    assert cal.effective_rows(1_000_000, 1, 0.001) < 1_000  # one day carries one day's information
    with pytest.raises(ValueError, match="rows"):
        cal.effective_rows(0, 1, 0.0)
