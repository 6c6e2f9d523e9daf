"""Paired bootstrap confidence interval of a detection-metric delta (candidate − champion).

Both models are scored on the *same* evaluation images; the unit of resampling is the image.
Each image contributes an :class:`ImageRecord`: its predictions (confidence, true-positive
flag at each IoU threshold 0.50:0.05:0.95, class) and its ground-truth box count per class.
A bootstrap resample draws image indices with replacement and uses the *same* indices for
both models (paired), so image difficulty cancels out of the delta.

AP definition (documented, fixed): COCO / pycocotools 101-point interpolated AP. For a class,
predictions of all images are ranked by confidence (descending; ties keep image order, then
prediction order), precision and recall are taken after each prediction, precision is made
monotone (``p(r) = max precision at recall >= r``), and AP is the mean of that envelope at
recall 0, 0.01, …, 1.00, where a recall level the detector never reaches contributes 0.
mAP averages AP over the classes that have ground truth (classes with predictions only are
ignored, as in COCO); mAP@0.5:0.95 is the mean over the ten IoU thresholds. This is the
pycocotools number, not Ultralytics' (which interpolates the envelope continuously), so
compare candidate and champion with this module only, never across implementations.

A resample where an image appears w times is evaluated with integer weights instead of
copies: cumulative TP/FP counts are weighted cumulative sums. That gives exactly the AP of the
explicitly duplicated set (within a run of identical predictions precision moves
monotonically, so the interpolated envelope only sees the run's end points) — up to exact
confidence ties between *different* images, where the copies of one image stay together
instead of interleaving (pycocotools is order-dependent on ties too). The work is
``O(resamples × (true positives × IoU thresholds + distinct (image, run of false
positives) pairs))`` in numpy, batched over resamples to bound memory; false positives below
a class's last true positive cost nothing.

numpy is imported inside functions so that importing this module (e.g. for :class:`DeltaCI`
in the gate) stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
N_RECALL_POINTS = 101
METRICS = ("map50", "map50_95")

# Elements of the (resamples × true positives) working arrays per batch.
_BATCH_ELEMENTS = 2_000_000


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """One evaluation image, as scored by one model.

    ``confidence`` (n,), ``tp`` (n, 10) bool — true positive at each IoU threshold of
    :data:`IOU_THRESHOLDS`, matched COCO-style against this image's ground truth —,
    ``classes`` (n,) int YOLO class index, ``gt_counts`` {class index: number of GT boxes}.
    """

    confidence: Any
    tp: Any
    classes: Any
    gt_counts: Mapping[int, int] = field(default_factory=dict)
    image_id: str | None = None

    def __post_init__(self) -> None:
        import numpy as np

        conf = np.asarray(self.confidence, dtype=np.float64).reshape(-1)
        tp = np.asarray(self.tp, dtype=bool)
        if tp.ndim == 1 and conf.size == 0:
            tp = tp.reshape(0, len(IOU_THRESHOLDS))
        cls = np.asarray(self.classes).reshape(-1)
        if tp.ndim != 2 or tp.shape != (conf.size, len(IOU_THRESHOLDS)):
            raise ValueError(
                f"image {self.image_id!r}: tp must have shape (n_predictions, "
                f"{len(IOU_THRESHOLDS)}), got {tp.shape} for {conf.size} predictions"
            )
        if cls.size != conf.size:
            raise ValueError(
                f"image {self.image_id!r}: {cls.size} classes for {conf.size} predictions"
            )
        if not np.all(np.isfinite(conf)):
            raise ValueError(f"image {self.image_id!r}: confidences must be finite")
        if cls.size and not np.issubdtype(cls.dtype, np.integer):
            if not np.all(np.equal(np.mod(cls.astype(np.float64), 1), 0)):
                raise ValueError(f"image {self.image_id!r}: classes must be integer indices")
        gt = {}
        for key, value in dict(self.gt_counts).items():
            count = int(value)
            if count < 0:
                raise ValueError(f"image {self.image_id!r}: negative GT count for class {key}")
            if count:
                gt[int(key)] = count
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "tp", tp)
        object.__setattr__(self, "classes", cls.astype(np.int64))
        object.__setattr__(self, "gt_counts", gt)

    @classmethod
    def from_predictions(
        cls,
        predictions: Iterable[tuple[float, Sequence[bool], int]],
        gt_counts: Mapping[int, int],
        image_id: str | None = None,
    ) -> ImageRecord:
        """From ``[(confidence, [tp@0.50, …, tp@0.95], class), …]`` and ``{class: n_gt}``."""
        preds = list(predictions)
        return cls(
            confidence=[p[0] for p in preds],
            tp=[list(p[1]) for p in preds],
            classes=[p[2] for p in preds],
            gt_counts=gt_counts,
            image_id=image_id,
        )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ImageRecord:
        """Inverse of :meth:`to_dict` (JSON turns class keys into strings; they come back)."""
        return cls.from_predictions(
            [(p[0], p[1], p[2]) for p in raw.get("predictions", [])],
            {int(k): int(v) for k, v in (raw.get("gt_counts") or {}).items()},
            raw.get("image_id"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "gt_counts": {str(k): v for k, v in sorted(self.gt_counts.items())},
            "predictions": [
                [float(c), [bool(x) for x in t], int(k)]
                for c, t, k in zip(self.confidence, self.tp, self.classes, strict=True)
            ],
        }


def as_records(records: Iterable[ImageRecord | Mapping[str, Any]]) -> list[ImageRecord]:
    return [r if isinstance(r, ImageRecord) else ImageRecord.from_dict(r) for r in records]


@dataclass(frozen=True)
class DeltaCI:
    """Point estimate and percentile bootstrap interval of ``candidate − champion``."""

    point: float
    low: float
    high: float
    n_images: int
    n_resamples: int
    metric: str = ""
    confidence: float = 0.95
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return float(x) if x is not None and math.isfinite(x) else None

        return {
            "metric": self.metric,
            "point": num(self.point),
            "low": num(self.low),
            "high": num(self.high),
            "confidence": self.confidence,
            "n_images": self.n_images,
            "n_resamples": self.n_resamples,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DeltaCI:
        def num(x: Any) -> float:
            return float("nan") if x is None else float(x)

        return cls(
            point=num(raw.get("point")),
            low=num(raw.get("low")),
            high=num(raw.get("high")),
            n_images=int(raw.get("n_images", 0)),
            n_resamples=int(raw.get("n_resamples", 0)),
            metric=str(raw.get("metric", "")),
            confidence=float(raw.get("confidence", 0.95)),
            seed=raw.get("seed"),
        )


# --------------------------------------------------------------------------------------------
# AP


def average_precision(tp: Sequence[bool], n_gt: int) -> float:
    """COCO 101-point interpolated AP of one class at one IoU threshold.

    ``tp``: the class's predictions' true-positive flags, already sorted by confidence,
    descending. ``n_gt``: its number of ground-truth boxes. NaN when ``n_gt == 0`` (the class
    does not count); 0 when there are no predictions.
    """
    import numpy as np

    flags = np.asarray(tp, dtype=bool).reshape(-1)
    if n_gt <= 0:
        return float("nan")
    if flags.size == 0:
        return 0.0
    ctp = np.cumsum(flags)
    precision = ctp / np.arange(1, flags.size + 1)
    recall = ctp / n_gt
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, _recall_thresholds(), side="left")
    values = np.where(idx < flags.size, envelope[np.minimum(idx, flags.size - 1)], 0.0)
    return float(values.mean())


def _recall_thresholds() -> np.ndarray:
    import numpy as np

    # exactly pycocotools' recThrs
    return np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)


@dataclass(frozen=True, eq=False)
class _ClassPreds:
    """One class's predictions, reduced to what AP needs: its true positives (predictions that
    are a TP at some IoU threshold), confidence-descending, and how many predictions of each
    image rank between consecutive TPs (segment k: after TP k-1, up to and including TP k),
    as sparse (segment, image, multiplicity) entries sorted by segment."""

    image: Any  # (K,) image of each TP
    tp: Any  # (K, T) bool: TP at each IoU threshold
    entry_image: Any  # (E,) image of each entry
    entry_count: Any  # (E,) predictions of that image in that segment
    segment_start: Any  # (K,) first entry of each segment (never empty: it holds its TP)

    @classmethod
    def build(cls, img: np.ndarray, tp: np.ndarray, n_images: int) -> _ClassPreds:
        import numpy as np

        keep = np.flatnonzero(tp.any(axis=1))
        segment = np.searchsorted(keep, np.arange(img.size), side="left")
        inside = segment < keep.size  # predictions below the last TP never matter
        key = segment[inside].astype(np.int64) * max(1, n_images) + img[inside]
        uniq, counts = np.unique(key, return_counts=True)
        seg_of_entry = uniq // max(1, n_images)
        return cls(
            image=img[keep],
            tp=np.ascontiguousarray(tp[keep]),
            entry_image=uniq % max(1, n_images),
            entry_count=counts.astype(np.int64),
            segment_start=np.searchsorted(seg_of_entry, np.arange(keep.size), side="left"),
        )


@dataclass(frozen=True, eq=False)
class _Flat:
    n_images: int
    classes: tuple[int, ...]
    gt: Any  # (n_images, C) int64
    preds: tuple[_ClassPreds, ...]


def _flatten(records: Sequence[ImageRecord], classes: Sequence[int] | None = None) -> _Flat:
    import numpy as np

    if classes is None:
        found: set[int] = set()
        for r in records:
            found.update(r.gt_counts)
            found.update(int(c) for c in r.classes)
        classes = sorted(found)
    col = {c: i for i, c in enumerate(classes)}
    gt = np.zeros((len(records), len(classes)), dtype=np.int64)
    for i, r in enumerate(records):
        for c, n in r.gt_counts.items():
            gt[i, col[c]] = n
    n_thr = len(IOU_THRESHOLDS)
    if records:
        conf = np.concatenate([r.confidence for r in records])
        tp = np.concatenate([r.tp for r in records]).reshape(-1, n_thr)
        cls = np.concatenate([r.classes for r in records])
        img = np.repeat(np.arange(len(records)), [r.confidence.size for r in records])
    else:
        conf, cls, img = np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
        tp = np.zeros((0, n_thr), bool)
    # stable: equal confidences keep image order, then prediction order
    order = np.argsort(-conf, kind="stable")
    conf, tp, cls, img = conf[order], tp[order], cls[order], img[order]
    preds = []
    for c in classes:
        mask = cls == c
        preds.append(_ClassPreds.build(img[mask], tp[mask], len(records)))
    return _Flat(len(records), tuple(classes), gt, tuple(preds))


def _min_count_reaching(ngt: np.ndarray) -> np.ndarray:
    """(b, 101): the least TP count m with float(m / ngt) >= r for each recall threshold r,
    i.e. the integer form of pycocotools' ``searchsorted(tp / npig, recThrs, 'left')``."""
    import numpy as np

    r = _recall_thresholds()[None, :]
    n = np.maximum(ngt, 1).astype(np.float64)[:, None]
    m = np.ceil(r * n)
    m = np.where((m - 1) / n >= r, m - 1, m)
    m = np.where(m / n < r, m + 1, m)
    return m.astype(np.int64)


