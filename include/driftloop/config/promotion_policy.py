"""The promotion policy: a pydantic model of ``promotion_policy.yaml`` and its overrides.

The YAML file is versioned with the code; every gate decision records the version it was
decided under, and the audit ledger hashes :meth:`PromotionPolicy.to_dict`.
:func:`load_promotion_policy` reads the file, merges a run's overrides (``deep_merge``) and
validates the result; any problem raises :class:`PolicyError` naming the file and the key
path (``promotion_policy.yaml: 'bootstrap.confidence' must be < 1, got 1.2``).

A key set to null (``map_tolerance:`` with no value) counts as absent: optional keys take
their default, required ones are reported missing. Unknown keys are refused (typos would
otherwise be ignored silently).

What a manual trigger may override, and which way is stricter, lives in
:mod:`driftloop.config.promotion_overrides`; the ``rollout:`` section (the rollout guard's
stages and SLOs), in :mod:`driftloop.config.rollout_policy`.

Imports pydantic only (a dependency of Airflow itself): DAG files may build Params from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from driftloop.config.policies import PolicyError, deep_merge, describe_validation_error
from driftloop.config.rollout_policy import Rollout

DEFAULT_PROMOTION_POLICY_PATH = Path(__file__).resolve().parent / "promotion_policy.yaml"
#: metrics the gate can decide on (the same as ``driftloop.evaluation.coco_map.METRICS``)
PRIMARY_METRICS = ("map50", "map50_95")
PROMOTE_TARGETS = ("champion", "challenger")
APPROVAL_MODES = ("none", "required")
ARCHIVE_MODES = ("tag", "delete")


def _no_bool_number(value: Any) -> Any:
    # pydantic's lax mode reads True as 1.0; in a policy file that is a slip, not a number
    if isinstance(value, bool):
        raise PydanticCustomError("bool_is_no_number", "a boolean is not a number")
    return value


def _no_bool_integer(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("bool_is_no_integer", "a boolean is not an integer")
    return value


def _true_or_false(value: Any) -> Any:
    # only true/false (any case, also as text from a trigger form): "yes", 1, "on" are refused
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise PydanticCustomError("true_or_false", "must be true or false")


Number = Annotated[float, BeforeValidator(_no_bool_number)]
Integer = Annotated[int, BeforeValidator(_no_bool_integer)]
Flag = Annotated[bool, BeforeValidator(_true_or_false)]
Version = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Model(BaseModel):
    # unknown keys are typos that would otherwise be ignored silently
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_absent(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {key: value for key, value in data.items() if value is not None}
        return data


class Retention(_Model):
    """Which registered-model versions are kept; see :mod:`driftloop.promotion.retention`."""

    keep_last: Integer = Field(
        10,
        ge=1,
        description="Newest registered-model versions kept, besides every version holding "
        "the champion, previous-champion or challenger alias.",
    )
    archive: Literal["tag", "delete"] = Field(
        "tag",
        description="What happens to the other versions: tag (tagged archived=true, artifacts "
        "kept) or delete (the model version is deleted; its ledger rows stay).",
    )


class Bootstrap(_Model):
    """The paired bootstrap of the primary metric's delta (resampling evaluation images)."""

    n_resamples: Integer = Field(
        1000, ge=100, description="Bootstrap resamples of the evaluation images."
    )
    confidence: Number = Field(
        0.95,
        ge=0.5,
        lt=1,
        allow_inf_nan=False,
        description="Confidence level of the delta's interval (0.95: a 95 % CI); a CI "
        "computed at a lower confidence fails the gate.",
    )


