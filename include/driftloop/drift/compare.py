"""Compare a current window against the reference: every statistic for every feature.

Numeric features (and the embedding's PCA components) are compared on the full windows
through their sketches; categorical features through their counts; the raw embedding
through an MMD permutation test on the bounded samples.

A check compares more than one current window (:func:`compare_check`): the whole window
(``full``, e.g. 14 days) and the most recent days (``last_1d``, …: the policy's
``windows.recent_days``), because a shift that started yesterday is one fourteenth of a
14-day window but all of yesterday. The p-value each comparison carries into the verdict is
the calibrated one (:mod:`driftloop.drift.calibration`): the tail of the policy's statistic
under its null at the two windows' sizes, given the reference's day-to-day variation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from driftloop.contracts import schema
from driftloop.contracts.columns import EmbeddingColumn
from driftloop.drift import stats
from driftloop.drift.samples import merge_samples
from driftloop.drift.sketch import Profile, embedding_matrix, merge_profiles

#: the name of the whole current window among a check's windows
FULL_WINDOW = "full"

#: per-image colour means: their histograms are also compared by KL divergence
COLOUR_FEATURES = ("mean_r", "mean_g", "mean_b")
#: which test's p-value enters the FDR correction, per feature kind
TEST_BY_KIND = {"numeric": "ks", "categorical": "chi2", "embedding": "mmd"}


@dataclass(frozen=True)
class FeatureComparison:
    feature: str
    kind: str  # numeric | categorical | embedding
    test: str
    p_value: float
    statistics: dict[str, float]
    #: which current window: ``full`` or ``last_{n}d``
    window: str = FULL_WINDOW
    #: how ``p_value`` was calibrated (method, null quantiles, effective rows); empty: the
    #: test's own p-value (MMD permutations)
    calibration: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "feature": self.feature,
            "kind": self.kind,
            "test": self.test,
            "p_value": self.p_value,
            "statistics": self.statistics,
            "window": self.window,
        }
        if self.calibration:
            out["calibration"] = self.calibration
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureComparison:
        return cls(
            data["feature"],
            data["kind"],
            data["test"],
            float(data["p_value"]),
            dict(data["statistics"]),
            data.get("window", FULL_WINDOW),
            dict(data.get("calibration") or {}),
        )


def compare_numeric(name: str, reference, current) -> FeatureComparison:
    if reference.count == 0 or current.count == 0:
        raise ValueError(
            f"feature {name!r} has no values in the {'reference' if reference.count == 0 else 'current'} window"
        )
    r_coarse = stats.shares(reference.coarse_counts)
    c_coarse = stats.shares(current.coarse_counts)
    ks, ks_p = stats.ks_from_counts(reference.fine_counts, current.fine_counts)
    wasserstein = stats.wasserstein_from_bins(
        reference.fine_counts, reference.fine_sums, current.fine_counts, current.fine_sums
    )
    scale = max(reference.std, 1e-3)  # Evidently's floor on the reference std
    values = {
        "psi": stats.psi(r_coarse, c_coarse),
        "js": stats.js_distance(r_coarse, c_coarse),
        "wasserstein_norm": wasserstein / scale,
        "ks": ks,
        "mean_shift_std": (current.mean - reference.mean) / scale,
    }
    if name in COLOUR_FEATURES:
        values["kl"] = stats.kl_divergence(r_coarse, c_coarse)
    return FeatureComparison(name, "numeric", "ks", ks_p, values)


def compare_categorical(
    name: str, reference: dict[str, int], current: dict[str, int]
) -> FeatureComparison:
    categories, r, c = stats.align_categories(reference, current)
    if r.sum() == 0 or c.sum() == 0:
        raise ValueError(f"feature {name!r} has no values in one of the windows")
    chi2, p_value, cramers_v = stats.chi_square(r, c)
    r_shares, c_shares = stats.shares(r), stats.shares(c)
    new_share = float(
        sum(c_shares[i] for i, k in enumerate(categories) if reference.get(k, 0) == 0)
    )
    values = {
        "psi": stats.psi(r_shares, c_shares),
        "js": stats.js_distance(r_shares, c_shares),
        "chi2": chi2,
        "cramers_v": cramers_v,
        "new_category_share": new_share,
    }
    return FeatureComparison(name, "categorical", "chi2", p_value, values)


INFERENCE_EMBEDDING = EmbeddingColumn(schema.EMBEDDING_COLUMN, schema.EMBEDDING_DIM)


def compare_embeddings(
    reference_sample,
    current_sample,
    *,
    sample_size: int,
    permutations: int,
    seed: int = 0,
    embedding: EmbeddingColumn = INFERENCE_EMBEDDING,
) -> FeatureComparison:
    # The samples are sorted by their random keys: their heads are uniform subsamples.
    x = embedding_matrix(reference_sample.slice(0, sample_size), embedding.column, embedding.dim)
    y = embedding_matrix(current_sample.slice(0, sample_size), embedding.column, embedding.dim)
    mmd, p_value = stats.mmd_permutation_test(x, y, permutations=permutations, seed=seed)
    values = {"mmd": mmd, "sample_rows": float(min(len(x), len(y)))}
    return FeatureComparison(embedding.column, "embedding", "mmd", p_value, values)


def compare_windows(
    reference: Profile,
    current: Profile,
    reference_sample,
    current_sample,
    *,
    mmd_sample_size: int = 800,
    mmd_permutations: int = 200,
    embedding: EmbeddingColumn | None = INFERENCE_EMBEDDING,
) -> list[FeatureComparison]:
    """Every statistic of every feature of the profiles (the contract's columns: the
    profiles' numeric and categorical features, ``embedding`` through the samples)."""
    if reference.binning_id != current.binning_id:
        raise ValueError("reference and current profiles were built on different binnings")
    comparisons = [
        compare_numeric(n, reference.numeric[n], current.numeric[n]) for n in reference.numeric
    ]
    comparisons += [
        compare_categorical(n, reference.categorical[n], current.categorical.get(n, {}))
        for n in reference.categorical
    ]
    if embedding is not None:
        comparisons.append(
            compare_embeddings(
                reference_sample,
                current_sample,
                sample_size=mmd_sample_size,
                permutations=mmd_permutations,
                embedding=embedding,
            )
        )
    return comparisons


# --- a check: several current windows, calibrated p-values ---------------------------------


def recent_window_name(days: int) -> str:
    return f"last_{days}d"


def check_windows(days: Sequence[str], recent_days: Sequence[int]) -> dict[str, list[str]]:
    """The current windows of a check: ``full`` (every day) and the most recent ``n`` days
    for each ``n`` of ``recent_days`` shorter than the window (days sorted; the latest day
    *with data*, so a missing last partition does not empty the recent window)."""
    ordered = sorted(days)
    windows = {FULL_WINDOW: ordered}
    for n in sorted(set(recent_days)):
        if 0 < n < len(ordered):
            windows[recent_window_name(n)] = ordered[-n:]
    return windows


@dataclass(frozen=True)
class ReferenceDays:
    """Per-day histograms of the reference (coarse numeric bins, category counts): what the
    calibration learns the day-to-day variation from."""

    days: list[str]
    numeric: dict[str, list[list[int]]]
    categorical: dict[str, list[dict[str, int]]]

    @classmethod
    def from_profiles(cls, profiles: Sequence[Profile]) -> ReferenceDays:
        profiles = sorted(profiles, key=lambda p: p.days)
        return cls(
            days=[",".join(p.days) for p in profiles],
            numeric={
                name: [p.numeric[name].coarse_counts.tolist() for p in profiles]
                for name in (profiles[0].numeric if profiles else {})
            },
            categorical={
                name: [dict(p.categorical.get(name, {})) for p in profiles]
                for name in (profiles[0].categorical if profiles else {})
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {"days": self.days, "numeric": self.numeric, "categorical": self.categorical}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceDays:
        return cls(list(data["days"]), dict(data["numeric"]), dict(data["categorical"]))

    def tau(self, feature: str) -> float:
        from driftloop.drift.calibration import between_day_excess

        if feature in self.numeric:
            return between_day_excess([np.asarray(c) for c in self.numeric[feature]])
        if feature in self.categorical:
            per_day = self.categorical[feature]
            categories = sorted({k for day in per_day for k in day})
            return between_day_excess(
                [np.array([day.get(k, 0) for k in categories], float) for day in per_day]
            )
        return 0.0


def _seed(*parts: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256("\0".join(parts).encode()).digest()[:4], "little")


def calibrate(
    comparison: FeatureComparison,
    method: str,
    reference: Profile,
    current: Profile,
    *,
    reference_days: ReferenceDays | None,
    current_days: int,
    draws: int,
) -> FeatureComparison:
    """``comparison`` with the p-value of ``method`` under its null at these windows' sizes
    (:mod:`driftloop.drift.calibration`). The embedding's MMD keeps its permutation p-value
    (already a null at the sample's size)."""
    from driftloop.drift import calibration as cal

    if comparison.kind == "embedding":
        return comparison
    if method not in comparison.statistics:
        raise ValueError(
            f"policy method {method!r} for feature {comparison.feature!r} is not one of its "
            f"statistics {sorted(comparison.statistics)}"
        )
    if method not in cal.CALIBRATED_METHODS:
        raise ValueError(
            f"policy method {method!r} for feature {comparison.feature!r} cannot be calibrated; "
            f"use one of {sorted(cal.CALIBRATED_METHODS)}"
        )
    name = comparison.feature
    positions, scale = None, 1.0
    if comparison.kind == "numeric":
        ref, cur = reference.numeric[name], current.numeric[name]
        fine = method in ("ks", "wasserstein_norm", "mean_shift_std")
        counts = ref.fine_counts if fine else ref.coarse_counts
        if fine:
            with np.errstate(invalid="ignore", divide="ignore"):
                positions = np.where(
                    ref.fine_counts > 0, ref.fine_sums / np.maximum(ref.fine_counts, 1), 0.0
                )
            scale = max(ref.std, 1e-3)
        rows = (float(ref.count), float(cur.count))
    else:
        _, r, c = stats.align_categories(
            reference.categorical[name], current.categorical.get(name, {})
        )
        counts = r
        rows = (float(r.sum()), float(c.sum()))
    tau = reference_days.tau(name) if reference_days is not None else 0.0
    ref_day_count = len(reference_days.days) if reference_days is not None else len(reference.days)
    null = cal.null_draws(
        method,
        counts,
        reference=cal.WindowSize(rows[0], max(ref_day_count, 1)),
        current=cal.WindowSize(rows[1], max(current_days, 1)),
        tau=tau,
        draws=draws,
        seed=_seed(name, method, comparison.window),
        positions=positions,
        scale=scale,
    )
    summary = null.summary(float(comparison.statistics[method]))
    return replace(
        comparison,
        test=f"{method}~null",
        p_value=summary.pop("p_value"),
        calibration={
            "method": method,
            **summary,
            "test_p_value": comparison.p_value,
            "test": comparison.test,
        },
    )


def compare_check(
    reference: Profile,
    reference_sample,
    current_days: Sequence[tuple[Profile, Any]],
    *,
    methods: Mapping[str, str],
    reference_days: ReferenceDays | None,
    recent_days: Sequence[int],
    mmd_sample_size: int,
    mmd_permutations: int,
    draws: int,
    embedding: EmbeddingColumn | None = INFERENCE_EMBEDDING,
) -> list[FeatureComparison]:
    """Every window of a check (:func:`check_windows`) against the reference, each
    comparison calibrated with the policy's method of its feature (``methods``)."""
    by_day: dict[str, tuple[Profile, Any]] = {}
    for profile, sample in current_days:
        if len(profile.days) != 1:
            raise ValueError(f"a current day's profile must cover one day, got {profile.days}")
        by_day[profile.days[0]] = (profile, sample)
    out: list[FeatureComparison] = []
    for window, days in check_windows(list(by_day), recent_days).items():
        profile = merge_profiles(by_day[d][0] for d in days)
        sample = merge_samples((by_day[d][1] for d in days), max(mmd_sample_size, 1))
        for comparison in compare_windows(
            reference,
            profile,
            reference_sample,
            sample,
            mmd_sample_size=mmd_sample_size,
            mmd_permutations=mmd_permutations,
            embedding=embedding,
        ):
            comparison = replace(comparison, window=window)
            out.append(
                calibrate(
                    comparison,
                    methods[comparison.feature],
                    reference,
                    profile,
                    reference_days=reference_days,
                    current_days=len(days),
                    draws=draws,
                )
            )
    return out


def flat_metrics(comparisons: list[FeatureComparison]) -> dict[str, float]:
    """``{"<method>.<feature>": value}`` for MLflow (``….last_1d`` for a recent window);
    p-values included (``pvalue.<feature>``: the calibrated one the verdict used)."""
    out: dict[str, float] = {}
    for comp in comparisons:
        suffix = "" if comp.window == FULL_WINDOW else f".{comp.window}"
        for method, value in comp.statistics.items():
            if method != "sample_rows" and np.isfinite(value):
                out[f"{method}.{comp.feature}{suffix}"] = float(value)
        out[f"pvalue.{comp.feature}{suffix}"] = float(comp.p_value)
    return out


def feature_methods(policy, profile, embedding_column: str | None) -> dict[str, str]:
    """The statistic the policy judges each feature of ``profile`` by."""
    methods = {name: policy.threshold(name, "numeric").method for name in profile.numeric}
    methods |= {name: policy.threshold(name, "categorical").method for name in profile.categorical}
    if embedding_column is not None:
        methods[embedding_column] = policy.threshold(embedding_column, "embedding").method
    return methods
