"""The gate and what follows it: ``gate``, the branch after it, ``promote`` and ``reject``.

:func:`gate` applies the promotion policy (:func:`driftloop.promotion.gate.decide_promotion`)
to the evaluation and fails closed when there is none; :func:`after_gate` routes to the
operator's approval, straight to promotion, or to rejection; :func:`promote` moves the alias
(``champion`` or ``challenger``), :func:`reject` tags the version with the gate's reasons and
leaves the champion alone. The operator's answer, when there is one, is its own ledger row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftloop.audit.hashing import sha256_bytes
from driftloop.config.settings import Settings
from driftloop.contracts.storage import dumps_canonical
from driftloop.retrain.records import ledger

#: the task ids :func:`after_gate` chooses between (the DAG names its tasks with these)
REJECTED_BY_GATE_TASK = "rejected_by_gate"
AWAIT_APPROVAL_TASK = "await_promotion_approval"
APPROVED_BY_POLICY_TASK = "approved_by_policy"


def gate(
    settings: Settings, evaluation: Mapping[str, Any] | None, candidate, policy, run_id: str
) -> dict[str, Any]:
    """The promotion decision; fails closed when the evaluation is missing or broken."""
    from driftloop.evaluation.bootstrap import DeltaCI
    from driftloop.promotion.gate import EvalSummary, decide_promotion

    if evaluation is None:
        decision = {
            "promote": False,
            "target_alias": policy.promote_to,
            "reasons": ["evaluation failed or produced no result: fail closed"],
            "checks": [],
            "policy_version": policy.version,
        }
        table = "evaluation failed: no promotion"
    else:
        champion = evaluation.get("champion")
        result = decide_promotion(
            EvalSummary.from_dict(evaluation["candidate"]),
            EvalSummary.from_dict(champion) if champion else None,
            DeltaCI.from_dict(evaluation["delta"]) if evaluation.get("delta") else None,
            policy,
        )
        decision, table = result.to_dict(), result.table()
    decision["table"] = table
    decision["requires_approval"] = bool(decision["promote"]) and policy.approval == "required"
    ledger(settings).append(
        "gate_decision",
        actor="policy:promotion_gate",
        subject=f"model:{settings.registered_model}/v{candidate['version']}",
        payload=decision,
        input_hashes={"evaluation": sha256_bytes(dumps_canonical(evaluation))},
        idempotency_key=f"retrain_detector/{run_id}/gate",
    )
    return decision


def after_gate(decision: Mapping[str, Any]) -> str:
    """The task after the gate: rejection, the operator's approval (policy ``approval:
    required``), or promotion straight away."""
    if not decision["promote"]:
        return REJECTED_BY_GATE_TASK
    return AWAIT_APPROVAL_TASK if decision["requires_approval"] else APPROVED_BY_POLICY_TASK


def promote(
    settings: Settings, candidate, decision, approval: Mapping[str, Any] | None, run_id: str
) -> dict[str, Any]:
    from driftloop.drift import tracking
    from driftloop.promotion import registry

    record_approval(settings, candidate, approval, run_id)
    client = tracking.client(settings.mlflow_tracking_uri)
    change = registry.promote(
        client, settings.registered_model, candidate["version"], target=decision["target_alias"]
    )
    actor = _actor(approval, default="policy:auto")
    registry.set_tags(
        client,
        settings.registered_model,
        candidate["version"],
        {"gate": "passed", "promoted_by": actor},
    )
    ledger(settings).append(
        "promotion",
        actor=actor,
        subject=f"model:{settings.registered_model}/v{candidate['version']}",
        payload={
            "aliases": change.to_dict(),
            "target": decision["target_alias"],
            "approval": approval,
        },
        idempotency_key=f"retrain_detector/{run_id}/promote",
    )
    return {"version": candidate["version"], **change.to_dict(), "actor": actor}


def reject(
    settings: Settings, candidate, decision, approval: Mapping[str, Any] | None, run_id: str
) -> dict[str, Any]:
    from driftloop.drift import tracking
    from driftloop.promotion import registry

    record_approval(settings, candidate, approval, run_id)
    client = tracking.client(settings.mlflow_tracking_uri)
    reasons = decision.get("reasons") or (
        [f"operator rejected: {approval.get('chosen_options')}"] if approval else ["rejected"]
    )
    registry.set_tags(
        client,
        settings.registered_model,
        candidate["version"],
        {"gate": "rejected", "gate_reasons": "; ".join(reasons)[:4900]},
    )
    ledger(settings).append(
        "rejection",
        actor=_actor(approval, default="policy:promotion_gate"),
        subject=f"model:{settings.registered_model}/v{candidate['version']}",
        payload={
            "reasons": reasons,
            "champion_untouched": registry.aliases(client, settings.registered_model),
        },
        idempotency_key=f"retrain_detector/{run_id}/reject",
    )
    return {"version": candidate["version"], "reasons": reasons}


def record_approval(
    settings: Settings, candidate, approval: Mapping[str, Any] | None, run_id: str
) -> None:
    """The operator's answer to the promotion request, as its own ledger row (who, what, when)."""
    if not approval:
        return
    ledger(settings).append(
        "approval",
        actor=_actor(approval, default="unknown"),
        subject=f"model:{settings.registered_model}/v{candidate['version']}",
        payload={"request": "promotion", **dict(approval)},
        idempotency_key=f"retrain_detector/{run_id}/approval",
    )


def _actor(approval: Mapping[str, Any] | None, default: str) -> str:
    if not approval:
        return default
    user = approval.get("responded_by_user") or {}
    return (
        str(user.get("name") or user.get("id") or "unknown")
        if isinstance(user, Mapping)
        else str(user)
    )
