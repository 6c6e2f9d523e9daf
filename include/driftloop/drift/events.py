"""After the verdict: the branch to take, the warning, the drift event and its answer."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from driftloop.config.settings import Settings
from driftloop.contracts.storage import dumps_canonical
from driftloop.contracts.windows import parse_day

log = logging.getLogger(__name__)


ROUTES = {"none": "no_drift", "warn": "notify_warning", "critical": "open_drift_event"}


def route_for_severity(severity: str) -> str:
    try:
        return ROUTES[severity]
    except KeyError:
        raise ValueError(
            f"unknown severity {severity!r}; expected one of {sorted(ROUTES)}"
        ) from None


def warning_summary(decision: Mapping[str, Any], report_url: str) -> dict[str, Any]:
    """The warning an operator reads: the window, each alerting feature with its effect, and
    the report's browser link (``report_url``, from the MLflow run)."""
    features = [f for f in decision["features"] if f["alert_level"] != "none"]
    parts = [
        f"{f['feature']} {f['method']}={f['effect']:.3f} ({f['alert_level']})" for f in features
    ]
    return {
        "message": f"window {decision['window']['start']}..{decision['window']['end']}: "
        + ", ".join(parts)
        + f"; drift report: {report_url}",
        "features": [f["feature"] for f in features],
        "report_url": report_url,
    }


#: the branches of the approval gate, by what the drift event and the policy say
APPROVAL_ROUTES = {
    "already_open": "drift_event_already_open",
    "required": "await_approval",
    "none": "approved_by_policy",
}


def approval_route(event: Mapping[str, Any]) -> str:
    """The task after a critical check's drift event: nothing new when the drift belongs to an
    event still open, the operator's approval when the policy requires it, else confirm."""
    if event.get("already_open"):
        return APPROVAL_ROUTES["already_open"]
    approval = event["decision"]["policy"]["approval"]
    try:
        return APPROVAL_ROUTES[approval]
    except KeyError:
        raise ValueError(
            f"unknown approval mode {approval!r} in the decision's policy; "
            f"expected one of {sorted(set(APPROVAL_ROUTES) - {'already_open'})}"
        ) from None


def open_drift_event(
    settings: Settings, decision: Mapping[str, Any], run_id: str
) -> dict[str, Any]:
    """Open the drift event of a critical check (idempotent per DAG run) and put it in the ledger.

    A sustained drift is critical day after day: while an event against the same baseline,
    from a window that overlaps this one, still waits for an answer or for its retraining, the
    check is attached to that event (``already_open``) instead of opening another one — one
    drift, one approval request, one retraining."""
    import hashlib
    from datetime import timedelta

    from driftloop.drift import history
    from driftloop.retrain.records import ledger

    engine = history.engine_for(settings.database_url)
    if history.event_of_run(engine, run_id) is None:
        window_end = parse_day(decision["window"]["end"])
        length = int(decision["policy"]["windows"]["length_days"])
        ongoing = history.ongoing_event(
            engine,
            decision["reference"]["kind"],
            decision["reference"]["reference_id"],
            window_end_since=window_end - timedelta(days=length - 1),
            exclude_run_id=run_id,
        )
        if ongoing is not None:
            log.warning(
                "critical drift in the window ending %s belongs to the ongoing drift event %d: "
                "no new event, approval or retraining",
                window_end,
                ongoing,
            )
            return {"event_id": ongoing, "already_open": True, "decision": dict(decision)}
    event_id = history.open_event(
        engine, run_id, decision["severity"], decision["drifted_features"]
    )
    ledger(settings).append(
        "drift_event",
        actor="drift_monitor",
        subject=f"drift_event:{event_id}",
        payload={
            "status": "NEEDS_REVIEW",
            "severity": decision["severity"],
            "drifted_features": decision["drifted_features"],
            "window": decision["window"],
            "policy_version": decision["policy_version"],
            "decision_uri": decision["decision_uri"],
        },
        input_hashes={"decision": hashlib.sha256(dumps_canonical(decision)).hexdigest()},
        idempotency_key=f"drift_monitor/{run_id}/open_drift_event",
    )
    return {"event_id": event_id, "already_open": False, "decision": dict(decision)}


#: the drift approval form's options and the event status each one leads to
ANSWER_STATUS = {"Retrain": "ACTIONED", "Ignore": "IGNORED"}


