"""What a rollout stage shows: the subject against the baseline on the same frames and hours.

Why: the gate compared the two models on a fixed evaluation set; a rollout must show the same
noise-aware comparison on live traffic before the challenger serves more (shadow → canary →
promotion) and during the guard period after (a miss rolls back). The batch scorer writes one
serving record per (frame, model that scored it) (:mod:`driftloop.serving.records`); a
*paired frame* is a frame both the subject and the baseline scored under the routing
document's sequence (:func:`pair_frames`). :func:`compare_stage` judges them:

* ``latency_p95_ratio``: p95(subject latency) / p95(baseline latency); fails when the whole
  interval lies above ``1 + latency_p95_tolerance``;
* ``detections_per_frame_ratio``: the subject's detections / the baseline's; fails when the
  whole interval lies outside ``1 ± detections_tolerance``;
* ``confidence_mean_delta``: mean, over the frames where both models detect something, of
  the subject's mean confidence minus the baseline's; fails below ``−confidence_tolerance``;
* ``agreement_f1``: mean per-frame F1 of the subject's boxes against the baseline's (same
  class, IoU ≥ 0.5, greedy; two empty frames agree;
  :mod:`driftloop.promotion.rollout_agreement`); fails below ``min_agreement``;
* ``error_share_excess``: the subject's share of failed frames minus the baseline's; fails
  when the lower bound exceeds ``max_error_share``;
* ``map50_95_delta``: mAP@0.5:0.95 of the subject minus the baseline's on the labeled frames
  (the gate's COCO mAP, :mod:`driftloop.evaluation.coco_map`); fails below ``−map_tolerance``.

**Labels outrank proxies**: detections, confidence and agreement stand in for accuracy on
unlabeled frames, and a better model finds boxes the baseline missed. Where a scope's mAP
interval lies wholly above 0, a failing or holding proxy is ``"explained"`` (with
``explained_by``) and blocks nothing; latency and errors are judged regardless.

A model that failed on a frame (``error`` set) leaves that frame out of every check but the
error check. Intervals are paired percentile-bootstrap intervals at the policy's confidence,
resampling hours when the frames span at least six, else frames
(:mod:`driftloop.promotion.rollout_checks`); a check with fewer than :data:`MIN_UNITS` frames
(the mAP check: fewer than ``min_labeled_frames`` labeled frames) gets no interval
("not_enough_data"). Every check runs on all paired frames ("all") and, when there is more
than one camera, on each camera with at least ``min_frames`` paired frames, at the
Bonferroni-adjusted confidence ``1 − (1 − confidence) / cameras tested``.

Verdict: **fail** when any check's whole interval lies beyond its tolerance; else **pass**
when the stage has ``min_frames`` paired frames and ``min_hours`` of log time (the span of its
records' ``ts``) and every check passes (point estimate within tolerance; the mAP check also
needs its lower bound ≥ −map_tolerance over all cameras, as in the gate, and blocks nothing
without enough labels; a camera's "not_enough_data" blocks nothing); else **hold**. Latency
is judged in canary and guard only — in shadow the subject runs off the serving path, so its
latency is reported ("info").

:func:`stage_evidence` reads a routing document's serving records and their frames' labels
from S3 (:mod:`driftloop.promotion.rollout_records`) and calls :func:`compare_stage`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from driftloop.promotion.rollout_agreement import agreement_f1
from driftloop.promotion.rollout_checks import (
    MapDelta,
    QuantileRatio,
    RatioOfSums,
    Resampler,
    Rule,
    check_status,
    finite_or_none,
    intervals,
)
from driftloop.promotion.rollout_records import (
    PairedFrames,
    concat_parts,
    load_labels,
    load_stage_records,
    pair_frames,
    stage_parts,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = [
    "STAGES",
    "VERDICTS",
    "RolloutSLO",
    "StageComparison",
    "compare_stage",
    "load_labels",
    "load_stage_records",
    "pair_frames",
    "stage_evidence",
]

STAGES = ("shadow", "canary", "guard")
VERDICTS = ("hold", "pass", "fail")
ALL = "all"
LATENCY = "latency_p95_ratio"
DETECTIONS = "detections_per_frame_ratio"
CONFIDENCE = "confidence_mean_delta"
AGREEMENT = "agreement_f1"
ERRORS = "error_share_excess"
MAP = "map50_95_delta"
MAP_METRIC = "map50_95"
LABEL_FREE_PROXIES = (DETECTIONS, CONFIDENCE, AGREEMENT)
#: fewer frames than this in a check: no interval (a bootstrap of a handful of frames is not
#: an interval a stage can be failed on)
MIN_UNITS = 20


@dataclass(frozen=True)
class RolloutSLO:
    """The rollout policy's numbers for one stage: interval confidence, the evidence a pass
    needs (paired frames, hours of log time, labeled frames for the mAP check) and the seven
    ``slo`` tolerances; ``n_resamples`` bootstrap resamples per interval."""

    confidence: float
    min_frames: int
    min_hours: float
    min_labeled_frames: int
    latency_p95_tolerance: float
    map_tolerance: float
    detections_tolerance: float
    confidence_tolerance: float
    min_agreement: float
    max_error_share: float
    n_resamples: int = 1000

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"RolloutSLO.confidence must be in (0, 1), got {self.confidence}")
        for name in ("min_frames", "min_labeled_frames", "n_resamples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"RolloutSLO.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("min_hours", "latency_p95_tolerance", "map_tolerance", "max_error_share"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"RolloutSLO.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.detections_tolerance <= 1 or not 0 <= self.confidence_tolerance <= 1:
            raise ValueError(
                "RolloutSLO.detections_tolerance and confidence_tolerance must be in [0, 1], "
                f"got {self.detections_tolerance}, {self.confidence_tolerance}"
            )
        if not 0 <= self.min_agreement <= 1:
            raise ValueError(
                f"RolloutSLO.min_agreement must be in [0, 1], got {self.min_agreement}"
            )

    @classmethod
    def from_policy(cls, rollout: Any, stage: str) -> RolloutSLO:
        """From the policy's ``rollout`` section (read by attribute, as in the YAML):
        ``rollout.<stage>.min_frames``, ``.min_hours`` (guard: ``rollout.guard.hours``, the
        guard period), ``rollout.confidence`` and ``rollout.slo.*``."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        section, slo = getattr(rollout, stage), rollout.slo
        return cls(
            confidence=float(rollout.confidence),
            min_frames=int(section.min_frames),
            min_hours=float(section.hours if stage == "guard" else section.min_hours),
            min_labeled_frames=int(slo.min_labeled_frames),
            latency_p95_tolerance=float(slo.latency_p95_tolerance),
            map_tolerance=float(slo.map_tolerance),
            detections_tolerance=float(slo.detections_tolerance),
            confidence_tolerance=float(slo.confidence_tolerance),
            min_agreement=float(slo.min_agreement),
            max_error_share=float(slo.max_error_share),
        )


