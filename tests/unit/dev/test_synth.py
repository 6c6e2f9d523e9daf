"""Unit tests of driftloop_dev.synth: contract, determinism, scenario ground truth, defects,
labeled frames, parameter errors and the command line."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from scipy import stats

from driftloop.contracts import schema, storage
from driftloop_dev.synth import (
    DEFECTS,
    SCENARIOS,
    DirectorySink,
    GroundTruth,
    MemorySink,
    S3Sink,
    generate_world,
    ground_truth,
    ground_truth_of,
    world_spec,
)
from driftloop_dev.synth.frames import (
    BALL,
    PLAYER,
    day_scenes,
    parse_yolo_labels,
    render,
    yolo_labels,
)
from driftloop_dev.synth.inference import inference_table, partition_files

END = date(2024, 6, 30)
NUMERIC_WITH_RANGE = [c for c in schema.COLUMNS if c.min_value is not None]


def read_parquet(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def day_tables(scenario: str, *, days: int, drift_day: int | None = None, rows: int = 400):
    spec = world_spec(scenario, days=days, drift_day=drift_day, end_date=END, rows_per_day=rows)
    return spec, [inference_table(spec, i) for i in range(days)]


def column(tables: list[pa.Table], name: str) -> np.ndarray:
    return np.concatenate([t.column(name).to_numpy() for t in tables])


def embeddings(tables: list[pa.Table]) -> np.ndarray:
    return np.concatenate(
        [
            t.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, 64)
            for t in tables
        ]
    )


def standardised_mean_shift(a: np.ndarray, b: np.ndarray) -> float:
    """Largest per-dimension |mean difference| in units of the pooled sd."""
    sd = np.sqrt((a.var(axis=0) + b.var(axis=0)) / 2)
    return float(np.max(np.abs(a.mean(axis=0) - b.mean(axis=0)) / sd))


@pytest.fixture(scope="module")
def small_world() -> tuple[MemorySink, GroundTruth]:
    sink = MemorySink()
    truth = generate_world(
        sink,
        "abrupt",
        days=4,
        drift_day=2,
        end_date=END,
        rows_per_day=300,
        labeled_per_day=3,
        files_per_day=2,
        seed=7,
    )
    return sink, truth


# ------------------------------------------------------------------------------ contract


def test_layout_keys_and_content_types(small_world):
    sink, truth = small_world
    assert truth.dates == ["2024-06-27", "2024-06-28", "2024-06-29", "2024-06-30"]
    for day in truth.dates:
        prefix = storage.inference_prefix(day)
        assert sink.keys(prefix) == [
            f"{prefix}_SUCCESS",
            f"{prefix}part-00000.parquet",
            f"{prefix}part-00001.parquet",
        ]
        assert sink[storage.success_key(day)] == b""
        lp = storage.labeled_prefix(day)
        assert sink.keys(lp) == sorted(
            [f"{lp}images/{day}-{i:04d}.png" for i in range(3)]
            + [f"{lp}labels/{day}-{i:04d}.txt" for i in range(3)]
            + [f"{lp}frames.jsonl", f"{lp}_SUCCESS"]
        )
        # a labeled day is complete when its _SUCCESS is there: written after its frames
        labeled = [k for k in sink.objects if k.startswith(lp)]
        assert labeled[-1] == f"{lp}_SUCCESS"
    assert {sink.content_types[k] for k in sink.keys("inference/") if k.endswith(".parquet")} == {
        "application/vnd.apache.parquet"
    }
    assert {sink.content_types[k] for k in sink.keys("labeled/") if k.endswith(".png")} == {
        "image/png"
    }
    # the marker is written after the day's parts
    keys = list(sink.objects)
    for day in truth.dates:
        success = keys.index(storage.success_key(day))
        assert all(keys.index(k) <= success for k in sink.keys(storage.inference_prefix(day)))


def test_parquet_conforms_to_the_schema(small_world):
    sink, truth = small_world
    image_ids: list[str] = []
    for day in truth.dates:
        parts = [
            read_parquet(sink[k])
            for k in sink.keys(storage.inference_prefix(day))
            if k.endswith(".parquet")
        ]
        assert [p.num_rows for p in parts] == [150, 150]
        table = pa.concat_tables(parts)
        assert table.schema.equals(schema.arrow_schema())
        assert table.column_names == list(schema.COLUMN_NAMES)
        for col in NUMERIC_WITH_RANGE:
            values = table.column(col.name).to_numpy()
            assert values.min() >= col.min_value, col.name
            assert values.max() <= col.max_value, col.name
        top = np.array(table.column("top_class").to_pylist())
        assert set(top) <= set(schema.TOP_CLASSES)
        n_det = table.column("n_detections").to_numpy()
        assert ((top == "none") == (n_det == 0)).all()
        cams = set(table.column("camera_id").to_pylist())
        assert all(re.match(schema.CAMERA_ID_REGEX, c) for c in cams)
        assert set(table.column("model_version").to_pylist()) == {"1"}
        c_mean = table.column("confidence_mean").to_numpy()
        c_max = table.column("confidence_max").to_numpy()
        assert (c_mean > 0).all()
        assert (c_max < 1).all()
        assert (c_max >= c_mean).all()
        ts = table.column("ts").to_pylist()
        start = datetime.fromisoformat(day).replace(tzinfo=UTC)
        assert all(start <= t < start + timedelta(days=1) for t in ts)
        assert ts == sorted(ts)
        emb = table.column("embedding").combine_chunks().flatten().to_numpy()
        assert emb.dtype == np.float32
        assert emb.size == 300 * schema.EMBEDDING_DIM
        assert np.isfinite(emb).all()
        image_ids += table.column("image_id").to_pylist()
    assert len(image_ids) == len(set(image_ids))


def test_realistic_marginals():
    _, tables = day_tables("stable", days=2, rows=5000)
    b = column(tables, "brightness")
    assert abs(b.mean() - 120) < 2
    assert 22 < b.std() < 28
    for channel in ("mean_r", "mean_g", "mean_b"):
        assert np.corrcoef(b, column(tables, channel))[0, 1] > 0.9
    lat = column(tables, "latency_ms")
    assert 22 < np.median(lat) < 28
    cams = column(tables, "camera_id")
    assert set(cams) == {"cam-01", "cam-02", "cam-03", "cam-04"}
    sharp = column(tables, "sharpness")
    assert stats.skew(np.log(sharp)) == pytest.approx(0, abs=0.15)  # lognormal
    n_det = column(tables, "n_detections")
    assert 4 < n_det.mean() < 8


# --------------------------------------------------------------------------- determinism


def _world(seed: int, scenario: str = "class-mix") -> MemorySink:
    sink = MemorySink()
    generate_world(
        sink,
        scenario,
        days=3,
        drift_day=1,
        end_date=END,
        rows_per_day=120,
        labeled_per_day=2,
        seed=seed,
    )
    return sink


def test_same_arguments_give_identical_bytes():
    a, b = _world(3), _world(3)
    assert a.objects == b.objects
    assert a.content_types == b.content_types


def test_different_seed_gives_different_data():
    a, b = _world(3), _world(4)
    assert list(a.objects) == list(b.objects)
    differing = [k for k in a.objects if a[k] != b[k]]
    assert any(k.endswith(".parquet") for k in differing)
    assert any(k.endswith(".png") for k in differing)


def test_days_do_not_depend_on_world_length():
    # a day's rows come from (seed, scenario, day index): generating fewer rows elsewhere
    # or changing rows of other days leaves it alone
    s1 = world_spec("stable", days=5, end_date=END, rows_per_day=50)
    s2 = world_spec("stable", days=5, end_date=END, rows_per_day=50, labeled_per_day=0)
    assert inference_table(s1, 2).equals(inference_table(s2, 2))
    assert not inference_table(s1, 2).equals(inference_table(s1, 3))


# ----------------------------------------------------------------------------- scenarios


def test_stable_windows_are_indistinguishable():
    _, tables = day_tables("stable", days=28, rows=250)
    ref, cur = tables[:14], tables[14:]
    for name in schema.NUMERIC_FEATURES:
        ks = stats.ks_2samp(column(ref, name), column(cur, name)).statistic
        assert ks < 0.05, (name, ks)
    ref_cams, cur_cams = column(ref, "camera_id"), column(cur, "camera_id")
    for cam in ("cam-01", "cam-02", "cam-03", "cam-04"):
        assert abs((ref_cams == cam).mean() - (cur_cams == cam).mean()) < 0.03
    assert standardised_mean_shift(embeddings(ref), embeddings(cur)) < 0.08
    assert ground_truth("stable", days=28, end_date=END).drifted_days == ()


def test_abrupt_lighting_drop_and_new_camera():
    spec, tables = day_tables("abrupt", days=10, drift_day=6, rows=500)
    before, after = tables[:6], tables[6:]
    assert column(before, "brightness").mean() - column(after, "brightness").mean() > 25
    for channel in ("mean_r", "mean_g", "mean_b"):
        assert column(before, channel).mean() - column(after, channel).mean() > 20
    assert column(before, "contrast").mean() - column(after, "contrast").mean() > 5
    assert "cam-05" not in set(column(before, "camera_id"))
    for t in after:
        share = (t.column("camera_id").to_numpy(zero_copy_only=False) == "cam-05").mean()
        assert 0.22 < share < 0.38
    assert standardised_mean_shift(embeddings(before), embeddings(after)) > 0.4
    # columns outside the ground truth do not move
    truth = ground_truth("abrupt", days=10, drift_day=6, end_date=END)
    for name in set(schema.NUMERIC_FEATURES) - set(truth.drifted_columns):
        ks = stats.ks_2samp(column(before, name), column(after, name)).statistic
        assert ks < 0.06, (name, ks)
    assert truth.drift_start_date == spec.date_of(6).isoformat()
    assert truth.drifted_days == tuple(d.isoformat() for d in spec.dates[6:])
    assert set(truth.drifted_columns) == {
        "brightness",
        "mean_r",
        "mean_g",
        "mean_b",
        "contrast",
        "camera_id",
        "embedding",
    }


def test_gradual_ramp():
    _, tables = day_tables("gradual", days=24, drift_day=4, rows=400)
    daily = np.array([t.column("brightness").to_numpy().mean() for t in tables])
    base = daily[:4].mean()
    assert abs(base - 120) < 4
    ramp = daily[4:18]
    assert stats.spearmanr(np.arange(ramp.size), ramp).statistic < -0.9
    assert base - daily[18:].mean() == pytest.approx(35, abs=4)  # full drop, then stays
    assert base - daily[4] < 10  # the first drifted day has barely moved
    truth = ground_truth("gradual", days=24, drift_day=4, end_date=END)
    sev = list(truth.severity.values())
    assert sev == sorted(sev)
    assert sev[-1] == 1.0
    assert sev[0] < 0.1
    assert "contrast" not in truth.drifted_columns
    contrast = [t.column("contrast").to_numpy() for t in tables]
    assert (
        stats.ks_2samp(np.concatenate(contrast[:4]), np.concatenate(contrast[18:])).statistic < 0.06
    )


def test_class_mix_ball_share():
    _, tables = day_tables("class-mix", days=8, drift_day=4, rows=800)
    before, after = tables[:4], tables[4:]

    def ball_share(ts):
        top = column(ts, "top_class")
        return (top == "ball").mean()

    assert ball_share(before) == pytest.approx(0.285, abs=0.04)
    assert ball_share(after) == pytest.approx(0.57, abs=0.04)
    assert column(before, "n_detections").mean() - column(after, "n_detections").mean() > 1.0
    assert abs(column(before, "brightness").mean() - column(after, "brightness").mean()) < 2
    assert standardised_mean_shift(embeddings(before), embeddings(after)) > 0.2
    truth = ground_truth("class-mix", days=8, drift_day=4, end_date=END)
    assert set(truth.drifted_columns) == {"top_class", "n_detections", "embedding"}


def test_confidence_decay_is_prediction_only():
    _, tables = day_tables("confidence-decay", days=22, drift_day=8, rows=400)
    detected = [t.filter(pa.compute.greater(t.column("n_detections"), 0)) for t in tables]
    daily = np.array([t.column("confidence_mean").to_numpy().mean() for t in detected])
    assert daily[:8].mean() == pytest.approx(0.78, abs=0.02)
    assert daily[18:].mean() == pytest.approx(0.55, abs=0.02)
    assert stats.spearmanr(np.arange(10), daily[8:18]).statistic < -0.9
    before, after = tables[:8], tables[18:]
    assert column(before, "confidence_max").mean() - column(after, "confidence_max").mean() > 0.12
    # inputs, cameras and embeddings stay put
    for name in ("brightness", "contrast", "saturation", "sharpness", "mean_r", "latency_ms"):
        assert stats.ks_2samp(column(before, name), column(after, name)).statistic < 0.06, name
    assert standardised_mean_shift(embeddings(before), embeddings(after)) < 0.1
    assert set(column(after, "camera_id")) == {"cam-01", "cam-02", "cam-03", "cam-04"}


@pytest.mark.parametrize("magnitude", [0.1, 0.2, 0.5])
def test_brightness_shift_is_its_magnitude_in_sd(magnitude):
    """On a large day the brightness mean moves by ``magnitude`` sd of the day before it,
    the RGB means by about as much of theirs, and nothing else moves."""
    spec = world_spec(
        "brightness-shift",
        days=2,
        drift_day=1,
        end_date=END,
        rows_per_day=100_000,
        magnitude=magnitude,
    )
    before, after = inference_table(spec, 0), inference_table(spec, 1)

    def shift_sd(name: str) -> float:
        b, a = before.column(name).to_numpy(), after.column(name).to_numpy()
        return float((a.mean() - b.mean()) / b.std())

    # standard error of a mean difference over 2 x 100,000 rows: 0.0045 sd
    assert shift_sd("brightness") == pytest.approx(magnitude, abs=0.015)
    for channel in ("mean_r", "mean_g", "mean_b"):
        # the channels' own noise makes their sd ~1 % larger than gain x brightness sd
        assert shift_sd(channel) == pytest.approx(magnitude, abs=0.02), channel
    for name in ("contrast", "saturation", "sharpness", "confidence_mean", "n_detections"):
        assert abs(shift_sd(name)) < 0.015, name
    truth = ground_truth_of(spec)
    assert set(truth.drifted_columns) == {"brightness", "mean_r", "mean_g", "mean_b", "embedding"}
    assert truth.drifted_days == (spec.date_of(1).isoformat(),)
    assert truth.magnitude == magnitude
    assert f"{magnitude:g} sd" in truth.description
    assert GroundTruth.from_dict(json.loads(truth.to_json())) == truth


def test_brightness_shift_magnitudes_share_their_noise():
    """The magnitude is not part of the random streams: worlds of different magnitudes have
    the same undrifted days, byte for byte, and drifted days that differ only by the shift
    (so a benchmark comparing magnitudes compares the shift, not the noise)."""
    small, large = (
        world_spec(
            "brightness-shift", days=3, drift_day=2, end_date=END, rows_per_day=500, magnitude=m
        )
        for m in (0.1, 0.5)
    )
    for day in (0, 1):
        assert partition_files(small, day) == partition_files(large, day)
    b_small = inference_table(small, 2).column("brightness").to_numpy()
    b_large = inference_table(large, 2).column("brightness").to_numpy()
    unclipped = b_large < 255.0
    assert unclipped.mean() > 0.99
    assert np.allclose(b_large[unclipped] - b_small[unclipped], 0.4 * 25.0)


@pytest.mark.parametrize(
    ("scenario", "magnitude", "message"),
    [
        ("brightness-shift", None, "magnitude .* is required for scenario 'brightness-shift'"),
        ("abrupt", 0.2, "magnitude is a parameter of .*brightness-shift.* got magnitude=0.2"),
        ("stable", 0.2, "magnitude is a parameter of"),
        ("brightness-shift", 0, r"magnitude must be in \(0, 3\]"),
        ("brightness-shift", -0.2, r"magnitude must be in \(0, 3\]"),
        ("brightness-shift", 3.5, r"magnitude must be in \(0, 3\]"),
        ("brightness-shift", float("nan"), "magnitude must be a number"),
        ("brightness-shift", True, "magnitude must be a number"),
        ("brightness-shift", "0.2", "magnitude must be a number"),
    ],
)
def test_bad_magnitude(scenario, magnitude, message):
    sink = MemorySink()
    with pytest.raises(ValueError, match=message):
        generate_world(
            sink, scenario, days=4, drift_day=2, end_date=END, rows_per_day=10, magnitude=magnitude
        )
    assert len(sink) == 0


# ------------------------------------------------------------------------------- corrupt


@pytest.fixture(scope="module")
def corrupt_world() -> tuple[MemorySink, GroundTruth]:
    sink = MemorySink()
    truth = generate_world(
        sink, "corrupt", days=28, end_date=END, rows_per_day=100, labeled_per_day=0, seed=1
    )
    return sink, truth


def test_corrupt_layout(corrupt_world):
    _, truth = corrupt_world
    end = date.fromisoformat(truth.end_date)
    expected = {
        1: "missing_column",
        4: "wrong_dtype",
        8: "nulls",
        15: "out_of_range",
        19: "truncated",
        24: "empty",
    }
    assert truth.corrupt_partitions == {
        (end - timedelta(days=o)).isoformat(): d for o, d in sorted(expected.items(), reverse=True)
    }
    assert sorted(truth.corrupt_partitions.values()) == sorted(DEFECTS)
    current, reference = truth.dates[-14:], truth.dates[-28:-14]
    for window in (current, reference):
        broken = [d for d in window if truth.is_corrupt(d)]
        assert len(broken) == 3
        assert len(window) - len(broken) >= 11
    assert not truth.is_corrupt(truth.end_date)
    assert truth.drifted_days == ()
    assert truth.drift_start_date is None


def test_corrupt_defects(corrupt_world):
    sink, truth = corrupt_world
    by_defect = {defect: day for day, defect in truth.corrupt_partitions.items()}

    def parts(day):
        return [sink[k] for k in sink.keys(storage.inference_prefix(day)) if k.endswith(".parquet")]

    for day in truth.dates:  # every day keeps its marker
        assert storage.success_key(day) in sink

    table = pa.concat_tables([read_parquet(p) for p in parts(by_defect["missing_column"])])
    assert "sharpness" not in table.column_names
    assert table.num_columns == len(schema.COLUMNS) - 1

    table = pa.concat_tables([read_parquet(p) for p in parts(by_defect["wrong_dtype"])])
    assert table.schema.field("brightness").type == pa.string()
    assert 0 <= float(table.column("brightness")[0].as_py()) <= 255

    table = pa.concat_tables([read_parquet(p) for p in parts(by_defect["nulls"])])
    assert table.column("confidence_mean").null_count == 5  # 5 % of 100 rows
    assert table.column("confidence_max").null_count == 0

    table = pa.concat_tables([read_parquet(p) for p in parts(by_defect["out_of_range"])])
    sat = table.column("saturation").to_numpy()
    assert (sat > 1).sum() == 2
    assert (sat >= 0).all()

    truncated = parts(by_defect["truncated"])
    with pytest.raises(pa.ArrowInvalid):
        read_parquet(truncated[0])
    assert read_parquet(truncated[1]).schema.equals(schema.arrow_schema())
    assert not truncated[0].endswith(b"PAR1")

    empty = parts(by_defect["empty"])
    assert len(empty[0]) == 0
    assert len(empty[1]) > 0

    for day in truth.valid_days:
        table = pa.concat_tables([read_parquet(p) for p in parts(day)])
        assert table.schema.equals(schema.arrow_schema())
        assert table.num_rows == 100
        assert table.column("saturation").to_numpy().max() <= 1


def test_corrupt_needs_28_days():
    with pytest.raises(ValueError, match="days"):
        generate_world(MemorySink(), "corrupt", days=27, end_date=END, rows_per_day=10)
    with pytest.raises(ValueError, match="days"):
        ground_truth("corrupt", days=20, end_date=END)


# -------------------------------------------------------------------------- labeled data


LABEL_LINE = re.compile(r"^[01] (0|1)\.\d{6} (0|1)\.\d{6} (0|1)\.\d{6} (0|1)\.\d{6}$")


def test_labels_parse_and_match_the_drawing():
    spec = world_spec(
        "abrupt", days=4, drift_day=2, end_date=END, rows_per_day=10, labeled_per_day=6
    )
    seen = {BALL: 0, PLAYER: 0}
    for day_index in range(spec.days):
        for scene in day_scenes(spec, day_index):
            text = yolo_labels(scene)
            lines = text.splitlines()
            assert lines
            assert all(LABEL_LINE.match(line) for line in lines)
            boxes = parse_yolo_labels(text)
            assert len(boxes) == len(scene.objects)
            image = np.asarray(render(scene), dtype=np.int16)
            bare = np.asarray(render(scene.without_objects()), dtype=np.int16)
            drawn = np.abs(image - bare).max(axis=2) > 0
            covered = np.zeros_like(drawn)
            W, H = scene.width, scene.height
            for (cls, cx, cy, w, h), obj in zip(boxes, scene.objects, strict=True):
                seen[cls] += 1
                assert cx - w / 2 >= 0
                assert cx + w / 2 <= 1
                assert cy - h / 2 >= 0
                assert cy + h / 2 <= 1
                x0, x1 = round((cx - w / 2) * W), round((cx + w / 2) * W)
                y0, y1 = round((cy - h / 2) * H), round((cy + h / 2) * H)
                assert (x0, y0, x1, y1) == (obj.x0, obj.y0, obj.x1, obj.y1)
                if cls == BALL:
                    assert 10 <= x1 - x0 <= 20
                    assert x1 - x0 == y1 - y0
                else:
                    assert 12 <= x1 - x0 <= 20
                    assert 25 <= y1 - y0 <= 45
                inside = drawn[y0:y1, x0:x1]
                # tight: the drawing touches all four edges of its box
                assert inside[0].any()
                assert inside[-1].any()
                assert inside[:, 0].any()
                assert inside[:, -1].any()
                assert inside.mean() > 0.4  # a solid object, not a few stray pixels
                # clearly visible: object pixels differ strongly from the pitch behind them
                distance = np.sqrt(
                    ((image - bare)[y0:y1, x0:x1][inside].astype(float) ** 2).sum(axis=1)
                )
                assert distance.mean() > 45
                covered[y0:y1, x0:x1] = True
            assert not (drawn & ~covered).any()  # nothing drawn outside the labeled boxes
    assert seen[BALL] > 0
    assert seen[PLAYER] > 0


def test_labeled_files_in_the_sink(small_world):
    sink, truth = small_world
    spec = world_spec(
        "abrupt", days=4, drift_day=2, end_date=END, rows_per_day=300, labeled_per_day=3, seed=7
    )
    lum = {}
    for day_index, day in enumerate(truth.dates):
        scenes = day_scenes(spec, day_index)
        values = []
        for i, scene in enumerate(scenes):
            image = Image.open(io.BytesIO(sink[f"labeled/dt={day}/images/{day}-{i:04d}.png"]))
            assert image.size == (160, 160)
            assert image.mode == "RGB"
            assert sink[f"labeled/dt={day}/labels/{day}-{i:04d}.txt"].decode() == yolo_labels(scene)
            values.append(np.asarray(image.convert("L"), dtype=float).mean())
        lum[day] = np.mean(values)
    before = np.mean([lum[d] for d in truth.dates[:2]])
    after = np.mean([lum[d] for d in truth.dates[2:]])
    assert before - after > 20  # abrupt: the labeled frames get darker too


def test_class_mix_shows_in_labeled_frames():
    spec = world_spec(
        "class-mix", days=2, drift_day=1, end_date=END, rows_per_day=10, labeled_per_day=60
    )

    def ball_share(day_index):
        objects = [o for s in day_scenes(spec, day_index) for o in s.objects]
        return np.mean([o.cls == BALL for o in objects])

    assert ball_share(1) > ball_share(0) + 0.05


# ---------------------------------------------------------------------------- ground truth


def test_ground_truth_structure_and_json():
    truth = ground_truth("confidence-decay", days=20, drift_day=10, end_date="2024-06-30", seed=5)
    data = json.loads(json.dumps(truth.to_dict()))
    assert data["scenario"] == "confidence-decay"
    assert data["seed"] == 5
    assert data["start_date"] == "2024-06-11"
    assert data["end_date"] == "2024-06-30"
    assert data["drift_start_date"] == "2024-06-21"
    assert data["drifted_columns"] == ["confidence_mean", "confidence_max"]
    assert data["drifted_days"][0] == "2024-06-21"
    assert len(data["drifted_days"]) == 10
    assert data["corrupt_partitions"] == {}
    assert GroundTruth.from_dict(data) == truth
    assert json.loads(truth.to_json()) == data
    stable = ground_truth("stable", days=5, drift_day=2, end_date=END)
    assert stable.drift_start_date is None
    assert stable.drifted_columns == ()
    assert set(SCENARIOS) == {
        "stable",
        "abrupt",
        "gradual",
        "class-mix",
        "confidence-decay",
        "brightness-shift",
        "corrupt",
    }
    for name in SCENARIOS:
        days = 30
        magnitude = 0.3 if SCENARIOS[name].takes_magnitude else None
        gt = ground_truth(name, days=days, drift_day=20, end_date=END, magnitude=magnitude)
        assert gt.days == days
        assert len(gt.dates) == days
        assert gt.dates[-1] == END.isoformat()


def test_generate_world_returns_the_ground_truth():
    truth = generate_world(
        MemorySink(),
        "gradual",
        days=3,
        drift_day=1,
        end_date=END,
        rows_per_day=5,
        labeled_per_day=0,
    )
    assert truth == ground_truth("gradual", days=3, drift_day=1, end_date=END)


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"scenario": "tsunami"}, "scenario"),
        ({"drift_day": 10}, "drift_day"),
        ({"drift_day": -1}, "drift_day"),
        ({"rows_per_day": 0}, "rows_per_day"),
        ({"days": 0}, "days"),
        ({"files_per_day": 0}, "files_per_day"),
        ({"files_per_day": 11}, "files_per_day"),
        ({"labeled_per_day": -1}, "labeled_per_day"),
        ({"seed": -3}, "seed"),
        ({"end_date": "30/06/2024"}, "end_date"),
        ({"days": 2.5}, "days"),
    ],
)
def test_bad_parameters(kwargs, param):
    args = {"scenario": "abrupt", "days": 10, "drift_day": 5, "end_date": END, "rows_per_day": 10}
    args.update(kwargs)
    scenario = args.pop("scenario")
    sink = MemorySink()
    with pytest.raises(ValueError, match=param):
        generate_world(sink, scenario, **args)
    assert len(sink) == 0  # validated before anything is written


# ---------------------------------------------------------------------------------- sinks


def test_directory_sink(tmp_path):
    sink = DirectorySink(tmp_path)
    sink.write("inference/dt=2024-06-30/_SUCCESS", b"", "text/plain")
    assert (tmp_path / "inference/dt=2024-06-30/_SUCCESS").read_bytes() == b""
    with pytest.raises(ValueError, match="key escapes the sink's directory"):
        sink.write("../escape", b"x", "text/plain")


def test_import_is_cheap():
    code = "import sys, driftloop_dev.synth as s; s.SCENARIOS; print(sorted(m for m in ('numpy', 'pyarrow', 'PIL') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------ CLI


@pytest.fixture
def aws_env(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("DRIFTLOOP_BUCKET", "synth-test")


def test_cli_writes_to_s3_and_prints_the_ground_truth(aws_env, capsys):
    from moto import mock_aws

    from driftloop_dev.synth.__main__ import main

    argv = [
        "--scenario",
        "abrupt",
        "--days",
        "3",
        "--drift-day",
        "1",
        "--rows-per-day",
        "20",
        "--end-date",
        "2024-06-30",
        "--labeled-per-day",
        "1",
        "--files-per-day",
        "1",
        "--seed",
        "2",
        "--create-bucket",
    ]
    with mock_aws():
        assert main(argv) == 0
        truth = json.loads(capsys.readouterr().out)
        s3 = storage.s3_client()
        partition = storage.list_partition(s3, "synth-test", "2024-06-30")
        assert partition.has_success
        assert partition.keys == ("inference/dt=2024-06-30/part-00000.parquet",)
        table = read_parquet(storage.get_bytes(s3, "synth-test", partition.keys[0]))
        assert table.schema.equals(schema.arrow_schema())
        assert table.num_rows == 20
        labels = storage.list_keys(s3, "synth-test", "labeled/dt=2024-06-29/labels/")
        assert [o["Key"] for o in labels] == ["labeled/dt=2024-06-29/labels/2024-06-29-0000.txt"]
        # the same world through S3Sink and MemorySink is the same bytes
        mem = MemorySink()
        generate_world(
            mem,
            "abrupt",
            days=3,
            drift_day=1,
            end_date="2024-06-30",
            rows_per_day=20,
            labeled_per_day=1,
            files_per_day=1,
            seed=2,
        )
        for key, data in mem.objects.items():
            assert storage.get_bytes(s3, "synth-test", key) == data
        assert isinstance(S3Sink(s3, "synth-test"), S3Sink)
    assert (
        truth
        == ground_truth("abrupt", days=3, drift_day=1, end_date="2024-06-30", seed=2).to_dict()
    )


def test_cli_argument_errors(aws_env, capsys):
    from driftloop_dev.synth.__main__ import build_parser, main, yesterday_utc

    with pytest.raises(SystemExit) as err:
        main(["--scenario", "tsunami", "--days", "3"])
    assert err.value.code == 2
    with pytest.raises(SystemExit) as err:
        main(["--scenario", "abrupt", "--days", "3", "--end-date", "2024-13-01"])
    assert err.value.code == 2
    with pytest.raises(SystemExit) as err:  # validation errors become usage errors
        main(
            [
                "--out-dir",
                "/nonexistent-never-written",
                "--scenario",
                "abrupt",
                "--days",
                "3",
                "--drift-day",
                "3",
            ]
        )
    assert err.value.code == 2
    assert "drift_day" in capsys.readouterr().err
    args = build_parser().parse_args(["--scenario", "stable", "--days", "7"])
    assert args.end_date is None
    assert args.rows_per_day == 1000
    assert args.files_per_day == 2
    assert args.labeled_per_day == 8
    assert args.seed == 0
    assert args.bucket is None
    assert yesterday_utc() == datetime.now(UTC).date() - timedelta(days=1)


def test_cli_out_dir(tmp_path, capsys):
    from driftloop_dev.synth.__main__ import main

    argv = [
        "--scenario",
        "stable",
        "--days",
        "1",
        "--rows-per-day",
        "5",
        "--end-date",
        "2024-06-30",
        "--labeled-per-day",
        "1",
        "--out-dir",
        str(tmp_path),
    ]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["scenario"] == "stable"
    assert (tmp_path / "inference/dt=2024-06-30/_SUCCESS").exists()
    assert (tmp_path / "labeled/dt=2024-06-30/images/2024-06-30-0000.png").exists()


def test_cli_magnitude(tmp_path, capsys):
    from driftloop_dev.synth.__main__ import main

    argv = ["--scenario", "brightness-shift", "--days", "2", "--drift-day", "1"]
    argv += ["--rows-per-day", "5", "--end-date", "2024-06-30", "--labeled-per-day", "0"]
    argv += ["--out-dir", str(tmp_path)]
    assert main([*argv, "--magnitude", "0.2"]) == 0
    truth = json.loads(capsys.readouterr().out)
    assert truth["magnitude"] == 0.2
    assert (
        truth
        == ground_truth(
            "brightness-shift", days=2, drift_day=1, end_date="2024-06-30", magnitude=0.2
        ).to_dict()
    )
    with pytest.raises(SystemExit) as err:  # required for this scenario: a usage error
        main(argv)
    assert err.value.code == 2
    assert "magnitude" in capsys.readouterr().err
    # the other scenarios' ground truth has no magnitude key at all
    assert main(["--scenario", "stable", "--days", "1", "--rows-per-day", "5",
                 "--end-date", "2024-06-30", "--labeled-per-day", "0",
                 "--out-dir", str(tmp_path / "stable")]) == 0  # fmt: skip
    assert "magnitude" not in json.loads(capsys.readouterr().out)
