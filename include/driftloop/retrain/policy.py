"""The promotion policy a ``retrain_detector`` run decides under.

The policy file (``DRIFTLOOP_PROMOTION_POLICY_PATH``, default
``config/promotion_policy.yaml``) with the run's trigger Params laid over it: each knob of
:data:`driftloop.config.promotion_policy.TRIGGER_OVERRIDABLE` is a Param
(:mod:`driftloop.airflow.retrain_params`), and an empty Param keeps the file's value. Every
task that reads the policy (plan, evaluate, gate, retention) loads it the same way, so the
evaluation's bootstrap and the gate's thresholds are the same run's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftloop.config.promotion_policy import (
    PromotionPolicy,
    load_promotion_policy,
    promotion_overrides,
)
from driftloop.config.settings import Settings


def run_policy(settings: Settings, params: Mapping[str, Any] | None = None) -> PromotionPolicy:
    """The policy file of ``settings`` with ``params``' overrides (version ``…+override``
    when any applies). PolicyError (a ValueError) names the file and the bad key; a Param that
    would switch off the approval the file requires is refused (RunConfError, a ValueError)."""
    from driftloop.airflow.params import check_approval_not_weakened

    overrides = promotion_overrides(params)
    if "approval" in overrides:
        file_policy = load_promotion_policy(settings.promotion_policy_path)
        check_approval_not_weakened(file_policy.approval, overrides["approval"], param="approval")
    return load_promotion_policy(settings.promotion_policy_path, overrides)
