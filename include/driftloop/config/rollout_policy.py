"""The ``rollout:`` section of the promotion policy: stages, shares, durations and SLOs of the
rollout guard (``dags/rollout_guard.py``).

A challenger (``promote_to: challenger``) is shadowed, then canaried, then promoted; a new
champion is guarded for ``guard.hours`` and rolled back on an SLO miss. Each stage compares the
model under evaluation with the incumbent on the same frames (paired), with intervals at
``confidence``: an SLO fails only when the whole interval is beyond its tolerance, and a stage
passes only with enough frames and hours of log time and every estimate within tolerance (see
:mod:`driftloop.promotion.rollout_evidence`).

Part of :class:`driftloop.config.promotion_policy.PromotionPolicy` (its own module so that each
stays small); validation errors name the key path (``'rollout.canary.share' must be <= 0.1``).
Imports pydantic only, like the policy model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

#: the canary's share of served frames: enough frames to judge, few enough to limit the harm
CANARY_SHARE_RANGE = (0.01, 0.10)


def _no_bool(kind: str, article: str):
    def check(value: Any) -> Any:
        # pydantic's lax mode reads True as 1; in a policy file that is a slip, not a number
        if isinstance(value, bool):
            raise PydanticCustomError(f"bool_is_no_{kind}", f"a boolean is not {article} {kind}")
        return value

    return check


# the error types are the promotion policy's, so its messages name them the same way
Number = Annotated[float, BeforeValidator(_no_bool("number", "a"))]
Integer = Annotated[int, BeforeValidator(_no_bool("integer", "an"))]


class _Section(BaseModel):
    # the promotion policy's conventions: unknown keys refused, frozen, null = absent
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_absent(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {key: value for key, value in data.items() if value is not None}
        return data


def _fraction(default: float, description: str, *, gt: float | None = None, **bounds):
    bounds = {"ge": 0, "le": 1, **bounds} if gt is None else {"gt": gt, "le": 1, **bounds}
    return Field(default, allow_inf_nan=False, description=description, **bounds)


class ShadowStage(_Section):
    """The challenger scores every frame beside the serving champion, off the serving path."""

    min_frames: Integer = Field(
        200, ge=1, description="Paired frames (both models scored them) before shadow can pass."
    )
    min_hours: Number = Field(
        1,
        ge=0,
        allow_inf_nan=False,
        description="Hours of log time (span of the stage's records) before shadow can pass.",
    )


class CanaryStage(_Section):
    """The challenger serves a small share of the frames, each also scored by the champion."""

    share: Number = _fraction(
        0.05,
        "Share of frames the challenger serves (and the champion scores in shadow), within "
        "[0.01, 0.10]: enough frames to judge, few enough to limit the harm of a bad model.",
        ge=CANARY_SHARE_RANGE[0],
        le=CANARY_SHARE_RANGE[1],
    )
    min_frames: Integer = Field(
        100, ge=1, description="Paired canary frames before the canary can pass."
    )
    min_hours: Number = Field(
        1,
        ge=0,
        allow_inf_nan=False,
        description="Hours of log time of the canary's records before it can pass.",
    )


class GuardStage(_Section):
    """After a promotion the new champion serves and the previous one shadows a share of the
    frames; an SLO miss in this period rolls back to ``previous-champion`` automatically."""

    hours: Number = Field(
        24,
        gt=0,
        allow_inf_nan=False,
        description="Length of the guard period in hours of log time; passed without a fail, "
        "the previous champion stops shadowing.",
    )
    shadow_share: Number = _fraction(
        0.25,
        "Share of frames the previous champion also scores during the guard period.",
        gt=0,
    )
    min_frames: Integer = Field(
        100, ge=1, description="Paired frames before the guard period can end."
    )


class RolloutSLOs(_Section):
    """Service levels the model under evaluation must keep against the incumbent. Each check is
    an interval at ``rollout.confidence``: fail when the whole interval is beyond the
    tolerance (noise never fails a stage), pass when its estimate is within it."""

    latency_p95_tolerance: Number = Field(
        0.10,
        ge=0,
        allow_inf_nan=False,
        description="p95(subject) / p95(baseline) may exceed 1 by this share (0.10 = 10 %); "
        "judged in canary and guard only, where the subject is on the serving path.",
    )
    map_tolerance: Number = _fraction(
        0.02,
        "mAP@0.5:0.95 delta (subject - baseline) on the labeled frames of the stage: fail "
        "when the whole interval is below -map_tolerance.",
    )
    min_labeled_frames: Integer = Field(
        30,
        ge=1,
        description="Fewer labeled frames: the mAP check reports 'not enough labels' and "
        "does not block.",
    )
    detections_tolerance: Number = _fraction(
        0.25,
        "Detections per frame, subject / baseline: fail when the whole interval is outside "
        "[1 - tolerance, 1 + tolerance].",
    )
    confidence_tolerance: Number = _fraction(
        0.05,
        "Mean detection confidence delta (subject - baseline): fail when the whole interval "
        "is below -confidence_tolerance.",
    )
    min_agreement: Number = _fraction(
        0.70,
        "Mean per-frame detection F1 between the two models (same class, IoU >= 0.5): fail "
        "when the whole interval is below it.",
    )
    max_error_share: Number = _fraction(
        0.01,
        "Share of frames the subject fails on, minus the baseline's: fail when the lower "
        "bound exceeds it.",
    )


class Rollout(_Section):
    """Stages, shares, durations and SLOs of the rollout guard."""

    shadow: ShadowStage = Field(
        default_factory=ShadowStage,
        description="Shadow: the challenger scores beside the champion.",
    )
    canary: CanaryStage = Field(
        default_factory=CanaryStage, description="Canary: the challenger serves a small share."
    )
    guard: GuardStage = Field(
        default_factory=GuardStage,
        description="Guard: the period after a promotion in which an SLO miss rolls back.",
    )
    confidence: Number = Field(
        0.95,
        ge=0.5,
        lt=1,
        allow_inf_nan=False,
        description="Confidence of every interval of the stage checks (Bonferroni-adjusted "
        "over the cameras tested).",
    )
    slo: RolloutSLOs = Field(
        default_factory=RolloutSLOs,
        description="Service levels the model under evaluation must keep against the incumbent.",
    )
