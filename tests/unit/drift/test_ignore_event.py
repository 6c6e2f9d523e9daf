"""driftloop.drift.ignore.ignore_event (the drift_ignore_event DAG's task) on SQLite: an open
event closes as IGNORED with who and why and one ledger row; a re-run is harmless; a closed,
unknown or note-less event is refused, named."""

from __future__ import annotations

import pytest

from driftloop.config.settings import Settings
from driftloop.drift import history
from driftloop.drift.events import close_key
from driftloop.drift.ignore import EventNotOpenError, ignore_event
from driftloop.retrain.records import ledger


@pytest.fixture
def settings(tmp_path):
    return Settings(database_url=f"sqlite:///{tmp_path / 'driftloop.db'}")


@pytest.fixture
def engine(settings):
    return history.engine_for(settings.database_url)


@pytest.mark.parametrize("status", history.OPEN_EVENT_STATUSES)
def test_an_open_event_is_ignored_and_recorded(settings, engine, status):
    event_id = history.open_event(engine, "scheduled__1", "critical", ["brightness"])
    history.set_event_status(engine, event_id, status, actor="drift_monitor")
    out = ignore_event(settings, event_id, actor="alice", note="the lens was cleaned")
    assert (out["event_id"], out["status"], out["actor"]) == (event_id, "IGNORED", "alice")
    stored = history.get_event(engine, event_id)
    assert (stored["status"], stored["note"]) == ("IGNORED", "the lens was cleaned")
    assert stored["closed_at"] is not None
    row = ledger(settings).get(close_key(event_id))
    assert row.kind == "drift_event"
    assert row.actor == "alice"
    assert row.subject == f"drift_event:{event_id}"
    assert row.payload == {"status": "IGNORED", "note": "the lens was cleaned", "kind": "input"}
    assert out["ledger_id"] == row.id
    # a re-run of the same trigger: the same event, the same ledger row
    again = ignore_event(settings, event_id, actor="alice", note="the lens was cleaned")
    assert again["ledger_id"] == row.id
    assert again["closed_at"] == out["closed_at"]


def test_a_closed_event_is_refused_and_named(settings, engine):
    event_id = history.open_event(engine, "scheduled__2", "critical", ["contrast"])
    ignore_event(settings, event_id, actor="alice", note="not a drift")
    with pytest.raises(EventNotOpenError, match=rf"drift event {event_id} is already closed as "
                       r"IGNORED \(by alice"):  # fmt: skip
        ignore_event(settings, event_id, actor="bob", note="me too")
    accepted = history.open_event(engine, "scheduled__3", "critical", ["contrast"])
    history.close_event(engine, accepted, "RESOLVED", actor="retrain", note=None,
                        resolved_model_version="4")  # fmt: skip
    with pytest.raises(EventNotOpenError, match="closed as RESOLVED"):
        ignore_event(settings, accepted, actor="bob", note="too late")
    assert history.get_event(engine, accepted)["status"] == "RESOLVED"
    assert ledger(settings).get(close_key(accepted)) is None


def test_unknown_event_and_empty_note(settings, engine):
    with pytest.raises(LookupError, match="no drift event with id 99"):
        ignore_event(settings, 99, actor="alice", note="whatever")
    event_id = history.open_event(engine, "scheduled__4", "critical", ["x"])
    with pytest.raises(ValueError, match="note"):
        ignore_event(settings, event_id, actor="alice", note="  ")
    assert history.get_event(engine, event_id)["status"] == "NEEDS_REVIEW"