# --------------------------------------------------------------------------------------------
# the comparison


@dataclass(frozen=True)
class StageComparison:
    """The evidence of one stage: ``verdict`` ("hold", "pass", "fail") and why (``reasons``),
    every check (``checks``: name, camera or "all", estimate, low, high, threshold, bound,
    status, n, confidence, resampled), the paired ``frames``, the ``hours`` of log time, the
    ``labeled_frames`` among the paired ones, and the row counts behind them."""

    verdict: str
    stage: str
    checks: list[dict[str, Any]]
    frames: int
    hours: float
    labeled_frames: int
    reasons: list[str]
    cameras: list[str]  # cameras checked on their own
    camera_confidence: float | None
    rows: dict[str, int]
    errors: dict[str, int]
    unpaired: dict[str, int]
    duplicates: int
    slo: RolloutSLO
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (NaN and infinities become null)."""
        out = asdict(self)
        out["hours"] = finite_or_none(self.hours)
        return out

    def summary(self) -> str:
        """One line: ``canary: HOLD, 120 paired frames over 0.8 h (38 labeled); <reasons>``."""
        return (
            f"{self.stage}: {self.verdict.upper()}, {self.frames} paired frames over "
            f"{self.hours:.1f} h ({self.labeled_frames} labeled)"
            + (f"; {'; '.join(self.reasons)}" if self.reasons else "")
        )


def _rules(slo: RolloutSLO, stage: str, camera: str) -> dict[str, Rule]:
    latency_bar = 1.0 + slo.latency_p95_tolerance
    return {
        # the shadow model runs off the serving path: its latency harms no one yet
        LATENCY: Rule("info" if stage == "shadow" else "<=", latency_bar),
        DETECTIONS: Rule(
            "within", (1.0 - slo.detections_tolerance, 1.0 + slo.detections_tolerance)
        ),
        CONFIDENCE: Rule(">=", -slo.confidence_tolerance),
        AGREEMENT: Rule(">=", slo.min_agreement),
        ERRORS: Rule("<=", slo.max_error_share),
        # the gate's non-inferiority (lower bound >= -tolerance) on all labeled frames; a
        # camera's few labels only fail it or hold it on their estimate
        MAP: Rule(">=", -slo.map_tolerance, strict=camera == ALL),
    }


@dataclass(frozen=True, eq=False)
class _Evidence:
    """What every scope reads: the paired frames, each frame's agreement F1, and the labeled
    frames' COCO records (``map_records[i]``: (subject, baseline) ImageRecords or None)."""

    frames: PairedFrames
    f1: np.ndarray
    map_records: list
    map_classes: list[int]


