"""COCO-style AP and mAP (driftloop.evaluation.coco_map) against a plain reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from driftloop.evaluation.bootstrap import resample_counts
from driftloop.evaluation.coco_map import (
    ImageRecord,
    average_precision,
    flatten_records,
    map_from_records,
    metric_from_records,
    weighted_map,
)
from tests.unit.evaluation.scored_records import T, perfect, random_records, ref_ap, ref_map

# --------------------------------------------------------------------------------------------
# AP


def test_ap_of_a_perfect_detector_is_one():
    assert average_precision([True] * 7, 7) == pytest.approx(1.0)


def test_ap_of_an_all_false_detector_is_zero():
    assert average_precision([False] * 5, 3) == 0.0
    assert average_precision([], 3) == 0.0
    assert math.isnan(average_precision([True], 0))


def test_ap_hand_computed():
    # precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3; envelope 1, 2/3, 2/3.
    # recall levels 0.00..0.33 (34 points) -> 1; 0.34..0.66 (33) -> 2/3; 0.67..1.00 (34) -> 0
    assert average_precision([True, False, True], 3) == pytest.approx((34 + 33 * 2 / 3) / 101)
    # a false positive ranked first only costs precision: 0.5 everywhere
    assert average_precision([False, True], 1) == pytest.approx(0.5)
    # half the GT found, perfectly ranked: recall levels 0.00..0.50 (51 points) -> 1
    assert average_precision([True, True], 4) == pytest.approx(51 / 101)


def test_ap_matches_reference_on_random_flags():
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(0, 40))
        flags = rng.random(n) < rng.random()
        n_gt = int(flags.sum() + rng.integers(0, 5))
        expected = ref_ap(flags, n_gt)
        got = average_precision(flags, n_gt)
        assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


# --------------------------------------------------------------------------------------------
# mAP


def test_map_matches_reference_on_random_data():
    rng = np.random.default_rng(0)
    records = random_records(40, rng)
    assert map_from_records(records, 0) == pytest.approx(ref_map(records, [0]), abs=1e-12)
    assert map_from_records(records, 5) == pytest.approx(ref_map(records, [5]), abs=1e-12)
    assert map_from_records(records) == pytest.approx(ref_map(records, range(T)), abs=1e-12)
    # exact confidence ties (coarse scores): ranked by image order, as the reference does
    tied = [ImageRecord(np.round(r.confidence, 1), r.tp, r.classes, r.gt_counts) for r in records]
    assert map_from_records(tied) == pytest.approx(ref_map(tied, range(T)), abs=1e-12)
    assert metric_from_records(records, "map50") == map_from_records(records, 0)
    assert metric_from_records(records, "map50_95") == map_from_records(records, None)


def test_map_perfect_and_empty():
    rng = np.random.default_rng(1)
    records = [perfect(r) for r in random_records(20, rng)]
    assert map_from_records(records, 0) == pytest.approx(1.0)
    assert map_from_records(records) == pytest.approx(1.0)
    no_gt = [ImageRecord.from_predictions([(0.5, [True] * T, 0)], {})]
    assert math.isnan(map_from_records(no_gt))
    # a class that is only predicted, never in the ground truth, does not count
    extra = [*records, ImageRecord.from_predictions([(0.99, [False] * T, 99)], {})]
    assert map_from_records(extra) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="iou_index"):
        map_from_records(records, 10)
    with pytest.raises(ValueError, match="metric"):
        metric_from_records(records, "map75")


def test_weighted_resample_equals_duplicated_images():
    rng = np.random.default_rng(5)
    records = random_records(30, rng)
    counts = resample_counts(len(records), 6, seed=11)
    got = weighted_map(flatten_records(records), counts, tuple(range(T)))
    for row, value in zip(counts, got, strict=True):
        duplicated = [records[i] for i in np.repeat(np.arange(len(records)), row)]
        assert value == pytest.approx(ref_map(duplicated, range(T)), abs=1e-12)


def test_record_round_trips_through_json_form():
    rng = np.random.default_rng(2)
    record = random_records(1, rng, max_preds=5)[0]
    again = ImageRecord.from_dict(record.to_dict())
    assert again.gt_counts == record.gt_counts
    assert np.array_equal(again.tp, record.tp)
    assert np.array_equal(again.confidence, record.confidence)
    with pytest.raises(ValueError, match="shape"):
        ImageRecord([0.5], [[True, False]], [0], {0: 1})


# --------------------------------------------------------------------------------------------
# against pycocotools, from boxes: matching (driftloop.evaluation.matching) + mAP
#
# pycocotools is configured to the definition this module documents: one area range ("all":
# no box is ignored for its size) and no cap on detections per image below the detector's own
# (maxDets=[10_000]; pycocotools' default 100 would drop low-confidence detections of crowded
# images that the evaluation keeps). No crowd boxes. Everything else is pycocotools' default.


def _coco_reference(images):
    """(mAP@0.5, mAP@0.5:0.95) from pycocotools for ``images``: a list of
    (gt_boxes xyxy, gt_classes, det_boxes xyxy, det_scores, det_classes)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box):
        x0, y0, x1, y1 = (float(v) for v in box)
        return [x0, y0, x1 - x0, y1 - y0]

    classes = sorted(
        {int(c) for img in images for c in (*img[1], *img[4])},
    )
    gt = {
        "images": [{"id": i + 1, "width": 640, "height": 640} for i in range(len(images))],
        "categories": [{"id": c + 1, "name": str(c)} for c in classes],
        "annotations": [],
    }
    dets = []
    for i, (gt_boxes, gt_classes, det_boxes, det_scores, det_classes) in enumerate(images):
        for box, c in zip(gt_boxes, gt_classes, strict=True):
            b = xywh(box)
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": i + 1,
                    "category_id": int(c) + 1,
                    "bbox": b,
                    "area": b[2] * b[3],
                    "iscrowd": 0,
                }
            )
        for box, score, c in zip(det_boxes, det_scores, det_classes, strict=True):
            dets.append(
                {"image_id": i + 1, "category_id": int(c) + 1, "bbox": xywh(box), "score": score}
            )
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.areaRng = [[0.0, 1e10]]
        evaluator.params.areaRngLbl = ["all"]
        evaluator.params.maxDets = [10_000]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, :, 0, 0]  # (T, R, K), -1: class without GT
    if not (precision > -1).any():
        return float("nan"), float("nan")
    at50 = precision[0]
    return float(at50[at50 > -1].mean()), float(precision[precision > -1].mean())


