"""The verdict of a drift check: decide against the policy and the history, record it.

The champion's accuracy on newly labeled days is part of it: ``measure_performance``'s
``performance.json`` (:func:`driftloop.performance.check.run_performance_check`) and the
stored ``performance_days`` series are judged (:func:`driftloop.performance.verdict.judge`)
and the decision's severity is the worse of input drift and performance."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from driftloop.config.drift_policy import Policy
from driftloop.config.settings import Settings
from driftloop.contracts.storage import dumps_canonical, get_json_uri, put_bytes, s3_uri
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
    performance_uri: str | None = None,
) -> dict[str, Any]:
    """Decide this check (policy, FDR, hysteresis over the stored history; the performance
    document at ``performance_uri`` with the stored series, when given), record it in the
    history and write ``decision.json`` next to the statistics. The report and the MLflow run
    come after (:mod:`driftloop.drift.publish`): they show this verdict."""
    from driftloop.drift import history
    from driftloop.drift.compare import FeatureComparison
    from driftloop.drift.feature_scores import feature_scores

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
    performance = None
    if performance_uri is not None:
        performance = judge_performance(
            engine, get_json_uri(s3, performance_uri), policy, _day(current_days[-1])
        )
    decision = decide(comparisons, policy, previous, performance)
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
            feature_scores=feature_scores(decision.features, policy),
        ),
    )
    out = _decision_document(decision, plan, reference, validated, statistics, policy, run_id)
    out["performance_uri"] = performance_uri  # measure_performance's performance.json
    out["decision_uri"] = put_bytes(
        s3,
        settings.bucket,
        report_prefix(run_id) + "decision.json",
        dumps_canonical(out),
        "application/json",
    )
    return out


def measure_performance(s3, settings: Settings, plan: Mapping[str, Any], run_id: str) -> str:
    """``measure_performance``'s work: the champion measured on the labeled days of the
    check's current window and estimated on its logged days
    (:func:`driftloop.performance.check.run_performance_check`); the S3 URI of the
    ``performance.json`` it wrote, which ``decide`` judges."""
    from driftloop.performance.check import document_key, run_performance_check

    days = plan["current_days"]
    run_performance_check(
        settings, run_id=run_id, window_start=_day(days[0]), window_end=_day(days[-1]), s3=s3
    )
    return s3_uri(settings.bucket, document_key(run_id))


def judge_performance(engine, document: Mapping[str, Any], policy: Policy, window_end: date):
    """The performance verdict of a check: this check's ``performance.json`` rows with the
    champion's stored ``performance_days`` of the policy's lookback, against its evaluation."""
    from datetime import timedelta

    from driftloop.performance.store import performance_series
    from driftloop.performance.verdict import judge, merge_rows

    for key in ("model_version", "baseline", "days"):
        if key not in document:
            raise ValueError(f"performance document has no {key!r} key")
    version = document["model_version"]
    stored = []
    if version is not None:
        since = window_end - timedelta(days=policy.performance.lookback_days - 1)
        stored = performance_series(engine, model_version=str(version), since=since)
    return judge(
        merge_rows(stored, document["days"]),
        document["baseline"],
        policy.performance,
        as_of=window_end,
        model_version=None if version is None else str(version),
    )


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
        "input_severity": decision.input_severity,
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
        "performance": None if decision.performance is None else decision.performance.to_dict(),
        "statistics_uri": statistics["statistics_uri"],
    }
