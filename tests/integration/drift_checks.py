"""One daily drift check run as drift_monitor's tasks run it, without the scheduler: plan,
validation (each planned partition, then the reduce), reference, per-partition profiles,
statistics, the performance check, decide, and the drift event of a critical check.

For tests that run many daily checks, where ``dag.test()`` of drift_monitor (its report,
MLflow run and metrics push each time) would cost minutes: the functions are the ones the
DAG's tasks call (``dags/drift_monitor.py``), in the same order, with the same arguments.
"""

from __future__ import annotations

from typing import Any

from driftloop.config.drift_policy import Policy
from driftloop.config.settings import Settings


def daily_check(
    s3, settings: Settings, end_day: str, policy: Policy, *, publish: bool = False
) -> dict[str, Any]:
    """The check of the window ending ``end_day`` (run id ``scheduled__<end_day>``): the
    decision document, with the drift event (``event``: None unless critical) and, with
    ``publish``, what the DAG's ``evidently_report`` and ``log_to_mlflow`` return
    (``logged``: the MLflow run's ids and links)."""
    from driftloop.drift.events import open_drift_event
    from driftloop.drift.profiling import (
        compute_statistics,
        profile_current_partition,
        resolve_reference,
    )
    from driftloop.drift.run import plan_windows
    from driftloop.drift.validation_steps import (
        planned_validations,
        summarize_validations,
        validate_planned_partition,
    )
    from driftloop.drift.verdict import decide_and_record, measure_performance

    run_id = f"scheduled__{end_day}"
    plan = plan_windows(s3, settings, end_day, policy)
    checked = [
        validate_planned_partition(s3, settings.bucket, item) for item in planned_validations(plan)
    ]
    validated = summarize_validations(s3, plan, checked, policy)
    reference = resolve_reference(s3, settings, plan, validated, policy)
    profiles = [
        profile_current_partition(s3, settings, partition, reference, policy)
        for partition in validated["valid"]["current"]
    ]
    statistics = compute_statistics(s3, settings, reference, profiles, policy, run_id)
    performance = measure_performance(s3, settings, plan, run_id)
    decision = decide_and_record(
        s3,
        settings,
        plan=plan,
        reference=reference,
        statistics=statistics,
        validated=validated,
        policy=policy,
        run_id=run_id,
        performance_uri=performance,
    )
    if publish:
        from driftloop.drift.publish import log_to_mlflow, render_evidently

        report = render_evidently(s3, settings, reference, statistics, decision, run_id)
        decision["logged"] = log_to_mlflow(s3, settings, decision, report, run_id)
    critical = decision["severity"] == "critical"
    decision["event"] = open_drift_event(settings, decision, run_id) if critical else None
    return decision