def _ap_weighted(preds: _ClassPreds, weights: np.ndarray, ngt: np.ndarray, thr: Sequence[int]):
    """AP (b, len(thr)) of one class for b weighted resamples; NaN where ngt == 0.

    Only true-positive positions are materialised: the first position whose cumulative TP
    count reaches a recall level is a TP, and the maximum precision at or after a TP is
    reached at a TP (a false positive only lowers precision), so false positives enter only
    through the number of predictions ranked at or above each TP (summed per segment between
    consecutive TPs, then accumulated).
    """
    import numpy as np

    b = weights.shape[0]
    out = np.full((b, len(thr)), np.nan)
    has = ngt > 0
    if not has.any():
        return out
    out[has] = 0.0
    if preds.image.size == 0:
        return out
    per_entry = weights[:, preds.entry_image] * preds.entry_count  # (b, E)
    per_segment = np.add.reduceat(per_entry, preds.segment_start, axis=1)  # (b, K)
    count = np.cumsum(per_segment, axis=1)  # (b, K) predictions ranked so far
    tp_weight = weights[:, preds.image]  # (b, K)
    need = _min_count_reaching(ngt)  # (b, 101) TP count each recall level needs
    rows = np.arange(b, dtype=np.int64)
    for k, t in enumerate(thr):
        where_tp = np.flatnonzero(preds.tp[:, t])
        n_tp = where_tp.size
        if n_tp == 0:
            continue
        ctp = np.cumsum(tp_weight[:, where_tp], axis=1, dtype=np.int64)  # (b, n_tp)
        cnt = count[:, where_tp]
        precision = np.divide(ctp, cnt, out=np.zeros(ctp.shape), where=cnt > 0)
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        # one searchsorted over all rows: shift row i's (non-decreasing) counts by i*stride
        stride = int(max(ctp[:, -1].max(), need.max())) + 1
        offsets = rows * stride
        flat = (ctp + offsets[:, None]).ravel()
        pos = np.searchsorted(flat, need + offsets[:, None], side="left")
        idx = pos - (rows * n_tp)[:, None]
        reached = idx < n_tp
        take = (rows * n_tp)[:, None] + np.minimum(idx, n_tp - 1)
        values = np.where(reached, envelope.reshape(-1)[take], 0.0)
        out[has, k] = values.mean(axis=1)[has]
    return out


