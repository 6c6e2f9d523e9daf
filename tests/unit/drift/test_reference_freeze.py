"""A reference that does not forget (issue 10, item 2): without a champion, days inside an
open drift event never slide into the reference, so a persistent drift keeps alerting for as
long as its event is open; once an operator accepts it as the new normal, the accepted window
is the baseline and the reference then moves on.

Each daily check runs drift_monitor's own steps in order — plan, reference, per-partition
profiles, statistics, decide, drift event — on a moto S3 server, the synthetic world's
partitions, the shipped policy and a real SQLite drift history and ledger. (Validation is
left out: these partitions are the generator's, and validation is not what is tested.)
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from driftloop.config.drift_policy import parse_policy
from driftloop.config.settings import DEFAULT_POLICY_PATH, Settings
from driftloop.contracts import storage
from driftloop.drift import history
from tests.unit.conftest import s3_client_for

synth = pytest.importorskip("driftloop_dev.synth")

BUCKET = "freeze-tests"
DAYS = 72
DRIFT_DAY = 28  # the first drifted day's index: 28 stable days = one sliding reference + window
END = date(2032, 3, 12)
ROWS_PER_DAY = 250


def _policy():
    """The shipped policy with a smaller sample (fast), under its own version: checks under a
    run's overrides would not count for hysteresis."""
    raw = yaml.safe_load(Path(DEFAULT_POLICY_PATH).read_text())
    raw["sampling"].update(sample_size=1500, mmd_sample_size=200, mmd_permutations=50)
    return parse_policy(raw, source="test")


