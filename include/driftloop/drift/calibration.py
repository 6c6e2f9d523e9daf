"""How large a drift statistic is on stable data at *this* check's sample sizes.

A fixed threshold (PSI 0.1) means different things at 200 and at 2 million rows: at 200 rows
sampling noise alone reaches it, at 2 million a shift of a tenth of a standard deviation is far
above the noise and still invisible. So every statistic the verdict rests on is judged against
its **null distribution at the sizes of the two windows being compared**, calibrated on the
reference itself:

1. **Day-to-day variation.** Real days differ more than rows drawn at random (weather, camera
   mix, traffic). From the reference's per-day histograms (or contiguous chunks of a single
   reference table) :func:`between_day_excess` estimates ``tau``: the share variance between
   days beyond multinomial sampling, in units of the multinomial variance of one row. A window
   of ``N`` rows over ``D`` days then carries the information of
   ``n_eff = 1 / (1/N + tau/D)`` independent rows (:func:`effective_rows`), so a million rows
   from one day are not worth a million independent rows.
2. **The null draws.** :func:`null_draws` samples both windows from the reference's own
   histogram at their effective sizes (a parametric bootstrap on the sketches) and computes the
   statistic exactly as the check does, vectorised over draws.
3. **The p-value** (:func:`null_p_value`) of the observed statistic is the tail of a scaled
   chi-square fitted to the null draws by their first two moments (Satterthwaite): quadratic
   statistics (PSI, KL, chi-square) are close to scaled chi-squares under the null, and the
   square of the others (JS, KS, Wasserstein, mean shift, Cramér's V) is. The fit gives tail
   probabilities far beyond the number of draws, which Benjamini–Hochberg across features
   needs.

The effect-size thresholds of the policy stay what an operator reads ("PSI 0.02 warns"); they are
now the *minimum effect* worth a warning, while the calibrated p-value (after BH) says whether
the effect is more than noise at these sample sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from driftloop.drift import stats

#: null draws per statistic (policy ``calibration.draws``)
DEFAULT_DRAWS = 1000
#: statistics whose null is close to a scaled chi-square as they are; the others are squared
QUADRATIC = frozenset({"psi", "kl", "chi2"})
#: statistics the calibration can draw (the policy's ``method`` must be one of them)
CALIBRATED_METHODS = frozenset(
    {"psi", "js", "kl", "ks", "wasserstein_norm", "mean_shift_std", "chi2", "cramers_v"}
)
#: fewer reference days than this: no day-to-day estimate (tau 0, sampling noise only)
MIN_DAYS_FOR_TAU = 3


def between_day_excess(day_counts: Sequence[np.ndarray]) -> float:
    """``tau``: variance of the bin shares between days beyond what sampling explains, per
    unit of one row's multinomial variance (0 when days differ only by sampling).

    Each day's shares are compared with the shares of all other days: the mean of
    ``S_d = sum_k (s_dk - s_rest,k)^2 / p_k`` is ``(K - 1) * (1/n_d + 1/n_rest + tau * D/(D-1))``
    under the model, which gives ``tau``.
    """
    days = [np.asarray(c, dtype=float) for c in day_counts]
    days = [c for c in days if c.sum() > 0]
    if len(days) < MIN_DAYS_FOR_TAU:
        return 0.0
    total = np.sum(days, axis=0)
    keep = total > 0
    if keep.sum() < 2:
        return 0.0
    p = total[keep] / total.sum()
    dof = keep.sum() - 1
    excess = []
    for counts in days:
        rest = total - counts
        n_d, n_r = counts.sum(), rest.sum()
        if n_r <= 0:
            continue
        s_d, s_r = counts[keep] / n_d, rest[keep] / n_r
        statistic = float(np.sum((s_d - s_r) ** 2 / p))
        excess.append(statistic / dof - (1.0 / n_d + 1.0 / n_r))
    if not excess:
        return 0.0
    d = len(days)
    return max(0.0, float(np.mean(excess)) * (d - 1) / d)


def effective_rows(rows: float, days: int, tau: float) -> float:
    """Independent rows a window of ``rows`` rows over ``days`` days is worth."""
    if rows <= 0:
        raise ValueError(f"a window needs rows to compare, got {rows}")
    return 1.0 / (1.0 / rows + tau / max(days, 1))


# --- the statistics, vectorised over draws (rows of 2-D share arrays) -----------------------


def _fill_empty_rows(p: np.ndarray) -> np.ndarray:
    """:func:`driftloop.drift.stats.fill_empty` on each row."""
    p = np.array(p, dtype=float)
    positive = np.where(p > 0, p, np.inf)
    smallest = positive.min(axis=1, keepdims=True)
    smallest = np.where(np.isfinite(smallest), smallest, stats.EMPTY_BIN_SHARE)
    fill = np.where(smallest <= stats.EMPTY_BIN_SHARE, smallest / 1e6, stats.EMPTY_BIN_SHARE)
    return np.where(p == 0, np.broadcast_to(fill, p.shape), p)


def _rel_entr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.special import rel_entr

    return rel_entr(a, b).sum(axis=1)


def statistic_rows(
    method: str,
    reference: np.ndarray,
    current: np.ndarray,
    *,
    positions: np.ndarray | None = None,
    scale: float = 1.0,
    rows: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """``method`` between each row of ``reference`` and ``current`` (shares, same bins).

    ``positions``: value of each bin (Wasserstein, mean shift); ``scale``: the reference's
    standard deviation they are divided by; ``rows``: the two windows' row counts (the
    chi-square and Cramér's V of a contingency table depend on them).
    """
    r = np.atleast_2d(np.asarray(reference, dtype=float))
    c = np.atleast_2d(np.asarray(current, dtype=float))
    if method == "psi":
        rf, cf = _fill_empty_rows(r), _fill_empty_rows(c)
        return np.sum((rf - cf) * np.log(rf / cf), axis=1)
    if method == "kl":
        rf, cf = _fill_empty_rows(r), _fill_empty_rows(c)
        rf = rf / rf.sum(axis=1, keepdims=True)
        cf = cf / cf.sum(axis=1, keepdims=True)
        return _rel_entr(cf, rf)
    if method == "js":
        m = 0.5 * (r + c)
        divergence = 0.5 * (_rel_entr(r, m) + _rel_entr(c, m))
        return np.sqrt(np.maximum(divergence, 0.0))
    if method == "ks":
        return np.max(np.abs(np.cumsum(r, axis=1) - np.cumsum(c, axis=1)), axis=1)
    if method in ("wasserstein_norm", "mean_shift_std"):
        if positions is None:
            raise ValueError(f"{method} needs the bins' positions")
        x = np.asarray(positions, dtype=float)
        if method == "mean_shift_std":
            return np.abs((c - r) @ x) / scale
        order = np.argsort(x)
        gaps = np.diff(x[order])
        cdf_gap = np.abs(np.cumsum(r[:, order], axis=1) - np.cumsum(c[:, order], axis=1))[:, :-1]
        return (cdf_gap @ gaps) / scale
    if method in ("chi2", "cramers_v"):
        # homogeneity of a 2 x K table with n and m rows: chi2 = nm/(n+m) * sum (r-c)^2 / pooled,
        # Cramér's V = sqrt(chi2 / (n+m))
        n, m = rows
        pooled = (n * r + m * c) / (n + m)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(pooled > 0, (r - c) ** 2 / pooled, 0.0).sum(axis=1)
        chi2 = n * m / (n + m) * terms
        return chi2 if method == "chi2" else np.sqrt(chi2 / (n + m))
    raise ValueError(
        f"statistic {method!r} cannot be calibrated; use one of {sorted(CALIBRATED_METHODS)}"
    )


# --- null distribution and p-value ---------------------------------------------------------


@dataclass(frozen=True)
class NullDistribution:
    """Null draws of one statistic at one check's sample sizes, and how they were made."""

    method: str
    draws: np.ndarray
    reference_rows: float  # effective
    current_rows: float  # effective
    tau: float

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.draws, q))

    def p_value(self, observed: float) -> float:
        return null_p_value(self.method, observed, self.draws)

    def summary(self, observed: float) -> dict[str, float]:
        return {
            "p_value": self.p_value(observed),
            "null_mean": float(self.draws.mean()),
            "null_q99": self.quantile(0.99),
            "null_q999": self.quantile(0.999),
            "tau": self.tau,
            "reference_rows_eff": self.reference_rows,
            "current_rows_eff": self.current_rows,
        }