class Latency(_Model):
    """How the candidate's serving latency is compared with the champion's (see
    :mod:`driftloop.evaluation.latency`); the tolerance itself is ``latency_tolerance``."""

    rounds: Integer = Field(
        150,
        ge=20,
        description="Paired rounds timed per evaluation: each runs the candidate and the "
        "champion twice on one image (ABBA, then BAAB). Fewer rounds give a wider interval, "
        "which rejects less.",
    )
    confidence: Number = Field(
        0.95,
        ge=0.5,
        lt=1,
        allow_inf_nan=False,
        description="Confidence of the interval on p95(candidate) / p95(champion). The gate "
        "rejects on latency only when the whole interval lies above 1 + latency_tolerance, so "
        "a higher confidence rejects less; a comparison at a higher confidence than this fails "
        "the gate.",
    )
    same_graph_tolerance: Number = Field(
        0.5,
        ge=0,
        allow_inf_nan=False,
        description="A candidate whose serving graph has the champion's signature (same ops, "
        "shapes, FLOPs) does the same arithmetic, so its latency differs only by noise: it is "
        "rejected on latency only when the whole interval lies above 1 + this share (0.5 = "
        "50 %), or above 1 + latency_tolerance when that is larger. Catches gross "
        "value-dependent slowdowns (e.g. FP32 denormals), never measurement noise.",
    )


class Slices(_Model):
    """No camera may regress: the gate's per-camera check (see
    :mod:`driftloop.promotion.gate_slices`)."""

    tolerance: Number = Field(
        0.02,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="A camera fails the gate only when the whole interval of its "
        "primary-metric delta (candidate - champion, on that camera's evaluation images) lies "
        "below -tolerance (0.02 = 2 mAP points): noise on a few images never rejects.",
    )
    min_images: Integer = Field(
        20,
        ge=1,
        description="Evaluation images a camera needs to be judged; a camera with fewer is "
        "reported as too few to judge and blocks nothing.",
    )
    confidence: Number = Field(
        0.95,
        ge=0.5,
        lt=1,
        allow_inf_nan=False,
        description="Family confidence over the cameras judged: each camera's interval is at "
        "1 - (1 - confidence) / cameras judged (Bonferroni); evidence at a higher confidence "
        "(a wider interval, which rejects less) fails the gate.",
    )


class NewLabels(_Model):
    """When new labeled frames alone start a retraining (the ``driftloop_labels`` Asset; see
    :mod:`driftloop.retrain.new_labels`)."""

    min_frames: Integer = Field(
        200,
        ge=1,
        description="Labeled frames of the training window that the champion's dataset "
        "snapshot does not hold, needed before new labels start a training; fewer: the run "
        "skips training and says how many there are.",
    )


