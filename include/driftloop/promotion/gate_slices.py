"""No camera may regress: the promotion gate's per-camera check.

A candidate can win on average and still be clearly worse on one camera (a new lens, a dark
corner of the ground). So besides the overall paired delta, the primary metric's delta
(candidate − champion) is bootstrapped on each camera's own evaluation images, paired exactly
as the overall one (:func:`driftloop.evaluation.bootstrap.paired_bootstrap_delta`: same
images, same resamples for both models). A frame's camera is its labeled day's
``frames.jsonl`` entry, carried by the dataset snapshot
(:func:`driftloop.retrain.snapshot_io.snapshot_frames`); images without a camera (the golden
set, frames no index lists) are *unattributed*: counted, never judged as a camera.

Rules (policy section ``slices:``):

* a camera with fewer than ``min_images`` evaluation images is "too few to judge", and one
  whose images hold no ground-truth box has no mAP at all: both reported, never failed;
* every other camera is judged at the Bonferroni-adjusted confidence
  ``1 − (1 − confidence) / cameras judged``, so that noise fails any of them with a chance
  below ``1 − confidence``;
* a camera fails only when the WHOLE interval of its delta lies below ``−tolerance``
  (its check's value is the interval's upper bound); the reason names it: ``camera cam-03:
  mAP50-95 delta -0.081 (CI -0.120…-0.050) below -0.02``.

Two halves: :func:`camera_slices` computes the evidence in the ``evaluate`` step (numpy,
loaded on use) and it goes into ``evaluation.json`` and the ledger under ``slices``;
:func:`slice_checks` is pure and runs inside :func:`driftloop.promotion.gate.decide_promotion`.
The gate re-derives what to judge from the evidence with its own policy and fails closed:
no evidence, evidence of another metric or of another evaluation set, a judged camera
without a finite interval, or an interval wider than the policy's level (which rejects less)
all fail the ``camera_slices`` check or that camera's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from driftloop.contracts.labeled import UNKNOWN_CAMERA
from driftloop.evaluation.bootstrap import DeltaCI
from driftloop.promotion.gate import EPS, Check, PromotionPolicy, _at_least, _count, _num

SLICE_BY = "camera_id"
SUMMARY_CHECK = "camera_slices"
JUDGED, TOO_FEW, NO_BOXES = "judged", "too_few", "no_boxes"
METRIC_LABELS = {"map50": "mAP50", "map50_95": "mAP50-95"}


def slice_confidence(confidence: float, judged: int) -> float:
    """Each judged camera's confidence: Bonferroni over ``judged`` cameras."""
    return 1.0 - (1.0 - confidence) / max(1, judged)


def check_name(camera: str) -> str:
    return f"camera {camera}"


# --------------------------------------------------------------------------------------------
# evidence (the evaluate step)


