"""A candidate's drift reference from its own outputs, against the embedded stack (moto S3, the
MLflow server) with a real exported detector.

A YOLO11n detector with random weights whose class biases make it see players (built and
exported by the project's exporter, :mod:`tests.integration.detector_models`) is logged as the
INT8 MLflow model of a training run, the way the training entrypoint logs it; a synthetic world
writes three days of inference logs (the generator's rows) and the traffic frames of the last
two. ``reference_profile`` then:

1. for the two days with frames: scores at most ``max_frames_per_day`` frames a day with the
   candidate, writes ``reference-scoring/<run_id>/dt=D/``, and builds the bundle from them —
   the rows are the model's own outputs (its model id, its detections on those pixels), not the
   generator's;
2. run again for the same DAG run: reuses the partitions (no model loaded) and gives the same
   bundle;
3. for a window where a day has inference logs but no frames: falls back to the inference logs
   for the whole window; a day with neither (no traffic) is left out of a scored reference.

Its own bucket: the session's holds other tests' days.
"""

from __future__ import annotations

import io
import uuid
from datetime import date

import numpy as np
import pytest

from tests.integration.detector_models import (
    MISSING_TRAINING_ENV,
    TRAIN_PYTHON,
    export_detectors,
)

pytestmark = pytest.mark.integration

if not TRAIN_PYTHON.exists():
    pytest.skip(MISSING_TRAINING_ENV, allow_module_level=True)

IMGSZ = 160
END = date(2031, 9, 3)
LOG_DAYS = ["2031-09-01", "2031-09-02", "2031-09-03"]
FRAME_DAYS = LOG_DAYS[1:]
FRAMES = 40
LABELED = 6
PER_DAY = 25
#: (seed, ball bias, player bias): the candidate sees players
CANDIDATE = (2, -2.0, 0.4)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference-detector")
    return export_detectors(root, {"candidate": CANDIDATE}, imgsz=IMGSZ, end=END)["candidate"]


