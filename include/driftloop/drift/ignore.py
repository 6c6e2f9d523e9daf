"""An operator ignores a drift event by hand (the drift page's *Ignore*, the
``drift_ignore_event`` DAG): the event closes as IGNORED, with who and why, in the ledger.

IGNORED means "not drift worth acting on": the data is fine, so a reference frozen by the
event is released and the plain sliding reference applies again; a drift that persists opens
a new event (see :mod:`driftloop.drift.events`). The close is
:func:`driftloop.drift.history.close_event` (one conditional UPDATE: an event closed another
way meanwhile is never overwritten) and one ``drift_event`` ledger row per event
(:func:`driftloop.drift.events.close_key`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from driftloop.config.settings import Settings


class EventNotOpenError(ValueError):
    """The event is closed already (resolved, accepted, or ignored by someone else)."""


def ignore_event(settings: Settings, event_id: int, *, actor: str, note: str) -> dict[str, Any]:
    """Close drift event ``event_id`` as IGNORED by ``actor`` with ``note``; returns the event
    as stored with its ledger row id.

    A re-run of the same trigger (same actor and note) finds it IGNORED and completes the
    ledger row. An event already closed otherwise — resolved, accepted, or ignored by another
    request — raises :class:`EventNotOpenError` naming its status, who and when; an unknown
    event LookupError; a note shorter than 3 characters ValueError."""
    from driftloop.contracts.storage import dumps_canonical
    from driftloop.drift import history
    from driftloop.drift.events import close_key
    from driftloop.retrain.records import ledger

    if len((note or "").strip()) < 3:
        raise ValueError("note: say why the drift is ignored (3 characters at least)")
    engine = history.engine_for(settings.database_url)
    event = history.get_event(engine, event_id)
    if event is None:
        raise LookupError(f"no drift event with id {event_id}")
    rerun = event["status"] == "IGNORED" and (event["actor"], event["note"]) == (actor, note)
    if event["status"] not in history.OPEN_EVENT_STATUSES and not rerun:
        raise EventNotOpenError(
            f"drift event {event_id} is already closed as {event['status']} (by "
            f"{event['actor']} at {event['closed_at'] or event['updated_at']}): nothing to ignore"
        )
    try:
        event = history.close_event(engine, event_id, "IGNORED", actor=actor, note=note)
    except history.EventClosedError as err:  # closed another way between the read and here
        raise EventNotOpenError(str(err)) from err
    payload = {"status": "IGNORED", "note": note, "kind": event["kind"]}
    entry = ledger(settings).append(
        "drift_event",
        actor=actor,
        subject=f"drift_event:{event_id}",
        payload=payload,
        input_hashes={"event": hashlib.sha256(dumps_canonical(payload)).hexdigest()},
        idempotency_key=close_key(event_id),
    )
    return {
        "event_id": event_id,
        "status": event["status"],
        "actor": event["actor"],
        "note": event["note"],
        "closed_at": event["closed_at"].isoformat(),
        "ledger_id": entry.id,
    }
