"""The synthetic world's camera traffic (driftloop_dev.synth.traffic): deterministic frames
and manifest, the labeled frames as the day's first frames byte for byte, each camera's look
and the scenario's lighting visible in the features the scorer computes from the pixels."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime

import numpy as np
import pytest
from PIL import Image

from driftloop.serving.batch import parse_manifest
from driftloop.serving.features import image_features
from driftloop_dev.synth import DirectorySink, MemorySink, generate_world, world_spec
from driftloop_dev.synth.frames import day_scenes, labeled_files, render
from driftloop_dev.synth.inference import CAMERA_BRIGHTNESS, CAMERA_TINT
from driftloop_dev.synth.scenarios import BASELINE_CAMERAS, NEW_CAMERA
from driftloop_dev.synth.traffic import camera_look, traffic_files, write_traffic

END = date(2031, 1, 4)


def _spec(scenario="abrupt", **kwargs):
    values = {"days": 4, "drift_day": 2, "end_date": END, "rows_per_day": 10, "labeled_per_day": 5}
    if scenario == "stable":
        values.pop("drift_day")
    return world_spec(scenario, **{**values, **kwargs})


def _manifest(files):
    key, data, content_type = files[-1]
    assert key.endswith("/_frames.jsonl")
    assert content_type == "application/x-ndjson"
    return [json.loads(line) for line in data.decode().splitlines()]


def _features_by_camera(files):
    images = {key: data for key, data, _ in files}
    by_camera: dict[str, list[dict]] = {}
    for entry in _manifest(files):
        image = Image.open(io.BytesIO(images[entry["key"]]))
        by_camera.setdefault(entry["camera_id"], []).append(image_features(image))
    return by_camera


def test_traffic_is_deterministic_and_laid_out_as_the_scorer_reads_it():
    spec = _spec()
    files = traffic_files(spec, 1, 40)
    assert files == traffic_files(spec, 1, 40)
    assert files != traffic_files(_spec(seed=1), 1, 40)
    day = spec.date_of(1).isoformat()
    frames = [(k, t) for k, _, t in files[:-1]]
    assert frames == [(f"frames/dt={day}/{day}-{i:04d}.png", "image/png") for i in range(40)]
    # the manifest parses as the scorer parses it: every frame once, in capture order
    parsed = parse_manifest(files[-1][1].decode(), day, "manifest")
    assert sorted(f.key for f in parsed) == [k for k, _ in frames]
    assert [f.ts for f in parsed] == sorted(f.ts for f in parsed)
    start = datetime(2031, 1, 2, tzinfo=UTC)
    assert (parsed[-1].ts - parsed[0].ts).total_seconds() > 12 * 3600  # spread over the day
    assert all(0 <= (f.ts - start).total_seconds() < 86_400 for f in parsed)
    assert traffic_files(spec, 1, 0) == []


def test_the_first_frames_are_the_labeled_frames_byte_for_byte():
    spec = _spec()
    for index in (0, 3):
        day = spec.date_of(index).isoformat()
        labeled = {k: v for k, v, _ in labeled_files(spec, index)}
        traffic = {k: v for k, v, _ in traffic_files(spec, index, 30)}
        for i in range(spec.labeled_per_day):
            stem = f"{day}-{i:04d}"
            assert (
                traffic[f"frames/dt={day}/{stem}.png"]
                == labeled[f"labeled/dt={day}/images/{stem}.png"]
            )
        # the others are fresh scenes, not repeats of the labeled ones
        assert traffic[f"frames/dt={day}/{day}-0005.png"] not in labeled.values()
    # traffic leaves the labeled frames of the world as they were
    with_traffic, without = MemorySink(), MemorySink()
    kwargs = {"days": 2, "end_date": END, "rows_per_day": 5, "labeled_per_day": 2}
    generate_world(with_traffic, "stable", frames_per_day=6, **kwargs)
    generate_world(without, "stable", **kwargs)
    assert not without.keys("frames/")  # default: no traffic, existing callers unchanged
    assert len(with_traffic.keys("frames/")) == 2 * (6 + 1)
    for key in without:
        assert with_traffic[key] == without[key], key


def test_a_camera_look_is_its_offset_and_tint_in_the_pixels():
    scene = day_scenes(_spec("stable"), 0)[0]
    plain = image_features(render(scene))
    for camera in (*BASELINE_CAMERAS, NEW_CAMERA):
        seen = image_features(camera_look(render(scene), camera))
        shift = np.asarray(CAMERA_TINT[camera]) + CAMERA_BRIGHTNESS[camera]
        got = np.array([seen[c] - plain[c] for c in ("mean_r", "mean_g", "mean_b")])
        np.testing.assert_allclose(got, shift, atol=0.6)  # up to clipping at 0 / 255


def test_new_camera_and_lighting_drop_show_in_the_features():
    spec = _spec()
    before = _features_by_camera(traffic_files(spec, 0, 300))
    after = _features_by_camera(traffic_files(spec, 3, 300))
    assert NEW_CAMERA not in before
    assert set(before) == set(BASELINE_CAMERAS)
    assert NEW_CAMERA in after  # the abrupt scenario's new camera, ~30 % of the frames
    assert 0.2 < len(after[NEW_CAMERA]) / 300 < 0.4

    def mean(groups, feature, cameras):
        return np.mean([f[feature] for c in cameras for f in groups[c]])

    # the lighting drop (brightness -35, contrast x0.8) on the same cameras
    assert mean(before, "brightness", BASELINE_CAMERAS) - mean(
        after, "brightness", BASELINE_CAMERAS
    ) == pytest.approx(35, abs=6)
    assert mean(after, "contrast", BASELINE_CAMERAS) < mean(before, "contrast", BASELINE_CAMERAS)
    # cam-05's look: green down 5, blue up 9, brightness -8 against cam-01's +6 and tint
    delta_g = mean(after, "mean_g", [NEW_CAMERA]) - mean(after, "mean_g", ["cam-01"])
    delta_b = mean(after, "mean_b", [NEW_CAMERA]) - mean(after, "mean_b", ["cam-01"])
    assert delta_g < -12
    assert delta_b - delta_g > 15


def test_write_traffic_writes_the_chosen_days_only(tmp_path):
    spec = _spec("stable")
    sink = MemorySink()
    manifests = write_traffic(sink, spec, [3, "2031-01-02"], 8)
    assert manifests == [
        "frames/dt=2031-01-04/_frames.jsonl",
        "frames/dt=2031-01-02/_frames.jsonl",
    ]
    assert {k.split("/")[1] for k in sink} == {"dt=2031-01-04", "dt=2031-01-02"}
    assert len(sink) == 2 * 9
    with pytest.raises(ValueError, match="outside the world"):
        write_traffic(sink, spec, [date(2031, 1, 9)], 8)
    with pytest.raises(ValueError, match=r"frames_per_day must be 0 or in \[labeled_per_day"):
        write_traffic(sink, spec, [0], 4)  # fewer than the 5 labeled frames
    with pytest.raises(ValueError, match="frames_per_day must be an integer"):
        write_traffic(sink, spec, [0], True)
    write_traffic(DirectorySink(tmp_path), spec, [0], 6)
    assert (tmp_path / "frames/dt=2031-01-01/2031-01-01-0005.png").exists()


def test_cli_frames_per_day(tmp_path, capsys):
    from driftloop_dev.synth.__main__ import main

    argv = ["--scenario", "stable", "--days", "1", "--rows-per-day", "5"]
    argv += ["--end-date", "2031-01-01", "--labeled-per-day", "2", "--out-dir", str(tmp_path)]
    assert main([*argv, "--frames-per-day", "4"]) == 0
    capsys.readouterr()
    manifest = (tmp_path / "frames/dt=2031-01-01/_frames.jsonl").read_text().splitlines()
    assert len(manifest) == 4
    assert (tmp_path / "inference/dt=2031-01-01/_SUCCESS").exists()
    with pytest.raises(SystemExit) as err:
        main([*argv, "--frames-per-day", "1"])
    assert err.value.code == 2
    assert "frames_per_day" in capsys.readouterr().err
