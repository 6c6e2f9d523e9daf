"""The labeling queue end to end on the embedded stack: a day served by the real batch
scorer (driftloop.serving.batch, small real ONNX models in place of the registry: see
tests/unit/serving/test_batch.py) in shadow, ``dag.test()`` of labeling_queue writes the
day's batch, and ``driftloop labels import`` of a Label Studio export built from that batch
lands a labeled day that the snapshot's frame loader (driftloop.retrain.frames) reads, with
the queue's provenance in ``frames.jsonl``.

Its own bucket (``rollout/routing.json`` is one key per bucket), its own drift history and a
registered model nobody holds (no champion: the reference is the drift check's, built here
from the day before as the scorer served it).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from driftloop.contracts import storage
from driftloop.contracts.labeled import read_frames_index
from driftloop.drift.history import CheckRecord, engine_for, record_check
from driftloop.drift.reference import build_reference_bundle
from driftloop.retrain.frames import discover_frames, load_frame
from driftloop.serving import batch
from driftloop_dev.synth import S3Sink, world_spec
from driftloop_dev.synth.traffic import write_traffic
from tests.conftest import load_dag
from tests.unit.serving.docs import CHALLENGER, CHAMPION, aliases, doc
from tests.unit.serving.test_batch import FakeStore

pytestmark = pytest.mark.integration

DRIFTLOOP = Path(sys.executable).parent / "driftloop"
REFERENCE_DAY, DAY = "2031-09-14", "2031-09-15"
FRAMES = 40
BUDGET = 12


@pytest.fixture
def served(stack, s3, tmp_path, monkeypatch):
    """Two days served in shadow (the second with the new camera cam-05), the first as the
    reference of a recorded drift check; the environment pointed at this test's stores."""
    bucket = f"labeling-it-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    database = f"sqlite:///{tmp_path / 'history.db'}"
    monkeypatch.setenv("DRIFTLOOP_BUCKET", bucket)
    monkeypatch.setenv("DRIFTLOOP_DATABASE_URL", database)
    monkeypatch.setenv("DRIFTLOOP_LEDGER_ANCHOR_BUCKET", bucket)  # its own ledger's anchors
    monkeypatch.setenv("DRIFTLOOP_REGISTERED_MODEL", f"nobody-{uuid.uuid4().hex[:8]}")
    policy = tmp_path / "drift_policy.yaml"
    from driftloop.config.settings import DEFAULT_POLICY_PATH

    text = DEFAULT_POLICY_PATH.read_text().replace(
        "budget_per_day: 200", f"budget_per_day: {BUDGET}"
    )
    assert f"budget_per_day: {BUDGET}" in text
    policy.write_text(text)
    monkeypatch.setenv("DRIFTLOOP_POLICY_PATH", str(policy))
    s3.put_object(Bucket=bucket, Key="rollout/routing.json", Body=doc("shadow").to_json())
    spec = world_spec(
        "abrupt", days=2, drift_day=1, end_date=DAY, rows_per_day=10, labeled_per_day=2,
        files_per_day=1,
    )  # fmt: skip
    write_traffic(S3Sink(s3, bucket), spec, [REFERENCE_DAY, DAY], FRAMES)
    store = FakeStore(aliases("shadow"), tmp_path)
    summaries = [batch.serve_day(s3, bucket, day, store) for day in (REFERENCE_DAY, DAY)]
    assert all(s["paired"] == FRAMES for s in summaries)
    bundle = build_reference_bundle(
        s3, bucket, [storage.list_partition(s3, bucket, REFERENCE_DAY)], 500
    )
    reference_day = date.fromisoformat(REFERENCE_DAY)
    record_check(
        engine_for(database),
        CheckRecord(
            run_id="check-reference", window_start=reference_day, window_end=reference_day,
            reference_kind="sliding", reference_id=bundle.reference_id, severity="none",
            policy_version="test", feature_levels={}, drifted_features=[],
            reference_rule="sliding",
        ),
    )  # fmt: skip
    return bucket


def _run(conf: dict):
    moment = datetime(2031, 9, 16, 5, 30, tzinfo=UTC)
    dag_run = load_dag("labeling_queue").test(run_conf=conf, logical_date=moment, run_after=moment)
    ti = next(t for t in dag_run.get_task_instances() if t.task_id == "queue")
    return ti.state, ti.xcom_pull(task_ids="queue")


def _export(tasks: list[dict]) -> list[dict]:
    """What Label Studio's Export → JSON gives after an annotator accepted each task's first
    prediction (and corrected nothing), the last task left unlabeled."""
    out = []
    for n, task in enumerate(tasks, 1):
        result = [
            dict(r, origin="prediction") for r in copy.deepcopy(task["predictions"][0]["result"])
        ]
        annotations = [] if n == len(tasks) else [
            {"id": n, "completed_by": 1, "result": result, "was_cancelled": False,
             "ground_truth": False, "created_at": "2031-09-17T10:00:00Z"}
        ]  # fmt: skip
        out.append({"id": 1000 + n, "data": task["data"], "annotations": annotations,
                    "predictions": [n], "meta": {}, "project": 1})  # fmt: skip
    return out


def test_a_served_day_is_queued_and_its_labels_land_for_the_next_snapshot(served, s3, tmp_path):
    bucket = served
    state, summary = _run({"day": DAY})
    assert state == "success"
    assert summary["queued"] == BUDGET
    assert summary["reference"] == "sliding"
    assert summary["new_cameras"] == ["cam-05"]
    manifest = storage.get_json(s3, bucket, f"labeling/{DAY}/manifest.json")
    assert len(manifest["frames"]) == BUDGET
    assert {f["model_version"] for f in manifest["frames"]} == {CHAMPION}
    # every frame was paired in shadow: both models' predictions go to the labelers
    assert all(f["predictions"] == [CHAMPION, CHALLENGER] for f in manifest["frames"])
    print(f"labeling_queue: {summary}")

    state, again = _run({"day": DAY})  # a day is queued once
    assert state == "success"
    assert again == {**summary, "already_queued": True}

    tasks = json.loads(storage.get_bytes(s3, bucket, f"labeling/{DAY}/tasks.json"))
    export = tmp_path / "export.json"
    export.write_text(json.dumps(_export(tasks)))
    command = [str(DRIFTLOOP), "labels", "import", "--batch-day", DAY, "--export", str(export)]
    done = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    imported = json.loads(done.stdout)
    assert imported["frames"] == BUDGET - 1
    assert imported["skipped_tasks"] == [1000 + BUDGET]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "already imported" in done.stdout

    prefix = storage.labeled_prefix(DAY)
    keys = [o["Key"] for o in storage.list_keys(s3, bucket, prefix)]
    rejected: list[dict[str, str]] = []
    frames = discover_frames(keys, prefix, rejected)
    loaded = [load_frame(s3, bucket, f, tmp_path, i) for i, f in enumerate(frames)]
    assert len(loaded) == BUDGET - 1
    assert all(f.reason is None for f in loaded), [f.reason for f in loaded if f.reason]
    index = read_frames_index(s3, bucket, DAY)
    assert {f.stem for f in loaded} == set(index)
    assert {(i.source, i.batch) for i in index.values()} == {("queue", f"labeling/{DAY}/")}
    assert rejected == []  # frames.jsonl and _SUCCESS are the day's own, not frames
