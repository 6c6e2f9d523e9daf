"""The answer to a drift event comes from Airflow's HITL record (through the approval task's
hook) and is read back from the ledger — never from the XCom users can edit."""

from __future__ import annotations

import pytest

from driftloop.config.settings import Settings
from driftloop.drift import history
from driftloop.drift.events import record_drift_answer, record_event_answer, recorded_answer


@pytest.fixture
def settings(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'driftloop.db'}"
    monkeypatch.setenv("DRIFTLOOP_DATABASE_URL", url)
    return Settings.from_env()


def test_the_operators_answer_is_recorded_and_read_back(settings):
    engine = history.engine_for(settings.database_url)
    event_id = history.open_event(engine, "drift_monitor/run-1", "critical", ["brightness"])
    answer = {
        "chosen_options": ["Retrain"],
        "responded_by_user": {"id": "7", "name": "oncall-alice"},
        "responded_at": "2026-11-29T10:00:00+00:00",
    }
    row = record_drift_answer(answer, run_id="drift_monitor/run-1")
    assert row["status"] == "ACTIONED"
    assert recorded_answer(settings, event_id) == answer
    closed = record_event_answer(
        settings, event_id, "ACTIONED", recorded_answer(settings, event_id)
    )
    assert closed["actor"] == "oncall-alice"
    assert history.get_event(engine, event_id)["actor"] == "oncall-alice"


def test_no_question_asked_means_the_policy_decided(settings):
    engine = history.engine_for(settings.database_url)
    event_id = history.open_event(engine, "drift_monitor/run-2", "critical", ["contrast"])
    assert recorded_answer(settings, event_id) is None
    assert record_event_answer(settings, event_id, "ACTIONED", None)["actor"] == "policy:auto"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"chosen_options": ["Promote"], "responded_by_user": {"name": "x"}}, "unexpected answer"),
        ({"chosen_options": ["Retrain"]}, "names no responder"),
    ],
)
def test_answers_that_are_no_answer_are_refused(settings, answer, message):
    engine = history.engine_for(settings.database_url)
    history.open_event(engine, "drift_monitor/run-3", "critical", ["contrast"])
    with pytest.raises(Exception, match=message):
        record_drift_answer(answer, run_id="drift_monitor/run-3")
    with pytest.raises(LookupError, match="no drift event"):
        record_drift_answer(answer, run_id="drift_monitor/never-opened")
