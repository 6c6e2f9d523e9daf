"""``dag.test()`` of a drift event's life cycle on the embedded stack (moto S3, mlflow server,
Airflow): a persistent drift keeps alerting against the reference its open event froze,
``drift_accept_new_normal`` closes it as the new normal, and the next check compares with
the accepted window — without a champion, and with one (the window is then recorded on the
champion's model version).

The worlds live on dates after every other world of the shared stack (2036, 2037): an open
event freezes the sliding reference of later windows only, so nothing here reaches another
test's checks; each test starts and ends with no drift event open (another world's open
event would freeze this one's reference).
"""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta

import pytest

from tests.conftest import load_dag
from tests.integration.registry_versions import register_versions

pytestmark = pytest.mark.integration

ROWS_PER_DAY = 300
STABLE_DAYS = 28  # one sliding reference and one current window before the drift


def ignore_open_events(note: str) -> list[int]:
    """Close every open drift event as IGNORED: the worlds of one stack are separate worlds."""
    import sqlalchemy as sa

    from driftloop.config.settings import Settings
    from driftloop.drift import history

    engine = history.engine_for(Settings.from_env().database_url)
    with engine.connect() as conn:
        ids = list(
            conn.execute(
                sa.select(history.drift_events.c.id).where(
                    history.drift_events.c.status.in_(history.OPEN_EVENT_STATUSES)
                )
            ).scalars()
        )
    for event_id in ids:
        history.close_event(engine, event_id, "IGNORED", actor="tests", note=note)
    return ids


@pytest.fixture(autouse=True)
def _no_open_drift_of_another_world(stack):
    ignore_open_events("another world's drift")
    yield
    ignore_open_events("the end of its world's test")


def _world(s3, end: str, days: int):
    from driftloop.config.settings import Settings
    from driftloop_dev.synth import S3Sink, generate_world

    return generate_world(
        S3Sink(s3, Settings.from_env().bucket),
        "abrupt",
        days=days,
        drift_day=STABLE_DAYS,
        end_date=end,
        rows_per_day=ROWS_PER_DAY,
        labeled_per_day=1,
    )


def _check(end_day: str):
    """A drift_monitor run for the window ending ``end_day``; every breach counts at once
    (1-of-1), so each check's verdict is its own."""
    from airflow.utils.state import DagRunState

    dag_run = load_dag("drift_monitor").test(
        run_conf={"end_date": end_day, "hysteresis_k": 1, "hysteresis_n": 1}
    )
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == DagRunState.SUCCESS, states
    return dag_run, states


def _accept(conf: dict):
    dag_run = load_dag("drift_accept_new_normal").test(run_conf=conf)
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    return dag_run, states


def _xcom(dag_run, task_id: str):
    ti = next(t for t in dag_run.get_task_instances() if t.task_id == task_id)
    return ti.xcom_pull(task_ids=task_id)


def _decision(s3, dag_run) -> dict:
    from driftloop.config.settings import Settings
    from driftloop.drift.run import report_prefix

    key = report_prefix(dag_run.run_id) + "decision.json"
    return json.loads(s3.get_object(Bucket=Settings.from_env().bucket, Key=key)["Body"].read())


def _day(start: str, offset: int) -> str:
    return (date.fromisoformat(start) + timedelta(days=offset)).isoformat()