def _metric_weighted(flat: _Flat, weights: np.ndarray, thr: Sequence[int]) -> np.ndarray:
    """mAP (mean over classes with GT, then over the thresholds ``thr``) for each row of
    ``weights`` (b, n_images)."""
    import numpy as np

    b = weights.shape[0]
    if not flat.classes:
        return np.full(b, np.nan)
    ngt_all = weights @ flat.gt  # (b, C)
    per_class = np.empty((b, len(flat.classes), len(thr)))
    widest = max((max(p.image.size, p.entry_image.size) for p in flat.preds), default=0)
    step = max(1, _BATCH_ELEMENTS // max(1, widest))
    for c, preds in enumerate(flat.preds):
        for start in range(0, b, step):
            sl = slice(start, start + step)
            per_class[sl, c, :] = _ap_weighted(preds, weights[sl], ngt_all[sl, c], thr)
    with np.errstate(invalid="ignore"):
        counted = ~np.isnan(per_class[:, :, 0])
        n_counted = counted.sum(axis=1)
        sums = np.where(counted[:, :, None], per_class, 0.0).sum(axis=1)  # (b, T)
        per_thr = sums / np.where(n_counted > 0, n_counted, 1)[:, None]
    per_thr[n_counted == 0] = np.nan
    return per_thr.mean(axis=1)


def _thresholds_for(metric: str) -> tuple[int, ...]:
    if metric == "map50":
        return (0,)
    if metric == "map50_95":
        return tuple(range(len(IOU_THRESHOLDS)))
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def map_from_records(
    records: Iterable[ImageRecord | Mapping[str, Any]], iou_index: int | None = None
) -> float:
    """mAP over the evaluation set: at IoU threshold ``IOU_THRESHOLDS[iou_index]``
    (``0`` → mAP@0.5), or averaged over all ten thresholds when ``iou_index`` is None
    (mAP@0.5:0.95). NaN when no class has ground truth."""
    import numpy as np

    recs = as_records(records)
    if iou_index is None:
        thr: tuple[int, ...] = tuple(range(len(IOU_THRESHOLDS)))
    elif 0 <= iou_index < len(IOU_THRESHOLDS):
        thr = (int(iou_index),)
    else:
        raise ValueError(f"iou_index must be in 0..{len(IOU_THRESHOLDS) - 1} or None")
    flat = _flatten(recs)
    return float(_metric_weighted(flat, np.ones((1, len(recs)), np.int64), thr)[0])


def metric_from_records(records: Iterable[ImageRecord | Mapping[str, Any]], metric: str) -> float:
    """``"map50"`` or ``"map50_95"`` of a scored evaluation set."""
    thr = _thresholds_for(metric)
    return map_from_records(records, 0 if thr == (0,) else None)


# --------------------------------------------------------------------------------------------
# bootstrap


def resample_counts(n: int, n_resamples: int, seed: int | None = 0) -> np.ndarray:
    """(n_resamples, n) multiplicities of each image in each resample: image indices drawn
    uniformly with replacement, ``n`` per resample (``numpy.random.default_rng(seed)``)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    flat = (idx + (np.arange(n_resamples) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n)


def percentile_interval(samples: Sequence[float], confidence: float) -> tuple[float, float]:
    """Percentile interval (numpy's linear interpolation, as scipy's ``method='percentile'``).
    NaN bounds when any sample is NaN: an incomplete bootstrap never yields a usable CI."""
    import numpy as np

    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)):
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(low), float(high)


def _check_args(n: int, n_resamples: int, confidence: float) -> None:
    if n < 1:
        raise ValueError("the evaluation set is empty")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _paired(
    n: int,
    stat: Callable[[np.ndarray], np.ndarray],
    *,
    n_resamples: int,
    confidence: float,
    seed: int | None,
    metric: str,
) -> DeltaCI:
    """``stat(weights (b, n)) -> (b,) delta`` evaluated on the full set and on the resamples
    (in chunks of resamples, so memory stays bounded)."""
    import numpy as np

    _check_args(n, n_resamples, confidence)
    point = float(stat(np.ones((1, n), dtype=np.int64))[0])
    counts = resample_counts(n, n_resamples, seed)
    deltas = np.concatenate([stat(counts[s : s + 250]) for s in range(0, n_resamples, 250)]).astype(
        np.float64
    )
    low, high = percentile_interval(deltas, confidence)
    return DeltaCI(point, low, high, n, n_resamples, metric, confidence, seed)


def paired_bootstrap_delta(
    candidate_records: Sequence[ImageRecord | Mapping[str, Any]],
    champion_records: Sequence[ImageRecord | Mapping[str, Any]],
    *,
    metric: str,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> DeltaCI:
    """Paired percentile-bootstrap CI of ``metric(candidate) − metric(champion)``.

    ``candidate_records[i]`` and ``champion_records[i]`` must be the same image (same
    ground-truth counts, and the same ``image_id`` where both carry one).
    """
    thr = _thresholds_for(metric)
    cand = as_records(candidate_records)
    champ = as_records(champion_records)
    if len(cand) != len(champ):
        raise ValueError(
            f"paired bootstrap needs the same images: {len(cand)} candidate records, "
            f"{len(champ)} champion records"
        )
    for i, (a, b) in enumerate(zip(cand, champ, strict=True)):
        if a.image_id is not None and b.image_id is not None and a.image_id != b.image_id:
            raise ValueError(f"record {i}: image {a.image_id!r} vs {b.image_id!r}")
        if a.gt_counts != b.gt_counts:
            raise ValueError(
                f"record {i} ({a.image_id or b.image_id or 'no id'}): ground truth differs "
                f"between candidate {a.gt_counts} and champion {b.gt_counts}"
            )
    classes: set[int] = set()
    for r in (*cand, *champ):
        classes.update(r.gt_counts)
        classes.update(int(c) for c in r.classes)
    ordered = sorted(classes)
    flat_cand = _flatten(cand, ordered)
    flat_champ = _flatten(champ, ordered)

    def stat(weights: np.ndarray) -> np.ndarray:
        return _metric_weighted(flat_cand, weights, thr) - _metric_weighted(
            flat_champ, weights, thr
        )

    return _paired(
        len(cand),
        stat,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
        metric=metric,
    )


def paired_bootstrap_mean_delta(
    candidate_values: Sequence[float],
    champion_values: Sequence[float],
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
    metric: str = "mean",
) -> DeltaCI:
    """The same paired bootstrap for a per-image scalar (e.g. per-image F1): CI of
    ``mean(candidate) − mean(champion)``."""
    import numpy as np

    a = np.asarray(candidate_values, dtype=np.float64).reshape(-1)
    b = np.asarray(champion_values, dtype=np.float64).reshape(-1)
    if a.size != b.size:
        raise ValueError(f"paired values differ in length: {a.size} vs {b.size}")
    diff = a - b

    def stat(weights: np.ndarray) -> np.ndarray:
        return (weights @ diff) / weights.sum(axis=1)

    return _paired(
        a.size, stat, n_resamples=n_resamples, confidence=confidence, seed=seed, metric=metric
    )
