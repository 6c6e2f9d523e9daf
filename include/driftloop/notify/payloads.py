"""What a message says: a drift check's warning or critical drift from its decision, and a
promotion, rejection or rollback as the audit ledger recorded it.

The success callbacks of ``promote``, ``reject`` and ``rollback`` describe what the ledger
recorded for their DAG run (the completion row of the alias move, the gate's decision with its
checks, the rejection's reasons), not the task's XCom, which users can edit: the message says
what the audit trail says. Each function returns the payload of
:func:`driftloop.notify.messages.build_message`; a run without the row it needs raises
``LookupError`` (the notifier records that as a failed notification).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftloop.config.settings import Settings


def drift_payload(
    decision: Mapping[str, Any], report_url: str | None, event_id: Any = None
) -> dict[str, Any]:
    """The drift warning (``event_id`` None) or critical drift (the drift event it opened)
    of a drift check's ``decision.json``: window, alerting features with their effects,
    reference, approval mode and the report's link."""
    payload = {
        "window": dict(decision["window"]),
        "features": [f for f in decision["features"] if f.get("alert_level") != "none"],
        "drifted_features": list(decision.get("drifted_features") or []),
        "reference": decision.get("reference"),
        "model_version": (decision.get("reference") or {}).get("model_version"),
        "report_url": report_url,
        "performance": decision.get("performance"),  # the champion's accuracy verdict
    }
    if event_id is not None:
        payload["drift_event_id"] = event_id
        payload["approval"] = (decision.get("policy") or {}).get("approval")
    return payload


def _book(settings: Settings):
    from driftloop.retrain.records import ledger

    return ledger(settings)


def _step(run_id: str, step: str) -> str:
    from driftloop.retrain.decision import step_key

    return step_key(run_id, step)


def _row(book, key: str):
    row = book.get(key)
    if row is None:
        raise LookupError(f"no ledger row {key}: nothing recorded to notify about")
    return row


def _gate_checks(book, run_id: str) -> list[dict[str, Any]]:
    gate = book.get(_step(run_id, "gate"))
    return list((gate.payload if gate else {}).get("checks") or [])


def _drift_event_of_run(book, run_id: str) -> Any:
    """The drift event a retrain run was for (its ``register`` row's plan), None: none."""
    registered = book.get(_step(run_id, "register"))
    return (
        ((registered.payload.get("plan") or {}) if registered else {})
        .get("trigger", {})
        .get("drift_event_id")
    )


def promotion(settings: Settings, run_id: str) -> dict[str, Any]:
    """The promotion ``retrain_detector`` run ``run_id`` completed: the version and the alias
    it now holds, the champion it replaced, who approved, the gate's checks."""
    book = _book(settings)
    done = _row(book, _step(run_id, "promote"))
    target = done.payload.get("target") or "champion"
    aliases = done.payload.get("aliases") or {}
    after, before = aliases.get("after") or {}, aliases.get("before") or {}
    version = after.get(target) or done.subject.rsplit("/v", 1)[-1]
    return {
        "version": str(version),
        "target": target,
        "previous_version": before.get("champion"),
        "actor": done.actor,
        "checks": _gate_checks(book, run_id),
        "drift_event_id": _drift_event_of_run(book, run_id),
    }


def rejection(settings: Settings, run_id: str) -> dict[str, Any]:
    """The rejection ``retrain_detector`` run ``run_id`` recorded: the candidate, the reasons,
    the failed checks and the champion that stays."""
    book = _book(settings)
    done = _row(book, _step(run_id, "reject"))
    gate = _row(book, _step(run_id, "gate")).payload
    untouched = done.payload.get("champion_untouched") or {}
    return {
        "version": str(gate["candidate_version"]),
        "reasons": list(done.payload.get("reasons") or []),
        "champion_version": untouched.get("champion") or gate.get("champion_version"),
        "actor": done.actor,
        "checks": list(gate.get("checks") or []),
        "drift_event_id": _drift_event_of_run(book, run_id),
    }


def rollback(settings: Settings, run_id: str) -> dict[str, Any]:
    """The rollback ``rollback_detector`` run ``run_id`` completed: who asked, why, which
    version was withdrawn and which restored."""
    book = _book(settings)
    done = _row(book, f"rollback_detector/{run_id}/rollback")
    return {
        "withdrawn": str(done.payload["withdrawn"]),
        "restored": str(done.payload["restored"]),
        "reason": done.payload.get("reason"),
        "mode": "manual",
        "actor": done.actor,
    }


#: the kinds a success callback describes from the ledger, and how
FROM_LEDGER = {"promotion": promotion, "rejection": rejection, "rollback": rollback}
