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

    from driftloop.audit.ledger import Ledger
    from driftloop.drift import history

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
    Ledger(settings.database_url).append(
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


def record_event_answer(
    settings: Settings, event_id: int, status: str, answer: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Close a drift event with the operator's answer, or as decided by policy when none was asked."""
    from driftloop.drift import history

    if answer:
        user = answer.get("responded_by_user") or {}
        if isinstance(user, Mapping):
            actor = str(user.get("name") or user.get("id") or "unknown")
        else:
            actor = str(user)
        note = f"answered {answer.get('chosen_options')} at {answer.get('responded_at')}" + (
            " (timed out: default)" if answer.get("timedout") else ""
        )
    else:
        actor, note = "policy:auto", "approval not required by policy"
    from driftloop.audit.ledger import Ledger

    engine = history.engine_for(settings.database_url)
    history.set_event_status(engine, event_id, status, actor=actor, note=note)
    Ledger(settings.database_url).append(
        "approval",
        actor=actor,
        subject=f"drift_event:{event_id}",
        payload={"status": status, "note": note, "answer": dict(answer) if answer else None},
        idempotency_key=f"drift_event/{event_id}/answer",
    )
    return {"event_id": event_id, "status": status, "actor": actor, "note": note}
