"""The candidate's drift reference from its own outputs (driftloop.retrain.reference_profile_scoring):
which frames of a day it scores, which model it trusts, and the write-once partitions a re-run
reuses or refuses. The model is a fake ``score_model`` here; the exported detector is scored in
tests/integration/test_reference_scoring.py."""

from __future__ import annotations

import io
import random
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from PIL import Image

from driftloop.contracts import schema, storage
from driftloop.promotion.registry import CHAMPION
from driftloop.retrain import reference_profile_scoring as scoring
from driftloop.retrain.reference_profile_scoring import CandidateModel, select_frames
from driftloop.serving.route import route_for
from driftloop.serving.scorer import Frame, FrameScorer, ModelResult
from tests.unit.conftest import s3_client_for

DAY = "2031-05-30"
START = datetime(2031, 5, 30, tzinfo=UTC)
SHA = "a" * 64
MODEL = CandidateModel(uri="models:/m-candidate", sha256=SHA, label="m-candidate")


def _frames(seconds) -> list[Frame]:
    """Frame i captured ``seconds[i]`` into the day."""
    return [
        Frame(
            f"{DAY}-{i:04d}",
            f"frames/dt={DAY}/{DAY}-{i:04d}.png",
            START + timedelta(seconds=int(s)),
            "cam-01",
        )
        for i, s in enumerate(seconds)
    ]


# -- which frames ------------------------------------------------------------------------


def test_a_day_with_fewer_frames_than_the_cap_is_scored_whole_in_capture_order():
    frames = _frames([300, 100, 200])
    assert [f.image_id for f in select_frames(frames, 150)] == [
        f"{DAY}-0001",
        f"{DAY}-0002",
        f"{DAY}-0000",
    ]


def test_the_cap_takes_one_frame_from_each_equal_run_of_the_day():
    frames = _frames(range(0, 86_400, 86))  # 1005 frames spread over the day
    chosen = select_frames(frames, 150)
    assert len(chosen) == 150
    ranks = [int(f.image_id[-4:]) for f in chosen]  # frame i is the i-th captured
    assert ranks == sorted(set(ranks))
    n = len(frames)
    # exactly one frame in each of the 150 runs of n/150 frames: the whole day, no clumps
    assert [rank * 150 // n for rank in ranks] == list(range(150))
    assert ranks[0] < n / 150
    assert ranks[-1] >= n - n / 150


def test_busy_hours_keep_their_share_of_the_traffic():
    rng = np.random.default_rng(3)
    busy = rng.integers(10 * 3600, 11 * 3600, 800)  # 80 % of the day's traffic in one hour
    quiet = rng.integers(0, 86_400, 200)
    chosen = select_frames(_frames([*busy, *quiet]), 100)
    in_busy_hour = sum(10 * 3600 <= (f.ts - START).total_seconds() < 11 * 3600 for f in chosen)
    assert 75 <= in_busy_hour <= 85


def test_the_choice_depends_on_the_frames_not_on_the_manifest_order():
    frames = _frames(np.random.default_rng(1).integers(0, 86_400, 400))
    shuffled = list(frames)
    random.Random(7).shuffle(shuffled)
    assert select_frames(shuffled, 37) == select_frames(frames, 37)
    assert len(select_frames(frames, 37)) == 37


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "150"])
def test_a_bad_cap_is_refused(limit):
    with pytest.raises(ValueError, match="max_frames_per_day must be an integer >= 1"):
        select_frames(_frames([1]), limit)


def test_the_policy_caps_reference_frames_at_150_a_day_by_default():
    from driftloop.config.drift_policy import load_policy
    from driftloop.config.settings import Settings

    assert load_policy(Settings().policy_path).reference_scoring.max_frames_per_day == 150


# -- which model -------------------------------------------------------------------------


def test_the_candidate_is_the_training_runs_int8_model_with_its_recorded_hash():
    training = {
        "run_id": "r1",
        "mlflow_run_id": "r1",
        "onnx": {"int8_model_uri": "models:/m-42", "int8_model_id": "m-42", "int8_sha256": SHA},
    }
    assert CandidateModel.from_training(training) == CandidateModel("models:/m-42", SHA, "m-42")


@pytest.mark.parametrize(
    ("onnx", "message"),
    [
        (None, "no logged INT8 ONNX model"),
        ({"int8_model_uri": "models:/m-42"}, "records no SHA-256 of its INT8 model"),
        ({"int8_model_uri": "models:/m-42", "int8_sha256": "-"}, "records no SHA-256"),
    ],
)
def test_a_training_result_without_a_recorded_int8_model_is_refused(onnx, message):
    with pytest.raises(ValueError, match=message):
        CandidateModel.from_training({"run_id": "r1", "onnx": onnx})


# -- the partitions (moto) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(moto_endpoint):
    return s3_client_for(moto_endpoint)


@pytest.fixture
def bucket(s3):
    name = f"refscore-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def traffic():
    """A stable day of 30 traffic frames (8 labeled) and its manifest: ``[(key, bytes, type)]``."""
    from driftloop_dev.synth import world_spec
    from driftloop_dev.synth.traffic import traffic_files

    spec = world_spec(
        "stable", days=1, end_date=DAY, rows_per_day=1, labeled_per_day=8, files_per_day=1
    )
    return traffic_files(spec, 0, 30)


