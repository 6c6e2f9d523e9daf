"""A labeled day's mAP over all cameras and per camera, from hand-made boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from driftloop.evaluation.detector import Detections
from driftloop.evaluation.matching import image_record
from driftloop.performance.scores import bootstrap_interval, camera_scores, slice_scores

GT = np.array([[0.0, 0.0, 10.0, 10.0]])


def record(image_id: str, pred_box, conf: float):
    """One ball (class 0) in the image; one prediction ``pred_box`` of confidence ``conf``."""
    det = Detections(np.array([pred_box], float), np.array([conf]), np.array([0]))
    return image_record(image_id, det, GT, np.array([0]))


def day():
    """Camera A: exact boxes (IoU 1); camera B: IoU 0.6 (a TP at 0.50, 0.55, 0.60 only)."""
    records = [
        record("a1", [0, 0, 10, 10], 0.9),
        record("a2", [0, 0, 10, 10], 0.9),
        record("b1", [0, 0, 10, 6], 0.8),
        record("b2", [0, 0, 10, 6], 0.8),
    ]
    return records, ["cam-a", "cam-a", "cam-b", "cam-b"]


def test_map_per_camera_and_over_all_cameras_on_hand_made_boxes():
    records, cameras = day()
    scores = camera_scores(records, cameras, n_resamples=50)
    assert list(scores) == ["*", "cam-a", "cam-b"]
    assert scores["cam-a"]["map50"] == pytest.approx(1.0)
    assert scores["cam-a"]["map50_95"] == pytest.approx(1.0)
    assert scores["cam-b"]["map50"] == pytest.approx(1.0)
    assert scores["cam-b"]["map50_95"] == pytest.approx(0.3)
    # all cameras: above IoU 0.6 only camera A's two boxes (ranked first) are hits: recall
    # 0.5 at precision 1, i.e. 51 of pycocotools' 101 recall points
    assert scores["*"]["map50"] == pytest.approx(1.0)
    assert scores["*"]["map50_95"] == pytest.approx((3 * 1.0 + 7 * 51 / 101) / 10)
    assert [scores[c]["n_frames"] for c in scores] == [4, 2, 2]


def test_the_ci_brackets_the_point_and_is_reproducible():
    records, cameras = day()
    overall = slice_scores(records, n_resamples=200)
    assert overall["map50_95_low"] <= overall["map50_95"] <= overall["map50_95_high"]
    assert overall["map50_95_low"] < overall["map50_95_high"]  # the cameras differ: a spread
    again = slice_scores(records, n_resamples=200)
    assert again == overall
    # one perfect camera: every resample is perfect, the interval is a point
    perfect = camera_scores(records, cameras, n_resamples=200)["cam-a"]
    assert perfect["map50_95_low"] == perfect["map50_95_high"] == pytest.approx(1.0)


def test_bootstrap_interval_matches_resampled_sets_explicitly():
    """The weighted resamples give the percentiles of mAPs of explicitly copied sets."""
    from driftloop.evaluation.bootstrap import percentile_interval, resample_counts
    from driftloop.evaluation.coco_map import map_from_records

    records, _ = day()
    counts = resample_counts(len(records), 40, 0)
    explicit = [
        map_from_records([r for r, n in zip(records, row, strict=True) for _ in range(n)])
        for row in counts
    ]
    assert bootstrap_interval(records, n_resamples=40) == pytest.approx(
        percentile_interval(explicit, 0.95)
    )


def test_slices_without_ground_truth_or_frames_have_no_map():
    empty = slice_scores([], n_resamples=10)
    assert empty == {
        "n_frames": 0,
        "map50": None,
        "map50_95": None,
        "map50_95_low": None,
        "map50_95_high": None,
    }
    no_gt = image_record(
        "x", Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)), np.zeros((0, 4)), []
    )
    scores = slice_scores([no_gt], n_resamples=10)
    assert scores["n_frames"] == 1
    assert scores["map50_95"] is None
    assert all(v is None or not isinstance(v, float) or math.isfinite(v) for v in scores.values())


def test_cameras_must_line_up_with_records_and_star_is_reserved():
    records, cameras = day()
    with pytest.raises(ValueError, match="4 records"):
        camera_scores(records, cameras[:3])
    with pytest.raises(ValueError, match="reserved"):
        camera_scores(records, ["*"] * 4, n_resamples=10)
