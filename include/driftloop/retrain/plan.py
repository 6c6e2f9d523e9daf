"""The start of a ``retrain_detector`` run: why it runs, on which days, and what it does.

:func:`plan_run` is the whole ``plan`` task: the trigger (a confirmed drift's Asset event, new
labels' Asset event, the monthly cron or a person), the training window, the ``auto_retrain``
switch (policy file, overridable by an Airflow Variable) and the effective promotion policy (a
bad override fails here, before any work). The branch rules after it (:func:`after_plan`,
:func:`after_snapshot`) name the task that runs next. With ``auto_retrain`` off a confirmed
drift opens a review (:func:`open_review`) instead of training. New labels train only when
enough labeled frames of the window are new to the champion
(:mod:`driftloop.retrain.new_labels`, policy ``new_labels``); otherwise the run skips
training (:func:`skip_training` records why).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from driftloop.config.settings import Settings
from driftloop.retrain.records import ledger

#: the task ids the branch rules choose between (the DAG names its tasks with these)
OPEN_REVIEW_TASK = "open_review"
SNAPSHOT_TASK = "snapshot_dataset"
DRY_RUN_DONE_TASK = "dry_run_done"
SKIP_TASK = "skip_training"
#: the task group training starts in (``train``, or ``training_arguments`` before the pod)
TRAINING_GROUP = "training"
#: what a plan does: train, snapshot only, wait for a person's review, or nothing (new labels
#: too few, or auto_retrain off)
ACTIONS = ("train", "dry_run", "review", "skip")


def asset_event_extras(triggering_asset_events: Any, asset: Any) -> list[dict[str, Any]]:
    """The ``extra`` of each event of ``asset`` that triggered the run (oldest first); none
    for a scheduled or manual run (Airflow passes no or an empty mapping)."""
    if not triggering_asset_events:
        return []
    return [dict(event.extra or {}) for event in triggering_asset_events.get(asset, [])]


def labeled_days_of(label_events: Iterable[Mapping[str, Any]]) -> list[str]:
    """The labeled days the ``driftloop_labels`` events announce (``day`` and/or ``days``),
    sorted; ValueError names a day that is no ``YYYY-MM-DD`` date."""
    days: set[str] = set()
    for extra in label_events:
        listed = extra.get("days") or []
        listed = [listed] if isinstance(listed, str) else list(listed)
        for day in ([extra["day"]] if extra.get("day") else []) + listed:
            try:
                days.add(date.fromisoformat(str(day)).isoformat())
            except ValueError:
                raise ValueError(
                    f"driftloop_labels event extra {dict(extra)!r}: day {day!r} is not a "
                    "YYYY-MM-DD date"
                ) from None
    return sorted(days)


def resolve_trigger(
    params: Mapping[str, Any],
    asset_events: list[Mapping[str, Any]],
    run_type: str,
    label_events: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Why this run happens: a confirmed drift (with its event), new labels (the days their
    events announce; the window ends on the latest), the monthly cron, or a person. A drift
    event wins over label events that came with it."""
    label_events = list(label_events)
    if label_events and not asset_events:
        days = labeled_days_of(label_events)
        # as the events report them (informational: the plan counts the frames itself)
        counted = [e.get("frames") for e in label_events if type(e.get("frames")) is int]
        frames = f" ({sum(counted)} frames)" if counted else ""
        return {
            "kind": "labels",
            "reason": f"new labels: {', '.join(days) or 'no day named'}{frames}",
            "drift_event_id": None,
            "window_end": days[-1] if days else None,
            "labeled_days": days,
        }
    if asset_events:
        extra = dict(asset_events[-1])
        features = ", ".join(extra.get("drifted_features", []))
        reason = (
            "the champion's measured accuracy dropped (drift event of kind performance)"
            if extra.get("kind") == "performance" and not features
            else f"drift confirmed in {features or 'features'}"
        )
        return {
            "kind": "drift",
            "reason": reason,
            "drift_event_id": extra.get("event_id"),
            "window_end": extra.get("window_end"),
        }
    if run_type == "scheduled":
        return {
            "kind": "schedule",
            "reason": "monthly retraining",
            "drift_event_id": None,
            "window_end": None,
        }
    event_id = params.get("drift_event_id")
    return {
        "kind": "manual",
        "reason": params.get("reason") or "manual trigger",
        # an operator retraining for a drift event after a review (auto_retrain off)
        "drift_event_id": None if event_id is None else int(event_id),
        "window_end": None,
    }


