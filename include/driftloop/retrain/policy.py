"""The promotion policy a ``retrain_detector`` run decides under.

The policy file (``DRIFTLOOP_PROMOTION_POLICY_PATH``, default
``config/promotion_policy.yaml``) with the run's trigger Params laid over it: each knob of
:data:`driftloop.config.promotion_overrides.TRIGGER_OVERRIDABLE` is a Param
(:mod:`driftloop.airflow.retrain_params`), and an empty Param keeps the file's value. Every
task that reads the policy (plan, evaluate, gate, retention) loads it the same way, so the
evaluation's bootstrap and the gate's thresholds are the same run's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftloop.config.promotion_overrides import loosened_knobs, promotion_overrides
from driftloop.config.promotion_policy import PromotionPolicy, load_promotion_policy
from driftloop.config.settings import Settings


def run_policy(settings: Settings, params: Mapping[str, Any] | None = None) -> PromotionPolicy:
    """The policy file of ``settings`` with ``params``' overrides (version ``…+override``
    when any applies). PolicyError (a ValueError) names the file and the bad key.

    A trigger may make the gate stricter, never weaker on its own: a Param that would switch
    off the approval the file requires is refused, and one that loosens a threshold (a lower
    floor, a wider tolerance, another primary metric …) only passes when this run's promotion
    waits for an operator's approval — a person who may trigger a run must not be able to
    promote a model the policy's owners would reject. RunConfError (a ValueError) otherwise."""
    from driftloop.airflow.params import check_approval_not_weakened
    from driftloop.airflow.run_conf import RunConfError

    overrides = promotion_overrides(params)
    if not overrides:
        return load_promotion_policy(settings.promotion_policy_path)
    file_policy = load_promotion_policy(settings.promotion_policy_path)
    if "approval" in overrides:
        check_approval_not_weakened(file_policy.approval, overrides["approval"], param="approval")
    policy = load_promotion_policy(settings.promotion_policy_path, overrides)
    loosened = loosened_knobs(file_policy, overrides)
    if loosened and policy.approval != "required":
        raise RunConfError(
            f"Params would loosen the promotion policy {file_policy.version} "
            f"({settings.promotion_policy_path}): {'; '.join(loosened)}. A run may loosen the "
            "gate only when an operator approves its promotion: set the Param approval to "
            "'required', or change the policy file"
        )
    return policy
