"""The end of a ``retrain_detector`` run: retention of old model versions, or the record of a
failed run.

:func:`apply_retention` archives registered versions beyond the policy's ``keep_last`` (never
one holding an alias); :func:`record_failure` marks the drift event a failed run was for as
``RETRAINING_FAILED`` and writes the failed tasks to the ledger. The champion is untouched by a
failure because an alias only moves after a passed gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftloop.config.settings import Settings
from driftloop.retrain.records import ledger


def apply_retention(settings: Settings, policy, run_id: str) -> dict[str, Any]:
    """Archive the versions the retention plan names, as a guarded change: the plan is
    written to the ledger (intent) before anything is tagged or deleted, the protected set is
    read again right before each version is archived (an unreadable registry fails the task;
    it never counts as "no aliases"), and the completion row says what was archived."""
    from driftloop.drift import tracking
    from driftloop.promotion import registry
    from driftloop.promotion.retention import plan_retention

    client = tracking.client(settings.mlflow_tracking_uri)
    plan = plan_retention(
        registry.version_infos(client, settings.registered_model),
        keep_last=policy.retention_keep_last,
    )
    result = {"archived": [], "kept": sorted(int(v) for v in plan.keep)}
    if plan.empty:
        return result
    book = ledger(settings)
    key = f"retrain_detector/{run_id}/retention"
    subject = f"model:{settings.registered_model}"
    book.append(
        "retention_intent",
        actor="policy:retention",
        subject=subject,
        payload={"plan": plan.to_dict(), "mode": policy.retention_archive},
        idempotency_key=f"{key}/intent",
    )
    archived = registry.apply_retention(
        client, settings.registered_model, plan, mode=policy.retention_archive
    )
    book.append(
        "retention",
        actor="policy:retention",
        subject=subject,
        payload={
            "archived": archived,
            "mode": policy.retention_archive,
            "keep_last": policy.retention_keep_last,
        },
        idempotency_key=key,
    )
    return {**result, "archived": archived}


def record_failure(
    settings: Settings, plan: Mapping[str, Any] | None, run_id: str, failed_tasks: list[str]
) -> dict[str, Any]:
    """A failed retraining: the drift event says so and the ledger records it; the champion
    is untouched because promotion only ever happens after a passed gate."""
    from driftloop.drift import history

    event_id = (plan or {}).get("trigger", {}).get("drift_event_id")
    if event_id:
        history.set_event_status(
            history.engine_for(settings.database_url),
            int(event_id),
            "RETRAINING_FAILED",
            actor=f"airflow:{run_id}",
            note=f"failed tasks: {', '.join(failed_tasks)}",
        )
    ledger(settings).append(
        "training_run",
        actor=f"airflow:{run_id}",
        subject=f"drift_event:{event_id}" if event_id else f"model:{settings.registered_model}",
        payload={"status": "failed", "failed_tasks": failed_tasks},
        idempotency_key=f"retrain_detector/{run_id}/failure",
    )
    return {"drift_event_id": event_id, "failed_tasks": failed_tasks}
