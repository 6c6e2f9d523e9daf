"""The gate and what follows it: ``gate``, the branch after it, ``promote`` and ``reject``.

Nothing here trusts XCom, which Airflow's REST API lets users create and edit while a run
waits for its approval. Each step re-derives what it acts on from the stores that decided it:

* :func:`gate` finds the candidate in the registry (the version registered by this DAG run)
  and the evaluation in the ledger (the ``evaluate`` step's row), applies the promotion policy
  (:func:`driftloop.promotion.gate.decide_promotion`) and fails closed when there is no
  evaluation. Its ledger row names the candidate version and the champion it was evaluated
  against.
* the operator's answer is written to the ledger by the approval task itself, from Airflow's
  HITL record (:func:`record_approval`).
* :func:`promote` acts only on this run's gate row (``promote: true`` for exactly that version
  and champion) and, when the policy asks for one, on an approval row that chose Promote; the
  model record must be complete; then it moves the alias as a guarded transaction
  (:mod:`driftloop.promotion.transactions`). If the champion changed since the evaluation it
  does not promote: the candidate was never compared with the model it would replace, and a
  new retraining run evaluates it against the new champion.
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
#: the approval form's options
PROMOTE_OPTION, REJECT_OPTION = "Promote", "Reject"


class PromotionRefused(RuntimeError):
    """The records do not allow this promotion (no passed gate for this version, no approval,
    an incomplete model record): a retry cannot change that."""


def step_key(run_id: str, step: str) -> str:
    """The ledger idempotency key of a retrain step of one DAG run."""
    return f"retrain_detector/{run_id}/{step}"


def registered_candidate(settings: Settings, run_id: str):
    """The model version this DAG run registered, from the registry (None: none yet)."""
    from driftloop.drift import tracking
    from driftloop.promotion import registry

    client = tracking.client(settings.mlflow_tracking_uri)
    return registry.find_version(client, settings.registered_model, registry.RUN_TAG, run_id)


def gate(settings: Settings, version: str, policy, run_id: str) -> dict[str, Any]:
    """The promotion decision for this run's candidate ``version``; fails closed when the
    evaluation is missing (the ``evaluate`` step left no ledger row) or broken."""
    from driftloop.evaluation.bootstrap import DeltaCI
    from driftloop.promotion.gate import EvalSummary, decide_promotion

    book = ledger(settings)
    row = book.get(step_key(run_id, "evaluate"))
    evaluation = None if row is None else row.payload
    if evaluation is not None and str(evaluation["candidate"]["version"]) != str(version):
        raise PromotionRefused(
            f"the evaluation of run {run_id} is of v{evaluation['candidate']['version']}, "
            f"but the run registered v{version}"
        )
    champion = (evaluation or {}).get("champion")
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
        result = decide_promotion(
            EvalSummary.from_dict(evaluation["candidate"]),
            EvalSummary.from_dict(champion) if champion else None,
            DeltaCI.from_dict(evaluation["delta"]) if evaluation.get("delta") else None,
            policy,
            latency=evaluation.get("latency"),
            slices=evaluation.get("slices"),
        )
        decision, table = result.to_dict(), result.table()
    decision["table"] = table
    decision["requires_approval"] = bool(decision["promote"]) and policy.approval == "required"
    decision["candidate_version"] = str(version)
    decision["champion_version"] = None if not champion else str(champion["version"])
    entry = book.append(
        "gate_decision",
        actor="policy:promotion_gate",
        subject=f"model:{settings.registered_model}/v{version}",
        payload=decision,
        input_hashes={"evaluation": sha256_bytes(dumps_canonical(evaluation))},
        idempotency_key=step_key(run_id, "gate"),
    )
    return entry.payload  # a re-run returns the decision on record, not a new one


def after_gate(decision: Mapping[str, Any]) -> str:
    """The task after the gate: rejection, the operator's approval (policy ``approval:
    required``), or promotion straight away."""
    if not decision["promote"]:
        return REJECTED_BY_GATE_TASK
    return AWAIT_APPROVAL_TASK if decision["requires_approval"] else APPROVED_BY_POLICY_TASK


def _gate_row(book, run_id: str) -> dict[str, Any]:
    row = book.get(step_key(run_id, "gate"))
    if row is None:
        raise PromotionRefused(f"run {run_id} has no gate decision in the ledger")
    return row.payload


def _approval_row(book, run_id: str):
    return book.get(step_key(run_id, "approval"))


def promote(settings: Settings, run_id: str) -> dict[str, Any]:
    """Move the alias the gate chose to this run's candidate, as a guarded transaction."""
    from driftloop.drift import tracking
    from driftloop.promotion import registry, transactions
    from driftloop.retrain.model_card import check_model_record

    book = ledger(settings)
    decision = _gate_row(book, run_id)
    version = str(decision["candidate_version"])
    if not decision.get("promote"):
        raise PromotionRefused(f"the gate of run {run_id} rejected v{version}: nothing to promote")
    actor, approval = "policy:auto", None
    if decision.get("requires_approval"):
        row = _approval_row(book, run_id)
        if row is None or row.payload.get("chosen_options") != [PROMOTE_OPTION]:
            raise PromotionRefused(
                f"v{version} needs an operator's approval and the ledger holds "
                + ("none" if row is None else f"the answer {row.payload.get('chosen_options')}")
            )
        actor, approval = row.actor, row.payload
    client = tracking.client(settings.mlflow_tracking_uri)
    candidate = client.get_model_version(settings.registered_model, version)
    if (candidate.tags or {}).get(registry.RUN_TAG) != run_id:
        raise PromotionRefused(f"v{version} was not registered by run {run_id}")
    record_sha = check_model_record(settings, version)
    move = transactions.promotion_move(
        settings.registered_model,
        version,
        expected_champion=decision.get("champion_version"),
        target=decision["target_alias"],
    )
    result = transactions.guarded_move(
        client,
        book,
        move,
        key=step_key(run_id, "promote"),
        actor=actor,
        details={
            "target": decision["target_alias"],
            "approval": approval,
            "evaluated_against": decision.get("champion_version"),
            "model_record_sha256": record_sha,
        },
        tags=lambda m: {version: {"gate": "passed", "promoted_by": actor}},
    )
    return {"version": version, "actor": actor, **result}