def test_a_sliding_drift_stays_frozen_until_accepted_by_hand(stack, s3):
    from airflow.utils.state import DagRunState

    from driftloop.audit.wiring import ledger_for
    from driftloop.config.settings import Settings
    from driftloop.drift import history

    truth = _world(s3, "2036-03-31", days=STABLE_DAYS + 22)
    drift = truth.drift_start_date
    settings = Settings.from_env()
    engine = history.engine_for(settings.database_url)

    first, states = _check(_day(drift, 5))
    assert _decision(s3, first)["severity"] == "critical"
    assert states["confirm_drift"] == "success"
    event_id = _xcom(first, "open_drift_event")["event_id"]
    opening = _decision(s3, first)["reference"]
    assert (opening["kind"], opening["rule"]) == ("sliding", "sliding")

    # 15 days later the plain sliding reference would hold 6 drifted days of 14; the event
    # froze it: the same bundle, no reference day listed or validated, still critical, and
    # the check belongs to the open event (no second approval or retraining)
    later, states = _check(_day(drift, 20))
    decision = _decision(s3, later)
    assert decision["reference"]["rule"] == "frozen"
    assert decision["reference"]["event_id"] == event_id
    assert decision["reference"]["reference_id"] == opening["reference_id"]
    assert decision["severity"] == "critical"
    assert _xcom(later, "validate")["valid"]["reference"] == []
    assert states["drift_event_already_open"] == "success"
    assert states["confirm_drift"] == "skipped"
    row = history.get_check(engine, later.run_id)
    assert (row["reference_rule"], row["reference_event_id"]) == ("frozen", event_id)
    assert row["reference_reason"].startswith(f"frozen by drift event {event_id}")

    # an unknown event is refused at once, naming it
    refused, states = _accept({"event_id": 999999, "note": "typo"})
    assert refused.state == DagRunState.FAILED
    (task,) = [t for t in refused.get_task_instances() if t.task_id == "accept_new_normal"]
    assert (task.state, task.try_number) == ("failed", 1)

    accepted, states = _accept({"event_id": event_id, "note": "relit stadium, since March"})
    assert accepted.state == DagRunState.SUCCESS, states
    result = _xcom(accepted, "accept_new_normal")
    assert result["accepted_window"] == {"start": _day(drift, 7), "end": _day(drift, 20)}
    event = history.get_event(engine, event_id)
    assert (event["status"], event["note"]) == ("ACCEPTED", "relit stadium, since March")
    rows = ledger_for(settings).entries(subject=f"drift_event:{event_id}")
    assert [(r.kind, r.payload.get("status")) for r in rows][-1] == ("drift_event", "ACCEPTED")
    assert ledger_for(settings).verify().ok

    after, states = _check(_day(drift, 21))
    decision = _decision(s3, after)
    assert decision["reference"]["rule"] == "accepted"
    assert decision["reference"]["days"] == [_day(drift, i) for i in range(7, 21)]
    assert decision["severity"] == "none", decision["drifted_features"]
    assert states["no_drift"] == "success"


def test_accepting_a_drift_against_the_champion_records_the_window_on_its_version(
    stack, s3, monkeypatch
):
    """With a champion, the accepted window is recorded on its model version and replaces its
    training reference while it is champion."""
    from mlflow import MlflowClient

    from driftloop.config.settings import Settings
    from driftloop.contracts.storage import list_partition
    from driftloop.drift import history, tracking
    from driftloop.drift.reference import build_reference_bundle

    model = f"lifecycle-detector-{uuid.uuid4().hex[:8]}"  # a champion no other test sees
    monkeypatch.setenv("DRIFTLOOP_REGISTERED_MODEL", model)
    truth = _world(s3, "2037-03-31", days=STABLE_DAYS + 16)
    drift = truth.drift_start_date
    settings = Settings.from_env()

    training_days = [_day(drift, -i) for i in range(14, 0, -1)]
    bundle = build_reference_bundle(
        s3, settings.bucket, [list_partition(s3, settings.bucket, d) for d in training_days], 2000
    )
    client = MlflowClient(settings.mlflow_tracking_uri)
    tags = {tracking.REFERENCE_TAG: bundle.uri}
    (version,) = register_versions(client, model, 1, "lifecycle-tests", tags)
    client.set_registered_model_alias(model, "champion", version)

    first, _ = _check(_day(drift, 13))  # the current window is all drifted days
    decision = _decision(s3, first)
    assert (decision["reference"]["kind"], decision["reference"]["rule"]) == (
        "champion",
        "champion",
    )
    assert decision["reference"]["reference_id"] == bundle.reference_id
    assert decision["severity"] == "critical"
    event_id = _xcom(first, "open_drift_event")["event_id"]

    _, states = _accept({"event_id": event_id, "note": "new cameras are here to stay"})
    assert states["accept_new_normal"] == "success"
    tags = client.get_model_version(model, version).tags
    assert tags[tracking.ACCEPTED_WINDOW_TAG] == f"{_day(drift, 0)}..{_day(drift, 13)}"
    assert tags[tracking.ACCEPTED_EVENT_TAG] == str(event_id)
    assert tags[tracking.REFERENCE_TAG] == bundle.uri  # the training reference is kept
    event = history.get_event(history.engine_for(settings.database_url), event_id)
    assert event["status"] == "ACCEPTED"
    assert f"recorded on champion v{version}" in event["note"]

    after, states = _check(_day(drift, 15))
    decision = _decision(s3, after)
    reference = decision["reference"]
    assert (reference["kind"], reference["rule"], reference["event_id"]) == (
        "champion",
        "accepted",
        event_id,
    )
    assert reference["model_version"] == version
    assert reference["days"] == [_day(drift, i) for i in range(14)]
    assert decision["severity"] == "none", decision["drifted_features"]
    assert states["no_drift"] == "success"