#: a manual retraining may take up a drift event in these statuses: an open one, or one an
#: operator ignored and now wants retrained after all (it reopens). A RESOLVED or ACCEPTED
#: drift is dealt with: a retraining "for" it would reopen it and freeze the reference again.
RETRAINABLE_EVENT_STATUSES = ("NEEDS_REVIEW", "ACTIONED", "RETRAINING_FAILED", "IGNORED")


def take_up_drift_event(settings: Settings, plan: Mapping[str, Any], run_id: str) -> None:
    """A manual run for a drift event: the event must exist and not be resolved or accepted
    (ValueError), and once the plan is to train, it is being actioned (a failed run turns it
    into RETRAINING_FAILED, see :func:`record_failure`)."""
    from driftloop.drift import history

    trigger = plan["trigger"]
    event_id = trigger.get("drift_event_id")
    if trigger["kind"] != "manual" or event_id is None:
        return
    engine = history.engine_for(settings.database_url)
    event = history.get_event(engine, int(event_id))
    if event is None:
        raise LookupError(f"Param drift_event_id: no drift event with id {event_id}")
    if event["status"] == "RESOLVED" and event["actor"] == f"airflow:{run_id}":
        return  # a re-run of the run whose promotion resolved it (a later task had failed)
    if event["status"] not in RETRAINABLE_EVENT_STATUSES:
        raise ValueError(
            f"Param drift_event_id: drift event {event_id} is {event['status']} (by "
            f"{event['actor']}): it is closed; retrain without drift_event_id"
        )
    if plan["action"] == "train" and event["status"] != "ACTIONED":
        history.set_event_status(
            engine,
            int(event_id),
            "ACTIONED",
            actor=f"airflow:{run_id}",
            note=f"retraining by hand after {event['status']}",
        )


