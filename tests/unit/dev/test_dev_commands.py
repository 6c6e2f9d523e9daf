"""The dev package's subcommands of ``driftloop`` (entry points ``driftloop.commands``)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

DRIFTLOOP = Path(sys.executable).parent / "driftloop"


def test_the_dev_package_registers_its_commands():
    from driftloop.cli import COMMAND_GROUP

    names = {entry.name for entry in entry_points(group=COMMAND_GROUP)}
    assert names == {"stack", "demo", "synth", "ui-check"}
    for entry in entry_points(group=COMMAND_GROUP):
        assert callable(entry.load()), entry.name


def test_parser_tree_has_the_dev_options():
    from driftloop.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["stack", "up", "--ui", "--celery", "--root", "/tmp/s", "--json"])
    assert (args.action, args.ui, args.celery, args.json) == ("up", True, True, True)
    assert args.handler.__module__ == "driftloop_dev.stack.cli"
    args = parser.parse_args(["demo", "--epochs", "3", "--keep"])
    assert (args.epochs, args.keep, args.handler.__module__) == (3, True, "driftloop_dev.demo.cli")
    args = parser.parse_args(["demo", "--frames-per-day", "120", "--monthly-epochs", "1"])
    assert (args.frames_per_day, args.monthly_epochs, args.serve_workers) == (120, 1, 2)
    args = parser.parse_args(["synth", "--scenario", "abrupt", "--days", "3"])
    assert args.handler.__module__ == "driftloop_dev.synth.__main__"
    args = parser.parse_args(["ui-check", "--timeout", "5"])
    assert args.timeout == 5.0


@pytest.mark.skipif(not DRIFTLOOP.exists(), reason="driftloop is not installed: `make venv`")
def test_stack_status_without_a_stack(tmp_path):
    done = subprocess.run(
        [str(DRIFTLOOP), "stack", "status", "--root", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3
    assert f"no stack recorded in {tmp_path}" in done.stderr
    down = subprocess.run(
        [str(DRIFTLOOP), "stack", "down", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert down.returncode == 0


@pytest.mark.skipif(not DRIFTLOOP.exists(), reason="driftloop is not installed: `make venv`")
def test_synth_through_driftloop_writes_a_world(tmp_path):
    done = subprocess.run(
        [
            str(DRIFTLOOP),
            "synth",
            "--scenario",
            "stable",
            "--days",
            "2",
            "--rows-per-day",
            "20",
            "--labeled-per-day",
            "1",
            "--end-date",
            "2024-06-30",
            "--out-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    truth = json.loads(done.stdout)
    assert truth["scenario"] == "stable"
    assert truth["end_date"] == "2024-06-30"
    assert list(tmp_path.rglob("*.parquet"))


# -- the demo's story: its days, its policy, its world -----------------------------------------


def test_the_demo_days_serve_from_the_first_champion_to_the_critical_check():
    from driftloop_dev.demo.cli import DRIFT_DAY, WORLD_DAYS, story_days
    from driftloop_dev.demo.world import demo_spec

    spec = demo_spec(days=WORLD_DAYS, drift_day=DRIFT_DAY, end_date="2026-11-29", labeled_per_day=4)
    days = story_days(spec)
    day = lambda i: spec.date_of(i).isoformat()  # noqa: E731
    # the first champion learns days 0-13; it serves every day after, up to the critical check
    assert days["first_window_end"] == day(13)
    assert days["served"] == [day(i) for i in range(14, 33)]
    # the check before the drift reads 14 served days; the critical one 5 drifted days
    assert [d for d, _ in days["checks"]] == [day(27), day(32)]
    assert days["rollout"] == [day(i) for i in range(33, 42)]
    assert days["traffic_until"] == 32


def test_the_demo_policy_changes_only_the_target_and_the_stage_lengths(tmp_path):
    import yaml

    from driftloop.config.promotion_policy import (
        DEFAULT_PROMOTION_POLICY_PATH,
        load_promotion_policy,
    )
    from driftloop_dev.demo.policy import (
        challenger_params,
        effective_policy,
        is_demo_policy,
        write_demo_policy,
    )

    path = write_demo_policy(tmp_path)
    demo = effective_policy({"promotion_policy": {"source": str(path)}})
    production = load_promotion_policy(DEFAULT_PROMOTION_POLICY_PATH)
    assert demo.version == f"{production.version}+demo"
    assert is_demo_policy(demo)
    assert not is_demo_policy(production)
    assert (demo.promote_to, production.promote_to) == ("challenger", "champion")
    assert challenger_params(demo) == {}
    assert challenger_params(production) == {"promote_to": "challenger"}
    # what the gate decides on is production's
    for knob in ("min_map50", "min_map50_95", "map_tolerance", "latency_tolerance"):
        assert getattr(demo, knob) == getattr(production, knob), knob
    assert demo.rollout.slo == production.rollout.slo
    # the stages are shorter, never longer
    assert demo.rollout.shadow.min_frames < production.rollout.shadow.min_frames
    assert demo.rollout.canary.min_frames < production.rollout.canary.min_frames
    assert demo.rollout.guard.hours < production.rollout.guard.hours <= 24
    written = yaml.safe_load(path.read_text())
    assert written["rollout"]["canary"]["share"] == demo.rollout.canary.share


def test_rollout_days_are_sized_for_the_stage_minimums():
    from types import SimpleNamespace

    from driftloop.config.promotion_policy import (
        DEFAULT_PROMOTION_POLICY_PATH,
        load_promotion_policy,
    )
    from driftloop_dev.demo.rollout import MAX_FRAMES, frames_for

    rollout = load_promotion_policy(DEFAULT_PROMOTION_POLICY_PATH).rollout
    doc = lambda stage, share: SimpleNamespace(stage=stage, shadow_share=share)  # noqa: E731
    # shadow pairs every frame: 200 paired frames (+40 %) need 280 frames
    assert frames_for(doc("shadow", 1.0), rollout, 150) == 280
    # the canary pairs its 5 % only: 100 paired frames need 2800
    assert frames_for(doc("canary", 0.05), rollout, 150) == 2800
    assert frames_for(doc("guard", 0.25), rollout, 150) == 560
    # never fewer than a day's traffic; no document (or serving): a day's traffic
    assert frames_for(doc("shadow", 1.0), rollout, 500) == 500
    assert frames_for(None, rollout, 150) == 150
    assert frames_for(doc("serving", 0.0), rollout, 150) == 150
    assert frames_for(doc("canary", 0.0001), rollout, 150) == MAX_FRAMES


class _RecordingSink:
    def __init__(self):
        import threading

        self.keys: list[str] = []
        self.lock = threading.Lock()

    def write(self, key, data, content_type):
        with self.lock:
            self.keys.append(key)


def test_the_demo_world_has_frames_and_labels_but_no_inference_logs():
    from driftloop_dev.demo.world import demo_spec, write_day_traffic, write_demo_world

    spec = demo_spec(days=3, drift_day=2, end_date="2026-11-29", labeled_per_day=2)
    sink = _RecordingSink()
    truth, objects = write_demo_world(sink, spec, traffic_days=[1], frames_per_day=3)
    assert truth.drift_start_date == "2026-11-29"
    assert objects == len(sink.keys)
    assert not [k for k in sink.keys if k.startswith("inference/")]
    # labeled frames every day, traffic (3 frames + manifest) only on the chosen day
    for day in ("2026-11-27", "2026-11-28", "2026-11-29"):
        labeled = [k for k in sink.keys if k.startswith(f"labeled/dt={day}/")]
        assert len(labeled) == 6  # 2 frames (image + label), frames.jsonl, _SUCCESS last
        assert labeled[-1] == f"labeled/dt={day}/_SUCCESS"
    assert len([k for k in sink.keys if k.startswith("frames/")]) == 4
    assert "frames/dt=2026-11-28/_frames.jsonl" in sink.keys
    # a rollout day's traffic: its manifest after its frames
    later = _RecordingSink()
    assert write_day_traffic(later, spec, 2, 5) == 5
    assert later.keys[-1] == "frames/dt=2026-11-29/_frames.jsonl"
    assert len(later.keys) == 6


def test_serving_days_are_dealt_to_the_workers_in_order():
    from driftloop_dev.demo.serving import split_days

    days = ["d1", "d2", "d3", "d4", "d5"]
    assert split_days(days, 2) == [["d1", "d3", "d5"], ["d2", "d4"]]
    assert split_days(days[:1], 2) == [["d1"]]
    assert split_days(days, 1) == [days]
    with pytest.raises(ValueError, match="workers must be >= 1"):
        split_days(days, 0)


class _FakeAirflow:
    """The REST calls SchedulerRunner makes: the DAG list, Variables, DAG runs."""

    def __init__(self, variable=None, runs=(), drift_runs=(), next_run_after=()):
        self.variables = {} if variable is None else {"driftloop_auto_retrain": variable}
        self.runs = list(runs)
        #: drift_monitor's running runs: {run_id: {task_id: state}}
        self.drift_runs = {run_id: dict(states) for run_id, states in drift_runs}
        #: retrain_detector's next_dagrun_run_after, one value per GET
        self.next_run_after = list(next_run_after)
        self.calls = []

    def get(self, path, **params):
        from driftloop_dev.airflow_api import AirflowAPIError

        self.calls.append(("get", path))
        if path == "dags":
            names = ("drift_monitor", "retrain_detector", "rollout_guard")
            return {"dags": [{"dag_id": n, "is_paused": False} for n in names]}
        if path.startswith("variables/"):
            key = path.split("/", 1)[1]
            if key not in self.variables:
                raise AirflowAPIError("GET", path, 404, "not found")
            return {"key": key, "value": self.variables[key]}
        if path == "dags/retrain_detector":
            return {
                "dag_id": "retrain_detector",
                "next_dagrun_run_after": self.next_run_after.pop(0),
            }
        if path == "dags/drift_monitor/dagRuns":
            assert params["state"] == ["running"]
            runs = [{"dag_run_id": r, "state": "running"} for r in self.drift_runs]
            return {"dag_runs": runs, "total_entries": len(runs)}
        if path.startswith("dags/drift_monitor/dagRuns/") and path.endswith("/taskInstances"):
            run_id = unquote(path.split("/")[3])
            tis = [
                {"task_id": t, "map_index": -1, "state": s}
                for t, s in self.drift_runs[run_id].items()
            ]
            return {"task_instances": tis, "total_entries": len(tis)}
        if path.endswith("/dagRuns"):
            states = self.runs.pop(0) if self.runs else ["success"]
            return {"dag_runs": [{"state": s} for s in states], "total_entries": len(states)}
        raise AssertionError(path)

    def post(self, path, body):
        self.calls.append(("post", path, body))
        self.variables[body["key"]] = body["value"]

    def patch(self, path, body, **params):
        self.calls.append(("patch", path, body))
        if "/taskInstances/" in path:
            _, _, run_id, _, task_id = path.removeprefix("dags/").split("/")
            self.drift_runs[unquote(run_id)][task_id] = body["new_state"]
            return
        self.variables[body["key"]] = body["value"]

    def delete(self, path):
        self.calls.append(("delete", path))
        del self.variables[path.split("/", 1)[1]]


def _policy(promote_to: str):
    from types import SimpleNamespace

    return SimpleNamespace(promote_to=promote_to, source="/etc/policy.yaml")


@pytest.mark.parametrize("before", [None, "true"])
def test_under_a_champion_policy_the_scheduler_demo_reviews_first_and_restores(before):
    from driftloop_dev.demo.runners import SchedulerRunner

    api = _FakeAirflow(variable=before)
    runner = SchedulerRunner(api)
    assert runner.before_drift_checks(_policy("challenger")) is None
    assert api.variables == ({} if before is None else {"driftloop_auto_retrain": before})
    note = runner.before_drift_checks(_policy("champion"))
    assert "promote_to=challenger" in note
    assert api.variables["driftloop_auto_retrain"] == "false"
    runner.close()
    runner.close()  # once restored, nothing more to do
    assert api.variables == ({} if before is None else {"driftloop_auto_retrain": before})


def test_a_scheduled_check_waiting_for_a_day_the_demo_never_serves_is_skipped():
    from driftloop_dev.demo.runners import SchedulerRunner

    waiting = "scheduled__2026-11-30T02:30:00+00:00"
    api = _FakeAirflow(
        drift_runs=[
            (waiting, {"resolve_run": "success", "wait_for_data": "deferred"}),
            ("manual__1", {"resolve_run": "success", "wait_for_data": "success"}),
        ]
    )
    note = SchedulerRunner(api).before_drift_checks(_policy("challenger"))
    assert api.drift_runs[waiting]["wait_for_data"] == "skipped"
    assert api.drift_runs["manual__1"]["wait_for_data"] == "success"  # past its sensor
    assert waiting in note
    (patch,) = [c for c in api.calls if c[0] == "patch"]
    assert (
        patch[1]
        == f"dags/drift_monitor/dagRuns/{quote(waiting, safe='')}/taskInstances/wait_for_data"
    )
    assert SchedulerRunner(api).before_drift_checks(_policy("challenger")) is None


def test_before_the_world_the_runs_make_up_scheduled_are_created_and_ended(monkeypatch):
    import driftloop_dev.airflow_runs as runs
    from driftloop_dev.demo.runners import SchedulerRunner

    api = _FakeAirflow(
        # the scheduler has not created the latest monthly run yet; then it has
        next_run_after=["2026-11-01T04:00:00Z", "2099-12-01T04:00:00Z"],
        runs=[["running"], ["success"]],
    )
    monkeypatch.setattr(runs.time, "sleep", lambda s: None)
    SchedulerRunner(api).before_world()
    assert api.next_run_after == []  # asked until the due run existed
    assert [c[1] for c in api.calls if c[1].endswith("/dagRuns")] == [
        "dags/retrain_detector/dagRuns"
    ] * 2  # then waited for it to end


def test_settle_waits_for_the_runs_the_asset_events_started(monkeypatch):
    import driftloop_dev.airflow_runs as runs
    from driftloop_dev.demo.runners import SchedulerRunner

    api = _FakeAirflow(runs=[["success", "queued"], ["running"], ["success", "success"]])
    monkeypatch.setattr(runs.time, "sleep", lambda s: None)
    SchedulerRunner(api).settle("rollout_guard")
    assert [c for c in api.calls if c[1].endswith("/dagRuns")] == [
        ("get", "dags/rollout_guard/dagRuns")
    ] * 3
