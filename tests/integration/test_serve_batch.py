"""``driftloop serve-batch`` against the embedded stack, with real exported detectors.

Two YOLO11n detectors (random weights, class biases set so that each finds things: the
champion sees balls, the challenger players — no training run: this is about serving, not
accuracy) are exported to ONNX FP32 + static INT8 by the training image's own exporter
(``python -m driftloop.training.export`` in ``.venv-train``), logged as MLflow models the way the
training entrypoint logs them and registered the way ``retrain_detector`` registers them; the
aliases name champion and challenger, a routing document puts the rollout in shadow, and a
synthetic day of frames goes to S3. The batch scorer then runs as a user runs it (the installed
``driftloop`` command, in a subprocess), and what it wrote is checked: the inference partition
passes the drift monitor's validation, one row per frame from the champion with finite,
frame-dependent embeddings; a subject serving record for every frame; the day refused a second
time.

Its own bucket: ``rollout/routing.json`` is one key per bucket and the rollout tests own the
session's.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from tests.integration.detector_models import (
    MISSING_TRAINING_ENV,
    TRAIN_PYTHON,
    export_detectors,
)

pytestmark = pytest.mark.integration

DRIFTLOOP = Path(sys.executable).parent / "driftloop"
IMGSZ = 160
END = date(2031, 5, 31)
DAY = "2031-05-31"
FRAMES = 60
LABELED = 6
#: (seed, ball bias, player bias) of the two detectors' class logits
DETECTORS = {"champion": (0, 0.4, -2.0), "challenger": (1, -2.0, 0.4)}

if not TRAIN_PYTHON.exists():
    pytest.skip(MISSING_TRAINING_ENV, allow_module_level=True)


@pytest.fixture(scope="module")
def detectors(tmp_path_factory):
    """``{role: {"fp32": path, "int8": path}}`` of the two exported detectors."""
    root = tmp_path_factory.mktemp("serve-detectors")
    return export_detectors(root, DETECTORS, imgsz=IMGSZ, end=END)


@pytest.fixture(scope="module")
def registered(stack, detectors):
    """A fresh registered model: v1 = champion, v2 = challenger (INT8 sources, FP32 tags)."""
    import mlflow

    from driftloop.promotion import registry
    from driftloop.training import tracking

    tracking_uri = stack.env["MLFLOW_TRACKING_URI"]
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    name = f"serve-detector-{uuid.uuid4().hex[:8]}"
    example = np.full((1, 3, IMGSZ, IMGSZ), 0.5, dtype=np.float32)
    mlflow.set_experiment("serve-batch-tests")
    versions = {}
    for role, paths in detectors.items():
        with mlflow.start_run(run_name=f"serve-{role}") as run:
            logged = {
                kind: tracking.log_onnx_model(
                    paths[kind],
                    name=f"detector-{kind}",
                    example=example,
                    metadata={"imgsz": IMGSZ},
                    tags={"precision": kind},
                )
                for kind in ("int8", "fp32")
            }
        version, _ = registry.register_candidate(
            client,
            name,
            model_uri=logged["int8"]["model_uri"],
            run_id=run.info.run_id,
            airflow_run_id=f"serve-{role}",
            tags={registry.FP32_MODEL_TAG: logged["fp32"]["model_uri"]},
            description=role,
        )
        client.set_registered_model_alias(name, role, version.version)
        versions[role] = str(version.version)
    return name, versions


@pytest.fixture(scope="module")
def bucket(s3):
    name = f"serve-it-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return name


def _serve(bucket: str, model: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(DRIFTLOOP), "serve-batch", "--day", DAY, "--bucket", bucket, "--json", *extra],
        env={**os.environ, "DRIFTLOOP_REGISTERED_MODEL": model},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_embedding_comes_from_the_exported_backbone(detectors, tmp_path):
    """FP32 and QDQ INT8 graphs of the same weights: the same backbone tensor is found, and
    their embeddings of the same frames agree while differing between frames."""
    from PIL import Image

    from driftloop.serving.models import open_model
    from driftloop.serving.scorer import run_model
    from driftloop_dev.synth import world_spec
    from driftloop_dev.synth.traffic import traffic_files

    spec = world_spec(
        "stable", days=1, end_date=END, rows_per_day=1, labeled_per_day=2, files_per_day=1
    )
    images = [
        Image.open(io.BytesIO(data)).convert("RGB")
        for _, data, _ in traffic_files(spec, 0, 12)[:-1]
    ]
    paths = detectors["champion"]
    models = {
        kind: open_model(paths[kind], name="it", version=kind, workdir=tmp_path / kind)
        for kind in ("fp32", "int8")
    }
    # YOLO11: the head's first upsampling (/model.11/Resize) reads C2PSA's output (/model.10)
    assert {m.feature_name for m in models.values()} == {"/model.10/cv2/act/Mul_output_0"}
    assert {m.projection.shape for m in models.values()} == {(256, 64)}
    vectors = {}
    for kind, model in models.items():
        results = [run_model(model, image) for image in images]
        assert all(r.error is None for r in results), [r.error for r in results]
        assert all(len(r.scores) > 0 for r in results)  # the biased head finds things
        vectors[kind] = np.stack([r.embedding for r in results])
    assert np.isfinite(vectors["int8"]).all()
    assert vectors["int8"].std(axis=0).max() > 0  # not constant across frames
    cosine = (vectors["int8"] * vectors["fp32"]).sum(axis=1) / (
        np.linalg.norm(vectors["int8"], axis=1) * np.linalg.norm(vectors["fp32"], axis=1)
    )
    assert cosine.min() > 0.9  # measured 0.97 with these weights


def test_serve_batch_in_shadow_writes_real_inference_logs(s3, bucket, registered):
    import pyarrow.parquet as pq

    from driftloop.contracts import storage
    from driftloop.drift.validation import validate_partition
    from driftloop.promotion.routing import Stamp, next_shadow_doc, write_routing
    from driftloop.serving import layout
    from driftloop_dev.synth import S3Sink, world_spec
    from driftloop_dev.synth.traffic import write_traffic

    name, versions = registered
    champion, challenger = versions["champion"], versions["challenger"]
    routing = next_shadow_doc(
        None, Stamp(by="test", reason="shadow"), model=name, champion=champion,
        challenger=challenger,
    )  # fmt: skip
    write_routing(s3, bucket, routing)
    spec = world_spec(
        "abrupt",
        days=3,
        drift_day=2,
        end_date=END,
        rows_per_day=1,
        labeled_per_day=LABELED,
        files_per_day=1,
    )
    write_traffic(S3Sink(s3, bucket), spec, [DAY], FRAMES)

    done = _serve(bucket, name)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout)
    assert summary["stage"] == "shadow"
    assert summary["sequence"] == routing.sequence
    assert summary["note"] is None
    assert (summary["frames"], summary["served"], summary["paired"]) == (FRAMES, FRAMES, FRAMES)
    assert summary["errors"] == 0
    print(f"serve-batch: {summary['frames_per_s']} frames/s, models {summary['models']}")

    partition = storage.list_partition(s3, bucket, DAY)
    assert partition.has_success
    verdict = validate_partition(s3, bucket, partition)
    assert verdict.valid, verdict.reasons
    assert verdict.row_count == FRAMES

    (key,) = partition.keys
    log = pq.read_table(io.BytesIO(storage.get_bytes(s3, bucket, key)))
    assert set(log.column("model_version").to_pylist()) == {champion}
    assert set(log.column("top_class").to_pylist()) == {"ball"}  # the champion sees balls
    embeddings = np.asarray(log.column("embedding").to_pylist(), dtype=np.float32)
    assert embeddings.shape == (FRAMES, 64)
    assert np.isfinite(embeddings).all()
    assert embeddings.std(axis=0).max() > 0
    cameras = set(log.column("camera_id").to_pylist())
    assert "cam-05" in cameras  # the abrupt scenario's new camera, after its drift day
    manifest = storage.get_bytes(s3, bucket, layout.manifest_key(DAY)).decode().splitlines()
    assert log.column("image_id").to_pylist() == [json.loads(x)["image_id"] for x in manifest]

    records = pq.read_table(
        io.BytesIO(storage.get_bytes(s3, bucket, summary["keys"]["serving"]))
    ).to_pylist()
    subject = {r["image_id"]: r for r in records if r["role"] == "subject"}
    assert set(subject) == set(log.column("image_id").to_pylist())
    assert {r["model_version"] for r in subject.values()} == {challenger}
    assert not any(r["served"] for r in subject.values())
    assert all(r["boxes"] and r["boxes"][0]["class_id"] == 1 for r in subject.values())
    assert {r["rollout_id"] for r in records} == {routing.rollout_id}

    again = _serve(bucket, name)
    assert again.returncode == 1
    assert "already served" in again.stderr
