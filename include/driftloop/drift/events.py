"""After the verdict: the branch to take, the warning, the drift event and its answer.

A drift event is open (NEEDS_REVIEW, ACTIONED, RETRAINING_FAILED) until one of three things
closes it (see :mod:`driftloop.drift.history` and ``docs/architecture.md``):

* **RESOLVED** — a retraining for it was promoted champion
  (:func:`driftloop.retrain.finish.resolve_drift_event`); the new champion's reference takes
  over. A rejected or failed retraining leaves it open.
* **ACCEPTED** — an operator accepted the drift as the new normal, on the approval form or
  with the ``drift_accept_new_normal`` DAG (:func:`accept_new_normal`): the accepted window
  becomes the baseline.
* **IGNORED** — an operator said it is not drift worth acting on (the form's *Ignore*): the
  data is fine, so the freeze ends and the plain sliding reference applies again; a drift
  that persists is asked about again.

While an event measured against a sliding reference is open, later checks use the reference
of the check that opened it (:func:`driftloop.drift.run.choose_reference`) and their critical
verdicts belong to it: one drift, one approval, one retraining.
"""

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


def event_kind(decision: Mapping[str, Any]) -> str:
    """The kind of the drift event a critical check opens: ``performance`` when the champion's
    accuracy alone alerts (no input drift), else ``input`` (the performance verdict is in the
    decision either way)."""
    input_severity = decision.get("input_severity", decision["severity"])
    performance = decision.get("performance") or {}
    if input_severity == "none" and performance.get("level", "none") != "none":
        return "performance"
    return "input"


def performance_line(decision: Mapping[str, Any]) -> str | None:
    """The performance drop in words (metric, drop, value vs baseline, camera, days), None
    when performance does not alert."""
    p = decision.get("performance") or {}
    if p.get("level", "none") == "none":
        return None
    cameras = [c for c in p.get("breaching_cameras") or [] if c != "*"]
    where = f"camera(s) {', '.join(cameras)}" if cameras else "all cameras"
    return (
        f"{p['metric']} down {p['drop']:.3f} to {p['measured']:.3f} (champion "
        f"{p['baseline']:.3f}), {where}, days {', '.join(p['breaching_days'])} ({p['level']})"
    )


