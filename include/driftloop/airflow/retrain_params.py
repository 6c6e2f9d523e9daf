"""The trigger Params of ``retrain_detector``: the run's own, then the promotion-policy knobs.

The run's Params (reason, window, training arguments, base model, drift event, dry run) are
listed here. Every knob of the promotion policy a manual run may change
(:func:`driftloop.config.promotion_overrides.trigger_overridable_fields`) becomes an optional
Param whose type, bounds and description come from the pydantic field it sets, so adding a
knob to the policy is one edit there. An empty Param keeps the policy file's value; the tasks
turn the Params back into overrides with :func:`driftloop.retrain.policy.run_policy`.

Optional Params are empty-by-default fields (``type: ["null", …]``), never a select whose
choices include ``None``: the Trigger form would show a literal "null" choice. A knob with a
fixed set of values (``promote_to``, ``approval``) suggests them (``examples``) and accepts
only them (``pattern``).

``base`` accepts only ``champion`` or an allow-listed model yaml, and ``hyperparameters`` only
the tunable Ultralytics arguments (:mod:`driftloop.training.allowlists`; the tasks check both
again, whatever the form let through).

Imported by the DAG file at parse time: Airflow, pydantic (an Airflow dependency) and
driftloop's config and allow-lists only (standard library); the policy file itself is not read
here.
"""

from __future__ import annotations

import re
from typing import Any

from airflow.sdk import Param

from driftloop.config.promotion_overrides import OverridableField, trigger_overridable_fields
from driftloop.training.allowlists import (
    BASE_MODEL_YAMLS,
    CHAMPION_BASE,
    TUNABLE_HYPERPARAMETERS,
)


def run_params() -> dict[str, Param]:
    """What the run does: why, which days, how to train, from which base."""
    return {
        "reason": Param(
            "manual retraining",
            type="string",
            minLength=3,
            description="Why this run: recorded in the ledger and the model card.",
        ),
        "last_n_days": Param(
            14,
            type="integer",
            minimum=1,
            maximum=90,
            description="Days of labeled frames to train on, ending at end_date.",
        ),
        "end_date": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Last day of the training window (YYYY-MM-DD). Empty: the drift "
            "window's end, else the day before the run.",
        ),
        "epochs": Param(
            5,
            type="integer",
            minimum=0,
            maximum=500,
            description="Training epochs (0: no training, the base model is the candidate).",
        ),
        "imgsz": Param(
            160,
            type="integer",
            minimum=64,
            maximum=1280,
            multipleOf=32,
            description="Training and serving image size.",
        ),
        "batch": Param(
            16, type="integer", minimum=1, maximum=512, description="Training batch size."
        ),
        "hyperparameters": Param(
            {},
            type="object",
            # only the tunable Ultralytics arguments: epochs, imgsz, batch are the bounded
            # Params above; the data, model, device and output paths are the run's own
            propertyNames={"enum": sorted(TUNABLE_HYPERPARAMETERS)},
            additionalProperties={"type": ["number", "boolean", "string", "array"]},
            description="Ultralytics training arguments (name: value) over the defaults: "
            "AdamW, no warm-up, lr0 0.005 from a model yaml, 0.0005 when fine-tuning the "
            "champion. Logged with the run. Tunable: "
            + ", ".join(sorted(TUNABLE_HYPERPARAMETERS))
            + ".",
        ),
        "base": Param(
            CHAMPION_BASE,
            type="string",
            examples=[CHAMPION_BASE, *BASE_MODEL_YAMLS],
            pattern="^("
            + "|".join(re.escape(b) for b in (CHAMPION_BASE, *BASE_MODEL_YAMLS))
            + ")$",
            description="`champion` (fine-tune its weights, checked against the SHA-256 its "
            "model record holds; a model yaml when there is none) or a model yaml: "
            + ", ".join(BASE_MODEL_YAMLS)
            + ".",
        ),
        "drift_event_id": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="Retrain for this drift event (after a review, when auto_retrain is "
            "off): linked in the ledger, the model version and the event's status.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            description="Snapshot the dataset and stop: no training, no registry change.",
        ),
    }


def policy_param(knob: OverridableField) -> Param:
    """The optional Param of one promotion-policy knob: empty keeps the policy's value."""
    schema: dict[str, Any] = dict(knob.json_schema)
    description = (
        f"Promotion policy `{'.'.join(knob.path)}` for this run. Empty: the policy file's value."
        " Weaker than the file only with approval: required."
    )
    if knob.description:
        description += f" ({knob.description})"
    allowed = schema.pop("enum", None)
    json_type = schema.pop("type", knob.type)
    if allowed is not None:
        # suggestions, not a select: the field stays empty-by-default, with no "null" choice
        schema["examples"] = list(allowed)
        schema["pattern"] = "^(" + "|".join(re.escape(str(v)) for v in allowed) + ")$"
    return Param(None, type=["null", json_type], description=description, **schema)


def retrain_detector_params() -> dict[str, Param]:
    """The run's Params, then one per knob of the promotion policy a trigger may override."""
    params = run_params()
    for knob in trigger_overridable_fields():
        if knob.param in params:
            raise ValueError(f"promotion policy knob {knob.param!r} clashes with a run Param")
        params[knob.param] = policy_param(knob)
    return params
