"""The drift policy: a pydantic model of ``drift_policy.yaml`` and the run-time overrides of it.

The YAML file is versioned with the code; every check records the version it was decided
under. ``load_policy`` reads it, applies a run's overrides (the trigger Params of
``drift_monitor``) and validates the result; any problem raises :class:`PolicyError` naming
the file and the key (``drift_policy.yaml: hysteresis.k: ...``).

:data:`RUN_OVERRIDES` names the policy knobs a run may override and the Param of each: the
``drift_monitor`` Params (:func:`driftloop.airflow.params.drift_monitor_params`) and
:func:`policy_overrides` are both built from it and from the fields below (type, bounds,
description), so a new knob is one entry here.

Imports pydantic only (a dependency of Airflow itself): DAG files build their Params from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from driftloop.config.labeling_policy import Labeling
from driftloop.config.policies import PolicyError, deep_merge

#: feature kinds a policy sets defaults for
KINDS = ("numeric", "categorical", "embedding")
#: how critical drift is confirmed: at once (``none``) or by an operator (``required``)
APPROVAL_MODES = ("none", "required")

#: what a run's Params append to the policy version they change
OVERRIDE_SUFFIX = "+override"


class _Model(BaseModel):
    # unknown keys are typos that would otherwise be ignored silently
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class Threshold(_Model):
    """The verdict rule of one feature: which statistic, and its warn / critical effect sizes."""

    method: str = Field(description="Statistic the verdict rests on (psi, js, mmd, ...).")
    warn: float = Field(ge=0, description="Effect size at which the feature warns.")
    critical: float = Field(ge=0, description="Effect size at which the feature is critical.")
    alert: bool = Field(True, description="False: computed and charted, never alerts.")

    @model_validator(mode="after")
    def _warn_below_critical(self) -> Threshold:
        if self.warn > self.critical:
            raise ValueError(f"warn threshold {self.warn} exceeds critical {self.critical}")
        return self


class FeatureOverride(_Model):
    """Per-feature changes to its kind's default threshold; unset fields keep the default."""

    method: str | None = None
    warn: float | None = Field(None, ge=0)
    critical: float | None = Field(None, ge=0)
    alert: bool | None = None


class Windows(_Model):
    length_days: int = Field(ge=1, description="Window length in days.")
    min_valid_share: float = Field(
        gt=0, le=1, description="Share of valid days below which the run fails, naming them."
    )
    recent_days: tuple[int, ...] = Field(
        (1,),
        description="Recent windows compared too (the last n days of data): a shift that "
        "started yesterday is all of yesterday but one n-th of the whole window.",
    )

    @model_validator(mode="after")
    def _recent_inside_window(self) -> Windows:
        bad = [n for n in self.recent_days if not 1 <= n < self.length_days]
        if bad:
            raise ValueError(
                f"recent_days {list(bad)} must be between 1 and length_days - 1 ({self.length_days - 1})"
            )
        return self


class Calibration(_Model):
    draws: int = Field(
        1000,
        ge=100,
        description="Null draws per statistic and window: the statistic on stable data at the "
        "check's sample sizes, with the reference's day-to-day variation.",
    )


class Sampling(_Model):
    sample_size: int = Field(ge=1, description="Bounded reservoir sample per window.")
    mmd_sample_size: int = Field(ge=2, description="Rows per side of the embedding MMD test.")
    mmd_permutations: int = Field(ge=1, description="Permutations of the embedding MMD test.")


class ReferenceScoring(_Model):
    """How a candidate's drift reference is made from its own outputs on its training window
    (``retrain_detector``'s ``reference_profile``, when the window's frames are stored)."""

    max_frames_per_day: int = Field(
        150,
        ge=1,
        description="Frames per day of the training window the candidate scores for its drift "
        "reference, spread evenly over the day's traffic.",
    )


class Hysteresis(_Model):
    k: int = Field(ge=1, description="k of the k-of-n rule: breaches needed to alert.")
    n: int = Field(ge=1, description="n of the k-of-n rule: checks looked at, this one included.")
    break_skips_wait: bool = Field(
        True,
        description="A critical effect in a recent window that the whole window confirms "
        "alerts critical at once, without waiting for k checks.",
    )

    @model_validator(mode="after")
    def _k_at_most_n(self) -> Hysteresis:
        if self.k > self.n:
            raise ValueError(f"hysteresis needs 1 <= k <= n, got k={self.k}, n={self.n}")
        return self


class PerformanceHysteresis(Hysteresis):
    break_skips_wait: bool = Field(
        True,
        description="A critical drop on a slice's newest judged day alerts critical at once, "
        "without waiting for k days.",
    )


