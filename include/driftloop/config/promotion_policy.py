"""The promotion policy: a pydantic model of ``promotion_policy.yaml`` and its overrides.

The YAML file is versioned with the code; every gate decision records the version it was
decided under, and the audit ledger hashes :meth:`PromotionPolicy.to_dict`.
:func:`load_promotion_policy` reads the file, merges a run's overrides (``deep_merge``) and
validates the result; any problem raises :class:`PolicyError` naming the file and the key
path (``promotion_policy.yaml: 'bootstrap.confidence' must be < 1, got 1.2``).

A key set to null (``map_tolerance:`` with no value) counts as absent: optional keys take
their default, required ones are reported missing. Unknown keys are refused (typos would
otherwise be ignored silently).

:func:`trigger_overridable_fields` lists the knobs a manual trigger may override, with the
type, bounds, current value and description of each (from the fields below), so the retrain
DAG's Params can be built from the model; :func:`promotion_overrides` turns such Params back
into a nested override document.

Imports pydantic only (a dependency of Airflow itself): DAG files may build Params from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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


# --- what a manual trigger may override ---------------------------------------------------

#: policy keys a manual run of retrain_detector may change for that run only. Not among them:
#: ``version`` (an override marks it), ``auto_retrain`` (whether drift starts a run at all)
#: and ``retention`` (housekeeping of the registry across runs, not this run's decision).
TRIGGER_OVERRIDABLE: tuple[tuple[str, ...], ...] = (
    ("primary_metric",),
    ("map_tolerance",),
    ("latency_tolerance",),
    ("int8_max_map_loss",),
    ("min_map50",),
    ("min_map50_95",),
    ("max_p95_latency_ms",),
    ("promote_to",),
    ("approval",),
    ("bootstrap", "n_resamples"),
    ("bootstrap", "confidence"),
    ("latency", "rounds"),
    ("latency", "confidence"),
    ("latency", "same_graph_tolerance"),
)


#: which way each trigger-overridable knob makes the gate stricter: ``higher`` / ``lower``
#: values, a tuple of values weakest first, or ``None`` (neither: precision, not a threshold).
#: ``primary_metric`` has no order: any change of what is compared counts as loosening.
STRICTER: dict[tuple[str, ...], str | tuple[str, ...] | None] = {
    ("primary_metric",): "unchanged",
    ("map_tolerance",): "lower",
    ("latency_tolerance",): "lower",
    ("int8_max_map_loss",): "lower",
    ("min_map50",): "higher",
    ("min_map50_95",): "higher",
    ("max_p95_latency_ms",): "lower",
    ("promote_to",): ("champion", "challenger"),
    # approval is the condition loosening needs, checked on its own (check_approval_not_weakened)
    ("approval",): None,
    ("bootstrap", "n_resamples"): None,
    ("bootstrap", "confidence"): "higher",
    # latency rejects only when the whole interval lies above the tolerance: fewer rounds or a
    # higher confidence widen the interval, so they reject less
    ("latency", "rounds"): "higher",
    ("latency", "confidence"): "lower",
    ("latency", "same_graph_tolerance"): "lower",
}


def loosened_knobs(policy: PromotionPolicy, overrides: Mapping[str, Any]) -> list[str]:
    """The knobs of the nested ``overrides`` (as :func:`promotion_overrides` gives them) that
    would make ``policy``'s gate weaker: ``"min_map50 0.8 → 0.5"`` each."""
    loosened = []
    for path, direction in STRICTER.items():
        node: Any = overrides
        for name in path:
            node = node.get(name) if isinstance(node, Mapping) else None
        if node is None or direction is None:
            continue
        current: Any = policy
        for name in path:
            current = getattr(current, name)
        if direction == "higher":
            weaker = node < current
        elif direction == "lower":
            weaker = node > current
        elif direction == "unchanged":
            weaker = node != current
        else:
            weaker = node in direction and direction.index(node) < direction.index(current)
        if weaker:
            loosened.append(f"{'_'.join(path)} {current} → {node}")
    return loosened


@dataclass(frozen=True)
class OverridableField:
    """One policy knob a manual trigger may override, as a form would show it.

    ``param``: the flat name (``bootstrap_confidence`` for ``bootstrap.confidence``);
    ``json_schema``: type, bounds and allowed values of the field (JSON Schema, no title);
    ``default``: the value the run keeps when the knob is left empty.
    """

    param: str
    path: tuple[str, ...]
    type: str
    default: Any
    description: str
    json_schema: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "param": self.param,
            "path": ".".join(self.path),
            "type": self.type,
            "default": self.default,
            "description": self.description,
            "json_schema": dict(self.json_schema),
        }


def _field_info(path: tuple[str, ...]):
    model: type[BaseModel] = PromotionPolicy
    for name in path[:-1]:
        model = model.model_fields[name].annotation
    return model.model_fields[path[-1]]


def _field_schema(path: tuple[str, ...]) -> dict[str, Any]:
    from pydantic import TypeAdapter

    info = _field_info(path)
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    schema = TypeAdapter(annotation).json_schema()
    schema.pop("title", None)
    return schema


def trigger_overridable_fields(policy: PromotionPolicy | None = None) -> list[OverridableField]:
    """The knobs of :data:`TRIGGER_OVERRIDABLE` with type, default and description.

    ``default`` is ``policy``'s value (load the shipped file for the real one); without a
    policy it is the model's default, or None for a key the file must set (the floors).
    """
    out = []
    for path in TRIGGER_OVERRIDABLE:
        info = _field_info(path)
        schema = _field_schema(path)
        if policy is not None:
            node: Any = policy
            for name in path:
                node = getattr(node, name)
            default = node
        else:
            default = None if info.is_required() else info.get_default(call_default_factory=True)
        out.append(
            OverridableField(
                param="_".join(path),
                path=path,
                type=schema.get("type", "string"),
                default=default,
                description=info.description or "",
                json_schema=schema,
            )
        )
    return out


def promotion_overrides(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The nested override document for :func:`load_promotion_policy` from flat Params
    (``{"bootstrap_confidence": 0.9}`` → ``{"bootstrap": {"confidence": 0.9}}``); an empty
    Param (None or "") keeps the policy's value. Names that are no knob are ignored: the DAG
    checks its conf keys itself."""
    overrides: dict[str, Any] = {}
    for path in TRIGGER_OVERRIDABLE:
        value = (params or {}).get("_".join(path))
        if value is None or value == "":
            continue
        node = overrides
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = value
    return overrides
