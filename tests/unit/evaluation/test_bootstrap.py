"""COCO-style AP/mAP and the paired bootstrap CI of a metric delta."""

from __future__ import annotations

import math

import numpy as np
import pytest

from driftloop.evaluation.bootstrap import (
    IOU_THRESHOLDS,
    DeltaCI,
    ImageRecord,
    _flatten,
    _metric_weighted,
    average_precision,
    map_from_records,
    metric_from_records,
    paired_bootstrap_delta,
    paired_bootstrap_mean_delta,
    percentile_interval,
    resample_counts,
)

T = len(IOU_THRESHOLDS)


# --------------------------------------------------------------------------------------------
# reference implementation (pycocotools' accumulate, written out plainly)


def ref_ap(tp_sorted, n_gt):
    if n_gt == 0:
        return float("nan")
    tp_sum = fp_sum = 0
    precision, recall = [], []
    for flag in tp_sorted:
        tp_sum += bool(flag)
        fp_sum += not bool(flag)
        precision.append(tp_sum / (tp_sum + fp_sum))
        recall.append(tp_sum / n_gt)
    for i in range(len(precision) - 1, 0, -1):
        if precision[i] > precision[i - 1]:
            precision[i - 1] = precision[i]
    rec_thrs = np.linspace(0.0, 1.00, 101, endpoint=True)
    total = 0.0
    for r in rec_thrs:
        idx = next((i for i, x in enumerate(recall) if x >= r), None)
        total += precision[idx] if idx is not None else 0.0
    return total / 101


def ref_map(records, thresholds):
    classes = sorted({c for r in records for c in r.gt_counts})
    per_threshold = []
    for t in thresholds:
        aps = []
        for c in classes:
            n_gt = sum(r.gt_counts.get(c, 0) for r in records)
            if n_gt == 0:
                continue
            items = [
                (float(conf), bool(tp[t]))
                for r in records
                for conf, tp, k in zip(r.confidence, r.tp, r.classes, strict=True)
                if k == c
            ]
            items.sort(key=lambda x: -x[0])  # stable: image order on ties
            aps.append(ref_ap([f for _, f in items], n_gt))
        per_threshold.append(sum(aps) / len(aps))
    return sum(per_threshold) / len(per_threshold)


def random_records(n, rng, *, n_classes=3, max_preds=12, skill=0.6, gt=None):
    """Random scored images: TP flags are monotone in the IoU threshold, better-ranked
    predictions are likelier to be right."""
    records = []
    for i in range(n):
        counts = gt[i] if gt is not None else {c: int(rng.integers(0, 4)) for c in range(n_classes)}
        m = int(rng.integers(0, max_preds + 1))
        conf = rng.random(m)
        cls = rng.integers(0, n_classes, m)
        hit = rng.random(m) < skill * conf
        reach = rng.integers(0, T + 1, m)
        tp = hit[:, None] & (np.arange(T)[None, :] < reach[:, None])
        records.append(ImageRecord(conf, tp, cls, counts, f"img{i}"))
    return records


def perfect(record):
    """The ideal detector on ``record``'s ground truth: every GT box found, nothing else."""
    preds = [
        (0.9 - 0.01 * j, [True] * T, c)
        for c, k in sorted(record.gt_counts.items())
        for j in range(k)
    ]
    return ImageRecord.from_predictions(preds, record.gt_counts, record.image_id)


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
    extra = records + [ImageRecord.from_predictions([(0.99, [False] * T, 99)], {})]
    assert map_from_records(extra) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="iou_index"):
        map_from_records(records, 10)
    with pytest.raises(ValueError, match="metric"):
        metric_from_records(records, "map75")


def test_weighted_resample_equals_duplicated_images():
    rng = np.random.default_rng(5)
    records = random_records(30, rng)
    counts = resample_counts(len(records), 6, seed=11)
    got = _metric_weighted(_flatten(records), counts, tuple(range(T)))
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
# paired bootstrap


def test_identical_models_give_a_degenerate_interval_at_zero():
    records = random_records(60, np.random.default_rng(7))
    ci = paired_bootstrap_delta(records, records, metric="map50_95", n_resamples=300)
    assert (ci.point, ci.low, ci.high) == (0.0, 0.0, 0.0)
    assert ci.n_images == 60 and ci.n_resamples == 300 and ci.metric == "map50_95"