class Performance(_Model):
    """How the champion's accuracy on newly labeled days is judged (``performance:``).

    A judged day is a day (camera ``*``) or a camera slice of it with enough labeled frames;
    it breaches a level when the upper bound of its bootstrap CI lies below the champion's
    own evaluation minus that level's drop, so noise alone cannot alarm; the k-of-n rule
    runs over each slice's last n judged days (:mod:`driftloop.performance.verdict`)."""

    metric: Literal["map50_95"] = Field(
        "map50_95", description="Metric judged: mAP@0.5:0.95, the one measured with a CI."
    )
    drop_warning: float = Field(
        0.03, gt=0, lt=1, description="Drop below the champion's evaluation that warns."
    )
    drop_critical: float = Field(
        0.06, gt=0, lt=1, description="Drop below the champion's evaluation that is critical."
    )
    min_frames: int = Field(
        50, ge=1, description="Labeled frames a day needs to be judged (fewer: ignored, said so)."
    )
    min_camera_frames: int = Field(
        30, ge=1, description="Labeled frames a camera's slice of a day needs to be judged."
    )
    ci_rule: Literal["upper_below", "point"] = Field(
        "upper_below",
        description="upper_below: a day breaches only when its CI's upper bound is below "
        "baseline - drop (a day without a CI cannot breach); point: its value is.",
    )
    estimates_alert: bool = Field(
        False,
        description="Whether label-free estimates may breach (on days without measurement); "
        "false: they are reported and charted only.",
    )
    lookback_days: int = Field(
        28, ge=1, description="Days before the window's end whose measurements are judged."
    )
    hysteresis: PerformanceHysteresis = Field(
        default_factory=lambda: PerformanceHysteresis(k=2, n=3)
    )

    @model_validator(mode="after")
    def _warning_below_critical(self) -> Performance:
        if self.drop_warning > self.drop_critical:
            raise ValueError(
                f"drop_warning {self.drop_warning} exceeds drop_critical {self.drop_critical}"
            )
        return self


class Defaults(_Model):
    numeric: Threshold
    categorical: Threshold
    embedding: Threshold


class Policy(_Model):
    """``drift_policy.yaml`` as a model; ``source`` names where it came from (for errors)."""

    version: str = Field(description="Version of the policy; '+override' marks a run's changes.")
    windows: Windows
    sampling: Sampling
    fdr_alpha: float = Field(
        gt=0, lt=1, description="Benjamini–Hochberg false discovery rate across features."
    )
    hysteresis: Hysteresis
    calibration: Calibration = Field(default_factory=Calibration)
    reference_scoring: ReferenceScoring = Field(default_factory=ReferenceScoring)
    performance: Performance = Field(default_factory=Performance)
    labeling: Labeling = Field(default_factory=Labeling)
    approval: Literal["none", "required"] = Field(
        description="Whether critical drift waits for an operator's approval."
    )
    approval_timeout_hours: float = Field(24, gt=0)
    defaults: Defaults
    features: dict[str, FeatureOverride] = Field(default_factory=dict)
    source: str = Field("", exclude=True)

    @model_validator(mode="after")
    def _feature_thresholds_are_whole(self) -> Policy:
        for name in self.features:
            self.threshold(name, kind_of(name))  # raises naming the feature
        return self

    # -- the flat names the drift steps read -------------------------------------------
    @property
    def length_days(self) -> int:
        return self.windows.length_days

    @property
    def min_valid_share(self) -> float:
        return self.windows.min_valid_share

    @property
    def sample_size(self) -> int:
        return self.sampling.sample_size

    @property
    def mmd_sample_size(self) -> int:
        return self.sampling.mmd_sample_size

    @property
    def mmd_permutations(self) -> int:
        return self.sampling.mmd_permutations

    @property
    def recent_days(self) -> tuple[int, ...]:
        return self.windows.recent_days

    @property
    def calibration_draws(self) -> int:
        return self.calibration.draws

    @property
    def k(self) -> int:
        return self.hysteresis.k

    @property
    def n(self) -> int:
        return self.hysteresis.n

    def threshold(self, feature: str, kind: str) -> Threshold:
        """The threshold of ``feature``: its kind's default with the feature's overrides."""
        if kind not in KINDS:
            raise PolicyError(f"policy has no defaults for feature kind {kind!r}")
        base = getattr(self.defaults, kind).model_dump()
        override = self.features.get(feature)
        if override is not None:
            base.update(override.model_dump(exclude_none=True))
        try:
            return Threshold(**base)
        except ValidationError as err:
            raise ValueError(f"thresholds of {feature!r}: {_first_message(err)}") from None

    def to_dict(self) -> dict[str, Any]:
        """The policy as the YAML document it was read from (JSON-safe, for XCom)."""
        document = self.model_dump(mode="json", exclude={"features"})
        document["features"] = {
            name: f.model_dump(mode="json", exclude_none=True) for name, f in self.features.items()
        }
        return document


