"""What a manual trigger of retrain_detector may override in the promotion policy.

:func:`trigger_overridable_fields` lists the knobs, with the type, bounds, current value and
description of each (from :class:`~driftloop.config.promotion_policy.PromotionPolicy`'s
fields), so the retrain DAG's Params can be built from the model; :func:`promotion_overrides`
turns such Params back into a nested override document; :data:`STRICTER` and
:func:`loosened_knobs` say which overrides make the gate weaker (those need an approval).

Imports pydantic only (a dependency of Airflow itself): DAG files may build Params from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter

from driftloop.config.promotion_policy import PromotionPolicy

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
