"""Issue 12's "done when": a ``confidence-decay`` world with labels shows a performance event
before any input-drift event — with a real trained champion and real model outputs.

1. The world's first 14 days are stable: labeled frames and camera traffic (the labeled
   frames are the day's first traffic frames). ``dag.test()`` of ``retrain_detector`` trains
   the first champion on them (3 epochs from scratch, 160 px, the local backend), evaluates
   it (its gate evaluation is the performance baseline), makes its drift reference from its
   own outputs on those frames, and promotes it (the routing document serving follows).
2. Every day is served by the champion (:func:`driftloop.serving.batch.serve_day`, what
   ``driftloop serve-batch`` runs), so the inference logs hold its real outputs.
3. From the day before the drift, day by day through the decay: the day is written
   (``upside_down`` grows: more and more players are drawn upside down, the same pixels
   mirrored inside the same box, so no image statistic moves), served, and the window
   ending that day is checked by drift_monitor's own steps (:mod:`.drift_checks`; the
   functions its tasks call, without the scheduler: ``dag.test()`` of the whole DAG each day
   would add its report, MLflow run and metrics push, minutes in all).

The first day with an open drift event of kind ``performance`` and the first day whose
decision has input drift (``input_severity`` >= warn) are recorded; the event must open, and
strictly before any input drift. Each check prints a line: day, share upside down, measured
mAP@0.5:0.95 (all cameras), its label-free estimate, input severity (and the alerting
features) and performance level.

Measured on 2 shared CPU cores: 4 min 53 s at load ~4 (world 24 s, champion 145 s, checks
91 s), 8 min 39 s at load ~8. Champion: gate mAP50 0.491, mAP50-95 0.280 (the same in every
run: seeded training); measured mAP50-95 0.285 (day before the drift), 0.270,
0.212, 0.189 (share 0.3: critical, the performance event opens on the third drifted day);
no input feature alerts; the label-free estimate does not fall (0.26 -> 0.36): the model's
confidence hardly moves, which is why labels are needed.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest
import yaml

from tests.conftest import REPO, load_dag
from tests.integration.detector_models import MISSING_TRAINING_ENV, TRAIN_PYTHON

pytestmark = pytest.mark.integration

TRAIN_DAYS = 14  # the first champion's window: days 0..13
DRIFT_DAY = TRAIN_DAYS  # the decay starts the day after the champion's window
LABELED = 50  # the policy's performance.min_frames: every labeled day is judged
FRAMES = LABELED  # traffic: the labeled frames, nothing more (serving stays cheap)
END = "2032-08-31"  # the world's last day
IMGSZ = 160

if not TRAIN_PYTHON.exists():
    pytest.skip(MISSING_TRAINING_ENV, allow_module_level=True)


def _write_day(s3, bucket: str, spec, index: int) -> None:
    """The day's labeled frames (``_SUCCESS`` last) and its traffic (manifest last)."""
    from driftloop.contracts import storage
    from driftloop_dev.synth.frames import labeled_files
    from driftloop_dev.synth.traffic import traffic_files

    for key, data, content_type in [
        *labeled_files(spec, index, IMGSZ),
        *traffic_files(spec, index, FRAMES, image_size=IMGSZ),
    ]:
        storage.put_bytes(s3, bucket, key, data, content_type)


@pytest.fixture
def isolated(stack, s3, monkeypatch, tmp_path):
    """Its own bucket, registered model, drift history and ledger: a champion, a routing
    document and drift events of this world reach no other test."""
    from driftloop.contracts import storage
    from driftloop_dev.synth.world import golden_objects

    bucket = f"decay-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    for key, data, content_type in golden_objects():
        storage.put_bytes(s3, bucket, key, data, content_type)
    policy = yaml.safe_load((REPO / "include/driftloop/config/promotion_policy.yaml").read_text())
    # floors for a 3-epoch model on 160 px frames, and no latency floor on a busy machine
    # (latency is not what this test is about), as test_retrain_dag's
    policy.update({"min_map50": 0.2, "min_map50_95": 0.08, "max_p95_latency_ms": 1000.0})
    path = tmp_path / "promotion_policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    for name, value in {
        "DRIFTLOOP_BUCKET": bucket,
        "DRIFTLOOP_REGISTERED_MODEL": f"decay-detector-{uuid.uuid4().hex[:8]}",
        "DRIFTLOOP_DATABASE_URL": f"sqlite:///{tmp_path / 'driftloop.db'}",
        # its own ledger anchors too: its ledger's row 1 must not take the shared ledger's
        "DRIFTLOOP_LEDGER_ANCHOR_BUCKET": bucket,
        "DRIFTLOOP_PROMOTION_POLICY_PATH": str(path),
    }.items():
        monkeypatch.setenv(name, value)
    return bucket


def _measured(engine, version: str, day: str) -> tuple[float | None, float | None]:
    from driftloop.performance.store import performance_series

    rows = {
        r["source"]: r["map50_95"]
        for r in performance_series(engine, model_version=version)
        if str(r["day"]) == day and r["camera"] == "*"
    }
    return rows.get("measured"), rows.get("estimated")