def _ours(images):
    from driftloop.evaluation.coco_map import map_scores
    from driftloop.evaluation.detector import Detections
    from driftloop.evaluation.matching import image_record

    records = [
        image_record(
            f"img{i}",
            Detections(
                np.asarray(det_boxes, float).reshape(-1, 4),
                np.asarray(det_scores, float),
                np.asarray(det_classes, np.int64),
            ),
            np.asarray(gt_boxes, float).reshape(-1, 4),
            np.asarray(gt_classes, np.int64),
        )
        for i, (gt_boxes, gt_classes, det_boxes, det_scores, det_classes) in enumerate(images)
    ]
    return map_scores(records)


def _random_box(rng, size=640.0):
    w, h = rng.uniform(8, 200, 2)
    x0, y0 = rng.uniform(0, size - w), rng.uniform(0, size - h)
    return [x0, y0, x0 + w, y0 + h]


def _jitter(rng, box, scale):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    dx0, dy0, dx1, dy1 = rng.normal(0, scale, 4) * [w, h, w, h]
    return [x0 + dx0, y0 + dy0, max(x0 + dx0 + 1, x1 + dx1), max(y0 + dy0 + 1, y1 + dy1)]


def _random_images(rng, n_images, *, n_classes=3, max_gt=6, max_fp=5, score_decimals=None):
    """A detector of mixed quality: most GT boxes found with a jittered box (some twice),
    some missed, some found with the wrong class, plus false positives anywhere."""
    images = []
    for _ in range(n_images):
        n_gt = int(rng.integers(0, max_gt + 1))
        gt_boxes = [_random_box(rng) for _ in range(n_gt)]
        gt_classes = [int(c) for c in rng.integers(0, n_classes, n_gt)]
        det_boxes, det_scores, det_classes = [], [], []
        for box, c in zip(gt_boxes, gt_classes, strict=True):
            for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):  # missed, found, found twice
                det_boxes.append(_jitter(rng, box, rng.uniform(0.0, 0.25)))
                det_scores.append(float(rng.uniform(0.2, 1.0)))
                wrong = rng.random() < 0.1
                det_classes.append(int(rng.integers(0, n_classes)) if wrong else c)
        for _ in range(int(rng.integers(0, max_fp + 1))):
            det_boxes.append(_random_box(rng))
            det_scores.append(float(rng.uniform(0.0, 0.8)))
            det_classes.append(int(rng.integers(0, n_classes)))
        if score_decimals is not None:
            det_scores = [round(s, score_decimals) for s in det_scores]
        images.append((gt_boxes, gt_classes, det_boxes, det_scores, det_classes))
    return images