def test_strictly_better_on_every_image_has_positive_lower_bound():
    rng = np.random.default_rng(8)
    base = random_records(50, rng, max_preds=0)
    gt = [{**r.gt_counts, 0: max(1, r.gt_counts.get(0, 0))} for r in base]
    champion, candidate = [], []
    for i, counts in enumerate(gt):
        good = perfect(ImageRecord([], np.zeros((0, T), bool), [], counts, f"img{i}"))
        candidate.append(good)
        # the champion finds the same boxes but also fires a confident false positive
        preds = [(0.99, [False] * T, 0)] + [
            (float(c), list(t), int(k))
            for c, t, k in zip(good.confidence, good.tp, good.classes, strict=True)
        ]
        champion.append(ImageRecord.from_predictions(preds, counts, f"img{i}"))
    for metric in ("map50", "map50_95"):
        ci = paired_bootstrap_delta(candidate, champion, metric=metric, n_resamples=500)
        assert ci.low > 0
        assert ci.low <= ci.point <= ci.high


def _pair(n, seed):
    rng = np.random.default_rng(seed)
    champion = random_records(n, rng, skill=0.5)
    gt = [r.gt_counts for r in champion]
    candidate = random_records(n, rng, skill=0.7, gt=gt)
    return candidate, champion


def test_interval_narrows_with_more_images():
    small = paired_bootstrap_delta(*_pair(40, 1), metric="map50", n_resamples=400)
    large = paired_bootstrap_delta(*_pair(400, 1), metric="map50", n_resamples=400)
    assert (large.high - large.low) < 0.6 * (small.high - small.low)


def test_bootstrap_is_deterministic_given_the_seed():
    cand, champ = _pair(80, 2)
    a = paired_bootstrap_delta(cand, champ, metric="map50_95", n_resamples=200, seed=4)
    b = paired_bootstrap_delta(cand, champ, metric="map50_95", n_resamples=200, seed=4)
    c = paired_bootstrap_delta(cand, champ, metric="map50_95", n_resamples=200, seed=5)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert a.point == c.point


def test_point_is_the_full_set_delta():
    cand, champ = _pair(60, 3)
    ci = paired_bootstrap_delta(cand, champ, metric="map50", n_resamples=100)
    assert ci.point == pytest.approx(map_from_records(cand, 0) - map_from_records(champ, 0))


def test_percentile_interval_agrees_with_scipy_bootstrap():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(9)
    champion = rng.normal(0.5, 0.2, 150)
    candidate = champion + rng.normal(0.03, 0.1, 150)
    ours = paired_bootstrap_mean_delta(candidate, champion, n_resamples=10000, seed=1)
    theirs = stats.bootstrap(
        (candidate, champion),
        lambda a, b, axis=-1: np.mean(a - b, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=10000,
        confidence_level=0.95,
        method="percentile",
        random_state=np.random.default_rng(2),
    ).confidence_interval
    width = theirs.high - theirs.low
    assert ours.low == pytest.approx(theirs.low, abs=0.05 * width)
    assert ours.high == pytest.approx(theirs.high, abs=0.05 * width)
    assert ours.point == pytest.approx(np.mean(candidate - champion))


def test_resample_counts_and_percentiles():
    counts = resample_counts(7, 50, seed=0)
    assert counts.shape == (50, 7) and (counts.sum(axis=1) == 7).all()
    assert percentile_interval([1.0, 2.0, 3.0], 0.5) == pytest.approx((1.5, 2.5))
    low, high = percentile_interval([0.1, float("nan")], 0.95)
    assert math.isnan(low) and math.isnan(high)


def test_unpaired_inputs_are_refused():
    cand, champ = _pair(10, 4)
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap_delta(cand, champ[:-1], metric="map50")
    other = random_records(10, np.random.default_rng(99))
    with pytest.raises(ValueError, match="ground truth differs"):
        paired_bootstrap_delta(cand, other, metric="map50")
    with pytest.raises(ValueError, match="metric"):
        paired_bootstrap_delta(cand, champ, metric="f1")
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap_delta(cand, champ, metric="map50", confidence=1.0)


def test_records_as_dicts_and_delta_round_trip():
    cand, champ = _pair(20, 6)
    ci = paired_bootstrap_delta(
        [r.to_dict() for r in cand], [r.to_dict() for r in champ], metric="map50", n_resamples=50
    )
    same = paired_bootstrap_delta(cand, champ, metric="map50", n_resamples=50)
    assert ci == same
    assert DeltaCI.from_dict(ci.to_dict()) == ci
