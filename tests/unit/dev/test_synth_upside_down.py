"""``confidence-decay``'s upside-down players: what makes a real model's accuracy decay while
every image statistic stays."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from driftloop.serving.features import image_features
from driftloop_dev.synth import SCENARIOS, world_spec
from driftloop_dev.synth.frames import (
    PLAYER,
    day_scenes,
    labeled_files,
    render,
    turn_upside_down,
    with_players_upside_down,
    yolo_labels,
)
from driftloop_dev.synth.scenarios import CONFIDENCE_DECAY_DAYS, MAX_UPSIDE_DOWN
from driftloop_dev.synth.traffic import traffic_files

DRIFT_DAY = 3


def _decay_spec():
    return world_spec(
        "confidence-decay", days=DRIFT_DAY + CONFIDENCE_DECAY_DAYS + 2, drift_day=DRIFT_DAY,
        end_date="2024-06-30", rows_per_day=1, files_per_day=1, labeled_per_day=6,
    )  # fmt: skip


def _all_turned(scene):
    return replace(
        scene, objects=tuple(replace(o, upside_down=o.cls == PLAYER) for o in scene.objects)
    )


def test_the_share_ramps_over_the_decay_and_no_other_scenario_turns_players():
    spec = _decay_spec()
    shares = [spec.day_params(i).upside_down for i in range(spec.days)]
    assert shares[:DRIFT_DAY] == [0.0] * DRIFT_DAY
    assert shares[DRIFT_DAY : DRIFT_DAY + CONFIDENCE_DECAY_DAYS] == pytest.approx(
        [MAX_UPSIDE_DOWN * (k + 1) / CONFIDENCE_DECAY_DAYS for k in range(CONFIDENCE_DECAY_DAYS)]
    )
    assert shares[DRIFT_DAY + CONFIDENCE_DECAY_DAYS :] == [MAX_UPSIDE_DOWN] * 2
    for name, scenario in SCENARIOS.items():
        if name != "confidence-decay":
            magnitude = 0.5 if scenario.takes_magnitude else None
            assert {scenario.params(k, magnitude).upside_down for k in (None, 0, 5, 30)} == {0.0}


def test_turning_mirrors_the_object_inside_its_box_and_leaves_the_pitch():
    pitch = np.zeros((6, 5, 3), dtype=np.uint8)
    pitch[:, :, 1] = 100
    drawn = pitch.copy()
    drawn[1, 1:4] = (200, 0, 0)  # head row
    drawn[2:5, 2] = (0, 0, 200)  # body
    o = replace(day_scenes(_decay_spec(), 0)[0].objects[0], x0=1, y0=1, x1=4, y1=5)
    turned = drawn.copy()
    turn_upside_down(turned, pitch, o)
    assert np.array_equal(turned[4, 1:4], drawn[1, 1:4])  # the head is at the bottom now
    assert np.array_equal(turned[1:4, 2], drawn[2:5, 2][::-1])
    assert np.array_equal(turned[1, 1], pitch[1, 1])  # where the head was: the pitch
    outside = np.ones(pitch.shape[:2], dtype=bool)
    outside[1:5, 1:4] = False
    assert np.array_equal(turned[outside], drawn[outside])


def test_upside_down_players_keep_their_boxes_labels_and_the_image_statistics():
    scenes = [s for s in day_scenes(_decay_spec(), 0) if any(o.cls == PLAYER for o in s.objects)]
    assert scenes
    for scene in scenes:
        turned = _all_turned(scene)
        assert yolo_labels(turned) == yolo_labels(scene)
        upright, flipped = render(scene), render(turned)
        assert not np.array_equal(np.asarray(upright), np.asarray(flipped))
        before, after = image_features(upright), image_features(flipped)
        for name in ("brightness", "mean_r", "mean_g", "mean_b", "contrast", "saturation"):
            assert after[name] == pytest.approx(before[name], rel=0.01, abs=0.01), name
        assert after["sharpness"] == pytest.approx(before["sharpness"], rel=0.05)


def test_the_choice_is_the_scenes_own_and_a_share_of_zero_changes_nothing():
    scene = day_scenes(_decay_spec(), 0)[0]
    assert with_players_upside_down(scene, 0.0) is scene
    everyone = with_players_upside_down(scene, 1.0)
    assert [o.upside_down for o in everyone.objects] == [o.cls == PLAYER for o in scene.objects]
    assert with_players_upside_down(scene, 0.5) == with_players_upside_down(scene, 0.5)


def test_labeled_and_traffic_frames_of_a_decayed_day_turn_alike():
    spec = _decay_spec()
    late = DRIFT_DAY + CONFIDENCE_DECAY_DAYS
    scenes = day_scenes(spec, late)
    players = [o for s in scenes for o in s.objects if o.cls == PLAYER]
    assert players
    assert all(o.upside_down for o in players)
    labeled = [d for k, d, _ in labeled_files(spec, late) if k.endswith(".png")]
    traffic = [d for k, d, _ in traffic_files(spec, late, 8) if k.endswith(".png")]
    assert traffic[: len(labeled)] == labeled  # the labeled frames are the first traffic frames
    for data, scene in zip(labeled, scenes, strict=True):
        shown = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert np.array_equal(shown, np.asarray(render(scene)))
    # before the drift every player stands
    assert not any(o.upside_down for s in day_scenes(spec, DRIFT_DAY - 1) for o in s.objects)