@dataclass(frozen=True)
class WindowSize:
    """Rows and days of one side of a comparison."""

    rows: float
    days: int

    def effective(self, tau: float) -> float:
        return effective_rows(self.rows, self.days, tau)


def null_draws(
    method: str,
    reference_counts: np.ndarray,
    *,
    reference: WindowSize,
    current: WindowSize,
    tau: float = 0.0,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    positions: np.ndarray | None = None,
    scale: float = 1.0,
) -> NullDistribution:
    """The statistic between two windows drawn from the reference's histogram at their
    effective sizes (:func:`effective_rows`), computed as the check computes it."""
    counts = np.asarray(reference_counts, dtype=float)
    if counts.sum() <= 0:
        raise ValueError("cannot calibrate on an empty reference histogram")
    p = counts / counts.sum()
    rng = np.random.default_rng(seed)
    n_eff, m_eff = reference.effective(tau), current.effective(tau)
    n, m = max(round(n_eff), 1), max(round(m_eff), 1)
    r = rng.multinomial(n, p, size=draws) / n
    c = rng.multinomial(m, p, size=draws) / m
    values = statistic_rows(
        method,
        r,
        c,
        positions=positions,
        scale=scale,
        rows=(float(reference.rows), float(current.rows)),
    )
    return NullDistribution(method, values, n_eff, m_eff, tau)


def null_p_value(method: str, observed: float, draws: np.ndarray) -> float:
    """Tail probability of ``observed`` under the null draws: a scaled chi-square fitted to
    the draws (of the statistic, or of its square for statistics linear in the shift)."""
    from scipy.stats import chi2

    if not math.isfinite(observed):
        raise ValueError(f"{method}: the observed statistic is {observed!r}")
    power = 1 if method in QUADRATIC else 2
    t = np.asarray(draws, dtype=float) ** power
    value = abs(observed) ** power
    mean, variance = float(t.mean()), float(t.var())
    if mean <= 0 or variance <= 0:
        # a degenerate null (one bin, or identical draws): anything above it is not noise
        return 1.0 if value <= float(t.max()) * (1 + 1e-9) else 0.0
    scale = variance / (2.0 * mean)
    dof = 2.0 * mean * mean / variance
    return float(min(max(chi2.sf(value / scale, dof), 0.0), 1.0))
