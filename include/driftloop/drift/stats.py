"""Drift statistics computed from binned counts (mergeable sketches) or bounded samples.

Everything here is a pure function of numpy arrays. Histogram statistics take the counts of
a reference and a current window over the *same* bins, so they work on sketches merged
across any number of partitions without holding rows in memory.

At large n every p-value is tiny; p-values are reported for the multiple-testing correction
(Benjamini–Hochberg) while the verdict rests on effect sizes (see ``driftloop.drift.decision``).

Where scipy has the statistic on plain histograms (Jensen–Shannon, KL, Benjamini–Hochberg,
chi-square, the KS distribution, Wasserstein) it is used; what scipy computes only from raw
samples (KS and Wasserstein from binned sketches, PSI with Evidently's empty-bin rule, MMD
with all permutations at once) is written here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

#: replacement for an empty bin's share, so that logarithms stay finite (Evidently's rule)
EMPTY_BIN_SHARE = 1e-4


def shares(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    if total <= 0:
        raise ValueError("cannot compute shares of an empty histogram")
    return counts / total


def fill_empty(p: np.ndarray) -> np.ndarray:
    """Replace zero shares by a small positive share (Evidently's ``feel_zeroes`` rule)."""
    p = np.array(p, dtype=float)
    nonzero = p[p > 0]
    smallest = nonzero.min() if nonzero.size else EMPTY_BIN_SHARE
    p[p == 0] = smallest / 1e6 if smallest <= EMPTY_BIN_SHARE else EMPTY_BIN_SHARE
    return p


def psi(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Population Stability Index: sum over bins of (r - c) * ln(r / c)."""
    r = fill_empty(reference_shares)
    c = fill_empty(current_shares)
    return float(np.sum((r - c) * np.log(r / c)))


def _normalised(name: str, shares_or_counts: np.ndarray) -> np.ndarray:
    values = np.asarray(shares_or_counts, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D histogram, got shape {values.shape}")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"{name} must hold finite, non-negative shares or counts")
    total = values.sum()
    if total <= 0:
        raise ValueError(f"{name} is an empty histogram (its shares sum to {total})")
    return values / total


def js_distance(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Jensen–Shannon distance (natural log; in [0, sqrt(ln 2)]): scipy's ``jensenshannon``
    on the two histograms (counts or shares: both are normalised)."""
    from scipy.spatial.distance import jensenshannon

    r = _normalised("reference histogram", reference_shares)
    c = _normalised("current histogram", current_shares)
    if r.shape != c.shape:
        raise ValueError(f"histograms differ in bins: {r.size} reference vs {c.size} current")
    # scipy takes the square root of the divergence as summed: on (nearly) identical
    # histograms rounding can leave it at -1e-17, whose root is NaN; the distance is 0 there.
    with np.errstate(invalid="ignore"):
        distance = float(jensenshannon(r, c))
    return 0.0 if math.isnan(distance) else distance


def kl_divergence(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """KL(current || reference) with empty bins filled (used on colour histograms): scipy's
    ``entropy(current, reference)`` (natural log) after :func:`fill_empty`, so an empty
    reference bin costs a large but finite amount instead of infinity."""
    from scipy.stats import entropy

    _normalised("reference histogram", reference_shares)  # validation only
    _normalised("current histogram", current_shares)
    # filled as given (before normalising): fill_empty's rule depends on the smallest share
    r = fill_empty(reference_shares)
    c = fill_empty(current_shares)
    if r.shape != c.shape:
        raise ValueError(f"histograms differ in bins: {r.size} reference vs {c.size} current")
    return float(entropy(c, r))


def ks_from_counts(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov statistic and asymptotic p-value from binned counts.

    The statistic is the largest CDF gap at the bin edges: a lower bound on the exact
    statistic that is within one bin's mass of it (fine reference-quantile bins keep that
    under a percent).
    """
    from scipy.stats import kstwobign

    r = np.asarray(reference_counts, dtype=float)
    c = np.asarray(current_counts, dtype=float)
    n, m = r.sum(), c.sum()
    if n <= 0 or m <= 0:
        raise ValueError("KS needs non-empty reference and current histograms")
    d = float(np.max(np.abs(np.cumsum(r) / n - np.cumsum(c) / m)))
    effective_n = n * m / (n + m)
    p_value = float(kstwobign.sf(d * math.sqrt(effective_n))) if d > 0 else 1.0
    return d, min(max(p_value, 0.0), 1.0)


def wasserstein_from_bins(
    reference_counts: np.ndarray,
    reference_sums: np.ndarray,
    current_counts: np.ndarray,
    current_sums: np.ndarray,
) -> float:
    """First Wasserstein distance with each bin's mass placed at the bin's own mean.

    Placing mass at per-bin means (not bin centres) keeps the tails right: a shift that
    pushes mass beyond the reference's outermost edge is measured at the values it has.
    The error is at most the mass-weighted within-bin spread.
    """
    from scipy.stats import wasserstein_distance

    def points(counts, sums):
        counts = np.asarray(counts, dtype=float)
        sums = np.asarray(sums, dtype=float)
        mask = counts > 0
        return sums[mask] / counts[mask], counts[mask]

    r_values, r_weights = points(reference_counts, reference_sums)
    c_values, c_weights = points(current_counts, current_sums)
    if r_values.size == 0 or c_values.size == 0:
        raise ValueError("Wasserstein needs non-empty reference and current histograms")
    return float(wasserstein_distance(r_values, c_values, r_weights, c_weights))


def chi_square(
    reference_counts: np.ndarray, current_counts: np.ndarray
) -> tuple[float, float, float]:
    """Chi-square test of homogeneity on a 2 x K table: (statistic, p-value, Cramér's V).

    Categories empty in both windows are dropped; Cramér's V is the effect size.
    """
    from scipy.stats import chi2_contingency

    table = np.vstack([np.asarray(reference_counts, float), np.asarray(current_counts, float)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0, 0.0
    statistic, p_value, _, _ = chi2_contingency(table, correction=False)
    n = table.sum()
    cramers_v = math.sqrt(statistic / (n * (min(table.shape) - 1)))
    return float(statistic), float(p_value), float(cramers_v)


def align_categories(
    reference: Mapping[str, int], current: Mapping[str, int]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    categories = sorted(set(reference) | set(current))
    r = np.array([reference.get(k, 0) for k in categories], dtype=float)
    c = np.array([current.get(k, 0) for k in categories], dtype=float)
    return categories, r, c


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values), in the input order: scipy's
    ``false_discovery_control(method="bh")``. A p-value that is not a number in [0, 1] is
    an error (a NaN would otherwise silently pass as "not significant")."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p_values, dtype=float).reshape(-1)
    if p.size == 0:
        return p
    bad = np.flatnonzero(~((p >= 0.0) & (p <= 1.0)))
    if bad.size:
        raise ValueError(
            f"p-values must be numbers in [0, 1]; position {int(bad[0])} holds {p[bad[0]]!r}"
        )
    return np.asarray(false_discovery_control(p, method="bh"), dtype=float)


def median_heuristic_bandwidth(x: np.ndarray, y: np.ndarray, max_points: int = 1000) -> float:
    z = np.vstack([x, y])[:max_points]
    sq = _squared_distances(z, z)
    upper = sq[np.triu_indices_from(sq, k=1)]
    median = float(np.median(upper)) if upper.size else 1.0
    return math.sqrt(median / 2.0) if median > 0 else 1.0


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aa = np.sum(a * a, axis=1)[:, None]
    bb = np.sum(b * b, axis=1)[None, :]
    return np.maximum(aa + bb - 2.0 * a @ b.T, 0.0)


def mmd_permutation_test(
    x: np.ndarray, y: np.ndarray, *, permutations: int = 200, seed: int = 0
) -> tuple[float, float]:
    """Squared maximum mean discrepancy (RBF kernel, median-heuristic bandwidth, biased
    V-statistic) and its permutation p-value.

    All permutations are evaluated at once as quadratic forms ``w' K w`` of a signed weight
    vector, so the cost is one kernel matrix and one matrix product.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("MMD needs at least two rows in each sample")
    z = np.vstack([x, y])
    bandwidth = median_heuristic_bandwidth(x, y)
    kernel = np.exp(-_squared_distances(z, z) / (2.0 * bandwidth**2))
    n, m = len(x), len(y)
    base = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    rng = np.random.default_rng(seed)
    weights = np.column_stack([base] + [rng.permutation(base) for _ in range(permutations)])
    quad = np.einsum("ij,ij->j", weights, kernel @ weights)
    observed, null = float(quad[0]), quad[1:]
    p_value = (1.0 + float(np.sum(null >= observed))) / (permutations + 1.0)
    return max(observed, 0.0), p_value