def _put(s3, bucket, files) -> None:
    for key, data, content_type in files:
        storage.put_bytes(s3, bucket, key, data, content_type)


def _fake_model(model, image) -> ModelResult:
    """Detections that depend on the pixels: as many players as the image's mean // 40."""
    n = int(np.asarray(image).mean() // 40)
    return ModelResult(
        version=model,
        latency_ms=2.0,
        boxes=np.tile([[1.0, 2.0, 5.0, 9.0]], (n, 1)),
        scores=np.full(n, 0.8),
        classes=np.ones(n, dtype=np.int64),
        best_score=0.8 if n else 0.1,
        embedding=np.full(schema.EMBEDDING_DIM, n, np.float32),
    )


def _scorer():
    route = route_for(None, {CHAMPION: MODEL.label})
    return FrameScorer(route, {MODEL.label: MODEL.label}, score_model=_fake_model)


def test_a_scored_day_is_a_valid_contract_partition_of_the_candidates_rows(s3, bucket, traffic):
    import pyarrow.parquet as pq

    from driftloop.drift.validation import validate_partition

    _put(s3, bucket, traffic)
    assert scoring.days_without_frames(s3, bucket, [DAY, "2031-05-31"]) == ["2031-05-31"]
    done = scoring.score_day(s3, bucket, "run-1", DAY, _scorer(), MODEL, 20)
    assert (done["manifest_frames"], done["selected"], done["scored"], done["errors"]) == (
        30,
        20,
        20,
        0,
    )
    partition = scoring.day_partition(s3, bucket, "run-1", DAY)
    assert partition.keys == (f"reference-scoring/run-1/dt={DAY}/part-0.parquet",)
    assert partition.has_success
    verdict = validate_partition(s3, bucket, partition)
    assert verdict.valid, verdict.reasons
    assert verdict.row_count == 20
    rows = pq.read_table(io.BytesIO(storage.get_bytes(s3, bucket, partition.keys[0])))
    assert set(rows.column("model_version").to_pylist()) == {MODEL.label}
    # the rows are the model's outputs on the chosen frames' pixels
    pixels = {key.rsplit("/", 1)[-1][:-4]: data for key, data, _ in traffic[:-1]}
    expected = [
        int(np.asarray(Image.open(io.BytesIO(pixels[i])).convert("RGB")).mean() // 40)
        for i in rows.column("image_id").to_pylist()
    ]
    assert rows.column("n_detections").to_pylist() == expected
    assert len(set(expected)) > 1
    assert scoring.finished_day(s3, bucket, "run-1", DAY, MODEL) == done


def test_frames_the_model_cannot_score_are_left_out_and_counted(s3, bucket, traffic):
    frames, manifest = traffic[:-1], traffic[-1]
    _put(s3, bucket, [*frames[1:], manifest])  # the first frame's file is missing
    done = scoring.score_day(s3, bucket, "run-1", DAY, _scorer(), MODEL, 150)
    assert (done["selected"], done["scored"], done["errors"]) == (30, 29, 1)


def test_a_day_where_no_frame_could_be_scored_fails_before_writing(s3, bucket, traffic):
    _put(s3, bucket, traffic[-1:])  # the manifest alone
    with pytest.raises(ValueError, match="scored none of the 30 frames"):
        scoring.score_day(s3, bucket, "run-1", DAY, _scorer(), MODEL, 150)
    assert storage.list_keys(s3, bucket, scoring.scoring_prefix("run-1")) == []


def test_a_day_another_model_scored_is_not_reused(s3, bucket, traffic):
    _put(s3, bucket, traffic)
    scoring.score_day(s3, bucket, "run-1", DAY, _scorer(), MODEL, 10)
    other = CandidateModel("models:/m-other", "b" * 64, "m-other")
    with pytest.raises(ValueError, match="was scored by the INT8 model models:/m-candidate"):
        scoring.finished_day(s3, bucket, "run-1", DAY, other)
    assert scoring.finished_day(s3, bucket, "run-2", DAY, other) is None  # another run: its own


def test_a_part_without_its_success_marker_is_refused(s3, bucket):
    key = scoring.scoring_day_prefix("run-1", DAY) + scoring.PART_NAME
    storage.put_bytes(s3, bucket, key, b"half")
    with pytest.raises(ValueError, match="without _SUCCESS"):
        scoring.finished_day(s3, bucket, "run-1", DAY, MODEL)


def test_a_rerun_of_the_same_dag_run_reuses_the_days_without_loading_the_model(
    s3, bucket, traffic, monkeypatch
):
    _put(s3, bucket, traffic)
    first = scoring.score_day(s3, bucket, "run-1", DAY, _scorer(), MODEL, 10)

    def no_model(*args, **kwargs):
        raise AssertionError("a finished window loads no model")

    monkeypatch.setattr(scoring, "open_candidate", no_model)
    training = {"run_id": "r", "onnx": {"int8_model_uri": MODEL.uri, "int8_sha256": SHA}}
    partitions, done, model = scoring.score_window(
        s3, bucket, [DAY], training, "run-1", model_name="detector", max_frames_per_day=10
    )
    assert done == {DAY: first}
    assert [p.keys for p in partitions] == [
        (scoring.scoring_day_prefix("run-1", DAY) + "part-0.parquet",)
    ]
    assert model.uri == MODEL.uri
