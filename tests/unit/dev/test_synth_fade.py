"""``confidence-decay``'s fading objects: what makes a real model's accuracy decay."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from driftloop_dev.synth import SCENARIOS, world_spec
from driftloop_dev.synth.frames import day_scenes, labeled_files, render
from driftloop_dev.synth.scenarios import CONFIDENCE_DECAY_DAYS, MAX_OBJECT_FADE
from driftloop_dev.synth.traffic import traffic_files

DRIFT_DAY = 3


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def _decay_spec(**kwargs):
    return world_spec(
        "confidence-decay", days=DRIFT_DAY + CONFIDENCE_DECAY_DAYS + 2, drift_day=DRIFT_DAY,
        end_date="2024-06-30", rows_per_day=1, files_per_day=1, labeled_per_day=4, **kwargs,
    )  # fmt: skip


def test_the_fade_ramps_over_the_decay_and_no_other_scenario_fades():
    spec = _decay_spec()
    fades = [spec.day_params(i).object_fade for i in range(spec.days)]
    assert fades[:DRIFT_DAY] == [0.0] * DRIFT_DAY
    ramp = fades[DRIFT_DAY : DRIFT_DAY + CONFIDENCE_DECAY_DAYS]
    assert ramp == pytest.approx(
        [MAX_OBJECT_FADE * (k + 1) / CONFIDENCE_DECAY_DAYS for k in range(CONFIDENCE_DECAY_DAYS)]
    )
    assert fades[DRIFT_DAY + CONFIDENCE_DECAY_DAYS :] == [MAX_OBJECT_FADE] * 2
    assert 0 < MAX_OBJECT_FADE < 1  # the objects stay (faintly) in the frame their labels name
    for name, scenario in SCENARIOS.items():
        if name != "confidence-decay":
            magnitude = 0.5 if scenario.takes_magnitude else None
            assert {scenario.params(k, magnitude).object_fade for k in (None, 0, 5, 30)} == {0.0}


@pytest.mark.parametrize("fade", [0.25, 0.6, 1.0])
def test_a_faded_object_is_that_share_of_the_way_to_the_pitch_behind_it(fade):
    spec = _decay_spec()
    scene = next(s for s in day_scenes(spec, 0) if s.objects)
    drawn = _pixels(render(scene))
    pitch = _pixels(render(scene.without_objects()))
    faded = _pixels(render(replace(scene, object_fade=fade)))
    # same lighting and sensor noise: only the objects move, linearly, up to rounding (where
    # the drawn frame did not clip at 0 or 255)
    expected = pitch + (1 - fade) * (drawn - pitch)
    unclipped = ((drawn > 0) & (drawn < 255)).all(axis=2)
    assert unclipped.mean() > 0.95
    assert np.abs(faded - expected)[unclipped].max() <= 1
    mask = np.zeros(drawn.shape[:2], dtype=bool)
    for o in scene.objects:
        mask[o.y0 : o.y1, o.x0 : o.x1] = True
    assert np.array_equal(faded[~mask], drawn[~mask])  # the pitch is untouched
    inside = mask & unclipped
    contrast = np.abs(drawn - pitch)[inside].mean()
    assert contrast > 20
    assert np.abs(faded - pitch)[inside].mean() == pytest.approx((1 - fade) * contrast, abs=0.5)


def test_labeled_and_traffic_frames_of_a_decayed_day_fade_alike():
    spec = _decay_spec()
    late = DRIFT_DAY + CONFIDENCE_DECAY_DAYS
    scenes = day_scenes(spec, late)
    assert {s.object_fade for s in scenes} == {MAX_OBJECT_FADE}
    labeled = [d for k, d, _ in labeled_files(spec, late) if k.endswith(".png")]
    traffic = [d for k, d, _ in traffic_files(spec, late, 8) if k.endswith(".png")]
    assert traffic[: len(labeled)] == labeled  # the labeled frames are the first traffic frames
    for data, scene in zip(labeled, scenes, strict=True):
        shown = _pixels(Image.open(io.BytesIO(data)).convert("RGB"))
        assert np.array_equal(shown, _pixels(render(scene)))
        if scene.objects:
            assert not np.array_equal(shown, _pixels(render(replace(scene, object_fade=0.0))))
    # before the drift nothing fades: the frames render as drawn
    assert {s.object_fade for s in day_scenes(spec, DRIFT_DAY - 1)} == {0.0}