@pytest.fixture(scope="module")
def world(moto_endpoint):
    s3 = s3_client_for(moto_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    spec = synth.world_spec(
        "abrupt",
        days=DAYS,
        drift_day=DRIFT_DAY,
        end_date=END.isoformat(),
        rows_per_day=ROWS_PER_DAY,
    )
    for index in range(DAYS):
        for key, data in synth.partition_files(spec, index):
            storage.put_bytes(s3, BUCKET, key, data)
    return s3, spec


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return Settings(bucket=BUCKET, database_url=f"sqlite:///{tmp_path / 'driftloop.db'}")


def check(s3, settings: Settings, end_day: str) -> tuple[dict, dict | None]:
    """One daily check of the window ending ``end_day``, as drift_monitor's tasks run it."""
    from driftloop.drift.events import open_drift_event
    from driftloop.drift.profiling import (
        compute_statistics,
        profile_current_partition,
        resolve_reference,
    )
    from driftloop.drift.run import plan_windows
    from driftloop.drift.verdict import decide_and_record

    policy = _policy()
    run_id = f"scheduled__{end_day}"
    plan = plan_windows(s3, settings, end_day, policy)
    validated = {
        "valid": plan["partitions"],
        "quarantined": [],
        "warnings": [],
        "missing_days": plan["missing_days"],
    }
    reference = resolve_reference(s3, settings, plan, validated, policy)
    profiles = [
        profile_current_partition(s3, settings, partition, reference, policy)
        for partition in validated["valid"]["current"]
    ]
    statistics = compute_statistics(s3, settings, reference, profiles, policy, run_id)
    decision = decide_and_record(
        s3,
        settings,
        plan=plan,
        reference=reference,
        statistics=statistics,
        validated=validated,
        policy=policy,
        run_id=run_id,
    )
    decision["planned_reference_days"] = plan["reference_days"]
    event = (
        open_drift_event(settings, decision, run_id) if decision["severity"] == "critical" else None
    )
    return decision, event


def _day(spec, index: int) -> str:
    return spec.date_of(index).isoformat()


def test_a_persistent_drift_keeps_alerting_while_its_event_is_open_and_accepting_moves_on(
    world, settings
):
    from driftloop.contracts.windows import drift_windows
    from driftloop.drift.events import accept_new_normal

    s3, spec = world
    engine = history.engine_for(settings.database_url)

    before, event = check(s3, settings, _day(spec, DRIFT_DAY - 1))
    assert (before["severity"], event) == ("none", None)
    assert before["reference"]["rule"] == "sliding"

    # the drift is detected within days and opens one event
    detected = None
    for index in range(DRIFT_DAY, DRIFT_DAY + 5):
        decision, event = check(s3, settings, _day(spec, index))
        if event is not None:
            detected = index
            break
    assert detected is not None, "the abrupt drift was never critical"
    assert event["already_open"] is False
    event_id = event["event_id"]
    opening = history.get_check(engine, f"scheduled__{_day(spec, detected)}")
    assert (opening["reference_kind"], opening["reference_rule"]) == ("sliding", "sliding")

    # the later checks (every other day, to keep the test short) — until the plain sliding
    # reference would hold drifted days only, two weeks and more after the detection — are
    # measured against the reference of the opening check and stay critical
    last = DRIFT_DAY + 28
    assert last - detected > 14
    for index in [*range(detected + 1, last, 2), last]:
        decision, attached = check(s3, settings, _day(spec, index))
        reference = decision["reference"]
        assert (reference["rule"], reference["event_id"]) == ("frozen", event_id), reference
        assert reference["reference_id"] == opening["reference_id"]
        assert f"frozen by drift event {event_id}" in reference["reason"]
        assert decision["planned_reference_days"] == []  # nothing listed or validated
        assert decision["severity"] == "critical", (index, decision["drifted_features"])
        assert attached == {"event_id": event_id, "already_open": True, "decision": decision}
        row = history.get_check(engine, f"scheduled__{_day(spec, index)}")
        assert (row["reference_rule"], row["reference_event_id"]) == ("frozen", event_id)
        assert row["reference_reason"] == reference["reason"]
    assert drift_windows(_day(spec, last), 14).reference[0] == _day(spec, DRIFT_DAY + 1)
    assert history.get_event(engine, event_id)["status"] == "NEEDS_REVIEW"

    # the operator accepts the drift as the new normal: the window last checked
    accepted = accept_new_normal(
        s3, settings, event_id, actor="oncall-alice", note="new cameras since March"
    )
    assert accepted["accepted_window"] == {
        "start": _day(spec, last - 13),
        "end": _day(spec, last),
    }
    assert accepted["accepted_check_run_id"] == f"scheduled__{_day(spec, last)}"
    event = history.get_event(engine, event_id)
    assert (event["status"], event["actor"]) == ("ACCEPTED", "oncall-alice")

    # the next checks compare with the accepted window: the new normal is no drift
    for index in (last + 1, last + 2):
        decision, opened = check(s3, settings, _day(spec, index))
        reference = decision["reference"]
        assert (reference["rule"], reference["event_id"]) == ("accepted", event_id)
        assert reference["days"] == [_day(spec, i) for i in range(last - 13, last + 1)]
        assert decision["planned_reference_days"] == reference["days"]
        assert decision["severity"] != "critical", decision["drifted_features"]
        assert opened is None
    # until the sliding reference starts on the accepted window's first day: it moves on
    decision, opened = check(s3, settings, _day(spec, last + 13))
    assert decision["reference"]["rule"] == "accepted"
    decision, opened = check(s3, settings, _day(spec, last + 14))
    assert decision["reference"]["rule"] == "sliding"
    assert decision["reference"]["days"][0] == _day(spec, last - 13)
    assert decision["severity"] != "critical"
    assert opened is None


def test_ignoring_unfreezes_and_a_drift_that_persists_is_asked_about_again(world, settings):
    """*Ignore* says the data is fine: the freeze ends with it and the reference slides on,
    so a drift that persists opens a new event (the operator is asked again)."""
    from driftloop.drift.events import record_event_answer

    s3, spec = world
    engine = history.engine_for(settings.database_url)
    start = DRIFT_DAY + 2
    _, event = check(s3, settings, _day(spec, start))
    assert event is not None
    assert event["already_open"] is False
    decision, attached = check(s3, settings, _day(spec, start + 1))
    assert decision["reference"]["rule"] == "frozen"
    assert attached["already_open"] is True

    answer = {
        "chosen_options": ["Ignore"],
        "responded_by_user": {"id": "7", "name": "oncall-bob"},
        "responded_at": "2032-02-01T10:00:00+00:00",
    }
    record_event_answer(settings, event["event_id"], "IGNORED", answer)
    assert history.get_event(engine, event["event_id"])["closed_at"] is not None
    decision, reopened = check(s3, settings, _day(spec, start + 2))
    assert decision["reference"]["rule"] == "sliding"
    assert decision["severity"] == "critical"
    assert reopened["already_open"] is False
    assert reopened["event_id"] != event["event_id"]


def test_a_late_check_of_an_older_window_belongs_to_the_event_a_later_one_opened(world, settings):
    s3, spec = world
    later = DRIFT_DAY + 4
    _, event = check(s3, settings, _day(spec, later))
    history.set_event_status(
        history.engine_for(settings.database_url),
        event["event_id"],
        "RESOLVED",
        actor="airflow:retrain",
        note="promoted",
    )
    decision, late = check(s3, settings, _day(spec, later - 1))
    assert decision["reference"]["rule"] == "sliding"  # an earlier window: nothing froze it
    assert decision["severity"] == "critical"
    assert late == {"event_id": event["event_id"], "already_open": True, "decision": decision}


def test_the_reference_rules_are_chosen_in_order(settings):
    """Champion first; then an open sliding event freezes; then an accepted window; then the
    plain sliding days. Events without a recorded check (opened by hand) freeze nothing."""
    from driftloop.contracts.windows import drift_windows
    from driftloop.drift.run import choose_reference

    engine = history.engine_for(settings.database_url)
    windows = drift_windows("2032-05-31", 14)
    champion = {"model_version": "4", "uri": "s3://b/profiles/reference/abc/", "rule": "champion"}
    assert choose_reference(engine, BUCKET, windows, champion)["kind"] == "champion"
    assert choose_reference(engine, BUCKET, windows, None)["rule"] == "sliding"
    history.open_event(engine, "by-hand", "critical", ["brightness"])
    assert choose_reference(engine, BUCKET, windows, None)["rule"] == "sliding"

    def opened_by(run_id: str, end: date, reference_id: str) -> int:
        history.record_check(
            engine,
            history.CheckRecord(
                run_id, end - timedelta(days=13), end, "sliding", reference_id, "critical",
                "v1", {"brightness": "critical"}, ["brightness"],
            ),
        )  # fmt: skip
        return history.open_event(engine, run_id, "critical", ["brightness"])

    first = opened_by("r-1", date(2032, 5, 10), "a" * 64)
    second = opened_by("r-2", date(2032, 5, 20), "b" * 64)
    frozen = choose_reference(engine, BUCKET, windows, None)
    assert (frozen["rule"], frozen["event_id"]) == ("frozen", first)  # the oldest open event
    assert frozen["uri"] == f"s3://{BUCKET}/profiles/reference/{'a' * 64}/"
    # a check of a window that ended before the event's is not frozen by it
    assert choose_reference(engine, BUCKET, drift_windows("2032-05-10", 14), None)["rule"] == (
        "sliding"
    )
    # a failed retraining fixed nothing: still frozen
    history.set_event_status(engine, first, "RETRAINING_FAILED", actor="airflow:r")
    assert choose_reference(engine, BUCKET, windows, None)["event_id"] == first
    history.close_event(
        engine, first, "ACCEPTED", actor="alice", note="n",
        accepted=history.AcceptedWindow(date(2032, 5, 7), date(2032, 5, 20), "r-9"),
    )  # fmt: skip
    assert choose_reference(engine, BUCKET, windows, None)["event_id"] == second
    history.close_event(engine, second, "IGNORED", actor="bob", note="fine")
    accepted = choose_reference(engine, BUCKET, windows, None)
    assert (accepted["rule"], accepted["event_id"]) == ("accepted", first)
    assert (accepted["days"][0], accepted["days"][-1]) == ("2032-05-07", "2032-05-20")
    # the sliding reference of the window ending 2032-06-03 starts on 2032-05-07: it moves on
    assert choose_reference(engine, BUCKET, drift_windows("2032-06-02", 14), None)["rule"] == (
        "accepted"
    )
    assert choose_reference(engine, BUCKET, drift_windows("2032-06-03", 14), None)["rule"] == (
        "sliding"
    )