def _evidence(frames: PairedFrames, labels: Mapping[str, tuple[Any, Any]]) -> _Evidence:
    from driftloop.evaluation.coco_map import ImageRecord
    from driftloop.evaluation.detector import Detections
    from driftloop.evaluation.matching import image_record

    s, b = frames.subject, frames.baseline
    f1 = agreement_f1(s.boxes, b.boxes)
    records: list = [None] * len(frames)
    classes: set[int] = set()
    for i in np.flatnonzero(~s.error & ~b.error):
        image_id = frames.image_id[i]
        if image_id not in labels:
            continue
        gt_classes, gt_boxes = labels[image_id]
        pair = []
        for model in (s, b):
            boxes, scores, det_classes = model.boxes.frame(i)
            det = Detections(boxes, scores, det_classes)
            pair.append(ImageRecord.from_dict(image_record(image_id, det, gt_boxes, gt_classes)))
        records[i] = tuple(pair)
        for r in pair:
            classes.update(r.gt_counts)
            classes.update(int(c) for c in r.classes)
    return _Evidence(frames, f1, records, sorted(classes))


def _check(name, camera, rule, estimate, n, confidence, unit) -> dict[str, Any]:
    point, low, high = estimate
    return {
        "name": name,
        "camera": camera,
        "estimate": finite_or_none(point),
        "low": finite_or_none(low),
        "high": finite_or_none(high),
        "threshold": list(rule.threshold) if isinstance(rule.threshold, tuple) else rule.threshold,
        "bound": rule.bound,
        "status": check_status(rule, point, low, high),
        "n": int(n),
        "confidence": confidence,
        "resampled": unit,
    }


def _scope_checks(
    ev: _Evidence, idx: np.ndarray, camera: str, slo: RolloutSLO, stage: str, confidence, seed
) -> list[dict[str, Any]]:
    """Every check on the paired frames ``idx`` (one camera, or all)."""
    from driftloop.evaluation.coco_map import flatten_records, thresholds_for

    frames, rules = ev.frames, _rules(slo, stage, camera)
    s, b = frames.subject, frames.baseline
    ok = ~s.error[idx] & ~b.error[idx]
    res = Resampler.for_frames(frames.ts_us[idx], n_resamples=slo.n_resamples, seed=seed)
    s_conf, b_conf = s.confidence_mean[idx], b.confidence_mean[idx]
    both_detect = ok & np.isfinite(s_conf) & np.isfinite(b_conf)
    units = {
        LATENCY: ok,
        DETECTIONS: ok,
        CONFIDENCE: both_detect,
        AGREEMENT: ok,
        ERRORS: np.ones(idx.size, dtype=bool),
    }
    stats = {
        LATENCY: QuantileRatio.of(res, ok, s.latency_ms[idx], b.latency_ms[idx]),
        DETECTIONS: RatioOfSums.of(res, ok, s.n_detections[idx], b.n_detections[idx]),
        CONFIDENCE: RatioOfSums.of(res, both_detect, np.where(both_detect, s_conf - b_conf, 0)),
        AGREEMENT: RatioOfSums.of(res, ok, ev.f1[idx]),
        ERRORS: RatioOfSums.of(res, units[ERRORS], s.error[idx] * 1.0 - b.error[idx]),
    }
    enough = {name: stat for name, stat in stats.items() if units[name].sum() >= MIN_UNITS}
    found = intervals(res, enough, confidence)
    checks = [
        _check(
            name,
            camera,
            rules[name],
            found.get(name, (stats[name].point, np.nan, np.nan)),
            units[name].sum(),
            confidence,
            res.unit,
        )
        for name in stats
    ]
    labeled = [i for i in idx if ev.map_records[i] is not None]
    estimate, unit = (np.nan, np.nan, np.nan), None
    if labeled and len(labeled) >= slo.min_labeled_frames:
        res_map = Resampler.for_frames(
            frames.ts_us[labeled], n_resamples=slo.n_resamples, seed=seed
        )
        flat = [
            flatten_records([ev.map_records[i][k] for i in labeled], ev.map_classes) for k in (0, 1)
        ]
        stat = MapDelta.of(*flat, res_map.cluster, thresholds_for(MAP_METRIC))
        estimate, unit = intervals(res_map, {MAP: stat}, confidence)[MAP], res_map.unit
    checks.append(_check(MAP, camera, rules[MAP], estimate, len(labeled), confidence, unit))
    return _labels_outrank_proxies(checks)


