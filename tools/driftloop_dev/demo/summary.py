"""What the demo's story must show (:func:`expected_outcomes`: the exit status rests on it) and
the JSON summary it leaves in ``<root>/demo-summary.json`` (:func:`summary_document`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from driftloop_dev.demo.rollout import rollout_outcomes

#: the expected outcomes, in the story's order, in words
OUTCOME_TEXT = {
    "first_champion": "the first model is promoted to champion (no champion to beat: the floors)",
    "no_drift_before": "the check before the drift day finds nothing",
    "critical_after": "the check with drifted days is critical and opens a drift event",
    "challenger_in_shadow": "the retrained model passes the gate and starts as challenger in shadow",
    "shadow_to_canary": "shadow passes: the challenger serves the canary share",
    "canary_to_champion": "canary passes: the challenger is champion, the old one previous-champion",
    "three_aliases": "at the end: champion, challenger (the monthly fine-tune) and previous-champion",
    "ledger_ok": "the audit ledger's chain verifies",
}


def _version(run: Mapping[str, Any] | None) -> str | None:
    if not run or not run.get("candidate"):
        return None
    return str(run["candidate"]["version"])


def expected_outcomes(
    *,
    first: Mapping[str, Any],
    checks: Sequence[Mapping[str, Any]],
    retrain: Mapping[str, Any] | None,
    monthly: Mapping[str, Any] | None,
    timeline: Sequence[Mapping[str, Any]],
    aliases: Mapping[str, str],
    ledger_ok: bool,
) -> dict[str, bool]:
    """Each outcome of :data:`OUTCOME_TEXT` and whether it happened (the routing history and
    the final aliases, not what the demo asked for)."""
    v1, v2, v3 = _version(first), _version(retrain), _version(monthly)
    last = checks[-1] if checks else {}
    rollout = rollout_outcomes(timeline, v2, v1)
    wanted = {"champion": v2, "challenger": v3, "previous-champion": v1}
    return {
        "first_champion": bool(first["decision"]["promote"]),
        "no_drift_before": bool(checks) and checks[0]["decision"]["severity"] == "none",
        "critical_after": (last.get("decision") or {}).get("severity") == "critical"
        and last.get("event_id") is not None,
        **rollout,
        "three_aliases": None not in wanted.values()
        and {k: str(v) for k, v in aliases.items()} == wanted,
        "ledger_ok": bool(ledger_ok),
    }


def _retrain_summary(run: Mapping[str, Any]) -> dict[str, Any]:
    decision = run["decision"]
    reference = run.get("reference") or {}
    return {
        "run_id": run["run_id"],
        "seconds": run["seconds"],
        "version": run["candidate"]["version"],
        "evaluation": run["evaluation"],
        "promote": decision["promote"],
        "target_alias": decision.get("target_alias"),
        "reasons": decision["reasons"],
        "reference_source": reference.get("source"),
        "policy": (run.get("plan") or {}).get("promotion_policy"),
    }


def summary_document(
    *,
    truth,
    phases: Mapping[str, float],
    checks: Sequence[Mapping[str, Any]],
    retrains: Sequence[Mapping[str, Any] | None],
    served: Sequence[Mapping[str, Any]],
    policy,
    rollout: Mapping[str, Any] | None,
    timeline: Sequence[Mapping[str, Any]],
    final_guard: Mapping[str, Any] | None,
    aliases: Mapping[str, str],
    ledger_ok: bool,
    outcomes: Mapping[str, bool],
) -> dict[str, Any]:
    """``demo-summary.json``: what happened, with the numbers behind it."""
    from driftloop_dev.demo.policy import is_demo_policy, stage_minimums

    return {
        "ground_truth": truth.to_dict(),
        "phases_s": dict(phases),
        "serving": {
            "days": [s["day"] for s in served],
            "frames": sum(s["frames"] for s in served),
            "per_day": [
                {k: s.get(k) for k in ("day", "frames", "frames_per_s", "latency_p95_ms")}
                for s in served
            ],
        },
        "checks": [
            {k: r[k] for k in ("run_id", "seconds", "mlflow_url", "event_id")}
            | {
                "severity": r["decision"]["severity"],
                "drifted_features": r["decision"]["drifted_features"],
            }
            for r in checks
        ],
        "retrains": [_retrain_summary(r) for r in retrains if r is not None],
        "rollout": {
            "policy": {
                "source": policy.source,
                "version": policy.version,
                "demo_stages": is_demo_policy(policy),
                "stages": stage_minimums(policy),
            },
            "steps": list((rollout or {}).get("steps") or []),
            "stopped": (rollout or {}).get("stopped"),
            "routing_history": list(timeline),
            "final_guard": final_guard,
        },
        "aliases": dict(aliases),
        "ledger_ok": bool(ledger_ok),
        "outcomes": dict(outcomes),
    }