class PromotionPolicy(_Model):
    """``promotion_policy.yaml`` as a model (field order = the order of :meth:`to_dict`)."""

    version: Version = Field(
        description="Version of the policy, recorded with every decision; '+override' marks "
        "a run that changed it."
    )
    primary_metric: Literal["map50", "map50_95"] = Field(
        "map50_95",
        description="Metric whose paired-bootstrap delta (candidate - champion, same images) "
        "decides: mAP@0.5 or mAP@0.5:0.95.",
    )
    map_tolerance: Number = Field(
        0.02,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Non-inferiority margin: promote only if the delta CI's lower bound is "
        ">= -map_tolerance (0.02 = 2 mAP points).",
    )
    latency_tolerance: Number = Field(
        0.10,
        ge=0,
        allow_inf_nan=False,
        description="Candidate p95 latency (INT8 ONNX) may exceed the champion's by this "
        "share at most (0.10 = 10 %): the gate rejects only when the whole confidence "
        "interval of p95(candidate) / p95(champion), from paired interleaved timings, lies "
        "above 1 + latency_tolerance.",
    )
    int8_max_map_loss: Number = Field(
        0.01,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Largest mAP@0.5 loss from FP32 to INT8 the candidate may show "
        "(0.01 = 1 point).",
    )
    min_map50: Number = Field(
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Floor on the candidate's mAP@0.5, with or without a champion.",
    )
    min_map50_95: Number = Field(
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Floor on the candidate's mAP@0.5:0.95, with or without a champion.",
    )
    max_p95_latency_ms: Number = Field(
        gt=0,
        allow_inf_nan=False,
        description="Ceiling on the candidate's p95 latency in milliseconds (INT8 ONNX).",
    )
    promote_to: Literal["champion", "challenger"] = Field(
        "champion",
        description="Alias a passing candidate receives: champion (serves at once) or "
        "challenger (rollout_guard shadows and canaries it first).",
    )
    approval: Literal["none", "required"] = Field(
        "none",
        description="required: a passing candidate waits for an operator's approval before "
        "the alias moves; none: the gate's verdict is final.",
    )
    auto_retrain: Flag = Field(
        True,
        description="A confirmed drift triggers retraining by itself; false: only manual or "
        "scheduled runs retrain.",
    )
    new_labels: NewLabels = Field(
        default_factory=NewLabels,
        description="How many labeled frames new to the champion start a retraining on the "
        "labels Asset (subject to auto_retrain).",
    )
    retention: Retention = Field(
        default_factory=Retention, description="Which registered-model versions are kept."
    )
    bootstrap: Bootstrap = Field(
        default_factory=Bootstrap, description="Paired bootstrap of the primary metric's delta."
    )
    latency: Latency = Field(
        default_factory=Latency,
        description="Paired latency comparison: rounds, interval confidence, same-graph rule.",
    )
    slices: Slices = Field(
        default_factory=Slices,
        description="No camera may regress: per-camera paired bootstrap of the primary "
        "metric's delta, tolerance, minimum images and confidence.",
    )
    rollout: Rollout = Field(
        default_factory=Rollout,
        description="The rollout guard: shadow, canary and guard stages, their shares, "
        "durations and SLOs.",
    )
    # where the policy was read from (a file path, "<dict>"); no part of the policy itself
    _source: str = PrivateAttr("")

    # -- the flat names the retrain steps and the gate read ----------------------------
    @property
    def source(self) -> str:
        return self._source

    @property
    def retention_keep_last(self) -> int:
        return self.retention.keep_last

    @property
    def retention_archive(self) -> str:
        return self.retention.archive

    @property
    def bootstrap_n_resamples(self) -> int:
        return self.bootstrap.n_resamples

    @property
    def bootstrap_confidence(self) -> float:
        return self.bootstrap.confidence

    @property
    def latency_rounds(self) -> int:
        return self.latency.rounds

    @property
    def latency_confidence(self) -> float:
        return self.latency.confidence

    @property
    def latency_same_graph_tolerance(self) -> float:
        return self.latency.same_graph_tolerance

    def to_dict(self) -> dict[str, Any]:
        """The policy as the YAML document it was read from (JSON-safe; hashed by the ledger)."""
        return self.model_dump(mode="json")


def parse_promotion_policy(raw: Mapping[str, Any], source: str = "<dict>") -> PromotionPolicy:
    """Validate a policy document; every problem is named by its key path, after ``source``."""
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{source}: promotion policy must be a mapping, got {raw!r}")
    try:
        policy = PromotionPolicy.model_validate(dict(raw))
    except ValidationError as err:
        raise PolicyError(f"{source}: {describe_validation_error(PromotionPolicy, err)}") from None
    policy._source = source
    return policy


def _present(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides that say something: None, "" and {} (an empty Param) keep the policy's
    value, at any depth."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            value = _present(value)
        if value not in (None, {}, ""):
            out[key] = value
    return out


def load_promotion_policy(
    path: str | Path = DEFAULT_PROMOTION_POLICY_PATH,
    overrides: Mapping[str, Any] | None = None,
) -> PromotionPolicy:
    """Read the versioned policy file and apply run-time overrides (e.g. trigger Params).

    An override changes the effective version to ``<version>+override`` so that the ledger
    shows which decisions ran under a non-standard policy.
    """
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as err:
        raise PolicyError(f"promotion policy file not found: {path}") from err
    except yaml.YAMLError as err:
        raise PolicyError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise PolicyError(f"{path}: promotion policy must be a mapping, got {raw!r}")
    changes = _present(overrides or {})
    if changes:
        raw = deep_merge(raw, changes)
        raw["version"] = f"{raw.get('version')}+override"
    return parse_promotion_policy(raw, source=str(path))
