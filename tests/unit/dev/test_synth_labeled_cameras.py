"""The synthetic world's labeled days carry their cameras (``frames.jsonl``), end with
``_SUCCESS``, and show a camera look only when asked (the floors were calibrated without)."""

from __future__ import annotations

import json
from datetime import date

import pytest

from driftloop.contracts import storage
from driftloop.contracts.labeled import frames_index_key, parse_frames_index
from driftloop_dev.synth import MemorySink, generate_world, world_spec
from driftloop_dev.synth.frames import (
    camera_look,
    day_scenes,
    labeled_cameras,
    labeled_files,
    render,
    to_png,
)
from driftloop_dev.synth.scenarios import ALL_CAMERAS, BASELINE_CAMERAS, NEW_CAMERA
from driftloop_dev.synth.traffic import traffic_files

END = date(2031, 1, 4)


def _spec(**kwargs):
    values = {"days": 4, "drift_day": 2, "end_date": END, "rows_per_day": 10}
    return world_spec("abrupt", **{**values, "labeled_per_day": 6, **kwargs})


def _index(files, day):
    data = {k: v for k, v, _ in files}
    return parse_frames_index(data[frames_index_key(day)], frames_index_key(day))


def test_a_labeled_day_lists_its_frames_cameras_and_ends_with_success():
    spec = _spec()
    for index in range(spec.days):
        day = spec.date_of(index).isoformat()
        files = labeled_files(spec, index)
        keys = [k for k, _, _ in files]
        assert keys[-2:] == [frames_index_key(day), storage.labeled_prefix(day) + "_SUCCESS"]
        summary = json.loads(files[-1][1])
        assert summary == {"day": day, "frames": 6, "source": "feedback", "written_by": "synth"}
        frames = _index(files, day)
        assert sorted(frames) == [f"{day}-{i:04d}" for i in range(6)]
        assert {f.source for f in frames.values()} == {"feedback"}
        cameras = {f.camera_id for f in frames.values()}
        # the world's cameras: the new one only from the drift day on
        assert cameras <= set(ALL_CAMERAS if index >= spec.drift_day else BASELINE_CAMERAS)
    assert labeled_files(_spec(labeled_per_day=0), 0) == []  # no frames, no labeled day


def test_a_labeled_frame_has_the_camera_of_its_traffic_frame():
    spec = _spec()
    index = 3
    day = spec.date_of(index).isoformat()
    traffic = traffic_files(spec, index, 40)
    by_id = {
        e["image_id"]: e["camera_id"] for e in map(json.loads, traffic[-1][1].decode().splitlines())
    }
    frames = _index(labeled_files(spec, index), day)
    assert {stem: f.camera_id for stem, f in frames.items()} == {s: by_id[s] for s in frames}
    assert labeled_cameras(spec, index) == [by_id[f"{day}-{i:04d}"] for i in range(6)]
    # after the drift day the new camera shows up among the labeled frames too
    many = _spec(labeled_per_day=60)
    assert NEW_CAMERA in labeled_cameras(many, 3)


def test_camera_looks_are_opt_in():
    plain, looked = _spec(), _spec(camera_looks=True)
    index = 3
    day = plain.date_of(index).isoformat()
    scenes = day_scenes(plain, index)
    cameras = labeled_cameras(plain, index)
    default = {k: v for k, v, _ in labeled_files(plain, index)}
    seen = {k: v for k, v, _ in labeled_files(looked, index)}
    for i, scene in enumerate(scenes):
        key = f"{storage.labeled_prefix(day)}images/{day}-{i:04d}.png"
        # by default the pixels the promotion floors were calibrated on, unchanged
        assert default[key] == to_png(render(scene))
        assert seen[key] == to_png(camera_look(render(scene), cameras[i]))
    # the labels, the index and the marker do not depend on the look
    assert {k: v for k, v in default.items() if not k.endswith(".png")} == {
        k: v for k, v in seen.items() if not k.endswith(".png")
    }
    # the traffic's first frames stay byte for byte the labeled frames, look or not
    traffic = {k: v for k, v, _ in traffic_files(looked, index, 10)}
    for i in range(len(scenes)):
        stem = f"{day}-{i:04d}"
        assert traffic[f"frames/dt={day}/{stem}.png"] == seen[f"labeled/dt={day}/images/{stem}.png"]


def test_generate_world_passes_camera_looks_and_refuses_a_non_flag():
    sink = MemorySink()
    kwargs = {"days": 2, "end_date": END, "rows_per_day": 5, "labeled_per_day": 2}
    generate_world(sink, "stable", camera_looks=True, **kwargs)
    plain = MemorySink()
    generate_world(plain, "stable", **kwargs)
    pngs = [k for k in plain.keys("labeled/dt=") if k.endswith(".png")]
    assert pngs
    assert all(sink[k] != plain[k] for k in pngs)
    assert all(sink[k] == plain[k] for k in plain.keys("inference/"))
    with pytest.raises(ValueError, match="camera_looks must be true or false"):
        world_spec("stable", days=2, end_date=END, camera_looks="yes")
