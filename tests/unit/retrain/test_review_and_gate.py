"""Steps of retrain_detector that decide without a model: the auto_retrain switch, the
review a drift opens when it is off, and the gate failing closed. The ledger is a real
SQLite database in a temp folder."""

from __future__ import annotations

import pytest

from driftloop.audit.ledger import Ledger
from driftloop.config.settings import Settings
from driftloop.promotion.gate import DEFAULT_PROMOTION_POLICY_PATH, load_promotion_policy
from driftloop.retrain.decision import gate
from driftloop.retrain.plan import open_review, resolve_auto_retrain, take_up_drift_event


@pytest.fixture
def settings(tmp_path):
    return Settings(database_url=f"sqlite:///{tmp_path / 'driftloop.db'}")


@pytest.mark.parametrize(
    ("policy", "variable", "expected"),
    [(True, None, True), (False, None, False), (True, "off", False), (False, " True ", True),
     (True, "0", False), (False, "yes", True)],
)  # fmt: skip
def test_the_variable_overrides_the_policy_file(policy, variable, expected):
    assert resolve_auto_retrain(policy, variable) is expected


def test_a_mistyped_variable_is_refused_by_name():
    with pytest.raises(ValueError, match="driftloop_auto_retrain='ture'"):
        resolve_auto_retrain(True, "ture")


def test_a_review_is_opened_and_recorded(settings):
    plan = {"trigger": {"kind": "drift", "drift_event_id": 5}, "action": "review"}
    first = open_review(settings, plan, "run-1")
    again = open_review(settings, plan, "run-1")  # re-run of the same DAG run
    assert first == again
    assert first["drift_event_id"] == 5
    (entry,) = Ledger(settings.database_url).entries(subject="drift_event:5")
    assert entry.kind == "drift_event"
    assert entry.payload["action"] == "review_opened"
    assert entry.actor == "policy:auto_retrain=false"


def test_the_gate_fails_closed_without_an_evaluation(settings):
    policy = load_promotion_policy(DEFAULT_PROMOTION_POLICY_PATH)
    decision = gate(settings, None, {"version": "3"}, policy, "run-9")
    assert decision["promote"] is False
    assert decision["requires_approval"] is False
    assert "fail closed" in decision["reasons"][0]
    (entry,) = Ledger(settings.database_url).entries(kind="gate_decision")
    assert entry.subject == "model:driftloop-detector/v3"
    assert entry.payload["promote"] is False


def test_a_manual_run_takes_up_its_drift_event_only_when_it_trains(settings):
    from driftloop.drift import history

    engine = history.engine_for(settings.database_url)
    event_id = history.open_event(engine, "drift_monitor/run-1", "critical", ["brightness"])
    trigger = {"kind": "manual", "drift_event_id": event_id}
    take_up_drift_event(settings, {"trigger": trigger, "action": "dry_run"}, "run-2")
    assert history.get_event(engine, event_id)["status"] == "NEEDS_REVIEW"
    take_up_drift_event(settings, {"trigger": trigger, "action": "train"}, "run-3")
    event = history.get_event(engine, event_id)
    assert event["status"] == "ACTIONED"
    assert event["actor"] == "airflow:run-3"
    with pytest.raises(LookupError, match="Param drift_event_id: no drift event with id 999"):
        take_up_drift_event(
            settings, {"trigger": {**trigger, "drift_event_id": 999}, "action": "train"}, "r"
        )