@pytest.fixture(scope="module")
def training(stack, detector):
    """What the training task returns about the candidate: its INT8 MLflow model and hash."""
    import mlflow

    from driftloop.training import tracking

    mlflow.set_tracking_uri(stack.env["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment("reference-scoring-tests")
    example = np.full((1, 3, IMGSZ, IMGSZ), 0.5, dtype=np.float32)
    with mlflow.start_run(run_name="reference-candidate") as run:
        sha = tracking.normalize_onnx(detector["int8"])  # as the training run does
        logged = tracking.log_onnx_model(
            detector["int8"],
            name="detector-int8",
            example=example,
            metadata={"imgsz": IMGSZ, "sha256": sha},
            tags={"precision": "int8"},
        )
    return {
        "run_id": run.info.run_id,
        "mlflow_run_id": run.info.run_id,
        "onnx": {
            "int8_model_uri": logged["model_uri"],
            "int8_model_id": logged["model_id"],
            "int8_sha256": sha,
        },
    }


@pytest.fixture(scope="module")
def settings(s3):
    from driftloop.config.settings import Settings
    from driftloop_dev.synth import S3Sink, generate_world, world_spec
    from driftloop_dev.synth.traffic import write_traffic

    bucket = f"reference-it-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    sink = S3Sink(s3, bucket)
    world = {"days": len(LOG_DAYS), "end_date": END, "labeled_per_day": LABELED}
    generate_world(sink, "stable", rows_per_day=120, files_per_day=1, **world)
    spec = world_spec("stable", rows_per_day=120, files_per_day=1, **world)
    write_traffic(sink, spec, FRAME_DAYS, FRAMES)
    return Settings.from_env().model_copy(update={"bucket": bucket})


def _reference(s3, settings, training, days, run_id):
    from driftloop.retrain.reference_profile import training_window_reference

    return training_window_reference(
        s3,
        settings,
        {"days": days},
        training,
        run_id,
        sample_size=500,
        max_frames_per_day=PER_DAY,
    )


def _table(s3, bucket, key):
    import pyarrow.parquet as pq

    from driftloop.contracts import storage

    return pq.read_table(io.BytesIO(storage.get_bytes(s3, bucket, key)))


def test_the_candidate_scores_its_window_and_a_rerun_reuses_it(
    s3, settings, training, detector, tmp_path, monkeypatch
):
    from PIL import Image

    from driftloop.contracts import storage
    from driftloop.drift.reference import load_sample
    from driftloop.retrain import reference_profile_scoring as scoring
    from driftloop.serving.batch import read_manifest
    from driftloop.serving.models import open_model
    from driftloop.serving.scorer import run_model

    model_id = training["onnx"]["int8_model_id"]
    reference = _reference(s3, settings, training, FRAME_DAYS, "manual__scored")
    assert reference["source"] == "scored_frames"
    assert reference["days"] == FRAME_DAYS
    assert reference["frames_per_day"] == dict.fromkeys(FRAME_DAYS, PER_DAY)
    assert reference["scoring"] == {
        day: {"selected": PER_DAY, "scored": PER_DAY, "errors": 0} for day in FRAME_DAYS
    }
    assert reference["model_uri"] == training["onnx"]["int8_model_uri"]
    assert reference["scoring_uri"] == f"s3://{settings.bucket}/reference-scoring/manual__scored/"

    # the reference's rows are the candidate's: its id, its classes (it sees players)
    sample = load_sample(s3, reference["sample_uri"])
    assert sample.num_rows == 2 * PER_DAY
    assert set(sample.column("model_version").to_pylist()) == {model_id}
    assert set(sample.column("top_class").to_pylist()) == {"player"}
    generated = _table(
        s3, settings.bucket, storage.list_partition(s3, settings.bucket, LOG_DAYS[1]).keys[0]
    )
    assert model_id not in set(generated.column("model_version").to_pylist())

    # ... and its detections on exactly the chosen frames' pixels
    day = FRAME_DAYS[0]
    rows = _table(
        s3, settings.bucket, scoring.scoring_day_prefix("manual__scored", day) + "part-0.parquet"
    )
    chosen = scoring.select_frames(read_manifest(s3, settings.bucket, day), PER_DAY)
    assert rows.column("image_id").to_pylist() == [f.image_id for f in chosen]
    model = open_model(detector["int8"], name="it", version="direct", workdir=tmp_path)
    direct = []
    for frame in chosen[:5]:
        data = storage.get_bytes(s3, settings.bucket, frame.key)
        direct.append(len(run_model(model, Image.open(io.BytesIO(data)).convert("RGB")).scores))
    assert rows.column("n_detections").to_pylist()[:5] == [min(n, 100) for n in direct]
    assert max(direct) > 0

    # a re-run of the same DAG run: the partitions as they are, no model, the same bundle
    parts = {
        k["Key"]: k["ETag"]
        for k in storage.list_keys(s3, settings.bucket, "reference-scoring/manual__scored/")
    }
    assert len(parts) == 4  # a part and its _SUCCESS a day

    def no_model(*args, **kwargs):
        raise AssertionError("the re-run loaded the model")

    monkeypatch.setattr(scoring, "open_candidate", no_model)
    again = _reference(s3, settings, training, FRAME_DAYS, "manual__scored")
    assert again["reference_id"] == reference["reference_id"]
    assert {
        k["Key"]: k["ETag"]
        for k in storage.list_keys(s3, settings.bucket, "reference-scoring/manual__scored/")
    } == parts


def test_a_day_without_any_traffic_leaves_the_reference_to_the_scored_days(s3, settings, training):
    # a window reaching before the first day of traffic (a first model): no frames and no
    # logs that day, so nothing there to describe; the framed days are scored
    quiet = "2031-08-31"
    reference = _reference(s3, settings, training, [quiet, *FRAME_DAYS], "manual__quiet")
    assert reference["source"] == "scored_frames"
    assert reference["days"] == FRAME_DAYS
    assert reference["days_without_traffic"] == [quiet]
    assert reference["frames_per_day"] == dict.fromkeys(FRAME_DAYS, PER_DAY)


def test_a_window_with_a_day_without_frames_uses_the_inference_logs(s3, settings, training):
    from driftloop.drift.reference import load_sample

    reference = _reference(s3, settings, training, LOG_DAYS, "manual__logs")
    assert reference["source"] == "inference_logs"
    assert reference["days_without_frames"] == LOG_DAYS[:1]
    assert reference["days"] == LOG_DAYS
    assert reference["frames_per_day"] == dict.fromkeys(LOG_DAYS, 120)
    sample = load_sample(s3, reference["sample_uri"])
    assert training["onnx"]["int8_model_id"] not in set(sample.column("model_version").to_pylist())
    assert len(set(sample.column("top_class").to_pylist())) > 1  # the generator's class mix
    keys = s3.list_objects_v2(Bucket=settings.bucket, Prefix="reference-scoring/manual__logs/")
    assert keys.get("KeyCount", 0) == 0  # nothing scored