def _alerting(decision) -> list[str]:
    return [
        f"{f['feature']}:{f['alert_level']}"
        for f in decision["features"]
        if f["alert_level"] != "none"
    ]


def test_a_performance_event_opens_before_any_input_drift(isolated, s3):
    from mlflow import MlflowClient

    from driftloop.config.drift_policy import load_policy
    from driftloop.config.settings import Settings
    from driftloop.drift import history
    from driftloop.drift.decision import RANK
    from driftloop.promotion import registry
    from driftloop.serving.batch import serve_day
    from driftloop.serving.models import ModelStore
    from driftloop_dev.synth import world_spec
    from driftloop_dev.synth.scenarios import CONFIDENCE_DECAY_DAYS
    from tests.integration.drift_checks import daily_check

    began = time.perf_counter()
    timings: dict[str, float] = {}
    settings = Settings.from_env()
    days = DRIFT_DAY + CONFIDENCE_DECAY_DAYS
    spec = world_spec(
        "confidence-decay", days=days, drift_day=DRIFT_DAY, end_date=END,
        labeled_per_day=LABELED,
    )  # fmt: skip
    for index in range(TRAIN_DAYS):
        assert spec.day_params(index).upside_down == 0
        _write_day(s3, isolated, spec, index)
    timings["world"] = time.perf_counter() - began

    # 1. the first champion, trained, evaluated and promoted by retrain_detector
    window_end = spec.date_of(TRAIN_DAYS - 1).isoformat()
    conf = {
        "end_date": window_end, "last_n_days": TRAIN_DAYS, "epochs": 3, "imgsz": IMGSZ,
        "batch": 8, "base": "yolo11n.yaml", "reason": "confidence-decay test",
    }  # fmt: skip
    when = datetime(2032, 9, 1, tzinfo=UTC)
    retrain = load_dag("retrain_detector").test(run_conf=conf, logical_date=when, run_after=when)
    states = {ti.task_id: ti.state for ti in retrain.get_task_instances()}
    assert states["promote"] == "success", states
    evaluate = next(t for t in retrain.get_task_instances() if t.task_id == "evaluate")
    evaluation = evaluate.xcom_pull(task_ids="evaluate")["candidate"]
    # it really detects: its gate evaluation (the performance baseline)
    assert evaluation["map50"] > 0.3, evaluation
    client = MlflowClient(settings.mlflow_tracking_uri)
    version = registry.aliases(client, settings.registered_model)["champion"]
    timings["champion"] = time.perf_counter() - began - timings["world"]

    policy = load_policy(settings.policy_path)
    engine = history.engine_for(settings.database_url)
    first_event = first_input = None
    lines = []
    with ModelStore(
        client, settings.registered_model, tracking_uri=settings.mlflow_tracking_uri
    ) as store:
        for index in range(TRAIN_DAYS - 1):  # the champion's own window, served
            serve_day(s3, isolated, spec.date_of(index), store)
        for index in range(TRAIN_DAYS - 1, days):
            day = spec.date_of(index).isoformat()
            if index >= TRAIN_DAYS:
                _write_day(s3, isolated, spec, index)
            serve_day(s3, isolated, day, store)
            decision = daily_check(s3, settings, day, policy, publish=True)
            performance = decision["performance"] or {"level": "none"}
            measured, estimated = _measured(engine, version, day)
            lines.append(
                f"{day} upside down {spec.day_params(index).upside_down:.1f} | measured "
                f"{measured if measured is None else round(measured, 3)} | estimated "
                f"{estimated if estimated is None else round(estimated, 3)} | input "
                f"{decision['input_severity']} {_alerting(decision)} | performance "
                f"{performance['level']}"
            )
            print(lines[-1], flush=True)
            if first_input is None and RANK[decision["input_severity"]] >= RANK["warn"]:
                first_input = index
            event = decision["event"]
            kind = None if event is None else history.get_event(engine, event["event_id"])["kind"]
            if kind == "performance":
                first_event = index
                break
    timings["decay"] = time.perf_counter() - began - timings["world"] - timings["champion"]
    print(
        f"champion v{version}: gate mAP50 {evaluation['map50']:.3f} mAP50-95 "
        f"{evaluation['map50_95']:.3f}; first performance event day {first_event}, first "
        f"input drift day {first_input} (drift day {DRIFT_DAY}); timings (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
    )
    assert first_event is not None, "no performance event opened:\n" + "\n".join(lines)
    assert first_event >= DRIFT_DAY, "\n".join(lines)
    assert first_input is None or first_event < first_input, "\n".join(lines)

    # what an operator sees in the MLflow UI: the event day's drift run carries the verdict
    run = client.get_run(decision["logged"]["run_id"])
    assert run.data.metrics["performance/level"] == 2.0
    assert run.data.metrics["performance/measured/map50_95/all"] == pytest.approx(measured)
    assert run.data.metrics["performance/baseline"] == pytest.approx(evaluation["map50_95"])
    assert run.data.metrics["performance/drop"] == pytest.approx(performance["drop"])
    assert "performance.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
