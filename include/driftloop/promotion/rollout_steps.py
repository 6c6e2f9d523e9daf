"""The steps of ``rollout_guard``: where the rollout stands, the stage's evidence, the decision,
the action, and what the run tells others (Assets, a notification).

Like the retrain steps, nothing here trusts XCom (Airflow's REST API lets users edit it): each
step re-reads what it acts on from the stores. The evidence is a write-once report in S3
(``reports/rollout/<run id>/evidence.json``: a retry reuses it, so the decision of one DAG run
never changes), the decision is a ledger row (``rollout_guard/<run id>/decide``) naming the
document and aliases it saw, and each action acts on that row only while the document and the
aliases are still what it saw.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import Any

from driftloop.config.settings import Settings
from driftloop.promotion import rollout
from driftloop.promotion.rollout_transitions import RolloutRefused, guard_change
from driftloop.promotion.routing import (
    CANARY,
    SERVING,
    SHADOW,
    RoutingDoc,
    RoutingMoved,
    Stamp,
    disagreement,
    read_routing,
)

log = logging.getLogger(__name__)

DAG_ID = "rollout_guard"
ROLLOUT_REPORTS_PREFIX = "reports/rollout"
#: ledger kind of the guard's decision (one per DAG run)
DECISION = "rollout_decision"
#: the notification of each action (none for hold)
NOTIFICATION_KINDS = {
    rollout.TO_CANARY: "rollout_stage",
    rollout.END_GUARD: "rollout_stage",
    rollout.PROMOTE: "promotion",
    rollout.REJECT: "rejection",
    rollout.ROLLBACK: "rollback",
}


class RoutingInconsistent(RuntimeError):
    """The routing document names other versions than the aliases hold: a change is half
    done. Serving follows the ``champion`` alias alone meanwhile; a retry may find it done."""


def step_key(run_id: str, step: str) -> str:
    return f"{DAG_ID}/{run_id}/{step}"


def evidence_key(run_id: str) -> str:
    from driftloop.drift.run import safe_run_id

    return f"{ROLLOUT_REPORTS_PREFIX}/{safe_run_id(run_id)}/evidence.json"


def current_stage(s3, settings: Settings) -> dict[str, Any] | None:
    """The document the guard judges, after finishing a change an earlier run left half done;
    None when there is nothing to judge (no document, stage serving)."""
    stores = rollout.Stores.from_settings(s3, settings)
    finished = rollout.finish_pending(stores)
    doc = read_routing(s3, settings.bucket)
    if doc is None or doc.stage == SERVING:
        return None
    if doc.model != stores.model:  # the bucket's serving follows another registered model
        log.warning(
            "the routing document is of %r, not %r: nothing to judge", doc.model, stores.model
        )
        return None
    why = disagreement(doc, stores.aliases())
    if why:
        raise RoutingInconsistent(
            f"{why}. A change is half done (or an alias was moved by hand): serving follows the "
            f"champion alias alone until the run that wrote the document ({doc.updated_by}) or "
            "the one that moved the aliases is re-run"
        )
    return {
        "stage": doc.stage,
        "sequence": doc.sequence,
        "summary": doc.summary(),
        "finished_pending": None if finished is None else finished["action"],
    }


def gather_evidence(s3, settings: Settings, run_id: str, policy) -> dict[str, Any]:
    """The stage's comparison (:func:`driftloop.promotion.rollout_evidence.stage_evidence`) as
    a write-once report; a retry of the same DAG run reuses it."""
    from driftloop.contracts.storage import exists, get_json, put_json_once, s3_uri

    key = evidence_key(run_id)
    if exists(s3, settings.bucket, key):
        report = get_json(s3, settings.bucket, key)
    else:
        from driftloop.promotion.rollout_evidence import RolloutSLO, stage_evidence

        doc = read_routing(s3, settings.bucket)
        if doc is None or doc.stage == SERVING or doc.model != settings.registered_model:
            raise RoutingMoved("the rollout ended since this run started: nothing to judge")
        slo = RolloutSLO.from_policy(policy.rollout, doc.stage)
        same = same_graph_as_baseline(settings, doc.subject, doc.baseline)
        if same:  # the gate's rule: the same arithmetic differs in latency only by noise
            wider = max(slo.latency_p95_tolerance, policy.latency.same_graph_tolerance)
            slo = dataclasses.replace(slo, latency_p95_tolerance=wider)
        comparison = stage_evidence(s3, settings, doc.to_dict(), slo)
        report = {
            "doc": doc.to_dict(),
            "comparison": _finite(comparison.to_dict()),
            "same_graph": same,
            "latency_p95_tolerance": slo.latency_p95_tolerance,
        }
        put_json_once(s3, settings.bucket, key, report)
    return {
        "uri": s3_uri(settings.bucket, key),
        "sequence": report["doc"]["sequence"],
        "verdict": report["comparison"]["verdict"],
    }


def same_graph_as_baseline(settings: Settings, subject: str | None, baseline: str | None):
    """Whether the subject's serving graph has the baseline's signature (same ops, shapes,
    FLOPs), from the subject's evaluation against that baseline in the ledger; None: unknown
    (no such evaluation), and the stage keeps the policy's latency tolerance."""
    from driftloop.evaluation.latency import LatencyComparison
    from driftloop.retrain.records import ledger

    subject_key = f"model:{settings.registered_model}/v{subject}"
    for row in reversed(ledger(settings).entries(subject=subject_key, kind="evaluation")):
        champion, latency = row.payload.get("champion") or {}, row.payload.get("latency")
        if str(champion.get("version")) == str(baseline) and latency:
            return LatencyComparison.from_dict(latency).same_graph
    return None


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: the ledger holds canonical JSON only."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def decide(
    s3, settings: Settings, run_id: str, *, abort: bool, reason: str, operator: str
) -> dict[str, Any]:
    """The action for the current document (:func:`~driftloop.promotion.rollout.next_action`
    on the run's evidence, or ``reject`` when an operator aborts), recorded in the ledger with
    the document and aliases it saw. A re-run returns the decision on record."""
    from driftloop.audit.hashing import sha256_bytes
    from driftloop.contracts.storage import dumps_canonical, get_json

    stores = rollout.Stores.from_settings(s3, settings)
    key = step_key(run_id, "decide")
    done = stores.book.get(key)
    if done is not None:
        return {**done.payload, "ledger_id": done.id}
    doc = read_routing(s3, settings.bucket)
    if doc is None or doc.stage == SERVING or doc.model != stores.model:
        raise RoutingMoved("the rollout ended since this run started: nothing to decide")
    comparison, hashes = None, {}
    if abort:
        if doc.stage not in (SHADOW, CANARY):
            raise RolloutRefused(
                f"abort rejects a challenger in shadow or canary; stage is {doc.stage} "
                "(the new champion already serves: trigger rollback_detector to undo it)"
            )
        action = rollout.REJECT
    else:
        report = get_json(s3, settings.bucket, evidence_key(run_id))
        if report["doc"] != doc.to_dict():
            raise RoutingMoved(
                f"the evidence is of routing document #{report['doc']['sequence']}, the "
                f"current one is #{doc.sequence}: the stage changed since it was gathered"
            )
        comparison = report["comparison"]
        hashes = {"evidence": sha256_bytes(dumps_canonical(report))}
        action = rollout.next_action(doc, comparison)
    if abort:
        why = f"aborted by {operator}: {reason or 'no reason given'}"
    elif action == rollout.HOLD:
        why = "not enough evidence yet"
    else:
        failed = rollout.failure_reasons(comparison)
        why = "; ".join(failed) if failed else f"stage {doc.stage} passed"
    entry = stores.book.append(
        DECISION,
        actor=operator if abort else "policy:rollout_guard",
        subject=stores.subject(doc.subject),
        payload={
            "action": action,
            "reason": why,
            "operator_reason": reason or None,
            "abort": bool(abort),
            "doc": doc.to_dict(),
            "aliases": stores.aliases(),
            "verdict": None if comparison is None else comparison.get("verdict"),
            "comparison": comparison,
            "evidence_uri": None if abort else f"s3://{settings.bucket}/{evidence_key(run_id)}",
        },
        input_hashes=hashes,
        idempotency_key=key,
    )
    return {**entry.payload, "ledger_id": entry.id}


