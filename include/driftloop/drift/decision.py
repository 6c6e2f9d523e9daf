"""From statistics to a verdict: effect-size thresholds, FDR, k-of-n hysteresis.

``decide`` is pure: statistics of this check, the policy, and the per-feature levels of
earlier checks (from the drift history database) in; a ``Decision`` out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftloop.config.policies import PolicyError, deep_merge
from driftloop.contracts import schema
from driftloop.drift.compare import FeatureComparison
from driftloop.drift.stats import benjamini_hochberg

LEVELS = ("none", "warn", "critical")
RANK = {level: i for i, level in enumerate(LEVELS)}
APPROVAL_MODES = ("none", "required")


@dataclass(frozen=True)
class Threshold:
    method: str
    warn: float
    critical: float
    alert: bool = True


@dataclass(frozen=True)
class Policy:
    version: str
    length_days: int
    min_valid_share: float
    sample_size: int
    mmd_sample_size: int
    mmd_permutations: int
    fdr_alpha: float
    k: int
    n: int
    approval: str
    approval_timeout_hours: float
    defaults: dict[str, dict[str, Any]]
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = ""

    def threshold(self, feature: str, kind: str) -> Threshold:
        if kind not in self.defaults:
            raise PolicyError(f"policy has no defaults for feature kind {kind!r}")
        merged = {"alert": True, **self.defaults[kind], **self.features.get(feature, {})}
        return Threshold(
            merged["method"],
            float(merged["warn"]),
            float(merged["critical"]),
            bool(merged["alert"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "windows": {"length_days": self.length_days, "min_valid_share": self.min_valid_share},
            "sampling": {
                "sample_size": self.sample_size,
                "mmd_sample_size": self.mmd_sample_size,
                "mmd_permutations": self.mmd_permutations,
            },
            "fdr_alpha": self.fdr_alpha,
            "hysteresis": {"k": self.k, "n": self.n},
            "approval": self.approval,
            "approval_timeout_hours": self.approval_timeout_hours,
            "defaults": self.defaults,
            "features": self.features,
        }


def parse_policy(raw: Mapping[str, Any], source: str = "<dict>") -> Policy:
    def need(path: str):
        node: Any = raw
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise PolicyError(f"{source}: missing key {path!r}")
            node = node[part]
        return node

    policy = Policy(
        version=str(need("version")),
        length_days=int(need("windows.length_days")),
        min_valid_share=float(need("windows.min_valid_share")),
        sample_size=int(need("sampling.sample_size")),
        mmd_sample_size=int(need("sampling.mmd_sample_size")),
        mmd_permutations=int(need("sampling.mmd_permutations")),
        fdr_alpha=float(need("fdr_alpha")),
        k=int(need("hysteresis.k")),
        n=int(need("hysteresis.n")),
        approval=str(need("approval")),
        approval_timeout_hours=float(raw.get("approval_timeout_hours", 24)),
        defaults={k: dict(v) for k, v in need("defaults").items()},
        features={k: dict(v) for k, v in (raw.get("features") or {}).items()},
        source=source,
    )
    _check(policy)
    return policy


def _check(policy: Policy) -> None:
    src = policy.source
    if not 1 <= policy.k <= policy.n:
        raise PolicyError(f"{src}: hysteresis needs 1 <= k <= n, got k={policy.k}, n={policy.n}")
    if not 0 < policy.fdr_alpha < 1:
        raise PolicyError(f"{src}: fdr_alpha must be in (0, 1), got {policy.fdr_alpha}")
    if not 0 < policy.min_valid_share <= 1:
        raise PolicyError(
            f"{src}: windows.min_valid_share must be in (0, 1], got {policy.min_valid_share}"
        )
    if policy.length_days < 1:
        raise PolicyError(f"{src}: windows.length_days must be >= 1, got {policy.length_days}")
    if policy.approval not in APPROVAL_MODES:
        raise PolicyError(
            f"{src}: approval must be one of {APPROVAL_MODES}, got {policy.approval!r}"
        )
    for kind in ("numeric", "categorical", "embedding"):
        if kind not in policy.defaults:
            raise PolicyError(f"{src}: defaults.{kind} is missing")
    for name in policy.features:
        _threshold_or_error(policy, name, kind_of(name))
    for kind in policy.defaults:
        _threshold_or_error(policy, f"<default {kind}>", kind)


def kind_of(feature: str) -> str:
    if feature in schema.CATEGORICAL_FEATURES:
        return "categorical"
    if feature == schema.EMBEDDING_COLUMN:
        return "embedding"
    return "numeric"


def _threshold_or_error(policy: Policy, feature: str, kind: str) -> Threshold:
    try:
        t = policy.threshold(feature, kind)
    except (KeyError, TypeError, ValueError) as err:
        raise PolicyError(
            f"{policy.source}: thresholds of {feature!r} are incomplete or not numbers: {err}"
        ) from err
    if t.warn > t.critical:
        raise PolicyError(
            f"{policy.source}: {feature!r} warn threshold {t.warn} exceeds critical {t.critical}"
        )
    return t


def load_policy(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Policy:
    """Read the versioned policy file and apply run-time overrides (e.g. trigger Params).

    An override changes the effective version to ``<version>+override`` so that the
    history shows which checks ran under a non-standard policy.
    """
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as err:
        raise PolicyError(f"policy file not found: {path}") from err
    if not isinstance(raw, dict):
        raise PolicyError(f"{path}: policy must be a mapping")
    overrides = {k: v for k, v in (overrides or {}).items() if v not in (None, {}, "")}
    if overrides:
        raw = deep_merge(raw, overrides)
        raw["version"] = f"{raw.get('version')}+override"
    return parse_policy(raw, source=str(path))


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
