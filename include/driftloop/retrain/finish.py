"""The end of a ``retrain_detector`` run: the drift event it was for, retention of old model
versions, or the record of a failed run.

:func:`resolve_drift_event` closes the drift event a promoted run was for as ``RESOLVED``,
naming the new champion; :func:`apply_retention` archives registered versions beyond the
policy's ``keep_last`` (never one holding an alias); :func:`record_failure` marks the drift
event a failed run was for as ``RETRAINING_FAILED`` (still open: the drift is not fixed) and
writes the failed tasks to the ledger. The champion is untouched by a failure because an
alias only moves after a passed gate; a rejection leaves the event open (ACTIONED).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from driftloop.config.settings import Settings
from driftloop.retrain.records import ledger

log = logging.getLogger(__name__)


def resolve_drift_event(settings: Settings, run_id: str) -> dict[str, Any] | None:
    """After ``promote``: the drift event this run retrained for is RESOLVED by the version it
    made champion, and the ledger says so. Read from the ledger only: the ``promote``
    completion row (what moved where) and the ``register`` row (the plan's drift event).

    None — nothing to close: no drift event, nothing promoted (a rejection leaves the event
    open), or the candidate became ``challenger`` (the event stays ACTIONED until that
    version is champion; the champion is what drift is measured against). An event closed
    meanwhile (accepted, ignored) stays as it is."""
    from driftloop.drift import history
    from driftloop.drift.events import close_key
    from driftloop.retrain.decision import step_key

    book = ledger(settings)
    registered = book.get(step_key(run_id, "register"))
    event_id = (registered.payload["plan"]["trigger"] if registered else {}).get("drift_event_id")
    promoted = book.get(step_key(run_id, "promote"))
    if not event_id or promoted is None:
        return None
    version = (promoted.payload.get("aliases") or {}).get("after", {}).get("champion")
    if promoted.payload.get("target") != "champion" or not version:
        return None
    engine = history.engine_for(settings.database_url)
    note = f"v{version} promoted champion by retrain_detector run {run_id}"
    try:
        event = history.close_event(
            engine,
            int(event_id),
            "RESOLVED",
            actor=f"airflow:{run_id}",
            note=note,
            resolved_model_version=str(version),
        )
    except history.EventClosedError as err:
        log.warning("promotion of v%s leaves drift event %s as it is: %s", version, event_id, err)
        return None
    entry = book.append(
        "drift_event",
        actor=event["actor"],
        subject=f"drift_event:{event_id}",
        payload={"status": "RESOLVED", "model_version": str(version), "note": event["note"]},
        idempotency_key=close_key(int(event_id)),
    )
    return {"drift_event_id": int(event_id), **entry.payload}


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
        # only an open event: a run that promoted and then failed in retention resolved it
        history.set_event_status(
            history.engine_for(settings.database_url),
            int(event_id),
            "RETRAINING_FAILED",
            actor=f"airflow:{run_id}",
            note=f"failed tasks: {', '.join(failed_tasks)}",
            only_from=history.OPEN_EVENT_STATUSES,
        )
    ledger(settings).append(
        "training_run",
        actor=f"airflow:{run_id}",
        subject=f"drift_event:{event_id}" if event_id else f"model:{settings.registered_model}",
        payload={"status": "failed", "failed_tasks": failed_tasks},
        idempotency_key=f"retrain_detector/{run_id}/failure",
    )
    return {"drift_event_id": event_id, "failed_tasks": failed_tasks}