def decision_of(book, run_id: str):
    row = book.get(step_key(run_id, "decide"))
    if row is None:
        raise RolloutRefused(f"run {run_id} has no rollout decision in the ledger")
    return row


def act(s3, settings: Settings, run_id: str, action: str, policy) -> dict[str, Any]:
    """Carry out this run's decision, which must be ``action``: a guarded routing change keyed
    ``rollout_guard/<run id>/<action>``, built only while the document and aliases are still
    what the decision saw."""
    stores = rollout.Stores.from_settings(s3, settings)
    row = decision_of(stores.book, run_id)
    decision = row.payload
    if decision["action"] != action:
        raise RolloutRefused(f"run {run_id} decided {decision['action']!r}, not {action!r}")
    stamp = Stamp(by=step_key(run_id, action), reason=str(decision["reason"]))
    result = rollout.apply_change(
        stores,
        key=step_key(run_id, action),
        actor=row.actor,
        build=lambda: guard_change(
            stores, decision, policy.rollout, stamp, decision_ledger_id=row.id
        ),
    )
    return {"action": action, "summary": _doc_summary(result["doc"]), **result}


def _doc_summary(doc: Mapping[str, Any]) -> str:
    return RoutingDoc.from_dict(doc, "the rollout row").summary()


def completed_action(book, run_id: str) -> tuple[str, Any] | None:
    """This run's action and its completion row; None when it held or did not complete."""
    decision = book.get(step_key(run_id, "decide"))
    if decision is None or decision.payload["action"] == rollout.HOLD:
        return None
    action = decision.payload["action"]
    done = book.get(step_key(run_id, action))
    return None if done is None else (action, done)