def _labels_outrank_proxies(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A scope's checks; its failing or holding proxies "explained" by an mAP interval > 0."""
    map_check = next(c for c in checks if c["name"] == MAP)
    if (low := map_check["low"]) is None or low <= 0:
        return checks
    why = f"{MAP} {map_check['estimate']:+.4g} [{low:+.4g}, {map_check['high']:+.4g}] > 0"
    return [
        {**c, "status": "explained", "explained_by": why}
        if c["name"] in LABEL_FREE_PROXIES and c["status"] in ("fail", "hold")
        else c
        for c in checks
    ]


def _log_hours(records: pa.Table) -> float:
    """Hours between the first and the last ``ts`` of the records (0 without two rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if records.num_rows == 0:
        return 0.0
    ts = pc.cast(records["ts"], pa.timestamp("us", tz="UTC")).cast(pa.int64())
    span = pc.min_max(ts).as_py()
    return (span["max"] - span["min"]) / 3.6e9


def _verdict(checks, frames: int, hours: float, slo: RolloutSLO) -> tuple[str, list[str]]:
    def where(c) -> str:
        return f"{c['name']} ({c['camera']})"

    failed = [c for c in checks if c["status"] == "fail"]
    if failed:
        return "fail", [
            f"{where(c)}: {c['confidence']:.4g} interval [{c['low']:.4g}, {c['high']:.4g}] "
            f"entirely beyond {c['bound']} {c['threshold']}"
            for c in failed
        ]
    reasons = []
    if frames < slo.min_frames:
        reasons.append(f"{frames} paired frames, {slo.min_frames} needed")
    if hours < slo.min_hours:
        reasons.append(f"{hours:.2f} h of log time, {slo.min_hours:g} needed")
    for c in checks:
        if c["status"] == "hold":
            reasons.append(
                f"{where(c)}: estimate {c['estimate']:.4g} (interval [{c['low']:.4g}, "
                f"{c['high']:.4g}]) not within {c['bound']} {c['threshold']}"
            )
        elif c["status"] == "not_enough_data" and c["camera"] == ALL and c["name"] != MAP:
            reasons.append(f"{where(c)}: not enough data ({c['n']} frames)")
    return ("hold" if reasons else "pass"), reasons


def compare_stage(
    records: pa.Table,
    labels: Mapping[str, tuple[Any, Any]],
    slo: RolloutSLO,
    stage: str,
    *,
    seed: int = 0,
) -> StageComparison:
    """The subject against the baseline on the paired frames of ``records`` (one stage's
    serving records); ``labels``: ``{image_id: (classes, xyxy boxes in pixels)}`` of the
    labeled frames. Deterministic given ``seed``. See the module docstring for the rules."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    frames = pair_frames(records)
    ev = _evidence(frames, labels)
    scopes = [(ALL, np.arange(len(frames)), slo.confidence)]
    cameras, counts = np.unique(frames.camera_id.astype(str), return_counts=True)
    tested = [str(c) for c, n in zip(cameras, counts, strict=True) if n >= slo.min_frames]
    camera_confidence = None
    if len(cameras) > 1 and tested:
        # Bonferroni: each camera's interval at 1 - alpha/m keeps the chance that noise
        # fails any of the m cameras below alpha
        camera_confidence = 1.0 - (1.0 - slo.confidence) / len(tested)
        camera_of = frames.camera_id.astype(str)
        scopes += [(c, np.flatnonzero(camera_of == c), camera_confidence) for c in tested]
    checks = []
    for camera, idx, confidence in scopes:
        checks += _scope_checks(ev, idx, camera, slo, stage, confidence, seed)
    hours = _log_hours(records)
    verdict, reasons = _verdict(checks, len(frames), hours, slo)
    return StageComparison(
        verdict=verdict,
        stage=stage,
        checks=checks,
        frames=len(frames),
        hours=hours,
        labeled_frames=sum(r is not None for r in ev.map_records),
        reasons=reasons,
        cameras=tested if camera_confidence is not None else [],
        camera_confidence=camera_confidence,
        rows=frames.rows,
        errors=frames.errors,
        unpaired=frames.unpaired,
        duplicates=frames.duplicates,
        slo=slo,
        seed=seed,
    )


def stage_evidence(
    s3, settings, routing_doc: Mapping[str, Any], slo: RolloutSLO, *, seed: int = 0
) -> StageComparison:
    """:func:`compare_stage` on the serving records of the routing document's rollout_id and
    sequence (``serving/dt=*/`` of ``settings.bucket``) and the labels of their frames
    (``labeled/dt=<day>/``, the day of the part that holds the frame)."""
    parts = stage_parts(s3, settings.bucket, routing_doc)
    ids_by_day: dict[str, set[str]] = {}
    for day, table in parts:
        ids_by_day.setdefault(day, set()).update(table["image_id"].to_pylist())
    labels = load_labels(s3, settings.bucket, ids_by_day)
    stage = str(routing_doc.get("stage"))
    return compare_stage(concat_parts(parts), labels, slo, stage, seed=seed)