def kind_of(feature: str) -> str:
    """The feature kind of a column (or derived feature such as ``embedding_pc1``)."""
    from driftloop.contracts import schema

    if feature in schema.CATEGORICAL_FEATURES:
        return "categorical"
    if feature == schema.EMBEDDING_COLUMN:
        return "embedding"
    return "numeric"


def _first_message(err: ValidationError) -> str:
    problem = err.errors()[0]
    return str(problem["msg"]).removeprefix("Value error, ")


def _describe(err: ValidationError) -> str:
    """Every problem of a validation error, each naming its key (``hysteresis.k: ...``)."""
    parts = []
    for problem in err.errors():
        key = ".".join(str(p) for p in problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        if problem["type"] == "missing":
            parts.append(f"missing key {key!r}")
        elif key:
            parts.append(f"{key}: {message}")
        else:
            parts.append(message)
    return "; ".join(parts)


def parse_policy(raw: Mapping[str, Any], source: str = "<dict>") -> Policy:
    """Validate a policy document; a problem raises :class:`PolicyError` naming the key."""
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{source}: policy must be a mapping")
    try:
        return Policy.model_validate({**raw, "source": source})
    except ValidationError as err:
        raise PolicyError(f"{source}: {_describe(err)}") from None


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
    except yaml.YAMLError as err:
        raise PolicyError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise PolicyError(f"{path}: policy must be a mapping")
    overrides = {k: v for k, v in (overrides or {}).items() if v not in (None, {}, "")}
    if overrides:
        raw = deep_merge(raw, overrides)
        raw["version"] = f"{raw.get('version')}{OVERRIDE_SUFFIX}"
    return parse_policy(raw, source=str(path))


# --- run-time overrides -------------------------------------------------------------------


@dataclass(frozen=True)
class RunOverride:
    """A policy knob a run may override through the trigger Param ``param``.

    ``paths``: where the value goes in the policy document (the first one's field gives the
    Param its type, bounds and description; ``psi_warn`` sets the numeric and the
    categorical defaults alike). ``describe``: what the Param's description says first.
    """

    param: str
    paths: tuple[tuple[str, ...], ...]
    describe: str


RUN_OVERRIDES: tuple[RunOverride, ...] = (
    RunOverride("window_days", (("windows", "length_days"),), "Window length in days"),
    RunOverride(
        "psi_warn",
        (("defaults", "numeric", "warn"), ("defaults", "categorical", "warn")),
        "PSI warn threshold of numeric and categorical features",
    ),
    RunOverride(
        "psi_critical",
        (("defaults", "numeric", "critical"), ("defaults", "categorical", "critical")),
        "PSI critical threshold of numeric and categorical features",
    ),
    RunOverride("hysteresis_k", (("hysteresis", "k"),), "k of the k-of-n rule"),
    RunOverride("hysteresis_n", (("hysteresis", "n"),), "n of the k-of-n rule"),
    RunOverride("fdr_alpha", (("fdr_alpha",),), "Benjamini–Hochberg false discovery rate"),
    RunOverride("approval", (("approval",),), "Whether critical drift waits for an operator"),
)


def override_field(override: RunOverride):
    """The pydantic ``FieldInfo`` that a run override sets (its first path)."""
    model: type[BaseModel] = Policy
    *parents, leaf = override.paths[0]
    for name in parents:
        model = model.model_fields[name].annotation
    return model.model_fields[leaf]


def policy_overrides(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Policy overrides from a run's Params (None or empty: keep the policy's value)."""
    overrides: dict[str, Any] = {}
    for knob in RUN_OVERRIDES:
        value = (params or {}).get(knob.param)
        if value is None or value == "":
            continue
        for path in knob.paths:
            node = overrides
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
    return overrides


def drift_param_defaults(policy: Policy) -> dict[str, Any]:
    """What an empty Param of drift_monitor keeps: the policy's hysteresis and the strictest
    PSI defaults of the feature kinds that the ``psi_*`` Params override."""
    kinds = [policy.defaults.numeric, policy.defaults.categorical]
    return {
        "k": policy.k,
        "n": policy.n,
        "psi_warn": max(kind.warn for kind in kinds),
        "psi_critical": min(kind.critical for kind in kinds),
    }
