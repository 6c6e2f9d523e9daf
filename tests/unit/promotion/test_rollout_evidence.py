"""The rollout guard's evidence (issue 11): paired frames of serving records, the checks and
their noise-aware intervals, and the stage verdict. Synthetic records from numpy
(tests/unit/promotion/serving_synth.py): two models that see the same true boxes with their own
noise, one of them made slower, blinder on a camera, sloppier or failing."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from driftloop.config.promotion_policy import load_promotion_policy
from driftloop.evaluation.bootstrap import paired_bootstrap_delta
from driftloop.evaluation.coco_map import flatten_records, thresholds_for
from driftloop.evaluation.matching import box_iou
from driftloop.promotion import rollout_agreement
from driftloop.promotion.rollout_agreement import FrameBoxes, agreement_f1, paired_iou
from driftloop.promotion.rollout_checks import (
    MapDelta,
    RatioOfSums,
    Resampler,
    Rule,
    check_status,
    intervals,
    weighted_percentile,
)
from driftloop.promotion.rollout_evidence import RolloutSLO, compare_stage, pair_frames
from driftloop.serving.records import serving_row, serving_table
from tests.unit.evaluation.scored_records import random_records
from tests.unit.promotion.serving_synth import (
    ROLLOUT_ID,
    START,
    World,
    build,
    put_label,
    put_part,
    slo_for,
)


def failed(comparison) -> set[tuple[str, str]]:
    return {(c["name"], c["camera"]) for c in comparison.checks if c["status"] == "fail"}


def check(comparison, name: str, camera: str = "all") -> dict:
    (found,) = [c for c in comparison.checks if c["name"] == name and c["camera"] == camera]
    return found


# --------------------------------------------------------------------------------------------
# verdicts


def test_two_equally_good_models_pass_with_enough_frames_and_hours_and_hold_before():
    records, labels = build(World(n_frames=1200, hours=8, labeled=120))
    comparison = compare_stage(records, labels, slo_for("shadow"), "shadow")
    assert comparison.verdict == "pass", comparison.reasons
    assert comparison.frames == 1200
    assert comparison.labeled_frames == 120
    assert comparison.hours == pytest.approx(8.0, abs=0.01)
    assert {c["status"] for c in comparison.checks} <= {"pass", "info"}
    assert check(comparison, "map50_95_delta")["n"] == 120

    early, labels = build(World(n_frames=150, hours=0.5, labeled=10))
    held = compare_stage(early, labels, slo_for("shadow"), "shadow")
    assert held.verdict == "hold"
    assert "150 paired frames, 200 needed" in held.reasons
    assert any("h of log time, 1 needed" in r for r in held.reasons)
    # too few labels: the mAP check says so and blocks nothing by itself
    assert check(held, "map50_95_delta")["status"] == "not_enough_data"
    assert not failed(held)


def test_a_stage_with_too_few_frames_for_an_interval_holds():
    records, labels = build(World(n_frames=12, hours=3))
    comparison = compare_stage(records, labels, slo_for("canary", min_frames=5), "canary")
    assert comparison.verdict == "hold"
    assert check(comparison, "agreement_f1")["status"] == "not_enough_data"
    assert any("agreement_f1 (all): not enough data (12 frames)" in r for r in comparison.reasons)
    nothing = compare_stage(records.slice(0, 0), labels, slo_for("canary"), "canary")
    assert (nothing.verdict, nothing.frames, nothing.hours) == ("hold", 0, 0.0)


def test_a_much_slower_subject_passes_shadow_and_fails_canary_on_latency():
    records, labels = build(World(n_frames=1200, hours=8, slower=1.5))
    shadow = compare_stage(records, labels, slo_for("shadow"), "shadow")
    latency = check(shadow, "latency_p95_ratio")
    assert latency["status"] == "info"
    assert latency["low"] > 1.3  # reported, not judged: off the serving path
    assert shadow.verdict == "pass", shadow.reasons

    canary = compare_stage(records, labels, slo_for("canary"), "canary")
    assert canary.verdict == "fail"
    assert ("latency_p95_ratio", "all") in failed(canary)
    assert check(canary, "latency_p95_ratio")["estimate"] == pytest.approx(1.5, abs=0.1)
    assert any(r.startswith("latency_p95_ratio (all): 0.95 interval") for r in canary.reasons)


def test_a_subject_blind_on_one_camera_fails_on_that_camera():
    records, labels = build(World(n_frames=1500, hours=8, subject_miss={"cam-a": 0.6}))
    comparison = compare_stage(records, labels, slo_for("canary"), "canary")
    assert comparison.verdict == "fail"
    assert {camera for _, camera in failed(comparison)} == {"cam-a"}
    assert {("agreement_f1", "cam-a"), ("detections_per_frame_ratio", "cam-a")} <= failed(
        comparison
    )
    # over all cameras the loss is diluted within tolerance: only the camera shows it
    assert check(comparison, "detections_per_frame_ratio")["status"] == "pass"
    assert check(comparison, "agreement_f1")["status"] == "pass"
    # three cameras tested: each at the Bonferroni-adjusted confidence
    assert comparison.cameras == ["cam-a", "cam-b", "cam-c"]
    assert comparison.camera_confidence == pytest.approx(1 - 0.05 / 3)
    assert check(comparison, "agreement_f1", "cam-b")["confidence"] == pytest.approx(1 - 0.05 / 3)


def test_better_on_average_but_worse_on_one_cameras_labels_fails_on_that_camera():
    """No camera may regress, in rollout as in the gate: the mAP on each camera's labeled
    frames is judged on its own (Bonferroni over the cameras tested)."""
    world = World(
        n_frames=900,
        hours=8,
        labeled=450,
        baseline_miss=0.15,
        subject_miss={"cam-a": 0.3, "cam-b": 0.0, "cam-c": 0.0},
    )
    comparison = compare_stage(*build(world), slo_for("canary"), "canary")
    assert comparison.verdict == "fail"
    overall = check(comparison, "map50_95_delta")
    assert overall["status"] == "pass"
    assert overall["low"] > 0  # better on average, beyond doubt
    assert failed(comparison) == {("map50_95_delta", "cam-a")}
    camera = check(comparison, "map50_95_delta", "cam-a")
    assert camera["high"] < -0.02
    assert camera["confidence"] == pytest.approx(1 - 0.05 / 3)
    assert comparison.reasons[0].startswith("map50_95_delta (cam-a): 0.9833 interval [-")


def test_the_map_check_fails_a_much_worse_subject_and_passes_an_equal_one():
    worse, labels = build(World(n_frames=900, hours=8, labeled=150, subject_jitter_px=8.0))
    comparison = compare_stage(worse, labels, slo_for("canary"), "canary")
    assert comparison.verdict == "fail"
    assert ("map50_95_delta", "all") in failed(comparison)
    assert check(comparison, "map50_95_delta")["high"] < -0.1

    equal, labels = build(World(n_frames=900, hours=8, labeled=150, seed=1))
    comparison = compare_stage(equal, labels, slo_for("canary"), "canary")
    found = check(comparison, "map50_95_delta")
    assert found["status"] == "pass"
    assert found["low"] >= -0.02
    assert comparison.verdict == "pass", comparison.reasons


def test_labels_that_show_a_better_subject_outrank_the_label_free_proxies():
    # the baseline misses half the boxes: a far better subject finds twice the detections
    # and disagrees with it, which the proxies alone cannot tell from hallucination
    world = World(n_frames=900, hours=8, baseline_miss=0.5)
    unlabeled, labels = build(world)
    blind = compare_stage(unlabeled, labels, slo_for("canary"), "canary")
    assert blind.verdict == "fail"
    assert ("detections_per_frame_ratio", "all") in failed(blind)

    records, labels = build(replace(world, labeled=150))
    comparison = compare_stage(records, labels, slo_for("canary"), "canary")
    assert check(comparison, "map50_95_delta")["low"] > 0
    detections = check(comparison, "detections_per_frame_ratio")
    assert detections["status"] == "explained"
    assert detections["explained_by"].startswith("map50_95_delta +")
    assert check(comparison, "latency_p95_ratio")["status"] == "pass"  # still judged
    assert comparison.verdict == "pass", comparison.reasons

    # a subject that is better on labels but much slower still fails canary on latency
    slow, labels = build(replace(world, labeled=150, slower=1.5))
    assert compare_stage(slow, labels, slo_for("canary"), "canary").verdict == "fail"


def test_five_percent_errors_fail():
    records, labels = build(World(n_frames=1500, hours=8, subject_error_share=0.05))
    comparison = compare_stage(records, labels, slo_for("canary"), "canary")
    assert comparison.verdict == "fail"
    assert ("error_share_excess", "all") in failed(comparison)
    assert check(comparison, "error_share_excess")["estimate"] == pytest.approx(0.05, abs=0.015)
    assert comparison.errors["subject"] > 0
    assert comparison.errors["baseline"] == 0
    # failed frames leave the other checks: they see only frames both models scored
    assert check(comparison, "agreement_f1")["n"] == 1500 - comparison.errors["subject"]


def test_the_comparison_is_deterministic_given_the_seed_and_json_safe():
    records, labels = build(World(n_frames=600, hours=3, labeled=60))
    slo = slo_for("guard")
    first = compare_stage(records, labels, slo, "guard", seed=7).to_dict()
    again = compare_stage(records, labels, slo, "guard", seed=7).to_dict()
    other = compare_stage(records, labels, slo, "guard", seed=8).to_dict()
    assert first == again
    assert [c["low"] for c in first["checks"]] != [c["low"] for c in other["checks"]]
    # the order of the records does not matter
    shuffled = records.take(np.random.default_rng(0).permutation(records.num_rows))
    assert compare_stage(shuffled, labels, slo, "guard", seed=7).to_dict() == first
    json.dumps(first, allow_nan=False)
    assert first["verdict"] == "hold"  # 3 h of a 24 h guard period
    assert first["slo"]["min_hours"] == 24.0


def test_unknown_stage_and_missing_columns_are_refused():
    records, labels = build(World(n_frames=30))
    with pytest.raises(ValueError, match="stage must be one of"):
        compare_stage(records, labels, slo_for("shadow"), "serving")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['latency_ms'\]"):
        compare_stage(records.drop_columns(["latency_ms"]), labels, slo_for("shadow"), "shadow")


# --------------------------------------------------------------------------------------------
# policy


def test_the_slo_comes_from_the_policy_section():
    rollout = load_promotion_policy().rollout
    guard = RolloutSLO.from_policy(rollout, "guard")
    assert guard.min_hours == rollout.guard.hours
    assert guard.min_frames == rollout.guard.min_frames
    assert RolloutSLO.from_policy(rollout, "canary").min_hours == rollout.canary.min_hours
    assert guard.max_error_share == rollout.slo.max_error_share
    assert guard.confidence == rollout.confidence
    with pytest.raises(ValueError, match="stage must be one of"):
        RolloutSLO.from_policy(rollout, "serving")
    with pytest.raises(ValueError, match=r"RolloutSLO.confidence must be in \(0, 1\)"):
        replace(guard, confidence=1.0)


# --------------------------------------------------------------------------------------------
# pairing


def _row(image_id, role, *, sequence=3, error=None, camera="cam-a", minutes=0):
    box = {"class_id": 0, "confidence": 0.9, "x1": 1, "y1": 2, "x2": 30, "y2": 40}
    boxes = None if error else [box]
    return serving_row(
        ts=START + timedelta(minutes=minutes),
        image_id=image_id,
        camera_id=camera,
        model_version="4" if role == "subject" else "3",
        role=role,
        served=role != "subject",
        stage="shadow",
        sequence=sequence,
        rollout_id="r",
        latency_ms=None if error else 5.0,
        boxes=boxes,
        error=error,
    )


def test_pairing_ignores_unpaired_rows_and_counts_errors_and_duplicates():
    table = serving_table(
        [
            _row("b", "subject", minutes=2),
            _row("b", "baseline", minutes=2),
            _row("a", "subject", error="RuntimeError: x", minutes=1),
            _row("a", "baseline", minutes=1),
            _row("only-subject", "subject"),
            _row("only-baseline", "baseline"),
            _row("b", "subject", minutes=2),  # written twice: the first is kept
            _row("a", "baseline", sequence=4),  # another sequence: another frame
            _row("served", "champion"),
        ]
    )
    frames = pair_frames(table)
    assert list(frames.image_id) == ["a", "b"]  # by time
    assert frames.unpaired == {"subject": 1, "baseline": 2}
    assert frames.duplicates == 1
    assert frames.rows == {"subject": 4, "baseline": 4, "champion": 1}
    assert frames.errors == {"subject": 1, "baseline": 0, "champion": 0}
    assert list(frames.subject.error) == [True, False]
    assert list(frames.subject.boxes.counts) == [0, 1]
    assert np.isnan(frames.subject.latency_ms[0])


def test_a_row_without_error_and_without_latency_is_refused():
    table = serving_table([_row("a", "subject"), _row("a", "baseline")])
    broken = table.set_column(
        table.schema.get_field_index("latency_ms"),
        "latency_ms",
        pa.array([None, 5.0], pa.float64()),
    )
    with pytest.raises(ValueError, match="rows without an error have no latency_ms"):
        pair_frames(broken)


# --------------------------------------------------------------------------------------------
# the statistics


def test_the_hour_bootstrap_widens_the_interval_when_hours_differ():
    rng = np.random.default_rng(0)
    n = 6000
    ts = START.timestamp() * 1e6 + np.sort(rng.uniform(0, 12 * 3.6e9, size=n))
    hour = (ts // 3.6e9 - START.timestamp() // 3600).astype(int)  # clock hours 0..11
    # each hour has its own level (traffic, light): frames of one hour are not independent
    values = rng.normal(0, 0.2, size=12)[hour] + rng.normal(0, 0.05, size=n)
    width = {}
    for unit in ("hour", "frame"):
        res = Resampler.for_frames(ts, n_resamples=500, seed=0, unit=unit)
        _, low, high = intervals(res, {"m": RatioOfSums.of(res, np.ones(n, bool), values)}, 0.95)[
            "m"
        ]
        width[unit] = high - low
    assert width["hour"] > 5 * width["frame"]
    assert Resampler.for_frames(ts, n_resamples=10, seed=0).unit == "hour"
    assert Resampler.for_frames(ts[hour < 5], n_resamples=10, seed=0).unit == "frame"


def test_the_map_delta_in_frame_mode_is_the_gates_paired_bootstrap():
    rng = np.random.default_rng(3)
    subject = random_records(40, rng, skill=0.5)
    baseline = random_records(40, rng, skill=0.7, gt=[r.gt_counts for r in subject])
    classes = sorted({c for r in (*subject, *baseline) for c in (*r.gt_counts, *r.classes)})
    flat = [flatten_records(records, classes) for records in (subject, baseline)]
    res = Resampler.for_frames(np.zeros(40), n_resamples=300, seed=5, unit="frame")
    stat = MapDelta.of(*flat, res.cluster, thresholds_for("map50_95"))
    point, low, high = intervals(res, {"map": stat}, 0.9)["map"]
    gate = paired_bootstrap_delta(
        subject, baseline, metric="map50_95", n_resamples=300, confidence=0.9, seed=5
    )
    assert (point, low, high) == pytest.approx((gate.point, gate.low, gate.high))


def test_the_weighted_percentile_is_numpys_on_the_duplicated_sample():
    rng = np.random.default_rng(2)
    for n, clusters in ((40, 40), (2000, 2000), (2000, 9)):
        values = np.sort(rng.lognormal(size=n))
        cluster = np.arange(n) if clusters == n else rng.integers(0, clusters, size=n)
        counts = rng.integers(0, 3, size=(60, clusters))
        counts[0] = 0  # an empty resample
        counts[1, cluster[-n // 3 :]] = 0  # its p95 lies far below the top: the full pass
        got = weighted_percentile(values, cluster, counts, 95.0)
        want = [
            np.percentile(np.repeat(values, row[cluster]), 95) if row[cluster].any() else np.nan
            for row in counts
        ]
        np.testing.assert_allclose(got, want, equal_nan=True)


def _reference_f1(s_xyxy, s_cls, b_xyxy, b_cls) -> float:
    if len(s_cls) + len(b_cls) == 0:
        return 1.0
    iou = box_iou(s_xyxy, b_xyxy)
    pairs = sorted(
        (-iou[i, j], i, j)
        for i in range(len(s_cls))
        for j in range(len(b_cls))
        if s_cls[i] == b_cls[j] and iou[i, j] >= 0.5
    )
    used_s, used_b = set(), set()
    for _, i, j in pairs:
        if i not in used_s and j not in used_b:
            used_s.add(i)
            used_b.add(j)
    return 2 * len(used_s) / (len(s_cls) + len(b_cls))


def _random_frames(rng, n):
    counts = rng.integers(0, 6, size=n)
    m = int(counts.sum())
    corner = rng.uniform(0, 60, size=(m, 2))
    xyxy = np.concatenate([corner, corner + rng.uniform(10, 30, size=(m, 2))], axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return FrameBoxes(offsets, rng.integers(0, 2, size=m), rng.uniform(size=m), xyxy)


def test_agreement_is_the_greedy_f1_of_each_frame(monkeypatch):
    rng = np.random.default_rng(4)
    subject, baseline = _random_frames(rng, 300), _random_frames(rng, 300)
    want = [
        _reference_f1(s[0], s[2], b[0], b[2])
        for s, b in ((subject.frame(i), baseline.frame(i)) for i in range(300))
    ]
    np.testing.assert_allclose(agreement_f1(subject, baseline), want)
    monkeypatch.setattr(rollout_agreement, "PAIR_BUDGET", 7)  # many small batches, same numbers
    np.testing.assert_allclose(agreement_f1(subject, baseline), want)
    # the same boxes agree fully; two empty frames agree too
    assert agreement_f1(subject, subject).tolist() == [1.0] * 300
    pairs = subject.xyxy[:50], baseline.xyxy[:50]
    np.testing.assert_allclose(paired_iou(*pairs), np.diag(box_iou(*pairs)))


@pytest.mark.parametrize(
    ("rule", "point", "low", "high", "status"),
    [
        (Rule("<=", 1.1), 1.05, 0.98, 1.12, "pass"),
        (Rule("<=", 1.1), 1.15, 1.05, 1.2, "hold"),
        (Rule("<=", 1.1), 1.3, 1.2, 1.4, "fail"),
        (Rule(">=", 0.7), 0.68, 0.6, 0.75, "hold"),
        (Rule(">=", 0.7), 0.6, 0.55, 0.69, "fail"),
        (Rule(">=", -0.02, strict=True), 0.0, -0.03, 0.03, "hold"),
        (Rule(">=", -0.02, strict=True), 0.0, -0.01, 0.01, "pass"),
        (Rule("within", (0.75, 1.25)), 1.2, 1.1, 1.3, "pass"),
        (Rule("within", (0.75, 1.25)), 1.3, 1.2, 1.4, "hold"),
        (Rule("within", (0.75, 1.25)), 0.6, 0.5, 0.7, "fail"),
        (Rule("info", 1.1), 3.0, 2.0, 4.0, "info"),
        (Rule("<=", 0.01), 0.0, float("nan"), float("nan"), "not_enough_data"),
    ],
)
def test_check_rules(rule, point, low, high, status):
    assert check_status(rule, point, low, high) == status


# --------------------------------------------------------------------------------------------
# reading a stage from S3 (a moto server)

BUCKET = "rollout-evidence-tests"
DAY1, DAY2 = "2026-11-30", "2026-12-01"


@pytest.fixture(scope="module")
def stage_bucket(moto_endpoint):
    """Two days of sequence 3 of one rollout, beside sequence 4, another rollout and plain
    serving; labels for some of the first day's frames (and for a frame of no part)."""
    from tests.unit.conftest import s3_client_for

    s3 = s3_client_for(moto_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    day1, labels = put_part(s3, BUCKET, DAY1, World(60, id_prefix="a-", labeled=5), "t1")
    day2, _ = put_part(s3, BUCKET, DAY2, World(40, id_prefix="b-", seed=1), "t2")
    put_part(s3, BUCKET, DAY2, World(30, id_prefix="c-", sequence=4), "t3")
    put_part(s3, BUCKET, DAY2, World(30, id_prefix="d-"), "t4", rollout_id="rollout-5-x")
    put_part(s3, BUCKET, DAY2, World(30, id_prefix="e-", stage="serving"), "t5", "none")
    for image_id, (classes, xyxy) in labels.items():
        put_label(s3, BUCKET, DAY1, image_id, classes, xyxy)
    put_label(s3, BUCKET, DAY1, "elsewhere", np.array([0]), np.array([[1.0, 1, 20, 20]]))
    return s3, day1, day2, labels


def test_a_stage_is_read_from_its_own_parts_only(stage_bucket):
    from driftloop.promotion.rollout_evidence import load_labels, load_stage_records

    s3, day1, day2, labels = stage_bucket
    doc = {"stage": "shadow", "rollout_id": ROLLOUT_ID, "sequence": 3}
    records = load_stage_records(s3, BUCKET, doc)
    assert records.num_rows == day1.num_rows + day2.num_rows
    assert set(records["sequence"].to_pylist()) == {3}
    assert {i[:2] for i in records["image_id"].to_pylist()} == {"a-", "b-"}
    assert load_stage_records(s3, BUCKET, {**doc, "sequence": 9}).num_rows == 0

    found = load_labels(s3, BUCKET, {DAY1: day1["image_id"].to_pylist(), DAY2: ["a-0000000"]})
    assert sorted(found) == sorted(labels)  # "elsewhere" was asked for by no one
    classes, boxes = found["a-0000001"]
    want_classes, want_boxes = labels["a-0000001"]
    assert classes.tolist() == want_classes.tolist()
    np.testing.assert_allclose(boxes, want_boxes, atol=1e-3)  # six decimals of 640 px


def test_a_label_without_its_image_and_an_unreadable_part_fail(stage_bucket):
    from driftloop.contracts.storage import put_bytes
    from driftloop.promotion.rollout_evidence import load_labels, load_stage_records
    from driftloop.serving.layout import serving_part_key

    s3 = stage_bucket[0]
    bucket = "rollout-evidence-broken"
    s3.create_bucket(Bucket=bucket)
    put_label(s3, bucket, DAY1, "lonely", np.array([1]), np.array([[5.0, 5, 50, 50]]), image=False)
    with pytest.raises(ValueError, match=r"lonely\.png: a labeled frame without its image"):
        load_labels(s3, bucket, {DAY1: ["lonely"]})
    assert load_labels(s3, bucket, {DAY1: ["unlabeled"]}) == {}

    key = serving_part_key(DAY1, "rollout-1-x", 2, "bad")
    put_bytes(s3, bucket, key, b"not parquet")
    with pytest.raises(ValueError, match=re.escape(f"{key}: not a readable Parquet file")):
        load_stage_records(
            s3, bucket, {"stage": "canary", "rollout_id": "rollout-1-x", "sequence": 2}
        )
    with pytest.raises(ValueError, match="has no rollout_id"):
        load_stage_records(s3, bucket, {"stage": "serving", "rollout_id": None, "sequence": 2})
