"""The retraining side of a drift event's life cycle: a promotion to champion resolves it, a
rejection or a failure leaves it open (RETRAINING_FAILED still freezes a sliding reference),
and a manual retraining never reopens a resolved or accepted drift. A real SQLite drift
history and ledger; the ``register`` and ``promote`` ledger rows are written as those steps
write them (``retrain.register`` and ``promotion.transactions.guarded_move``)."""

from __future__ import annotations

from datetime import date

import pytest

from driftloop.audit.ledger import Ledger
from driftloop.config.settings import Settings
from driftloop.drift import baselines, history
from driftloop.retrain.decision import step_key
from driftloop.retrain.finish import record_failure, resolve_drift_event
from driftloop.retrain.plan import take_up_drift_event


@pytest.fixture
def settings(tmp_path):
    return Settings(database_url=f"sqlite:///{tmp_path / 'driftloop.db'}")


@pytest.fixture
def engine(settings):
    return history.engine_for(settings.database_url)


def _event(engine, run_id="drift_monitor/d1", status="ACTIONED") -> int:
    history.record_check(
        engine,
        history.CheckRecord(
            run_id, date(2026, 1, 1), date(2026, 1, 14), "sliding", "a" * 64, "critical",
            "v1", {"brightness": "critical"}, ["brightness"], reference_rule="sliding",
        ),
    )  # fmt: skip
    event_id = history.open_event(engine, run_id, "critical", ["brightness"])
    history.set_event_status(engine, event_id, status, actor="policy:auto")
    return event_id


def _registered(settings, run_id: str, event_id: int | None) -> None:
    plan = {"trigger": {"kind": "drift", "drift_event_id": event_id}, "days": ["2026-01-14"]}
    Ledger(settings.database_url).append(
        "training_run",
        actor=f"airflow:{run_id}",
        subject="model:driftloop-detector/v7",
        payload={"mlflow_run_id": "m1", "plan": plan},
        idempotency_key=step_key(run_id, "register"),
    )


def _promoted(settings, run_id: str, target: str = "champion") -> None:
    Ledger(settings.database_url).append(
        "promotion",
        actor="policy:auto",
        subject="model:driftloop-detector/v7",
        payload={
            "target": target,
            "approval": None,
            "aliases": {"before": {"champion": "6"}, "after": {target: "7"}},
            "intent_ledger_id": 1,
        },
        idempotency_key=step_key(run_id, "promote"),
    )


def test_a_promoted_retraining_resolves_its_event_naming_the_new_champion(settings, engine):
    event_id = _event(engine)
    _registered(settings, "retrain-1", event_id)
    _promoted(settings, "retrain-1")
    closed = resolve_drift_event(settings, "retrain-1")
    assert closed["status"] == "RESOLVED"
    assert closed["model_version"] == "7"
    event = history.get_event(engine, event_id)
    assert (event["status"], event["resolved_model_version"]) == ("RESOLVED", "7")
    assert event["actor"] == "airflow:retrain-1"
    assert "v7 promoted champion" in event["note"]
    assert resolve_drift_event(settings, "retrain-1") == closed  # a re-run of promote
    rows = Ledger(settings.database_url).entries(subject=f"drift_event:{event_id}")
    assert [(r.kind, r.payload["status"]) for r in rows] == [("drift_event", "RESOLVED")]
    # it no longer freezes anything; a failure of a later task (retention) does not reopen it
    assert baselines.freezing_event(engine, date(2026, 2, 1)) is None
    record_failure(settings, {"trigger": {"drift_event_id": event_id}}, "retrain-1", ["retention"])
    assert history.get_event(engine, event_id)["status"] == "RESOLVED"


def test_a_rejected_or_failed_retraining_leaves_the_event_open(settings, engine):
    event_id = _event(engine)
    _registered(settings, "retrain-2", event_id)  # the gate rejected: nothing was promoted
    assert resolve_drift_event(settings, "retrain-2") is None
    assert history.get_event(engine, event_id)["status"] == "ACTIONED"
    assert baselines.freezing_event(engine, date(2026, 2, 1))["event_id"] == event_id

    plan = {"trigger": {"drift_event_id": event_id}}
    record_failure(settings, plan, "retrain-3", ["train"])
    assert history.get_event(engine, event_id)["status"] == "RETRAINING_FAILED"
    frozen = baselines.freezing_event(engine, date(2026, 2, 1))
    assert (frozen["event_id"], frozen["status"]) == (event_id, "RETRAINING_FAILED")


def test_a_challenger_or_a_run_without_a_drift_event_closes_nothing(settings, engine):
    event_id = _event(engine)
    _registered(settings, "retrain-4", event_id)
    _promoted(settings, "retrain-4", target="challenger")
    assert resolve_drift_event(settings, "retrain-4") is None
    assert history.get_event(engine, event_id)["status"] == "ACTIONED"
    _registered(settings, "retrain-5", None)  # the monthly retraining
    _promoted(settings, "retrain-5")
    assert resolve_drift_event(settings, "retrain-5") is None


def test_an_event_accepted_meanwhile_stays_accepted_after_a_promotion(settings, engine):
    from driftloop.drift.events import accept_new_normal

    event_id = _event(engine)
    accept_new_normal(None, settings, event_id, actor="carol", note="new normal")
    _registered(settings, "retrain-6", event_id)
    _promoted(settings, "retrain-6")
    assert resolve_drift_event(settings, "retrain-6") is None
    assert history.get_event(engine, event_id)["status"] == "ACCEPTED"


@pytest.mark.parametrize("closed", ["RESOLVED", "ACCEPTED"])
def test_a_manual_retraining_never_reopens_a_drift_that_was_dealt_with(settings, engine, closed):
    event_id = _event(engine)
    how = (
        {"resolved_model_version": "7"}
        if closed == "RESOLVED"
        else {"accepted": history.AcceptedWindow(date(2026, 1, 1), date(2026, 1, 14), "r")}
    )
    history.close_event(engine, event_id, closed, actor="a", note="n", **how)
    plan = {"trigger": {"kind": "manual", "drift_event_id": event_id}, "action": "train"}
    with pytest.raises(ValueError, match=f"drift event {event_id} is {closed}"):
        take_up_drift_event(settings, plan, "retrain-7")
    assert history.get_event(engine, event_id)["status"] == closed


def test_a_manual_retraining_after_ignore_reopens_the_event(settings, engine):
    event_id = _event(engine)
    history.close_event(engine, event_id, "IGNORED", actor="bob", note="fine")
    plan = {"trigger": {"kind": "manual", "drift_event_id": event_id}, "action": "train"}
    take_up_drift_event(settings, plan, "retrain-8")
    event = history.get_event(engine, event_id)
    assert (event["status"], event["closed_at"]) == ("ACTIONED", None)


def test_a_rerun_of_the_run_that_resolved_its_event_plans_again(settings, engine):
    """Its promotion resolved the event and a later task (retention) failed: the operator
    re-runs the DAG run, whose plan must not refuse the event it resolved itself."""
    event_id = _event(engine)
    _registered(settings, "retrain-9", event_id)
    _promoted(settings, "retrain-9")
    resolve_drift_event(settings, "retrain-9")
    plan = {"trigger": {"kind": "manual", "drift_event_id": event_id}, "action": "train"}
    take_up_drift_event(settings, plan, "retrain-9")
    assert history.get_event(engine, event_id)["status"] == "RESOLVED"
    with pytest.raises(ValueError, match="is RESOLVED"):
        take_up_drift_event(settings, plan, "retrain-10")
