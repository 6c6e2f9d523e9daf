"""driftloop_dev.synth.truth: the true labels of traffic frames, and the random arm's pick."""

from __future__ import annotations

import pytest

from driftloop_dev.synth import world_spec
from driftloop_dev.synth.frames import camera_look, labeled_files, render, to_png
from driftloop_dev.synth.traffic import traffic_files
from driftloop_dev.synth.truth import traffic_labels, traffic_scenes, uniform_pick


@pytest.mark.parametrize("looks", [False, True])
def test_scenes_render_to_the_traffic_frames_byte_for_byte(looks):
    spec = world_spec("abrupt", days=3, drift_day=1, end_date="2031-01-03", rows_per_day=1, files_per_day=1,
                      labeled_per_day=3, camera_looks=looks)  # fmt: skip
    n = 12
    files = {key: data for key, data, _ in traffic_files(spec, 2, n)}
    scenes = traffic_scenes(spec, 2, n)
    assert len(scenes) == n
    for image_id, (scene, camera) in scenes.items():
        key = f"frames/dt=2031-01-03/{image_id}.png"
        if int(image_id.rsplit("-", 1)[1]) < spec.labeled_per_day:
            continue  # the labeled frames: compared with the labeled day below
        assert files[key] == to_png(camera_look(render(scene), camera)), image_id
    assert {c for _, c in scenes.values()} <= set(spec.day_params(2).cameras)


def test_labels_of_the_labeled_frames_are_the_labeled_days_labels():
    spec = world_spec("abrupt", days=2, drift_day=1, end_date="2031-01-02", rows_per_day=1, files_per_day=1,
                      labeled_per_day=4, camera_looks=True)  # fmt: skip
    labeled = {key: data for key, data, _ in labeled_files(spec, 1)}
    labels = traffic_labels(spec, 1, 10)
    for i in range(4):
        stem = f"2031-01-02-{i:04d}"
        assert labels[stem].encode() == labeled[f"labeled/dt=2031-01-02/labels/{stem}.txt"]
    assert all(line.split()[0] in {"0", "1"} for t in labels.values() for line in t.splitlines())


def test_uniform_pick_is_seeded_uniform_and_excludes():
    ids = [f"f{i:03d}" for i in range(100)]
    a = uniform_pick(ids, 10, seed=1, exclude={"f000", "f001"})
    assert a == uniform_pick(list(reversed(ids)), 10, seed=1, exclude={"f000", "f001"})
    assert len(a) == len(set(a)) == 10
    assert a == sorted(a)
    assert not {"f000", "f001"} & set(a)
    assert a != uniform_pick(ids, 10, seed=2)
    assert uniform_pick(ids[:5], 10, seed=0) == ids[:5]
    # every frame about equally likely over seeds
    counts = dict.fromkeys(ids, 0)
    for seed in range(400):
        for f in uniform_pick(ids, 10, seed=seed):
            counts[f] += 1
    assert min(counts.values()) > 15
    assert max(counts.values()) < 70
    with pytest.raises(ValueError, match="budget"):
        uniform_pick(ids, -1, seed=0)
