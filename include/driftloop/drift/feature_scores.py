"""Per-feature drift scores of a check: each feature's effect against its own warn effect.

Effects of different statistics (PSI, MMD, …) and features are not comparable; divided by
the feature's warn effect they are: a **score** of 1.0 is the feature's warn threshold, the
critical/warn ratio its critical one. The drift history keeps them per check
(``drift_checks.feature_scores``) and the Drift page charts them over time.

Pure: the decision's feature verdicts (:class:`driftloop.drift.decision.FeatureVerdict`: the
reported window's effect, the statistic) and the policy's thresholds in, a JSON-ready dict
out. Features whose threshold does not alert (charted only) are scored too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from driftloop.config.drift_policy import Policy
    from driftloop.drift.decision import FeatureVerdict


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def feature_scores(verdicts: Iterable[FeatureVerdict], policy: Policy) -> dict[str, dict[str, Any]]:
    """``{feature: {"effect", "method", "score", "window", "warn", "critical", "alert"}}``.

    ``effect`` is the verdict's (the reported window's, ``window``) value of the policy's
    statistic ``method``; ``score = effect / warn``; ``warn`` and ``critical`` are the
    feature's effect thresholds. A non-finite effect, or a warn threshold of 0, has no score
    (``None``): JSON has no infinity, and the chart shows no point rather than a wrong one."""
    out: dict[str, dict[str, Any]] = {}
    for verdict in verdicts:
        threshold = policy.threshold(verdict.feature, verdict.kind)
        effect = _finite(verdict.effect)
        score = None
        if effect is not None and threshold.warn > 0:
            score = _finite(effect / threshold.warn)
        out[verdict.feature] = {
            "effect": effect,
            "method": verdict.method,
            "score": score,
            "window": verdict.window,
            "warn": float(threshold.warn),
            "critical": float(threshold.critical),
            "alert": bool(threshold.alert),
        }
    return out


def critical_ratio(entry: dict[str, Any]) -> float | None:
    """The score at which a feature of ``entry`` (one value of :func:`feature_scores`) is
    critical: its critical/warn ratio; None when unknown (warn 0, or an entry without it)."""
    warn, critical = entry.get("warn"), entry.get("critical")
    if not warn or critical is None:
        return None
    return float(critical) / float(warn)