def camera_slices(
    candidate_records: Sequence[Mapping[str, Any]],
    champion_records: Sequence[Mapping[str, Any]],
    camera_of: Mapping[str, str],
    policy: PromotionPolicy,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """The per-camera evidence of one evaluation: both models' records of the same images
    (as :func:`driftloop.evaluation.detector.evaluate_model` gives them, ``image_id`` = the
    frame's stem) and ``camera_of`` (``{stem: camera}``; an image it lacks is unattributed).
    Every camera gets its images' count and both models' mAPs; a camera with at least
    ``slices.min_images`` images also the paired bootstrap CI of the primary metric's delta
    at the Bonferroni-adjusted confidence."""
    from driftloop.evaluation.bootstrap import paired_bootstrap_delta
    from driftloop.evaluation.coco_map import map_scores

    if len(candidate_records) != len(champion_records):
        raise ValueError(
            f"per-camera slices need the same images: {len(candidate_records)} candidate "
            f"records, {len(champion_records)} champion records"
        )
    rules = policy.slices
    groups: dict[str, list[int]] = {}
    for i, record in enumerate(candidate_records):
        camera = camera_of.get(str(record.get("image_id")), UNKNOWN_CAMERA)
        groups.setdefault(camera, []).append(i)
    unattributed = len(groups.pop(UNKNOWN_CAMERA, []))
    boxes = {
        camera: sum(
            int(n) for i in idx for n in (candidate_records[i].get("gt_counts") or {}).values()
        )
        for camera, idx in groups.items()
    }
    judged = [c for c, idx in groups.items() if len(idx) >= rules.min_images and boxes[c] > 0]
    confidence = slice_confidence(rules.confidence, len(judged))
    slices = []
    for camera in sorted(groups):
        idx = groups[camera]
        cand = [candidate_records[i] for i in idx]
        champ = [champion_records[i] for i in idx]
        entry: dict[str, Any] = {"camera": camera, "n_images": len(idx), "n_boxes": boxes[camera]}
        for name, records in (("candidate", cand), ("champion", champ)):
            map50, map50_95 = map_scores(records)
            entry[name] = {"map50": _num(map50), "map50_95": _num(map50_95)}
        entry["status"] = (
            JUDGED if camera in judged else TOO_FEW if len(idx) < rules.min_images else NO_BOXES
        )
        entry["delta"] = None
        if camera in judged:
            entry["delta"] = paired_bootstrap_delta(
                cand,
                champ,
                metric=policy.primary_metric,
                n_resamples=policy.bootstrap_n_resamples,
                confidence=confidence,
                seed=seed,
            ).to_dict()
        slices.append(entry)
    return {
        "by": SLICE_BY,
        "metric": policy.primary_metric,
        "tolerance": rules.tolerance,
        "min_images": rules.min_images,
        "confidence": rules.confidence,
        "slice_confidence": confidence if judged else None,
        "slices": slices,
        "unattributed": unattributed,
    }


# --------------------------------------------------------------------------------------------
# checks (the gate)


def _summary(passed: bool, detail: str, judged: int | None = None) -> Check:
    return Check(SUMMARY_CHECK, passed, judged, None, detail, "")


def _camera_check(entry: Mapping[str, Any], metric: str, required: float, tol: float) -> Check:
    camera, n = str(entry.get("camera")), _count(entry.get("n_images"))
    name, threshold, label = check_name(camera), -tol, METRIC_LABELS.get(metric, metric)
    raw = entry.get("delta")
    delta = DeltaCI.from_dict(raw) if isinstance(raw, Mapping) else None
    if delta is None:
        return Check(name, False, None, threshold, f"no {label} delta CI on {n} images", ">=")
    low, high, point = _num(delta.low), _num(delta.high), _num(delta.point)
    why = None
    if delta.metric != metric:
        why = f"delta is of {delta.metric or 'an unnamed metric'}, the policy decides on {metric}"
    elif _count(delta.n_images) != n:
        why = f"delta over {delta.n_images} images, the camera has {n}"
    elif _num(delta.confidence) is None or delta.confidence > required + EPS:
        why = (
            f"interval at {delta.confidence} confidence, wider than the policy's "
            f"{required:.4g} (Bonferroni): it would reject less"
        )
    elif low is None or high is None or point is None:
        why = f"{label} delta or its interval missing or NaN"
    if why is not None:
        return Check(name, False, high, threshold, why, ">=")
    ci = f"{label} delta {point:+.3f} (CI {low:+.3f}…{high:+.3f})"
    if not _at_least(high, threshold):
        return Check(name, False, high, threshold, f"{ci} below {threshold:+.2f}", ">=")
    detail = f"{ci} not wholly below {threshold:+.2f}; {n} images"
    return Check(name, True, high, threshold, detail, ">=")


def slice_checks(
    slices: Mapping[str, Any] | None, policy: PromotionPolicy, n_images: Any
) -> list[Check]:
    """The ``camera_slices`` check and one check per judged camera (see the module doc);
    ``n_images``: the candidate's evaluation set, which the slices must add up to."""
    if not isinstance(slices, Mapping):
        return [_summary(False, "no per-camera evidence in the evaluation: fail closed")]
    metric, rules = policy.primary_metric, policy.slices
    if slices.get("metric") != metric:
        return [
            _summary(False, f"slices are of {slices.get('metric')}, the policy decides on {metric}")
        ]
    entries = [e for e in slices.get("slices") or () if isinstance(e, Mapping)]
    counts = [_count(e.get("n_images")) for e in entries]
    unattributed = _count(slices.get("unattributed"))
    total, n = sum(c or 0 for c in counts) + (unattributed or 0), _count(n_images)
    if None in counts or unattributed is None or total != n:
        return [
            _summary(
                False,
                f"the slices hold {total} images (unattributed {unattributed}), the "
                f"evaluation set {n}: not the same evaluation set",
            )
        ]
    # judged: a camera with enough images; one without a ground-truth box (n_boxes 0) has no
    # mAP (evidence that does not say: judged, and it needs its interval)
    big = [
        e
        for e in entries
        if e.get("camera") != UNKNOWN_CAMERA and _count(e.get("n_images")) >= rules.min_images
    ]
    judged = [e for e in big if e.get("n_boxes") != 0]
    required = slice_confidence(rules.confidence, len(judged))
    few = [e for e in entries if e not in big]
    parts = [
        f"{len(judged)} camera(s) judged at {required:.2%} each (Bonferroni over "
        f"{len(judged)}, family {rules.confidence:.0%}); fail when the whole interval lies "
        f"below {-rules.tolerance:+.2f}"
        if judged
        else f"no camera to judge (none with {rules.min_images} or more evaluation images and "
        "a ground-truth box)"
    ]
    if few:
        listed = ", ".join(f"{e.get('camera')} ({e.get('n_images')})" for e in few)
        parts.append(f"too few to judge (< {rules.min_images} images): {listed}")
    if len(big) > len(judged):
        listed = ", ".join(
            f"{e.get('camera')} ({e.get('n_images')})" for e in big if e not in judged
        )
        parts.append(f"no ground-truth box, no mAP: {listed}")
    parts.append(f"unattributed (no camera): {unattributed} images")
    checks = [_summary(True, "; ".join(parts), len(judged))]
    return checks + [_camera_check(e, metric, required, rules.tolerance) for e in judged]
