"""Planning a retraining run: trigger, window, the auto_retrain flag and dry runs."""

from __future__ import annotations

from datetime import date

import pytest

from driftloop.retrain.plan import plan_retrain, resolve_trigger
from driftloop.retrain.training_arguments import (
    ResolvedBase,
    hyperparameters_for,
    training_arguments,
)

TODAY = date(2026, 3, 10)


def test_drift_trigger_carries_the_event_and_its_window():
    trigger = resolve_trigger(
        {},
        [{"event_id": 7, "window_end": "2026-03-01", "drifted_features": ["brightness"]}],
        "asset_triggered",
    )
    assert trigger["kind"] == "drift"
    assert trigger["drift_event_id"] == 7
    plan = plan_retrain({"last_n_days": 14}, trigger, today=TODAY, auto_retrain=True)
    assert plan["days"][-1] == "2026-03-01"
    assert plan["days"][0] == "2026-02-16"
    assert len(plan["days"]) == 14
    assert plan["action"] == "train"


def test_an_accuracy_drop_alone_says_so_in_the_reason():
    extra = {"event_id": 3, "window_end": "2026-03-01", "drifted_features": []}
    performance = resolve_trigger({}, [{**extra, "kind": "performance"}], "asset_triggered")
    assert performance["reason"] == (
        "the champion's measured accuracy dropped (drift event of kind performance)"
    )
    assert (
        resolve_trigger({}, [extra], "asset_triggered")["reason"] == "drift confirmed in features"
    )


def test_auto_retrain_off_turns_a_drift_into_a_review_but_not_a_manual_run():
    drift = resolve_trigger({}, [{"event_id": 1}], "asset_triggered")
    assert plan_retrain({}, drift, today=TODAY, auto_retrain=False)["action"] == "review"
    manual = resolve_trigger({"reason": "new labels"}, [], "manual")
    assert manual["reason"] == "new labels"
    assert plan_retrain({}, manual, today=TODAY, auto_retrain=False)["action"] == "train"


def test_a_manual_run_can_retrain_for_a_reviewed_drift_event():
    trigger = resolve_trigger({"reason": "after review", "drift_event_id": 12}, [], "manual")
    assert trigger["kind"] == "manual"
    assert trigger["drift_event_id"] == 12
    plan = plan_retrain({}, trigger, today=date(2031, 1, 10), auto_retrain=False)
    assert plan["action"] == "train"  # a person asked: auto_retrain does not apply
    assert resolve_trigger({"reason": "x"}, [], "manual")["drift_event_id"] is None


def test_schedule_and_dry_run_and_defaults():
    scheduled = resolve_trigger({}, [], "scheduled")
    assert scheduled["kind"] == "schedule"
    plan = plan_retrain({"dry_run": True}, scheduled, today=TODAY, auto_retrain=True)
    assert plan["action"] == "dry_run"
    assert plan["days"][-1] == "2026-03-09"
    assert (plan["epochs"], plan["imgsz"], plan["base"]) == (5, 160, "champion")
    with pytest.raises(ValueError, match="last_n_days"):
        plan_retrain({"last_n_days": 0}, scheduled, today=TODAY, auto_retrain=True)


def test_training_arguments_are_the_entrypoints_and_carry_no_secret():
    plan = plan_retrain(
        {"epochs": 3, "end_date": "2026-03-01"},
        resolve_trigger({}, [], "manual"),
        today=TODAY,
        auto_retrain=True,
    )
    args = training_arguments(
        plan,
        {"uri": "s3://driftloop/datasets/abc/"},
        "yolo11n.yaml",
        "manual__x",
        "/airflow/xcom/return.json",
    )
    assert args[args.index("--data") + 1] == "s3://driftloop/datasets/abc/"
    assert args[args.index("--epochs") + 1] == "3"
    assert args[args.index("--xcom-path") + 1] == "/airflow/xcom/return.json"
    assert not any("secret" in a.lower() or "password" in a.lower() for a in args)


def test_fine_tuning_starts_from_a_lower_learning_rate_unless_asked_otherwise():
    scratch = hyperparameters_for("yolo11n.yaml", {})
    tune = hyperparameters_for("runs:/abc/weights/best.pt", None)
    assert tune["lr0"] == scratch["lr0"] / 10
    assert tune["optimizer"] == "AdamW"
    assert hyperparameters_for("runs:/abc/weights/best.pt", {"lr0": 0.01, "mosaic": 0}) == {
        **tune, "lr0": 0.01, "mosaic": 0,
    }  # fmt: skip
    args = training_arguments(
        plan_retrain({"end_date": "2031-01-10"}, resolve_trigger({}, [], "manual"),
                     today=TODAY, auto_retrain=True),
        {"uri": "s3://b/datasets/x/"}, ResolvedBase("runs:/abc/weights/best.pt", "e" * 64),
        "run-1", "/tmp/x.json",
    )  # fmt: skip
    hyp = args[args.index("--hyp") + 1 :]
    assert "lr0=0.0005" in hyp
    assert "optimizer=AdamW" in hyp
