"""From statistics to a verdict: calibrated significance, minimum effects, FDR, k-of-n
hysteresis, and breaks that need no wait.

``decide`` is pure: statistics of this check, the policy
(:mod:`driftloop.config.drift_policy`), and the per-feature levels of earlier checks (from
the drift history database) in; a ``Decision`` out.

A feature breaches a level in one of the check's windows (the whole window, the last day, …)
when its effect reaches the policy's effect size for that level *and* its calibrated p-value
(the statistic's null at these windows' sizes, see :mod:`driftloop.drift.calibration`) stays
significant after Benjamini–Hochberg across every feature and window. Its level now is the
highest of its windows; the k-of-n rule over the checks' levels then says what alerts. A
**break** alerts critical at once: a critical effect in a recent window that the whole window
confirms (significant there too), so an abrupt change is critical on its first day.

The champion's accuracy on labeled days (:mod:`driftloop.performance.verdict`) joins in: the
check's severity is the worse of the input drift (``Decision.input_severity``) and the
performance verdict (``Decision.performance``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from driftloop.config.drift_policy import Policy, Threshold
from driftloop.config.policies import PolicyError
from driftloop.drift.compare import FULL_WINDOW, FeatureComparison
from driftloop.drift.stats import benjamini_hochberg

if TYPE_CHECKING:
    from driftloop.performance.verdict import PerformanceVerdict

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
    #: the window whose effect is reported (the one with the highest level; ties: the whole)
    window: str = FULL_WINDOW
    #: every window's effect, q-value and level
    windows: dict[str, dict[str, Any]] | None = None
    #: critical at once: a critical recent window the whole window confirms
    broke: bool = False

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class Decision:
    severity: str
    policy_version: str
    features: list[FeatureVerdict]
    history_checks: int
    #: the champion's measured accuracy against its own evaluation (None: not judged)
    performance: PerformanceVerdict | None = None

    @property
    def input_severity(self) -> str:
        """The severity of the input drift alone (the features' levels)."""
        return max((f.alert_level for f in self.features), key=RANK.__getitem__, default="none")

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
            "input_severity": self.input_severity,
            "performance": None if self.performance is None else self.performance.to_dict(),
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


def _is_break(levels: Mapping[str, str], q_values: Mapping[str, float], alpha: float) -> bool:
    """A critical level in a recent window that the whole window confirms (significant)."""
    recent_critical = any(lvl == "critical" for w, lvl in levels.items() if w != FULL_WINDOW)
    return recent_critical and q_values.get(FULL_WINDOW, 1.0) < alpha


def decide(
    comparisons: Sequence[FeatureComparison],
    policy: Policy,
    previous_levels: Sequence[Mapping[str, str]] = (),
    performance: PerformanceVerdict | None = None,
) -> Decision:
    """Severity of this check: the worse of the input drift and the ``performance`` verdict
    (:func:`driftloop.performance.verdict.judge`, None: not judged).

    ``comparisons``: one per feature and window (:func:`driftloop.drift.compare.compare_check`);
    ``previous_levels`` are the per-feature breach levels of earlier checks, newest first;
    only the newest ``n - 1`` are used.
    """
    by_feature: dict[str, list[FeatureComparison]] = {}
    for comp in comparisons:
        by_feature.setdefault(comp.feature, []).append(comp)
    thresholds = {f: policy.threshold(f, comps[0].kind) for f, comps in by_feature.items()}
    alerting = [c for c in comparisons if thresholds[c.feature].alert]
    q_values = dict(
        zip(
            [(c.feature, c.window) for c in alerting],
            benjamini_hochberg([c.p_value for c in alerting]),
            strict=True,
        )
    )
    history = list(previous_levels)[: policy.n - 1]
    verdicts = []
    for feature, comps in by_feature.items():
        t = thresholds[feature]
        windows: dict[str, dict[str, Any]] = {}
        for comp in comps:
            if t.method not in comp.statistics:
                raise PolicyError(
                    f"policy method {t.method!r} for feature {feature!r} is not one of its "
                    f"statistics {sorted(comp.statistics)}"
                )
            effect = float(comp.statistics[t.method])
            q = float(q_values.get((feature, comp.window), 1.0))
            level = breach_level(effect, q, t, policy.fdr_alpha) if t.alert else "none"
            windows[comp.window] = {
                "effect": effect,
                "p_value": comp.p_value,
                "q_value": q,
                "level": level,
            }
        # the reported window: highest level, then the whole window, then the largest effect
        shown = max(
            comps,
            key=lambda c: (
                RANK[windows[c.window]["level"]],
                c.window == FULL_WINDOW,
                windows[c.window]["effect"],
            ),
        )
        now = windows[shown.window]["level"]
        window_levels = [now] + [h.get(feature, "none") for h in history]
        level, breaches = hysteresis_level(window_levels, policy.k)
        broke = (
            t.alert
            and policy.hysteresis.break_skips_wait
            and _is_break(
                {w: v["level"] for w, v in windows.items()},
                {w: v["q_value"] for w, v in windows.items()},
                policy.fdr_alpha,
            )
        )
        if broke:
            level = "critical"
        verdicts.append(
            FeatureVerdict(
                feature,
                shown.kind,
                t.method,
                windows[shown.window]["effect"],
                shown.p_value,
                windows[shown.window]["q_value"],
                now,
                breaches,
                level,
                t.alert,
                shown.window,
                windows,
                bool(broke),
            )
        )
    levels = [v.alert_level for v in verdicts]
    if performance is not None:
        levels.append(performance.level)
    severity = max(levels, key=RANK.__getitem__, default="none")
    return Decision(severity, policy.version, verdicts, len(history), performance)
