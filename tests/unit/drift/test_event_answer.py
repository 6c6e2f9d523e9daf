"""The answer to a drift event comes from Airflow's HITL record (through the approval task's
hook) and is read back from the ledger — never from the XCom users can edit."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from driftloop.config.settings import Settings
from driftloop.drift import baselines, history
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


# ------------------------------------------------------------------ closing a drift event


def _check(engine, run_id: str, end: str, *, rule: str = "sliding", event_id=None) -> None:
    """A recorded critical check of the window ending ``end`` against bundle ``a…a``."""
    window_end = date.fromisoformat(end)
    history.record_check(
        engine,
        history.CheckRecord(
            run_id, window_end - timedelta(days=13), window_end, "sliding", "a" * 64, "critical",
            "v1", {"brightness": "critical"}, ["brightness"], reference_rule=rule,
            reference_event_id=event_id,
        ),
    )  # fmt: skip


def _opened_by_a_check(engine, run_id: str, end: str) -> int:
    _check(engine, run_id, end)
    return history.open_event(engine, run_id, "critical", ["brightness"])


def _answer(option: str) -> dict:
    return {
        "chosen_options": [option],
        "responded_by_user": {"id": "7", "name": "oncall-alice"},
        "responded_at": "2026-11-29T10:00:00+00:00",
    }


def test_accept_as_new_normal_on_the_form_closes_the_event_with_the_window_last_checked(
    settings,
):
    from driftloop.audit.wiring import ledger_for
    from driftloop.drift.events import ACCEPT_OPTION, accept_from_answer

    engine = history.engine_for(settings.database_url)
    event_id = _opened_by_a_check(engine, "drift_monitor/run-10", "2026-03-10")
    # later checks against the reference the event froze: the newest is the window accepted
    _check(engine, "drift_monitor/run-12", "2026-03-12", rule="frozen", event_id=event_id)
    _check(engine, "drift_monitor/run-11", "2026-03-11", rule="frozen", event_id=event_id)

    approval = record_drift_answer(_answer(ACCEPT_OPTION), run_id="drift_monitor/run-10")
    assert approval["status"] == "ACCEPTED"
    closed = accept_from_answer(None, settings, event_id)  # no S3 read without a champion
    assert closed["accepted_window"] == {"start": "2026-02-27", "end": "2026-03-12"}
    assert closed["accepted_check_run_id"] == "drift_monitor/run-12"
    assert closed["actor"] == "oncall-alice"
    event = history.get_event(engine, event_id)
    assert (event["status"], event["actor"]) == ("ACCEPTED", "oncall-alice")
    assert event["closed_at"] is not None
    assert (event["accepted_window_start"], event["accepted_window_end"]) == (
        date(2026, 2, 27),
        date(2026, 3, 12),
    )
    # a re-run of the task: the same close, one ledger row
    assert accept_from_answer(None, settings, event_id)["ledger_id"] == closed["ledger_id"]
    kinds = [e.kind for e in ledger_for(settings).entries(subject=f"drift_event:{event_id}")]
    assert kinds == ["approval", "drift_event"]
    # nothing froze it any more: the accepted window stands in for the sliding reference
    assert baselines.freezing_event(engine, date(2026, 3, 13)) is None
    accepted = baselines.accepted_sliding_reference(engine, date(2026, 3, 13), date(2026, 2, 14))
    assert accepted == {"event_id": event_id, "window": closed["accepted_window"]}


def test_accepting_by_hand_refuses_what_cannot_be_accepted(settings):
    from driftloop.drift.events import accept_new_normal, record_event_answer

    engine = history.engine_for(settings.database_url)
    with pytest.raises(LookupError, match="no drift event with id 42"):
        accept_new_normal(None, settings, 42, actor="bob", note="n")
    by_hand = history.open_event(engine, "by-hand", "critical", ["brightness"])
    with pytest.raises(ValueError, match="no recorded drift check"):
        accept_new_normal(None, settings, by_hand, actor="bob", note="n")
    ignored = _opened_by_a_check(engine, "drift_monitor/run-20", "2026-04-01")
    record_event_answer(settings, ignored, "IGNORED", _answer("Ignore"))
    with pytest.raises(history.EventClosedError, match="already closed as IGNORED"):
        accept_new_normal(None, settings, ignored, actor="bob", note="n")
    assert history.get_event(engine, ignored)["status"] == "IGNORED"


def test_an_answer_does_not_reopen_an_event_closed_another_way_meanwhile(settings):
    """The form waited while an on-call operator accepted the drift by hand: a late *Retrain*
    starts no retraining and a late *Ignore* does not overwrite the acceptance."""
    from driftloop.drift.events import accept_new_normal, record_event_answer

    engine = history.engine_for(settings.database_url)
    event_id = _opened_by_a_check(engine, "drift_monitor/run-30", "2026-05-01")
    accept_new_normal(None, settings, event_id, actor="carol", note="new lens")
    for status in ("ACTIONED", "IGNORED"):
        with pytest.raises(history.EventClosedError, match=f"{event_id} is ACCEPTED"):
            record_event_answer(settings, event_id, status, _answer("Retrain"))
    assert history.get_event(engine, event_id)["actor"] == "carol"
