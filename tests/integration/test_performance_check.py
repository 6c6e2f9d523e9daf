"""The performance check against the embedded stack (moto S3, mlflow server) with a real ONNX
champion.

A tiny YOLO11n (random weights, class biases set so that it finds things: accuracy is not the
point, the plumbing is) is exported to ONNX FP32 + INT8 by the training image's exporter,
logged and registered the way ``retrain_detector`` does (ONNX hashes and dataset tags) and
made champion; its "gate evaluation" is appended to the ledger as ``retrain/evaluate.py``
appends it, from its FP32 mAP on the eval split of a real snapshot of two synthetic days.
The window holds a labeled-only day (with ``frames.jsonl`` and one broken label), a labeled
day that serving also logged, and a logged-only day; the logs are the champion's INT8 model
run as serving runs it (plus rows of another version that must be left out).
"""

from __future__ import annotations

import hashlib
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.integration.detector_models import (
    MISSING_TRAINING_ENV,
    TRAIN_PYTHON,
    export_detectors,
)

pytestmark = pytest.mark.integration

IMGSZ = 160
END = date(2031, 7, 5)
N_DAYS = 5  # 0, 1: the snapshot; 2: labeled; 3: labeled + logged; 4: logged
LABELED = 10
CAMERAS = ("cam-01", "cam-02")

if not TRAIN_PYTHON.exists():
    pytest.skip(MISSING_TRAINING_ENV, allow_module_level=True)


def spec_day(i: int) -> date:
    return END - timedelta(days=N_DAYS - 1 - i)


@pytest.fixture(scope="module")
def world(s3):
    """The bucket: golden set, complete labeled days 0-3 (days 2 and 3 with cameras of
    our own in ``frames.jsonl``, day 2 with a broken label), the snapshot of days 0-1."""
    from driftloop.contracts import storage
    from driftloop.contracts.labeled import LabeledFrameInfo, frames_index_bytes, frames_index_key
    from driftloop.retrain.snapshot import snapshot_dataset
    from driftloop_dev.synth import world_spec
    from driftloop_dev.synth.frames import labeled_files
    from driftloop_dev.synth.world import golden_objects

    bucket = f"perf-it-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    spec = world_spec(
        "stable", days=N_DAYS, end_date=END, rows_per_day=1, labeled_per_day=LABELED,
        files_per_day=1,
    )  # fmt: skip
    for key, data, content_type in golden_objects():
        storage.put_bytes(s3, bucket, key, data, content_type)
    for i in range(4):
        stems = []
        for key, data, content_type in labeled_files(spec, i, IMGSZ):
            storage.put_bytes(s3, bucket, key, data, content_type)
            if key.endswith(".png"):
                stems.append(Path(key).stem)
        if i >= 2:
            index = [LabeledFrameInfo(s, CAMERAS[n % 2]) for n, s in enumerate(stems)]
            storage.put_bytes(s3, bucket, frames_index_key(spec_day(i)), frames_index_bytes(index))
    prefix = storage.labeled_prefix(spec_day(2))
    storage.put_bytes(s3, bucket, f"{prefix}images/broken.png", labeled_files(spec, 2, IMGSZ)[0][1])
    storage.put_bytes(s3, bucket, f"{prefix}labels/broken.txt", b"0 0.5 0.5 1.5 0.2\n")
    snapshot = snapshot_dataset(s3, bucket, days=[spec_day(0), spec_day(1)], eval_share=0.3)
    return {"bucket": bucket, "spec": spec, "snapshot": snapshot}