def reject(settings: Settings, run_id: str) -> dict[str, Any]:
    """Tag this run's candidate with the gate's (or the operator's) reasons; the champion is
    not touched."""
    from driftloop.drift import tracking
    from driftloop.promotion import registry

    book = ledger(settings)
    decision = _gate_row(book, run_id)
    version = str(decision["candidate_version"])
    approval = _approval_row(book, run_id)
    if decision.get("promote") and approval is None:
        raise PromotionRefused(f"the gate passed v{version} and no operator rejected it")
    reasons = (
        [f"operator {approval.actor} chose {approval.payload.get('chosen_options')}"]
        if decision.get("promote")
        else list(decision.get("reasons") or ["rejected by the gate"])
    )
    client = tracking.client(settings.mlflow_tracking_uri)
    registry.set_tags(
        client,
        settings.registered_model,
        version,
        {"gate": "rejected", "gate_reasons": "; ".join(reasons)[:4900]},
    )
    book.append(
        "rejection",
        actor=approval.actor if decision.get("promote") else "policy:promotion_gate",
        subject=f"model:{settings.registered_model}/v{version}",
        payload={
            "reasons": reasons,
            "champion_untouched": registry.aliases(client, settings.registered_model),
        },
        idempotency_key=step_key(run_id, "reject"),
    )
    return {"version": version, "reasons": reasons}


def record_approval(settings: Settings, run_id: str, answer: Mapping[str, Any]) -> dict:
    """The operator's answer to the promotion request, from Airflow's HITL record, as its own
    ledger row (who, what, when). Called by the approval task when the answer arrives."""
    book = ledger(settings)
    decision = _gate_row(book, run_id)
    entry = book.append(
        "approval",
        actor=approval_actor(answer),
        subject=f"model:{settings.registered_model}/v{decision['candidate_version']}",
        payload={"request": "promotion", **dict(answer)},
        idempotency_key=step_key(run_id, "approval"),
    )
    return entry.payload


def approval_actor(answer: Mapping[str, Any]) -> str:
    """The responder of a HITL answer: the Airflow user's name (or id)."""
    user = answer.get("responded_by_user") or {}
    name = user.get("name") or user.get("id") if isinstance(user, Mapping) else user
    if not name:
        raise PromotionRefused(f"the approval names no responder: {dict(answer)}")
    return str(name)


def promotion_request(*, run_id: str) -> tuple[str, str]:
    """Subject and body of the approval request, from this run's gate row in the ledger."""
    settings = Settings.from_env()
    decision = _gate_row(ledger(settings), run_id)
    champion = decision.get("champion_version")
    subject = f"Promote {settings.registered_model} v{decision['candidate_version']}?"
    body = (
        f"The gate passed v{decision['candidate_version']} against "
        + (f"the champion v{champion}" if champion else "no champion (floors only)")
        + f" to `{decision['target_alias']}`:\n\n```\n{decision.get('table', '')}\n```"
    )
    return subject, body


def record_promotion_answer(answer: Mapping[str, Any], *, run_id: str) -> dict:
    """``record_answer`` hook of the promotion approval task (see
    :class:`driftloop.airflow.hitl.RecordedHITLBranchOperator`)."""
    return record_approval(Settings.from_env(), run_id, answer)
