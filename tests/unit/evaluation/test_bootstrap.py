"""The paired bootstrap CI of a metric delta (driftloop.evaluation.bootstrap)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from driftloop.evaluation.bootstrap import (
    DeltaCI,
    paired_bootstrap_delta,
    paired_bootstrap_mean_delta,
    percentile_interval,
    resample_counts,
)
from driftloop.evaluation.coco_map import ImageRecord, map_from_records
from tests.unit.evaluation.scored_records import T, perfect, random_records

# --------------------------------------------------------------------------------------------
# paired bootstrap


def test_identical_models_give_a_degenerate_interval_at_zero():
    records = random_records(60, np.random.default_rng(7))
    ci = paired_bootstrap_delta(records, records, metric="map50_95", n_resamples=300)
    assert (ci.point, ci.low, ci.high) == (0.0, 0.0, 0.0)
    assert ci.n_images == 60
    assert ci.n_resamples == 300
    assert ci.metric == "map50_95"


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
    assert counts.shape == (50, 7)
    assert (counts.sum(axis=1) == 7).all()
    assert percentile_interval([1.0, 2.0, 3.0], 0.5) == pytest.approx((1.5, 2.5))
    low, high = percentile_interval([0.1, float("nan")], 0.95)
    assert math.isnan(low)
    assert math.isnan(high)


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


# --------------------------------------------------------------------------------------------
# progress and batching


def test_bootstrap_logs_progress_in_tenths(caplog):
    cand, champ = _pair(30, 10)
    caplog.set_level(logging.INFO, logger="driftloop.evaluation.bootstrap")
    paired_bootstrap_delta(cand, champ, metric="map50", n_resamples=1000)
    lines = [r.getMessage() for r in caplog.records if r.name == "driftloop.evaluation.bootstrap"]
    progress = [line for line in lines if line.startswith("bootstrap ") and "/1000" in line]
    assert [line.split()[1] for line in progress] == [f"{k}00/1000" for k in range(1, 11)]
    assert "map50" in lines[0]
    assert "1000 resamples of 30 images" in lines[0]
    assert "95 % interval" in lines[-1]


def test_batching_does_not_change_the_interval(monkeypatch):
    from driftloop.evaluation import bootstrap

    cand, champ = _pair(50, 12)
    default = paired_bootstrap_delta(cand, champ, metric="map50_95", n_resamples=230, seed=3)
    monkeypatch.setattr(bootstrap, "RESAMPLE_BATCH", 7)
    small = paired_bootstrap_delta(cand, champ, metric="map50_95", n_resamples=230, seed=3)
    assert small == default