@pytest.fixture(scope="module")
def champion(stack, s3, world, tmp_path_factory):
    """Registered v1 = champion, with its ONNX hashes, dataset tag and gate evaluation."""
    import mlflow

    from driftloop.config.settings import Settings
    from driftloop.evaluation.detector import evaluate_model
    from driftloop.promotion import registry
    from driftloop.retrain.model_files import download_onnx
    from driftloop.retrain.records import ledger
    from driftloop.retrain.snapshot_io import download_dataset
    from driftloop.training import tracking

    root = tmp_path_factory.mktemp("perf-detectors")
    paths = export_detectors(root, {"champion": (0, 0.4, 0.4)}, imgsz=IMGSZ, end=END)["champion"]
    uri = stack.env["MLFLOW_TRACKING_URI"]
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    name = f"perf-detector-{uuid.uuid4().hex[:8]}"
    mlflow.set_experiment("performance-check-tests")
    example = np.full((1, 3, IMGSZ, IMGSZ), 0.5, dtype=np.float32)
    with mlflow.start_run(run_name="perf-champion") as run:
        logged = {
            kind: tracking.log_onnx_model(
                paths[kind], name=f"detector-{kind}", example=example,
                metadata={"imgsz": IMGSZ}, tags={"precision": kind},
            )
            for kind in ("int8", "fp32")
        }  # fmt: skip
    files = {k: download_onnx(v["model_uri"], root / "logged" / k) for k, v in logged.items()}
    snapshot = world["snapshot"]
    version, _ = registry.register_candidate(
        client,
        name,
        model_uri=logged["int8"]["model_uri"],
        run_id=run.info.run_id,
        airflow_run_id="perf-champion",
        tags={
            registry.FP32_MODEL_TAG: logged["fp32"]["model_uri"],
            "int8_sha256": hashlib.sha256(files["int8"].read_bytes()).hexdigest(),
            "fp32_sha256": hashlib.sha256(files["fp32"].read_bytes()).hexdigest(),
            "dataset_sha256": snapshot.sha256,
        },
        description="champion",
    )
    client.set_registered_model_alias(name, registry.CHAMPION, version.version)
    settings = Settings.from_env().model_copy(
        update={
            "bucket": world["bucket"],
            "registered_model": name,
            "database_url": f"sqlite:///{root / 'driftloop.db'}",
            # its own ledger's anchors too: its row 1 must not meet the shared ledger's row 1
            "ledger_anchor_bucket": world["bucket"],
        }
    )
    data = download_dataset(s3, snapshot.uri, root / "snapshot")
    gate = evaluate_model(files["fp32"], data)
    ledger(settings).append(
        "evaluation",
        actor="airflow:perf-retrain",
        subject=f"model:{name}/v{version.version}",
        payload={
            "candidate": {"version": str(version.version), "map50": gate.map50}
            | {"map50_95": gate.map50_95, "n_images": gate.n_images},
            "champion": None,
            "delta": None,
            "latency": None,
            "uri": f"s3://{world['bucket']}/reports/retrain/perf-retrain/evaluation.json",
        },
        input_hashes={"dataset": snapshot.sha256},
        idempotency_key="retrain_detector/perf-retrain/evaluate",
    )
    return {"settings": settings, "version": str(version.version), "files": files, "gate": gate}


def write_logs(s3, bucket, spec, champion, day_index: int, workdir: Path) -> list[float]:
    """The day's inference log as serving writes it, from the champion's INT8 model; returns
    the champion rows' confidence_max."""
    import pyarrow.parquet as pq
    from PIL import Image

    from driftloop.contracts import storage
    from driftloop.serving import records
    from driftloop.serving.features import image_features
    from driftloop.serving.models import open_model
    from driftloop.serving.scorer import run_model
    from driftloop_dev.synth.frames import labeled_files

    day = spec_day(day_index)
    model = open_model(champion["files"]["int8"], name="it", version="1", workdir=workdir)
    rows = []
    images = [(k, d) for k, d, _ in labeled_files(spec, day_index, IMGSZ) if k.endswith(".png")]
    for n, (key, data) in enumerate(images):
        image = Image.open(io.BytesIO(data)).convert("RGB")
        result = run_model(model, image)
        assert result.error is None, result.error
        row = records.inference_row(
            ts=datetime(day.year, day.month, day.day, 12, n, tzinfo=UTC), image_id=Path(key).stem,
            camera_id=CAMERAS[n % 2], model_version=champion["version"],
            features=image_features(image), embedding=result.embedding, scores=result.scores,
            classes=result.classes, best_score=result.best_score, latency_ms=result.latency_ms,
        )  # fmt: skip
        rows += [row, {**row, "model_version": "99", "confidence_max": 1.0}]
    out = io.BytesIO()
    pq.write_table(records.inference_table(rows), out)
    storage.put_bytes(s3, bucket, storage.inference_prefix(day) + "part-0.parquet", out.getvalue())
    storage.put_bytes(s3, bucket, storage.success_key(day), b"")
    return [r["confidence_max"] for r in rows if r["model_version"] == champion["version"]]


