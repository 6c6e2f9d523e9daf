"""The trigger Params of ``drift_monitor``, built from the drift policy model.

Every policy knob a run may override (:data:`driftloop.config.drift_policy.RUN_OVERRIDES`)
becomes an optional Param whose type, bounds and description come from the pydantic field
it sets, so adding a knob is one entry there. An empty Param keeps the policy's value.

Optional Params are empty-by-default fields (``type: ["null", …]``), never a select whose
choices include ``None``: the Trigger form would show a literal "null" choice (and Airflow 3
fails to render such a select, apache/airflow#62049). A knob with a fixed set of values
(``approval``) is an empty field that suggests the values (``examples``) and accepts only
them (``pattern``). ``approval`` may only make the policy stricter
(:func:`check_approval_not_weakened`, applied when the run resolves its policy).

Imported by the DAG file at parse time: Airflow, pydantic (an Airflow dependency) and
driftloop's config only.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from airflow.sdk import Param

from driftloop.config.drift_policy import RUN_OVERRIDES, RunOverride, override_field

#: the Param that is no policy knob: which day the checked window ends on
END_DATE_PARAM = "end_date"
#: the Param that overrides the policy's ``approval``, and its values, weakest first
APPROVAL_PARAM = "approval"
APPROVAL_STRICTNESS = ("none", "required")


def check_approval_not_weakened(
    policy_approval: str, requested: str | None, *, param: str = APPROVAL_PARAM
) -> None:
    """A run's Param may make the approval stricter than the policy file, never weaker: a
    person who may trigger a run must not switch off the approval the policy's owners asked
    for. RunConfError naming the Param otherwise (an unknown value too)."""
    from driftloop.airflow.run_conf import RunConfError

    if requested is None or requested == "":
        return
    if requested not in APPROVAL_STRICTNESS or policy_approval not in APPROVAL_STRICTNESS:
        raise RunConfError(
            f"Param {param}={requested!r} (policy: {policy_approval!r}): expected one of "
            f"{', '.join(APPROVAL_STRICTNESS)}"
        )
    if APPROVAL_STRICTNESS.index(requested) < APPROVAL_STRICTNESS.index(policy_approval):
        raise RunConfError(
            f"Param {param}={requested!r} would weaken the policy's approval "
            f"{policy_approval!r}: a run may only make approval stricter; leave it empty or "
            "change the policy file"
        )


def _json_schema(override: RunOverride) -> dict[str, Any]:
    """JSON schema of the policy field a knob sets (type, bounds, allowed values)."""
    from pydantic import TypeAdapter

    field = override_field(override)
    annotation = (
        Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    )
    schema = TypeAdapter(annotation).json_schema()
    schema.pop("title", None)
    return schema


def override_param(override: RunOverride) -> Param:
    """The optional Param of one policy knob: empty keeps the policy's value."""
    schema = _json_schema(override)
    field = override_field(override)
    description = f"{override.describe}. Empty: the policy's value."
    if field.description:
        description += f" ({field.description})"
    allowed = schema.pop("enum", None)
    json_type = schema.pop("type", "string")
    if allowed is not None:
        # suggestions, not a select: the field stays empty-by-default, with no "null" choice
        schema["examples"] = list(allowed)
        schema["pattern"] = "^(" + "|".join(re.escape(str(v)) for v in allowed) + ")$"
    return Param(None, type=["null", json_type], description=description, **schema)


def drift_monitor_params() -> dict[str, Param]:
    """``end_date`` and one Param per policy knob of :data:`RUN_OVERRIDES`."""
    params = {
        END_DATE_PARAM: Param(
            None,
            type=["null", "string"],
            format="date",
            description="Last day of the current window (YYYY-MM-DD). Empty: the day an Asset "
            "event announced, else the day before the run's logical date (or run_after).",
        )
    }
    for override in RUN_OVERRIDES:
        params[override.param] = override_param(override)
    return params
