"""No camera may regress: the per-camera evidence and the gate's checks on it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from driftloop.evaluation.bootstrap import paired_bootstrap_delta
from driftloop.evaluation.coco_map import ImageRecord
from driftloop.promotion.gate import (
    DEFAULT_PROMOTION_POLICY_PATH,
    EvalSummary,
    decide_promotion,
    load_promotion_policy,
)
from driftloop.promotion.gate_slices import (
    SUMMARY_CHECK,
    camera_slices,
    slice_checks,
    slice_confidence,
)
from tests.unit.evaluation.scored_records import perfect, random_records
from tests.unit.promotion.test_gate import latency

PINNED = {
    "map_tolerance": 0.02,
    "latency_tolerance": 0.10,
    "int8_max_map_loss": 0.01,
    "min_map50": 0.0,
    "min_map50_95": 0.0,
    "max_p95_latency_ms": 50.0,
    "primary_metric": "map50_95",
    "promote_to": "champion",
    "approval": "none",
    "bootstrap": {"n_resamples": 400, "confidence": 0.95},
    "latency": {"rounds": 200, "confidence": 0.95, "same_graph_tolerance": 0.5},
    "slices": {"tolerance": 0.02, "min_images": 20, "confidence": 0.95},
}


@pytest.fixture
def policy():
    return load_promotion_policy(DEFAULT_PROMOTION_POLICY_PATH, PINNED)


def cameras_for(sizes: dict[str, int]) -> tuple[dict[str, str], list[str]]:
    """``({image_id: camera}, [camera of image i])`` for images img0, img1, … in camera order;
    a camera named None leaves its images unattributed."""
    order = [camera for camera, n in sizes.items() for _ in range(n)]
    return {f"img{i}": c for i, c in enumerate(order) if c is not None}, order


def blind(record: ImageRecord) -> ImageRecord:
    """A detector that finds nothing on this image."""
    return ImageRecord.from_predictions([], record.gt_counts, record.image_id)


def evaluation(candidate, champion, policy, camera_of):
    """What the evaluate step records: both summaries, the overall delta, the slices (as the
    ledger stores them: JSON)."""
    from driftloop.evaluation.coco_map import map_scores

    cand = [r.to_dict() for r in candidate]
    champ = [r.to_dict() for r in champion]
    delta = paired_bootstrap_delta(
        cand, champ, metric="map50_95", n_resamples=policy.bootstrap_n_resamples
    )

    def summary(records):
        map50, map50_95 = map_scores(records)
        return EvalSummary(map50, map50_95, map50, 20.0, 12.0, len(records))

    slices = json.loads(json.dumps(camera_slices(cand, champ, camera_of, policy)))
    return summary(cand), summary(champ), delta, slices


def by_camera(slices) -> dict[str, dict]:
    return {s["camera"]: s for s in slices["slices"]}


def test_better_on_average_but_worse_on_one_camera_is_rejected_naming_it(policy):
    camera_of, order = cameras_for({"cam-01": 40, "cam-02": 40, "cam-03": 40, "cam-04": 40})
    champion = random_records(len(order), np.random.default_rng(3), skill=0.5)
    candidate = [
        blind(r) if camera == "cam-03" else perfect(r)
        for r, camera in zip(champion, order, strict=True)
    ]
    cand, champ, delta, slices = evaluation(candidate, champion, policy, camera_of)
    assert delta.low > 0.02  # better on average, beyond any doubt

    decision = decide_promotion(cand, champ, delta, policy, latency(), slices=slices)
    assert not decision.promote
    checks = {c.name: c for c in decision.checks}
    assert checks["map_delta"].passed
    assert checks[SUMMARY_CHECK].passed
    assert checks[SUMMARY_CHECK].value == 4
    assert [c.name for c in decision.checks if not c.passed] == ["camera cam-03"]
    (reason,) = decision.reasons
    assert reason.startswith("camera cam-03: mAP50-95 delta -")
    assert reason.endswith("below -0.02")
    assert "(CI -" in reason
    three = by_camera(slices)["cam-03"]
    assert three["delta"]["high"] < -0.02
    assert three["delta"]["confidence"] == pytest.approx(1 - 0.05 / 4)  # Bonferroni over 4
    assert three["candidate"]["map50_95"] == 0.0
    assert three["champion"]["map50_95"] > 0.02
    # the other cameras are judged too, and pass; the numbers go into the decision's evidence
    for camera in ("cam-01", "cam-02", "cam-04"):
        assert checks[f"camera {camera}"].passed
        assert by_camera(slices)[camera]["delta"]["low"] > 0
    assert decision.to_dict()["evidence"]["slices"] == slices
    assert "camera cam-03" in decision.table()


def test_noise_within_tolerance_on_every_camera_is_not_rejected(policy):
    camera_of, order = cameras_for({"cam-01": 60, "cam-02": 60, "cam-03": 60})
    champion = random_records(len(order), np.random.default_rng(11), skill=0.6)
    # the same images, an equally good detector: per camera the deltas are noise
    candidate = random_records(
        len(order), np.random.default_rng(12), skill=0.6, gt=[r.gt_counts for r in champion]
    )
    cand, champ, delta, slices = evaluation(candidate, champion, policy, camera_of)
    decision = decide_promotion(cand, champ, delta, policy, latency(), slices=slices)
    cameras = [c for c in decision.checks if c.name.startswith("camera ")]
    assert [c.name for c in cameras] == ["camera cam-01", "camera cam-02", "camera cam-03"]
    assert all(c.passed for c in cameras), [c.detail for c in cameras]
    points = [s["delta"]["point"] for s in slices["slices"]]
    # noise moves a camera's point estimate beyond the tolerance; only the interval decides
    assert min(points) < -0.02
    for c in cameras:
        assert "not wholly below -0.02" in c.detail


def test_a_camera_with_too_few_images_is_reported_not_judged(policy):
    camera_of, order = cameras_for({"cam-01": 30, "cam-02": 30, "cam-05": 5, None: 12})
    champion = random_records(len(order), np.random.default_rng(5), skill=0.6)
    candidate = [blind(r) if c == "cam-05" else r for r, c in zip(champion, order, strict=True)]
    cand, champ, delta, slices = evaluation(candidate, champion, policy, camera_of)
    five = by_camera(slices)["cam-05"]
    assert (five["status"], five["n_images"], five["delta"]) == ("too_few", 5, None)
    assert five["candidate"]["map50_95"] == 0.0  # clearly worse there, but 5 images judge nothing
    assert slices["unattributed"] == 12
    assert slices["slice_confidence"] == pytest.approx(1 - 0.05 / 2)

    decision = decide_promotion(cand, champ, delta, policy, latency(), slices=slices)
    names = [c.name for c in decision.checks]
    assert "camera cam-05" not in names
    assert {"camera cam-01", "camera cam-02"} <= set(names)
    summary = next(c for c in decision.checks if c.name == SUMMARY_CHECK)
    assert summary.passed
    assert "too few to judge (< 20 images): cam-05 (5)" in summary.detail
    assert "unattributed (no camera): 12 images" in summary.detail
    assert "2 camera(s) judged at 97.50% each" in summary.detail


def test_a_camera_without_ground_truth_has_no_map_and_is_not_judged(policy):
    camera_of, order = cameras_for({"cam-01": 30, "cam-07": 25})
    champion = random_records(len(order), np.random.default_rng(6), skill=0.6)
    # cam-07 only ever sees an empty pitch: no ground-truth box, so no mAP to compare
    champion = [
        ImageRecord(r.confidence, r.tp, r.classes, {}, r.image_id) if c == "cam-07" else r
        for r, c in zip(champion, order, strict=True)
    ]
    *_, slices = evaluation(champion, champion, policy, camera_of)
    seven = by_camera(slices)["cam-07"]
    assert (seven["status"], seven["n_boxes"], seven["delta"]) == ("no_boxes", 0, None)
    assert by_camera(slices)["cam-01"]["n_boxes"] > 0
    checks = slice_checks(slices, policy, len(order))
    assert [c.name for c in checks] == [SUMMARY_CHECK, "camera cam-01"]
    assert all(c.passed for c in checks)
    assert "no ground-truth box, no mAP: cam-07 (25)" in checks[0].detail
    # evidence that does not say how many boxes a big camera has: judged, so it needs a CI
    del seven["n_boxes"]
    assert failed(slice_checks(slices, policy, len(order))) == {
        "camera cam-07": "no mAP50-95 delta CI on 25 images"
    }


def test_without_cameras_nothing_is_judged_and_nothing_blocks(policy):
    records = random_records(50, np.random.default_rng(2))
    slices = camera_slices(
        [r.to_dict() for r in records], [r.to_dict() for r in records], {}, policy
    )
    assert (slices["slices"], slices["unattributed"], slices["slice_confidence"]) == ([], 50, None)
    (summary,) = slice_checks(slices, policy, 50)
    assert summary.passed
    assert summary.detail.startswith("no camera to judge (none with 20 or more evaluation images")


# --------------------------------------------------------------------------------------------
# fail closed


def _judged(policy, **delta):
    camera_of, order = cameras_for({"cam-01": 25, "cam-02": 25})
    records = random_records(len(order), np.random.default_rng(9), skill=0.6)
    dicts = [r.to_dict() for r in records]
    slices = json.loads(json.dumps(camera_slices(dicts, dicts, camera_of, policy)))
    slices["slices"][0]["delta"].update(delta)
    return slices


def failed(checks) -> dict[str, str]:
    return {c.name: c.detail for c in checks if not c.passed}


def test_missing_or_foreign_evidence_fails_closed(policy):
    assert failed(slice_checks(None, policy, 50)) == {
        SUMMARY_CHECK: "no per-camera evidence in the evaluation: fail closed"
    }
    good = _judged(policy)
    assert failed(slice_checks(good, policy, 50)) == {}
    assert (
        "the policy decides on map50_95"
        in failed(slice_checks({**good, "metric": "map50"}, policy, 50))[SUMMARY_CHECK]
    )
    assert "not the same evaluation set" in failed(slice_checks(good, policy, 60))[SUMMARY_CHECK]
    # no champion: no per-camera check at all
    lone = decide_promotion(EvalSummary(0.9, 0.6, 0.9, 9.0, 8.0, 50), None, None, policy)
    assert SUMMARY_CHECK not in [c.name for c in lone.checks]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"confidence": 0.99}, "wider than the policy's 0.975 (Bonferroni)"),
        ({"high": None}, "delta or its interval missing or NaN"),
        ({"metric": "map50"}, "delta is of map50"),
        ({"n_images": 24}, "delta over 24 images, the camera has 25"),
    ],
)
def test_a_judged_camera_with_broken_evidence_fails(policy, change, message):
    failures = failed(slice_checks(_judged(policy, **change), policy, 50))
    assert list(failures) == ["camera cam-01"]
    assert message in failures["camera cam-01"]


def test_the_gate_judges_with_its_own_policy(policy):
    # evidence made under min_images 30 (nothing judged); the gate's policy judges from 20
    strict = load_promotion_policy(
        DEFAULT_PROMOTION_POLICY_PATH, {**PINNED, "slices": {"min_images": 30}}
    )
    camera_of, order = cameras_for({"cam-01": 25, "cam-02": 25})
    dicts = [r.to_dict() for r in random_records(len(order), np.random.default_rng(4))]
    slices = camera_slices(dicts, dicts, camera_of, strict)
    assert {s["status"] for s in slices["slices"]} == {"too_few"}
    assert failed(slice_checks(slices, policy, 50)) == {
        "camera cam-01": "no mAP50-95 delta CI on 25 images",
        "camera cam-02": "no mAP50-95 delta CI on 25 images",
    }
    assert slice_confidence(0.95, 4) == pytest.approx(0.9875)
    assert slice_confidence(0.95, 0) == pytest.approx(0.95)