def announcement(settings: Settings, run_id: str, asset: str) -> str | None:
    """Why this run emits ``asset`` ("champion": the alias moved; "rollout": the stage
    changed), from the ledger; None: it does not."""
    from driftloop.retrain.records import ledger

    done = completed_action(ledger(settings), run_id)
    if done is None:
        return None
    action, row = done
    if asset == "champion" and action not in (rollout.PROMOTE, rollout.ROLLBACK):
        return None
    return f"{action}: {_doc_summary(row.payload['doc'])}"


def notification(settings: Settings, run_id: str) -> tuple[str, dict[str, Any]] | None:
    """The message of this run's action (kind, payload for
    :func:`driftloop.notify.messages.build_message`); None when it held."""
    from driftloop.retrain.records import ledger

    book = ledger(settings)
    done = completed_action(book, run_id)
    if done is None:
        return None
    action, row = done
    decision = book.get(step_key(run_id, "decide"))
    seen, doc = decision.payload["doc"], row.payload["doc"]
    checks = (decision.payload.get("comparison") or {}).get("checks")
    common = {
        "model": settings.registered_model,
        "reason": decision.payload["reason"],
        "actor": decision.actor,
        "checks": checks,
        "run_id": run_id,
    }
    if action == rollout.PROMOTE:
        payload = {
            "version": seen["subject"],
            "target": "champion",
            "previous_version": seen["baseline"],
        }
    elif action == rollout.REJECT:
        payload = {
            "version": seen["subject"],
            "champion_version": seen["baseline"],
            "stage": seen["stage"],
            "reasons": [decision.payload["reason"]],
        }
    elif action == rollout.ROLLBACK:
        payload = {"withdrawn": seen["subject"], "restored": seen["baseline"], "mode": "automatic"}
    else:
        payload = {
            "subject": seen["subject"],
            "from_stage": seen["stage"],
            "to_stage": doc["stage"],
            "baseline": doc["baseline"],
            "share": doc["share"],
            "rollout_id": doc["rollout_id"],
            "sequence": doc["sequence"],
            "verdict": decision.payload.get("verdict"),
        }
    return NOTIFICATION_KINDS[action], {**common, **payload}
