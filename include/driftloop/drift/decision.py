"""From statistics to a verdict: effect-size thresholds, FDR, k-of-n hysteresis.

``decide`` is pure: statistics of this check, the policy
(:mod:`driftloop.config.drift_policy`), and the per-feature levels of earlier checks (from
the drift history database) in; a ``Decision`` out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from driftloop.config.drift_policy import Policy, Threshold
from driftloop.config.policies import PolicyError
from driftloop.drift.compare import FeatureComparison
from driftloop.drift.stats import benjamini_hochberg

LEVELS = ("none", "warn", "critical")
RANK = {level: i for i, level in enumerate(LEVELS)}


@dataclass(frozen=True)
class FeatureVerdict:
    feature: str
    kind: str
    method: str
    effect: float
    p_value: float
    q_value: float
    level_now: str  # breach level of this check alone
    breaches: dict[str, int]  # level -> checks in the last n at or above it
    alert_level: str  # level after hysteresis
    alerting: bool

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class Decision:
    severity: str
    policy_version: str
    features: list[FeatureVerdict]
    history_checks: int

    @property
    def drifted_features(self) -> list[str]:
        ranked = sorted(
            (f for f in self.features if RANK[f.alert_level] > 0),
            key=lambda f: (-RANK[f.alert_level], -f.effect),
        )
        return [f.feature for f in ranked]

    @property
    def feature_levels(self) -> dict[str, str]:
        return {f.feature: f.level_now for f in self.features}

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "policy_version": self.policy_version,
            "drifted_features": self.drifted_features,
            "history_checks": self.history_checks,
            "features": [f.to_dict() for f in self.features],
        }


def breach_level(effect: float, q_value: float, threshold: Threshold, alpha: float) -> str:
    """Level this check alone reaches: the effect clears a threshold *and* is significant."""
    if q_value >= alpha:
        return "none"
    if effect >= threshold.critical:
        return "critical"
    if effect >= threshold.warn:
        return "warn"
    return "none"


def hysteresis_level(levels: Sequence[str], k: int) -> tuple[str, dict[str, int]]:
    """Highest level reached by at least k of the given checks (newest first, n of them)."""
    breaches = {lvl: sum(RANK[x] >= RANK[lvl] for x in levels) for lvl in LEVELS[1:]}
    for lvl in reversed(LEVELS[1:]):
        if breaches[lvl] >= k:
            return lvl, breaches
    return "none", breaches


def decide(
    comparisons: Sequence[FeatureComparison],
    policy: Policy,
    previous_levels: Sequence[Mapping[str, str]] = (),
) -> Decision:
    """Severity of this check.

    ``previous_levels`` are the per-feature breach levels of earlier checks, newest first;
    only the newest ``n - 1`` are used.
    """
    thresholds = {c.feature: policy.threshold(c.feature, c.kind) for c in comparisons}
    alerting = [c for c in comparisons if thresholds[c.feature].alert]
    q_values = dict(
        zip(
            [c.feature for c in alerting],
            benjamini_hochberg([c.p_value for c in alerting]),
            strict=True,
        )
    )
    history = list(previous_levels)[: policy.n - 1]
    verdicts = []
    for comp in comparisons:
        t = thresholds[comp.feature]
        if t.method not in comp.statistics:
            raise PolicyError(
                f"policy method {t.method!r} for feature {comp.feature!r} is not one of its statistics "
                f"{sorted(comp.statistics)}"
            )
        effect = float(comp.statistics[t.method])
        q = float(q_values.get(comp.feature, 1.0))
        now = breach_level(effect, q, t, policy.fdr_alpha) if t.alert else "none"
        window = [now] + [h.get(comp.feature, "none") for h in history]
        level, breaches = hysteresis_level(window, policy.k)
        verdicts.append(
            FeatureVerdict(
                comp.feature,
                comp.kind,
                t.method,
                effect,
                comp.p_value,
                q,
                now,
                breaches,
                level,
                t.alert,
            )
        )
    severity = max((v.alert_level for v in verdicts), key=RANK.__getitem__, default="none")
    return Decision(severity, policy.version, verdicts, len(history))