def warning_summary(decision: Mapping[str, Any], report_url: str) -> dict[str, Any]:
    """The warning an operator reads: the window, each alerting feature with its effect, the
    performance drop (camera, days) when it alerts, and the report's browser link
    (``report_url``, from the MLflow run)."""
    features = [f for f in decision["features"] if f["alert_level"] != "none"]
    parts = [
        f"{f['feature']} {f['method']}={f['effect']:.3f} ({f['alert_level']})" for f in features
    ]
    if line := performance_line(decision):
        parts.append(line)
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
    from a window that overlaps this one, is open (waits for an answer, for its retraining,
    or its retraining failed), the check is attached to that event (``already_open``) instead
    of opening another one — one drift, one approval request, one retraining. A check against
    a reference frozen by an event belongs to that event, however long the drift lasts; a late
    check of an older window belongs to the event a later window opened
    (:func:`driftloop.drift.event_lookup.ongoing_event`)."""
    import hashlib
    from datetime import timedelta

    from driftloop.drift import event_lookup, history
    from driftloop.retrain.records import ledger

    engine = history.engine_for(settings.database_url)
    reference = decision["reference"]
    if history.event_of_run(engine, run_id) is None and reference.get("rule") == "frozen":
        # measured against the baseline event N froze: the drift is N's, whatever its age —
        # even if N was closed while this check ran (its verdict is about the old baseline)
        event_id = int(reference["event_id"])
        status = (history.get_event(engine, event_id) or {}).get("status")
        log.warning(
            "critical drift in the window ending %s, against the reference frozen by drift "
            "event %d (%s): no new event, approval or retraining",
            decision["window"]["end"],
            event_id,
            status,
        )
        return {"event_id": event_id, "already_open": True, "decision": dict(decision)}
    if history.event_of_run(engine, run_id) is None:
        window_end = parse_day(decision["window"]["end"])
        length = int(decision["policy"]["windows"]["length_days"])
        ongoing = event_lookup.ongoing_event(
            engine,
            reference["kind"],
            reference["reference_id"],
            window_end=window_end,
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
    kind = event_kind(decision)
    event_id = history.open_event(
        engine, run_id, decision["severity"], decision["drifted_features"], kind=kind
    )
    ledger(settings).append(
        "drift_event",
        actor="drift_monitor",
        subject=f"drift_event:{event_id}",
        payload={
            "status": "NEEDS_REVIEW",
            "kind": kind,
            "severity": decision["severity"],
            "drifted_features": decision["drifted_features"],
            **({"performance": line} if (line := performance_line(decision)) else {}),
            "window": decision["window"],
            "policy_version": decision["policy_version"],
            "decision_uri": decision["decision_uri"],
        },
        input_hashes={"decision": hashlib.sha256(dumps_canonical(decision)).hexdigest()},
        idempotency_key=f"drift_monitor/{run_id}/open_drift_event",
    )
    return {"event_id": event_id, "already_open": False, "decision": dict(decision)}


#: the drift approval form's options and the event status each one leads to
RETRAIN_OPTION, IGNORE_OPTION, ACCEPT_OPTION = "Retrain", "Ignore", "Accept as new normal"
ANSWER_STATUS = {RETRAIN_OPTION: "ACTIONED", IGNORE_OPTION: "IGNORED", ACCEPT_OPTION: "ACCEPTED"}


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
    what = "accuracy drop" if event.get("kind") == "performance" else "drift"
    subject = (
        f"{event['severity'].capitalize()} {what} in the window ending {event['window']['end']}: "
        "retrain the detector?"
    )
    performance = f"Performance: **{event['performance']}**\n\n" if event.get("performance") else ""
    body = (
        f"Drifted features: **{features}**\n\n{performance}"
        f"Policy version `{event['policy_version']}`. {report}\n\n"
        "*Retrain* emits the drift-confirmed event (retraining starts). *Ignore*: not drift "
        "worth acting on — the event closes and the reference slides on (a drift that "
        "persists is asked about again). *Accept as new normal*: the event closes and this "
        "window becomes the reference."
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
    """Act on the operator's answer (from :func:`recorded_answer`), or on the policy when none
    was asked: ACTIONED (retraining starts) or IGNORED (the event closes). An event closed
    another way meanwhile (accepted with ``drift_accept_new_normal``, resolved) is not
    reopened: :class:`~driftloop.drift.history.EventClosedError`."""
    from driftloop.drift import history

    actor, note = _describe_answer(answer)
    engine = history.engine_for(settings.database_url)
    if status == "IGNORED":
        history.close_event(engine, event_id, status, actor=actor, note=note)
    elif status == "ACTIONED":
        changed = history.set_event_status(
            engine, event_id, status, actor=actor, note=note, only_from=OPEN_FOR_RETRAINING
        )
        if not changed:
            event = history.get_event(engine, event_id) or {}
            raise history.EventClosedError(
                f"drift event {event_id} is {event.get('status')} (by {event.get('actor')}): "
                "no retraining for it; trigger retrain_detector by hand if one is still wanted"
            )
    else:
        raise ValueError(f"an answer leads to ACTIONED or IGNORED here, not {status!r}")
    _append_answer(settings, event_id, status, answer)
    return {"event_id": event_id, "status": status, "actor": actor, "note": note}


#: an answer "Retrain" (or the policy) may action an event in these statuses (a re-run of the
#: task finds it ACTIONED already)
OPEN_FOR_RETRAINING = ("NEEDS_REVIEW", "ACTIONED", "RETRAINING_FAILED")


def close_key(event_id: int) -> str:
    """The ledger idempotency key of the row that closes drift event ``event_id``."""
    return f"drift_event/{event_id}/close"


def accept_new_normal(
    s3, settings: Settings, event_id: int, *, actor: str, note: str, answer=None
) -> dict[str, Any]:
    """Close drift event ``event_id`` as ACCEPTED: the drift is the new normal.

    The accepted window is the current window of the newest check measured against the
    event's baseline — the window the operator last saw. Without a champion it stands in for
    the sliding reference until the sliding window starts on or after its first day; with a
    champion it is recorded on the champion's model version (tags
    ``drift_reference_accepted_window`` / ``_event``) and replaces its training reference
    while that version is champion. The next check lists, validates and sketches the
    accepted days like reference days. The close is written to the audit ledger.

    Idempotent (a re-run finds it ACCEPTED and completes the ledger row); an event closed
    another way raises EventClosedError, an unknown event LookupError, an event with no
    recorded check (opened by hand) ValueError."""
    import hashlib

    from driftloop.contracts.storage import dumps_canonical
    from driftloop.drift import baselines, history, tracking
    from driftloop.retrain.records import ledger

    engine = history.engine_for(settings.database_url)
    event = history.get_event(engine, event_id)
    if event is None:
        raise LookupError(f"no drift event with id {event_id}")
    if event["status"] != "ACCEPTED":
        if event["status"] not in history.OPEN_EVENT_STATUSES:
            raise history.EventClosedError(
                f"drift event {event_id} is already closed as {event['status']} (by "
                f"{event['actor']}): nothing to accept"
            )
        check = baselines.latest_check_of_baseline(engine, event_id)
        if check is None:
            raise ValueError(
                f"drift event {event_id} has no recorded drift check (opened by hand): there "
                "is no window to accept as the new normal"
            )
        window = f"{check['window_start'].isoformat()}..{check['window_end'].isoformat()}"
        if check["reference_kind"] == "champion":
            version = champion_version_of_check(s3, settings, check)
            tracking.record_accepted_window(
                settings.mlflow_tracking_uri, settings.registered_model, version, window, event_id
            )
            note = f"{note} [accepted window {window} recorded on champion v{version}]"
        event = history.close_event(
            engine,
            event_id,
            "ACCEPTED",
            actor=actor,
            note=note,
            accepted=history.AcceptedWindow(
                check["window_start"], check["window_end"], check["run_id"]
            ),
        )
    payload = {
        "status": "ACCEPTED",
        "note": event["note"],
        "accepted_window": {
            "start": event["accepted_window_start"].isoformat(),
            "end": event["accepted_window_end"].isoformat(),
        },
        "accepted_check_run_id": event["accepted_check_run_id"],
        "answer": dict(answer) if answer else None,
    }
    entry = ledger(settings).append(
        "drift_event",
        actor=event["actor"],
        subject=f"drift_event:{event_id}",
        payload=payload,
        input_hashes={"event": hashlib.sha256(dumps_canonical(payload)).hexdigest()},
        idempotency_key=close_key(event_id),
    )
    return {"event_id": event_id, **entry.payload, "actor": entry.actor, "ledger_id": entry.id}


def champion_version_of_check(s3, settings: Settings, check: Mapping[str, Any]) -> str:
    """The champion version whose reference ``check`` was measured against, from its
    decision document (``reports/drift/<run>/decision.json``)."""
    from driftloop.contracts.storage import get_json
    from driftloop.drift.run import report_prefix

    key = report_prefix(check["run_id"]) + "decision.json"
    decision = get_json(s3, settings.bucket, key)
    version = (decision.get("reference") or {}).get("model_version")
    if not version:
        raise ValueError(f"s3://{settings.bucket}/{key} names no champion model version")
    return str(version)


def accept_from_answer(s3, settings: Settings, event_id: int) -> dict[str, Any]:
    """The approval form's *Accept as new normal*: :func:`accept_new_normal` with the
    operator's recorded answer (from the ledger, never XCom)."""
    answer = recorded_answer(settings, event_id)
    if not answer or answer.get("chosen_options") != [ACCEPT_OPTION]:
        raise ValueError(
            f"drift event {event_id}: the recorded answer is "
            f"{(answer or {}).get('chosen_options')}, not [{ACCEPT_OPTION!r}]"
        )
    actor, note = _describe_answer(answer)
    return accept_new_normal(s3, settings, event_id, actor=actor, note=note, answer=answer)
