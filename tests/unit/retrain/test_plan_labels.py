"""A retrain_detector run started by new labels (the ``driftloop_labels`` Asset): its trigger,
its window, the policy's ``new_labels.min_frames`` and the skip the ledger records. The ledger
is a real SQLite database; the count of new frames is driftloop.retrain.new_labels' (tested
against S3 in test_new_labels), stood in for here by its verdict."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from driftloop.config.settings import Settings
from driftloop.retrain import new_labels
from driftloop.retrain.new_labels import judge
from driftloop.retrain.plan import (
    after_plan,
    labeled_days_of,
    plan_retrain,
    plan_run,
    resolve_trigger,
    skip_training,
)
from driftloop.retrain.records import ledger

MOMENT = datetime(2031, 3, 10, 4, 0, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path):
    return Settings(database_url=f"sqlite:///{tmp_path / 'driftloop.db'}")


@pytest.fixture
def counted(monkeypatch):
    """The window's count: ``new`` frames new to champion v3 (None: no champion); records
    what the plan asked."""
    asked = {"new": 12, "champion": "3"}

    def check(s3, settings, days, min_frames):
        asked.update(s3=s3, days=list(days), min_frames=min_frames)
        counts = {days[-1]: {"labeled": 40, "new": asked["new"]}}
        return judge(counts, min_frames, champion=asked["champion"], dataset_sha256="c" * 64)

    monkeypatch.setattr(new_labels, "check_new_labels", check)
    return asked


def _plan(settings, labels, *, drift=(), params=None, variable=None):
    return plan_run(
        settings,
        params or {},
        asset_events=list(drift),
        label_events=labels,
        s3="the task's S3 client",
        run_type="asset_triggered",
        moment=MOMENT,
        auto_retrain_variable=variable,
        run_id="asset_triggered__1",
    )


def test_label_events_name_the_days_and_the_window_ends_on_the_latest():
    events = [
        {"day": "2031-03-04", "frames": 30},  # a labeling pipeline's own event
        {"day": "2031-03-06", "days": ["2031-03-05", "2031-03-06"], "frames": 12},
    ]
    assert labeled_days_of(events) == ["2031-03-04", "2031-03-05", "2031-03-06"]
    trigger = resolve_trigger({}, [], "asset_triggered", events)
    assert trigger["kind"] == "labels"
    assert trigger["window_end"] == "2031-03-06"
    assert trigger["labeled_days"] == ["2031-03-04", "2031-03-05", "2031-03-06"]
    assert trigger["reason"] == "new labels: 2031-03-04, 2031-03-05, 2031-03-06 (42 frames)"
    assert trigger["drift_event_id"] is None
    plan = plan_retrain({"last_n_days": 14}, trigger, today=date(2031, 3, 10), auto_retrain=True)
    assert (plan["days"][0], plan["days"][-1], plan["action"]) == (
        "2031-02-21",
        "2031-03-06",
        "train",
    )
    # an event without a day: the window ends the day before the run, as for the cron
    assert resolve_trigger({}, [], "asset_triggered", [{}])["window_end"] is None


def test_a_drift_event_wins_over_labels_that_came_with_it():
    trigger = resolve_trigger({}, [{"event_id": 5}], "asset_triggered", [{"day": "2031-03-06"}])
    assert (trigger["kind"], trigger["drift_event_id"]) == ("drift", 5)


def test_a_bad_day_in_a_label_event_is_refused_by_name():
    with pytest.raises(ValueError, match=r"day '2031-13-01' is not a YYYY-MM-DD date"):
        resolve_trigger({}, [], "asset_triggered", [{"day": "2031-13-01"}])
    with pytest.raises(ValueError, match="day '6 March'"):
        labeled_days_of([{"days": "6 March"}])


def test_too_few_new_frames_skip_training_and_say_why(settings, counted):
    planned = _plan(settings, [{"day": "2031-03-06", "frames": 12}])
    assert counted["min_frames"] == 200  # the shipped policy's new_labels.min_frames
    assert counted["days"][-1] == "2031-03-06"
    assert counted["s3"] == "the task's S3 client"
    assert planned["trigger"]["kind"] == "labels"
    assert planned["action"] == "skip"
    reason = "12 new labeled frames since the champion's snapshot, policy needs 200"
    assert planned["skip_reason"] == reason
    assert planned["new_labels"]["new_frames"] == 12
    assert after_plan(planned) == "skip_training"

    done = skip_training(settings, planned, "asset_triggered__1")
    again = skip_training(settings, planned, "asset_triggered__1")  # a re-run: one row
    assert done == again
    assert done["reason"] == reason
    (row,) = ledger(settings).entries(kind="training_run")
    assert row.payload["status"] == "skipped"
    assert row.payload["reason"] == reason
    assert row.payload["plan"]["new_labels"]["min_frames"] == 200
    assert row.subject == f"model:{settings.registered_model}"


def test_enough_new_frames_or_no_champion_train(settings, counted):
    counted["new"] = 200
    planned = _plan(settings, [{"day": "2031-03-06"}])
    assert (planned["action"], after_plan(planned)) == ("train", "snapshot_dataset")
    assert "skip_reason" not in planned
    counted.update(new=3, champion=None)
    first = _plan(settings, [{"day": "2031-03-06"}])
    assert first["action"] == "train"  # a first model, as the other triggers train one
    assert first["new_labels"]["reason"].startswith("no champion yet")


def test_the_policy_threshold_and_auto_retrain_apply(settings, counted, tmp_path):
    from driftloop.config.promotion_policy import DEFAULT_PROMOTION_POLICY_PATH

    policy = tmp_path / "promotion_policy.yaml"
    policy.write_text(
        DEFAULT_PROMOTION_POLICY_PATH.read_text().replace("min_frames: 200", "min_frames: 10")
    )
    lowered = settings.model_copy(update={"promotion_policy_path": str(policy)})
    assert _plan(lowered, [{"day": "2031-03-06"}])["action"] == "train"  # 12 >= 10
    assert counted["min_frames"] == 10
    # auto_retrain off: new labels start nothing (only manual and scheduled runs retrain)
    counted["new"] = 500
    counted.pop("days")
    off = _plan(lowered, [{"day": "2031-03-06"}], variable="false")
    assert off["action"] == "skip"
    assert off["skip_reason"] == "auto_retrain is off: new labels start no training"
    assert "days" not in counted  # nothing counted
    # a dry run by label event is a snapshot, counted or not
    dry = _plan(lowered, [{"day": "2031-03-06"}], params={"dry_run": True})
    assert dry["action"] == "dry_run"
