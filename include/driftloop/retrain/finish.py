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
    from driftloop.drift import tracking
    from driftloop.promotion import registry
    from driftloop.promotion.retention import plan_retention

    client = tracking.client(settings.mlflow_tracking_uri)
    plan = plan_retention(
        registry.version_infos(client, settings.registered_model),
        keep_last=policy.retention_keep_last,
    )
    archived = registry.apply_retention(
        client, settings.registered_model, plan, mode=policy.retention_archive
    )
    if archived:
        ledger(settings).append(
            "retention",
            actor="policy:retention",
            subject=f"model:{settings.registered_model}",
            payload={
                "archived": archived,
                "mode": policy.retention_archive,
                "keep_last": policy.retention_keep_last,
            },
            idempotency_key=f"retrain_detector/{run_id}/retention",
        )
    return {"archived": archived, "kept": sorted(int(v) for v in plan.keep)}


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