def answer_key(event_id: int) -> str:
    """The ledger idempotency key of the answer to a drift event."""
    return f"drift_event/{event_id}/answer"


def _describe_answer(answer: Mapping[str, Any] | None) -> tuple[str, str]:
    """(actor, note) of an answer; the policy when no one was asked."""
    if not answer:
        return "policy:auto", "approval not required by policy"
    from driftloop.retrain.decision import approval_actor

    note = f"answered {answer.get('chosen_options')} at {answer.get('responded_at')}"
    return approval_actor(answer), note


def _append_answer(settings: Settings, event_id: int, status: str, answer) -> Any:
    from driftloop.retrain.records import ledger

    actor, note = _describe_answer(answer)
    return ledger(settings).append(
        "approval",
        actor=actor,
        subject=f"drift_event:{event_id}",
        payload={"status": status, "note": note, "answer": dict(answer) if answer else None},
        idempotency_key=answer_key(event_id),
    )


def drift_request(*, run_id: str) -> tuple[str, str]:
    """``describe_request`` hook of drift_monitor's approval task: subject and body of the
    request, worded from this run's ``drift_event`` ledger row and the drift check's MLflow
    run (the report link), not from XComs users can edit."""
    from driftloop.airflow.links import mlflow_artifact_url
    from driftloop.drift import history, tracking
    from driftloop.drift.publish import REPORT_ARTIFACT
    from driftloop.retrain.records import ledger

    settings = Settings.from_env()
    key = f"drift_monitor/{run_id}/open_drift_event"
    row = ledger(settings).get(key)
    if row is None:
        raise LookupError(f"no ledger row {key}: the approval asks about a recorded event only")
    event = row.payload
    check = history.get_check(history.engine_for(settings.database_url), run_id) or {}
    mlflow_run_id = check.get("mlflow_run_id")
    if mlflow_run_id:
        run = tracking.client(settings.mlflow_tracking_uri).get_run(mlflow_run_id)
        url = mlflow_artifact_url(
            settings.mlflow_tracking_uri, run.info.experiment_id, mlflow_run_id, REPORT_ARTIFACT
        )
        report = f"[Drift report]({url}) (Evidently, in the MLflow run of this check)."
    else:
        report = "No drift report was published for this check."
    features = ", ".join(event["drifted_features"]) or "none"
    subject = (
        f"{event['severity'].capitalize()} drift in the window ending {event['window']['end']}: "
        "retrain the detector?"
    )
    body = (
        f"Drifted features: **{features}**\n\n"
        f"Policy version `{event['policy_version']}`. {report}\n\n"
        "*Retrain* emits the drift-confirmed event (retraining starts); *Ignore* closes the event."
    )
    return subject, body


def record_drift_answer(answer: Mapping[str, Any], *, run_id: str) -> dict[str, Any]:
    """``record_answer`` hook of drift_monitor's approval task: the operator's answer, read
    from Airflow's HITL record, becomes the drift event's ledger row — what
    :func:`recorded_answer` gives the steps after it (never the XCom users can edit)."""
    from driftloop.drift import history

    settings = Settings.from_env()
    event_id = history.event_of_run(history.engine_for(settings.database_url), run_id)
    if event_id is None:
        raise LookupError(f"drift_monitor run {run_id} has no drift event to answer")
    chosen = list(answer.get("chosen_options") or [])
    if len(chosen) != 1 or chosen[0] not in ANSWER_STATUS:
        raise ValueError(f"drift event {event_id}: unexpected answer {chosen}")
    return _append_answer(settings, event_id, ANSWER_STATUS[chosen[0]], answer).payload


def recorded_answer(settings: Settings, event_id: int) -> dict[str, Any] | None:
    """The operator's answer to drift event ``event_id`` as the ledger holds it (None: no
    one was asked)."""
    from driftloop.retrain.records import ledger

    row = ledger(settings).get(answer_key(event_id))
    return None if row is None else row.payload.get("answer")


def record_event_answer(
    settings: Settings, event_id: int, status: str, answer: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Close a drift event with the operator's answer (from :func:`recorded_answer`), or as
    decided by policy when none was asked."""
    from driftloop.drift import history

    actor, note = _describe_answer(answer)
    engine = history.engine_for(settings.database_url)
    history.set_event_status(engine, event_id, status, actor=actor, note=note)
    _append_answer(settings, event_id, status, answer)
    return {"event_id": event_id, "status": status, "actor": actor, "note": note}