def test_measured_and_estimated_days_of_a_real_champion(s3, world, champion, tmp_path):
    from driftloop.contracts import storage
    from driftloop.drift import history
    from driftloop.evaluation.detector import evaluate_model
    from driftloop.performance import atc, calibration, store
    from driftloop.performance.check import run_performance_check
    from driftloop.performance.labeled_days import load_labeled_day

    bucket, settings, version = world["bucket"], champion["settings"], champion["version"]
    logged = {
        i: write_logs(s3, bucket, world["spec"], champion, i, tmp_path / f"s{i}") for i in (3, 4)
    }
    window = {"window_start": spec_day(2), "window_end": spec_day(4), "s3": s3, "n_resamples": 200}

    doc = run_performance_check(settings, run_id="scheduled__perf-1", **window)

    assert doc["model_version"] == version
    gate = champion["gate"]
    assert doc["baseline"]["map50"] == pytest.approx(gate.map50)
    assert doc["baseline"]["map50_95"] == pytest.approx(gate.map50_95)
    assert doc["baseline"]["source"].startswith("ledger evaluation row ")
    keys = [(d["day"], d["source"], d["camera"]) for d in doc["days"]]
    d2, d3, d4 = (spec_day(i).isoformat() for i in (2, 3, 4))
    assert keys == [
        (d2, "measured", "*"), (d2, "measured", "cam-01"), (d2, "measured", "cam-02"),
        (d3, "estimated", "*"),
        (d3, "measured", "*"), (d3, "measured", "cam-01"), (d3, "measured", "cam-02"),
        (d4, "estimated", "*"),
    ]  # fmt: skip
    by_key = dict(zip(keys, doc["days"], strict=True))
    assert by_key[(d2, "measured", "*")]["n_frames"] == LABELED
    assert by_key[(d2, "measured", "cam-01")]["n_frames"] == LABELED // 2
    assert doc["rejected"] == [
        {
            "key": f"{storage.labeled_prefix(d2)}labels/broken.txt",
            "reason": "malformed label: line 1: w = 1.5 outside [0, 1]",
        }
    ]
    # the measured number is the gate's scoring of the same frames
    frames = load_labeled_day(s3, bucket, d3, tmp_path / "d3")
    direct = evaluate_model(champion["files"]["fp32"], frames.folder, split=None)
    measured = by_key[(d3, "measured", "*")]
    assert measured["map50_95"] == pytest.approx(direct.map50_95)
    assert measured["map50"] == pytest.approx(direct.map50)
    assert measured["map50_95_low"] <= measured["map50_95"] <= measured["map50_95_high"]

    # the calibration: stored once, fitted on the snapshot's eval split to the gate's number
    stored = storage.get_json(
        s3, bucket, calibration.calibration_key(settings.registered_model, version)
    )
    assert stored["dataset_sha256"] == world["snapshot"].sha256
    assert stored["n_images"] == world["snapshot"].counts["eval"]
    assert stored["eval_map50_95"] == pytest.approx(gate.map50_95)
    for i, day in ((3, d3), (4, d4)):
        row = by_key[(day, "estimated", "*")]
        assert row["n_frames"] == len(logged[i])  # the other version's rows left out
        assert row["map50_95"] == pytest.approx(atc.estimate(logged[i], stored["threshold"]))
    assert doc["estimate_days"] == 1
    expected_mae = abs(by_key[(d3, "estimated", "*")]["map50_95"] - measured["map50_95"])
    assert doc["estimate_mae"] == pytest.approx(expected_mae)
    assert storage.get_json(s3, bucket, "reports/drift/scheduled__perf-1/performance.json") == doc

    engine = history.engine_for(settings.database_url)
    series = store.performance_series(engine, model_version=version)
    assert len(series) == len(doc["days"])
    assert [r["baseline_map50_95"] for r in series] == pytest.approx([gate.map50_95] * len(series))

    # the next check of an overlapping window finds nothing new for this champion
    later = run_performance_check(settings, run_id="scheduled__perf-2", **window)
    assert later["days"] == []
    assert later["estimate_days"] == 1
    assert later["estimate_mae"] == pytest.approx(expected_mae)
    print(
        "performance check:",
        {k: (d["n_frames"], d["map50_95"]) for k, d in by_key.items()},
        "threshold", stored["threshold"], "mae", doc["estimate_mae"],
    )  # fmt: skip