AUTO_RETRAIN_VARIABLE = "driftloop_auto_retrain"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def resolve_auto_retrain(policy_value: bool, variable_value: str | None) -> bool:
    """The policy file's ``auto_retrain``, unless the Airflow Variable overrides it. A value
    that is neither clearly on nor off is refused: a typo must not silently switch off
    retraining (or switch it on)."""
    if variable_value is None:
        return bool(policy_value)
    text = str(variable_value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(
        f"Airflow Variable {AUTO_RETRAIN_VARIABLE}={variable_value!r}: "
        f"expected one of {', '.join(_TRUE + _FALSE)}"
    )


def plan_retrain(
    params: Mapping[str, Any],
    trigger: Mapping[str, Any],
    *,
    today: date,
    auto_retrain: bool,
) -> dict[str, Any]:
    raw_days = params.get("last_n_days")
    last_n_days = 14 if raw_days is None else int(raw_days)
    if last_n_days < 1:
        raise ValueError(f"last_n_days must be >= 1, got {last_n_days}")
    end = (
        params.get("end_date")
        or trigger.get("window_end")
        or (today - timedelta(days=1)).isoformat()
    )
    end_day = date.fromisoformat(str(end))
    days = [(end_day - timedelta(days=last_n_days - 1 - i)).isoformat() for i in range(last_n_days)]
    action, skip_reason = "train", None
    if params.get("dry_run"):
        action = "dry_run"
    elif trigger["kind"] == "drift" and not auto_retrain:
        action = "review"
    elif trigger["kind"] == "labels" and not auto_retrain:
        action, skip_reason = "skip", "auto_retrain is off: new labels start no training"
    planned = {
        "trigger": dict(trigger),
        "action": action,
        "auto_retrain": auto_retrain,
        "days": days,
        "epochs": int(params.get("epochs", 5)),
        "imgsz": int(params.get("imgsz", 160)),
        "batch": int(params.get("batch", 16)),
        "hyperparameters": dict(params.get("hyperparameters") or {}),
        "base": params.get("base") or "champion",
    }
    if skip_reason:
        planned["skip_reason"] = skip_reason
    return planned


def open_review(settings: Settings, plan: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """auto_retrain is off: the confirmed drift waits for a person; nothing is trained."""
    entry = ledger(settings).append(
        "drift_event",
        actor="policy:auto_retrain=false",
        subject=f"drift_event:{plan['trigger'].get('drift_event_id')}",
        payload={"action": "review_opened", "plan": dict(plan)},
        idempotency_key=f"retrain_detector/{run_id}/open_review",
    )
    return {"ledger_id": entry.id, "drift_event_id": plan["trigger"].get("drift_event_id")}


def skip_training(settings: Settings, plan: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """The plan trains nothing (new labels too few, auto_retrain off): the ledger says why."""
    entry = ledger(settings).append(
        "training_run",
        actor=f"airflow:{run_id}",
        subject=f"model:{settings.registered_model}",
        payload={"status": "skipped", "reason": plan.get("skip_reason"), "plan": dict(plan)},
        idempotency_key=f"retrain_detector/{run_id}/skip",
    )
    return {"ledger_id": entry.id, "reason": plan.get("skip_reason")}


def check_labels(s3, settings: Settings, planned: dict[str, Any], min_frames: int) -> None:
    """A training for new labels goes ahead only with enough frames new to the champion
    (``planned["new_labels"]`` records the count); too few turn it into a skip."""
    from driftloop.retrain.new_labels import check_new_labels

    if planned["trigger"]["kind"] != "labels" or planned["action"] != "train":
        return
    verdict = check_new_labels(s3, settings, planned["days"], min_frames)
    planned["new_labels"] = verdict
    if not verdict["enough"]:
        planned["action"], planned["skip_reason"] = "skip", verdict["reason"]


def plan_run(
    settings: Settings,
    params: Mapping[str, Any],
    *,
    asset_events: Iterable[Mapping[str, Any]],
    label_events: Iterable[Mapping[str, Any]] = (),
    s3: Any = None,
    run_type: Any,
    moment: datetime,
    auto_retrain_variable: str | None,
    run_id: str,
) -> dict[str, Any]:
    """The ``plan`` task: trigger, window, action and the effective promotion policy.

    ``run_type``: the DAG run's type (the Task SDK's enum or its value); ``moment``: its
    logical date, else its ``run_after`` (the window ends the day before, as in
    ``drift_monitor``); ``label_events``: the extras of the ``driftloop_labels`` events
    (``s3`` then counts the window's labeled frames new to the champion);
    ``auto_retrain_variable``: the Airflow Variable
    :data:`AUTO_RETRAIN_VARIABLE` (None when unset). ValueError or LookupError: bad Params,
    policy overrides, Variable or drift event id, which no retry can fix.
    """
    from driftloop.retrain.policy import run_policy

    run_type = str(getattr(run_type, "value", run_type))
    trigger = resolve_trigger(params, list(asset_events), run_type, label_events)
    policy = run_policy(settings, params)  # a bad override fails here, not at the gate
    planned = plan_retrain(
        params,
        trigger,
        today=moment.astimezone(UTC).date(),
        auto_retrain=resolve_auto_retrain(policy.auto_retrain, auto_retrain_variable),
    )
    planned["promotion_policy"] = {"version": policy.version, "source": policy.source}
    check_labels(s3, settings, planned, policy.new_labels.min_frames)
    take_up_drift_event(settings, planned, run_id)
    return planned


def after_plan(plan: Mapping[str, Any]) -> str:
    """The task after ``plan``: a review, the skip, or the snapshot (to train or for a dry
    run)."""
    action = plan["action"]
    if action not in ACTIONS:
        raise ValueError(f"plan action {action!r} is not one of {', '.join(ACTIONS)}")
    return {"review": OPEN_REVIEW_TASK, "skip": SKIP_TASK}.get(action, SNAPSHOT_TASK)


def after_snapshot(plan: Mapping[str, Any]) -> str:
    """The task after the snapshot: a dry run stops there, a training run goes on to the
    training group (Airflow follows a group id to the group's first tasks)."""
    return DRY_RUN_DONE_TASK if plan["action"] == "dry_run" else TRAINING_GROUP
