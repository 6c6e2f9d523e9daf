"""Steps of retrain_detector that decide without a model: the auto_retrain switch, the
review a drift opens when it is off, and the gate failing closed. The ledger is a real
SQLite database in a temp folder."""

from __future__ import annotations

import pytest

from driftloop.audit.ledger import Ledger
from driftloop.config.settings import Settings
from driftloop.promotion.gate import DEFAULT_PROMOTION_POLICY_PATH, load_promotion_policy
from driftloop.retrain.decision import PromotionRefused, gate, promote, record_approval, reject
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
    decision = gate(settings, "3", policy, "run-9")
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


def _evaluation_row(settings, run_id: str, version: str, champion: str | None) -> None:
    summary = {"map50": 0.9, "map50_95": 0.6, "map50_int8": 0.9, "p95_latency_ms": 5.0,
               "p50_latency_ms": 4.0, "n_images": 40}  # fmt: skip
    Ledger(settings.database_url).append(
        "evaluation",
        actor=f"airflow:{run_id}",
        subject=f"model:driftloop-detector/v{version}",
        payload={
            "candidate": {"version": version, **summary},
            "champion": None if champion is None else {"version": champion, **summary},
            "delta": None,
            "uri": "s3://b/evaluation.json",
        },
        idempotency_key=f"retrain_detector/{run_id}/evaluate",
    )


def test_the_gate_decides_on_the_evaluation_on_record_and_names_both_versions(settings):
    policy = load_promotion_policy(DEFAULT_PROMOTION_POLICY_PATH)
    _evaluation_row(settings, "run-1", "4", None)
    decision = gate(settings, "4", policy, "run-1")
    assert (decision["candidate_version"], decision["champion_version"]) == ("4", None)
    assert decision["promote"] is True  # no champion: the floors decide, and they hold
    # a re-run returns the decision on record
    assert gate(settings, "4", policy, "run-1") == decision
    with pytest.raises(PromotionRefused, match="evaluation of run run-1 is of v4"):
        gate(settings, "5", policy, "run-1")


@pytest.mark.parametrize(
    ("approval_required", "answer", "message"),
    [
        (False, None, "has no gate decision"),  # no gate row at all
        (True, None, "needs an operator's approval and the ledger holds none"),
        (True, ["Reject"], "the answer \\['Reject'\\]"),
    ],
)
def test_promotion_refuses_without_the_records_that_allow_it(
    settings, approval_required, answer, message, tmp_path
):
    """Nothing in XCom can make promote act: only this run's gate row (and, when the policy
    asks, an approval row written from Airflow's HITL record)."""
    policy = load_promotion_policy(DEFAULT_PROMOTION_POLICY_PATH)
    if message != "has no gate decision":
        _evaluation_row(settings, "run-2", "6", None)
        policy = policy.model_copy(update={"approval": "required"}) if approval_required else policy
        assert gate(settings, "6", policy, "run-2")["requires_approval"] is approval_required
    if answer:
        record_approval(
            settings,
            "run-2",
            {"chosen_options": answer, "responded_by_user": {"id": "7", "name": "bob"}},
        )
    with pytest.raises(PromotionRefused, match=message):
        promote(settings, "run-2")


def test_an_answer_without_a_responder_is_not_recorded(settings):
    policy = load_promotion_policy(DEFAULT_PROMOTION_POLICY_PATH)
    _evaluation_row(settings, "run-3", "8", None)
    gate(settings, "8", policy, "run-3")
    with pytest.raises(PromotionRefused, match="names no responder"):
        record_approval(settings, "run-3", {"chosen_options": ["Promote"]})


def test_reject_needs_a_failed_gate_or_an_operator_who_rejected(settings):
    policy = load_promotion_policy(DEFAULT_PROMOTION_POLICY_PATH)
    _evaluation_row(settings, "run-4", "9", None)
    gate(settings, "9", policy, "run-4")  # passed, no approval asked
    with pytest.raises(PromotionRefused, match="no operator rejected it"):
        reject(settings, "run-4")


def test_the_approval_request_is_worded_from_the_gate_row(settings, monkeypatch):
    from driftloop.retrain.decision import promotion_request

    monkeypatch.setenv("DRIFTLOOP_DATABASE_URL", settings.database_url)
    policy = load_promotion_policy(DEFAULT_PROMOTION_POLICY_PATH)
    _evaluation_row(settings, "run-5", "11", "10")
    gate(settings, "11", policy, "run-5")
    subject, body = promotion_request(run_id="run-5")
    assert subject == "Promote driftloop-detector v11?"
    assert "against the champion v10" in body
    with pytest.raises(PromotionRefused, match="no gate decision"):
        promotion_request(run_id="run-never")
