"""The verdict of a drift check: decide against the policy and the history, record it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from driftloop.config.drift_policy import Policy
from driftloop.config.settings import Settings
from driftloop.contracts.storage import dumps_canonical, get_json_uri, put_bytes
from driftloop.drift.decision import Decision, decide
from driftloop.drift.run import report_prefix


def decide_and_record(
    s3,
    settings: Settings,
    *,
    plan: Mapping[str, Any],
    reference: Mapping[str, Any],
    statistics: Mapping[str, Any],
    validated: Mapping[str, Any],
    policy: Policy,
    run_id: str,
) -> dict[str, Any]:
    """Decide this check (policy, FDR, hysteresis over the stored history), record it in the
    history and write ``decision.json`` next to the statistics. The report and the MLflow run
    come after (:mod:`driftloop.drift.publish`): they show this verdict."""
    from driftloop.drift import history
    from driftloop.drift.compare import FeatureComparison

    document = get_json_uri(s3, statistics["statistics_uri"])
    comparisons = [FeatureComparison.from_dict(f) for f in document["features"]]
    comparisons += [
        FeatureComparison.from_dict(f)
        for window in (document.get("windows") or {}).values()
        for f in window
    ]
    engine = history.engine_for(settings.database_url)
    current_days = plan["current_days"]
    previous = history.previous_levels(
        engine,
        _day(current_days[-1]),
        exclude_run_id=run_id,
        limit=policy.n - 1,
        reference=reference,  # breaches against a replaced baseline do not count
    )
    decision = decide(comparisons, policy, previous)
    history.record_check(
        engine,
        history.CheckRecord(
            run_id=run_id,
            window_start=_day(current_days[0]),
            window_end=_day(current_days[-1]),
            reference_kind=reference["kind"],
            reference_id=reference["reference_id"],
            reference_rule=reference.get("rule"),
            reference_event_id=reference.get("event_id"),
            reference_reason=reference.get("reason"),
            severity=decision.severity,
            policy_version=policy.version,
            feature_levels=decision.feature_levels,
            drifted_features=decision.drifted_features,
        ),
    )
    out = _decision_document(decision, plan, reference, validated, statistics, policy, run_id)
    out["decision_uri"] = put_bytes(
        s3,
        settings.bucket,
        report_prefix(run_id) + "decision.json",
        dumps_canonical(out),
        "application/json",
    )
    return out


def _day(value: str) -> date:
    return date.fromisoformat(value)


#: what the decision document says about its reference: which bundle, and why that one
REFERENCE_KEYS = (
    "kind",
    "reference_id",
    "uri",
    "model_version",
    "days",
    "rule",
    "event_id",
    "reason",
)


def _decision_document(
    decision: Decision, plan, reference, validated, statistics, policy: Policy, run_id: str
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "severity": decision.severity,
        "drifted_features": decision.drifted_features,
        "policy": policy.to_dict(),
        "policy_version": policy.version,
        "window": {"start": plan["current_days"][0], "end": plan["current_days"][-1]},
        "reference": {k: reference.get(k) for k in REFERENCE_KEYS if reference.get(k) is not None},
        "missing_days": plan["missing_days"],
        # additive columns, duplicate part files: accepted data, said out loud
        "validation_warnings": list(validated.get("warnings", [])),
        "quarantined": [
            {
                "day": q["day"],
                "window": q["window"],
                "reasons": q["reasons"],
                **(
                    {"quarantine_error": q["quarantine_error"]} if q.get("quarantine_error") else {}
                ),
            }
            for q in validated["quarantined"]
        ],
        "history_checks": decision.history_checks,
        "features": [f.to_dict() for f in decision.features],
        "statistics_uri": statistics["statistics_uri"],
    }
