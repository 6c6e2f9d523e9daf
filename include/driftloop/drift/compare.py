"""Compare a current window against the reference: every statistic for every feature.

Numeric features (and the embedding's PCA components) are compared on the full windows
through their sketches; categorical features through their counts; the raw embedding
through an MMD permutation test on the bounded samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from driftloop.contracts import schema
from driftloop.drift import stats
from driftloop.drift.sketch import Profile, embedding_matrix

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "test": self.test,
            "p_value": self.p_value,
            "statistics": self.statistics,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureComparison:
        return cls(
            data["feature"],
            data["kind"],
            data["test"],
            float(data["p_value"]),
            dict(data["statistics"]),
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


def compare_embeddings(
    reference_sample, current_sample, *, sample_size: int, permutations: int, seed: int = 0
) -> FeatureComparison:
    # The samples are sorted by their random keys: their heads are uniform subsamples.
    x = embedding_matrix(reference_sample.slice(0, sample_size))
    y = embedding_matrix(current_sample.slice(0, sample_size))
    mmd, p_value = stats.mmd_permutation_test(x, y, permutations=permutations, seed=seed)
    values = {"mmd": mmd, "sample_rows": float(min(len(x), len(y)))}
    return FeatureComparison(schema.EMBEDDING_COLUMN, "embedding", "mmd", p_value, values)


def compare_windows(
    reference: Profile,
    current: Profile,
    reference_sample,
    current_sample,
    *,
    mmd_sample_size: int = 800,
    mmd_permutations: int = 200,
) -> list[FeatureComparison]:
    if reference.binning_id != current.binning_id:
        raise ValueError("reference and current profiles were built on different binnings")
    comparisons = [
        compare_numeric(n, reference.numeric[n], current.numeric[n]) for n in reference.numeric
    ]
    comparisons += [
        compare_categorical(n, reference.categorical[n], current.categorical.get(n, {}))
        for n in schema.CATEGORICAL_FEATURES
    ]
    comparisons.append(
        compare_embeddings(
            reference_sample,
            current_sample,
            sample_size=mmd_sample_size,
            permutations=mmd_permutations,
        )
    )
    return comparisons


def flat_metrics(comparisons: list[FeatureComparison]) -> dict[str, float]:
    """``{"<method>.<feature>": value}`` for MLflow and Prometheus; p-values included."""
    out: dict[str, float] = {}
    for comp in comparisons:
        for method, value in comp.statistics.items():
            if method != "sample_rows" and np.isfinite(value):
                out[f"{method}.{comp.feature}"] = float(value)
        out[f"{comp.test}_pvalue.{comp.feature}"] = float(comp.p_value)
    return out
