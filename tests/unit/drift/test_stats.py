"""Drift statistics against scipy and Evidently on the same arrays; sketch merge == one pass."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from driftloop.contracts import schema
from driftloop.drift import stats
from driftloop.drift.compare import compare_categorical, compare_numeric, compare_windows
from driftloop.drift.samples import merge_samples
from driftloop.drift.sketch import (
    Binning,
    NumericSketch,
    Profile,
    merge_profiles,
    sketch_partition,
)


def _numeric_sketch(values, edges_from):
    binning_fine = [
        float(v) for v in np.unique(np.quantile(edges_from, np.linspace(0, 1, 201)[1:-1]))
    ]
    binning_coarse = [
        float(v) for v in np.unique(np.quantile(edges_from, np.linspace(0, 1, 11)[1:-1]))
    ]
    sketch = NumericSketch.empty(binning_fine, binning_coarse)
    sketch.add(np.asarray(values, float), binning_fine, binning_coarse)
    return sketch


@pytest.fixture(scope="module")
def shifted():
    rng = np.random.default_rng(7)
    reference = rng.normal(120, 25, 20_000)
    current = rng.normal(95, 22, 15_000)
    return reference, current


def test_ks_from_sketch_matches_scipy(shifted):
    reference, current = shifted
    r, c = _numeric_sketch(reference, reference), _numeric_sketch(current, reference)
    d, p = stats.ks_from_counts(r.fine_counts, c.fine_counts)
    exact = sps.ks_2samp(reference, current)
    assert d <= exact.statistic + 1e-12  # edge-evaluated statistic is a lower bound
    assert exact.statistic - d < 0.01
    assert p < 1e-100
    assert exact.pvalue < 1e-100


def test_ks_same_distribution_is_small_and_not_significant():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 5000), rng.normal(0, 1, 5000)
    r, c = _numeric_sketch(a, a), _numeric_sketch(b, a)
    d, p = stats.ks_from_counts(r.fine_counts, c.fine_counts)
    exact = sps.ks_2samp(a, b)
    assert abs(d - exact.statistic) < 0.01
    assert p > 0.01
    assert p == pytest.approx(exact.pvalue, abs=0.15)


def test_wasserstein_from_bins_matches_scipy_and_evidently_norm(shifted):
    reference, current = shifted
    r, c = _numeric_sketch(reference, reference), _numeric_sketch(current, reference)
    approx = stats.wasserstein_from_bins(r.fine_counts, r.fine_sums, c.fine_counts, c.fine_sums)
    exact = sps.wasserstein_distance(reference, current)
    assert approx == pytest.approx(exact, rel=0.02)
    from evidently.legacy.calculations.stattests.wasserstein_distance_norm import (
        _wasserstein_distance_norm,
    )
    from evidently.legacy.core import ColumnType

    evidently_value, _ = _wasserstein_distance_norm(
        pd.Series(reference), pd.Series(current), ColumnType.Numerical, 0.1
    )
    ours = compare_numeric("x", r, c).statistics["wasserstein_norm"]
    assert ours == pytest.approx(evidently_value, rel=0.02)


def test_psi_formula_equals_evidently_on_the_same_bins(shifted):
    from evidently.legacy.calculations.stattests.psi import _psi
    from evidently.legacy.calculations.stattests.utils import get_binned_data
    from evidently.legacy.core import ColumnType

    reference, current = (pd.Series(x) for x in shifted)
    evidently_value, _ = _psi(reference, current, ColumnType.Numerical, 0.1)
    r_pct, c_pct = get_binned_data(reference, current, ColumnType.Numerical, 30)
    assert stats.psi(r_pct, c_pct) == pytest.approx(evidently_value, rel=1e-9)


def test_categorical_psi_and_js_equal_evidently_and_chi2_equals_scipy():
    from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon
    from evidently.legacy.calculations.stattests.psi import _psi
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(3)
    ref = rng.choice(["cam-01", "cam-02", "cam-03", "cam-04"], 4000, p=[0.25, 0.25, 0.25, 0.25])
    cur = rng.choice(
        ["cam-01", "cam-02", "cam-03", "cam-04", "cam-05"], 3000, p=[0.2, 0.2, 0.15, 0.15, 0.3]
    )
    ref_counts = pd.Series(ref).value_counts().to_dict()
    cur_counts = pd.Series(cur).value_counts().to_dict()
    comp = compare_categorical("camera_id", ref_counts, cur_counts)
    ev_psi, _ = _psi(pd.Series(ref), pd.Series(cur), ColumnType.Categorical, 0.1)
    ev_js, _ = _jensenshannon(pd.Series(ref), pd.Series(cur), ColumnType.Categorical, 0.1)
    assert comp.statistics["psi"] == pytest.approx(ev_psi, rel=1e-9)
    assert comp.statistics["js"] == pytest.approx(ev_js, rel=1e-9)
    categories = sorted(set(ref_counts) | set(cur_counts))
    table = [[ref_counts.get(k, 0) for k in categories], [cur_counts.get(k, 0) for k in categories]]
    chi2, p, _, _ = sps.chi2_contingency(table, correction=False)
    assert comp.statistics["chi2"] == pytest.approx(chi2)
    assert comp.p_value == pytest.approx(p)
    assert comp.statistics["new_category_share"] == pytest.approx((cur == "cam-05").mean())


def test_js_distance_equals_scipy():
    p, q = np.array([0.1, 0.4, 0.5, 0.0]), np.array([0.3, 0.3, 0.2, 0.2])
    assert stats.js_distance(p, q) == pytest.approx(jensenshannon(p, q))


def test_kl_divergence_equals_scipy_entropy():
    p, q = np.array([0.2, 0.3, 0.5]), np.array([0.25, 0.25, 0.5])
    assert stats.kl_divergence(p, q) == pytest.approx(sps.entropy(q, p))


def test_benjamini_hochberg_equals_scipy():
    p = np.array([0.001, 0.04, 0.03, 0.2, 0.5, 0.011, 0.9])
    assert np.allclose(stats.benjamini_hochberg(p), sps.false_discovery_control(p, method="bh"))
    assert stats.benjamini_hochberg([]).size == 0


# The hand-written formulas these statistics had before they moved to scipy: the scipy-based
# functions must give the same numbers on the histograms the drift check produces.


def _previous_js(r, c):
    r, c = np.asarray(r, float), np.asarray(c, float)
    r, c = r / r.sum(), c / c.sum()
    m = 0.5 * (r + c)

    def kl(p, q):
        mask = p > 0
        return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))

    return float(np.sqrt(max(0.5 * kl(r, m) + 0.5 * kl(c, m), 0.0)))


def _previous_kl(r, c):
    r, c = stats.fill_empty(r), stats.fill_empty(c)
    r, c = r / r.sum(), c / c.sum()
    return float(np.sum(c * np.log(c / r)))


def _previous_bh(p):
    p = np.asarray(p, float)
    order = np.argsort(p)
    ranked = p[order] * p.size / np.arange(1, p.size + 1)
    adjusted = np.empty(p.size)
    adjusted[order] = np.clip(np.minimum.accumulate(ranked[::-1])[::-1], 0.0, 1.0)
    return adjusted


def _random_histograms(rng, bins):
    r = rng.dirichlet(np.full(bins, 0.7))
    c = rng.dirichlet(np.full(bins, 0.7))
    # empty bins on either side, as coarse bins of a shifted window have
    r[rng.random(bins) < 0.2] = 0.0
    c[rng.random(bins) < 0.2] = 0.0
    r[0] += 1e-3  # never all-empty
    c[-1] += 1e-3
    return r / r.sum(), c / c.sum()


@pytest.mark.parametrize("seed", range(20))
def test_scipy_js_and_kl_equal_the_previous_formulas(seed):
    rng = np.random.default_rng(seed)
    r, c = _random_histograms(rng, int(rng.integers(2, 40)))
    assert stats.js_distance(r, c) == pytest.approx(_previous_js(r, c), rel=1e-12, abs=1e-15)
    assert stats.kl_divergence(r, c) == pytest.approx(_previous_kl(r, c), rel=1e-12, abs=1e-15)
    # counts and shares give the same distance
    assert stats.js_distance(r * 1000, c * 7) == pytest.approx(stats.js_distance(r, c), rel=1e-12)


def test_js_of_identical_histograms_is_zero_not_nan():
    rng = np.random.default_rng(11)
    for _ in range(200):
        p = rng.dirichlet(np.ones(int(rng.integers(2, 30))))
        assert stats.js_distance(p, p.copy()) == 0.0
        assert stats.js_distance(p, p * 3.0) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("seed", range(10))
def test_scipy_bh_equals_the_previous_formula(seed):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 0.2, int(rng.integers(1, 30)))
    p[rng.random(p.size) < 0.3] = 0.01  # ties
    p[0] = 1.0
    assert np.allclose(stats.benjamini_hochberg(p), _previous_bh(p), rtol=1e-12, atol=0)


@pytest.mark.parametrize("bad", [[0.01, float("nan")], [0.2, 1.5], [-0.1]])
def test_bh_rejects_p_values_outside_0_1(bad):
    with pytest.raises(ValueError, match="p-values must be numbers in"):
        stats.benjamini_hochberg(bad)


def test_js_and_kl_reject_empty_or_mismatched_histograms():
    with pytest.raises(ValueError, match="empty histogram"):
        stats.js_distance([0, 0, 0], [1, 2, 3])
    with pytest.raises(ValueError, match="differ in bins"):
        stats.js_distance([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        stats.kl_divergence([1, -2, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="empty histogram"):
        stats.kl_divergence([1, 2, 3], [0, 0, 0])


def test_mmd_permutation_detects_shift_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8))
    same = rng.normal(size=(300, 8))
    shifted = rng.normal(size=(300, 8)) + np.r_[0.8, np.zeros(7)]
    mmd_same, p_same = stats.mmd_permutation_test(x, same, permutations=200)
    mmd_shift, p_shift = stats.mmd_permutation_test(x, shifted, permutations=200)
    assert p_shift < 0.01 < p_same
    assert mmd_shift > 5 * mmd_same


def test_mmd_equals_direct_formula():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 0.5
    value, _ = stats.mmd_permutation_test(x, y, permutations=10)
    h = stats.median_heuristic_bandwidth(x, y)

    def k(a, b):
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * h**2))

    direct = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    assert value == pytest.approx(direct, rel=1e-9)


# --- sketches ---------------------------------------------------------------------------


def _table(n: int, seed: int, brightness_shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    cols = {
        "ts": pa.array(pd.date_range("2026-01-01", periods=n, freq="s", tz="UTC")),
        "image_id": pa.array([f"img-{seed}-{i}" for i in range(n)]),
        "camera_id": pa.array(rng.choice(["cam-01", "cam-02"], n)),
        "model_version": pa.array(["1"] * n),
        "embedding": pa.FixedSizeListArray.from_arrays(
            pa.array(rng.normal(size=n * schema.EMBEDDING_DIM).astype(np.float32)),
            schema.EMBEDDING_DIM,
        ),
        "n_detections": pa.array(rng.poisson(3, n).astype(np.int32)),
        "top_class": pa.array(rng.choice(["ball", "player", "none"], n)),
    }
    for name in schema.NUMERIC_FEATURES:
        if name not in cols:
            cols[name] = pa.array(
                rng.normal(100, 20, n) + (brightness_shift if name == "brightness" else 0)
            )
    return pa.table({c.name: cols[c.name] for c in schema.COLUMNS})


def test_profile_merge_equals_one_pass():
    parts = [_table(700, seed) for seed in range(4)]
    binning = Binning.fit(parts[0])
    per_part = []
    for i, part in enumerate(parts):
        profile, _ = sketch_partition(
            part.to_batches(max_chunksize=128),
            binning=binning,
            day=f"d{i}",
            seed_key=str(i),
            sample_size=50,
        )
        per_part.append(profile)
    merged = merge_profiles(per_part)
    one_pass = Profile.empty(binning)
    for batch in pa.concat_tables(parts).to_batches(max_chunksize=1000):
        one_pass.add_batch(batch, binning)
    for name, sketch in one_pass.numeric.items():
        other = merged.numeric[name]
        assert np.array_equal(sketch.fine_counts, other.fine_counts), name
        assert np.array_equal(sketch.coarse_counts, other.coarse_counts), name
        # embeddings are projected in their stored float32 (batch sizes change the sums' last
        # digits: bins whose values sum to about 0 need an absolute tolerance)
        assert np.allclose(sketch.fine_sums, other.fine_sums, atol=1e-4), name
        assert sketch.count == other.count == 2800
        # PCA projections are matrix products: equal up to floating-point association
        assert sketch.minimum == pytest.approx(other.minimum)
        assert sketch.maximum == pytest.approx(other.maximum)
    assert merged.categorical == one_pass.categorical
    assert merged.rows == one_pass.rows == 2800
    assert Profile.from_dict(merged.to_dict()).to_dict() == merged.to_dict()


def test_bottom_k_sample_merge_is_order_independent_and_bounded():
    parts = [_table(500, seed) for seed in range(3)]
    samples = [
        sketch_partition(
            p.to_batches(max_chunksize=100),
            binning=None,
            day=str(i),
            seed_key=f"k{i}",
            sample_size=200,
        )[1]
        for i, p in enumerate(parts)
    ]
    a = merge_samples(samples, 300)
    b = merge_samples(list(reversed(samples)), 300)
    assert a.num_rows == 300
    assert a.column("image_id").to_pylist() == b.column("image_id").to_pylist()
    keys = a.column("_sample_key").to_numpy()
    assert np.all(np.diff(keys) >= 0)


def test_compare_windows_flags_the_shifted_feature_only():
    ref = pa.concat_tables([_table(2000, s) for s in range(3)])
    cur_same = pa.concat_tables([_table(2000, s) for s in range(10, 13)])
    cur_shift = pa.concat_tables([_table(2000, s, brightness_shift=-30) for s in range(20, 23)])
    binning = Binning.fit(ref)

    def profile(table, key):
        return sketch_partition(
            table.to_batches(), binning=binning, day=key, seed_key=key, sample_size=600
        )

    ref_p, ref_s = profile(ref, "r")
    same_p, same_s = profile(cur_same, "s")
    shift_p, shift_s = profile(cur_shift, "t")
    same = {
        c.feature: c
        for c in compare_windows(
            ref_p, same_p, ref_s, same_s, mmd_sample_size=300, mmd_permutations=50
        )
    }
    shift = {
        c.feature: c
        for c in compare_windows(
            ref_p, shift_p, ref_s, shift_s, mmd_sample_size=300, mmd_permutations=50
        )
    }
    assert shift["brightness"].statistics["psi"] > 0.5
    assert shift["brightness"].statistics["mean_shift_std"] == pytest.approx(-1.5, abs=0.1)
    assert max(c.statistics.get("psi", 0) for c in same.values()) < 0.02
    assert shift["contrast"].statistics["psi"] < 0.02
    assert {"embedding", "embedding_pc1", "camera_id", "top_class"} <= set(same)