def _assert_equal_to_pycocotools(images):
    ours = _ours(images)
    reference = _coco_reference(images)
    for got, expected in zip(ours, reference, strict=True):
        if math.isnan(expected):
            assert math.isnan(got)
        else:
            assert got == pytest.approx(expected, abs=1e-6)
    return ours


@pytest.mark.parametrize("seed", range(8))
def test_map_equals_pycocotools_on_random_detections(seed):
    rng = np.random.default_rng(seed)
    images = _random_images(rng, int(rng.integers(5, 60)))
    map50, map50_95 = _assert_equal_to_pycocotools(images)
    assert 0.0 < map50_95 < map50 < 1.0  # a detector of mixed quality, not a degenerate one


def test_map_equals_pycocotools_with_tied_scores():
    """Scores rounded to one decimal: ties within and across images rank the same way
    (image order, then detection order) in both."""
    rng = np.random.default_rng(21)
    _assert_equal_to_pycocotools(_random_images(rng, 40, score_decimals=1))
    _assert_equal_to_pycocotools(
        [([[10, 10, 50, 50]], [0], [[10, 10, 50, 50], [12, 10, 50, 52]], [0.5, 0.5], [0, 0])] * 3
    )


def test_map_equals_pycocotools_on_crowded_images():
    """Hundreds of detections per image: no per-image cap in either."""
    rng = np.random.default_rng(5)
    images = _random_images(rng, 6, max_gt=40, max_fp=300)
    assert max(len(img[2]) for img in images) > 100
    _assert_equal_to_pycocotools(images)


def test_map_equals_pycocotools_on_edge_cases():
    box, other = [100, 100, 200, 200], [300, 300, 360, 380]
    cases = {
        "perfect": [([box, other], [0, 1], [box, other], [0.9, 0.8], [0, 1])],
        "all false positives": [([box], [0], [other], [0.9], [0])],
        "wrong class only": [([box], [0], [box], [0.9], [1])],
        # a class that has ground truth but is never detected scores 0; a class that is only
        # predicted does not count
        "class never detected": [([box, other], [0, 1], [box, [0, 0, 5, 5]], [0.9, 0.4], [0, 2])],
        "duplicate detection": [([box], [0], [box, box], [0.9, 0.8], [0, 0])],
        "images without ground truth": [
            ([box], [0], [box], [0.7], [0]),
            ([], [], [other, box], [0.95, 0.6], [0, 0]),
            ([], [], [], [], []),
        ],
        "loose boxes": [
            ([box], [0], [[100, 100, 200, 262]], [0.9], [0]),  # IoU 0.617: TP up to 0.60
            ([other], [1], [[300, 300, 360, 401]], [0.8], [1]),  # IoU 0.792: TP up to 0.75
        ],
        "identical ground-truth boxes": [
            ([box, box], [0, 0], [box, box, box], [0.9, 0.8, 0.7], [0, 0, 0])
        ],
    }
    expected_map50 = {
        "perfect": 1.0,
        "all false positives": 0.0,
        "wrong class only": 0.0,
        "class never detected": 0.5,
        "duplicate detection": 1.0,
        "images without ground truth": 0.5,  # the FP at 0.95 ranks above the only TP
        "loose boxes": 1.0,
        "identical ground-truth boxes": 1.0,
    }
    for name, images in cases.items():
        map50, _ = _assert_equal_to_pycocotools(images)
        assert map50 == expected_map50[name], name


def test_map_without_any_ground_truth_is_nan_as_pycocotools_has_no_value():
    images = [([], [], [[0, 0, 10, 10]], [0.9], [0])]
    map50, map50_95 = _assert_equal_to_pycocotools(images)
    assert math.isnan(map50)
    assert math.isnan(map50_95)
