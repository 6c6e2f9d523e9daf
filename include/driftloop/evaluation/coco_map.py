"""COCO-style AP and mAP of a scored evaluation set (numpy only: no torch, no pycocotools).

The evaluation set arrives as one :class:`ImageRecord` per image — its predictions
(confidence, true-positive flag at each IoU threshold 0.50:0.05:0.95, class) and its
ground-truth box count per class — as :mod:`driftloop.evaluation.detector` produces them.

AP definition (documented, fixed): COCO / pycocotools 101-point interpolated AP. For a class,
predictions of all images are ranked by confidence (descending; ties keep image order, then
prediction order), precision and recall are taken after each prediction, precision is made
monotone (``p(r) = max precision at recall >= r``), and AP is the mean of that envelope at
recall 0, 0.01, …, 1.00, where a recall level the detector never reaches contributes 0.
mAP averages AP over the classes that have ground truth (classes with predictions only are
ignored, as in COCO); mAP@0.5:0.95 is the mean over the ten IoU thresholds. This is
pycocotools' number with one area range ("all") and no cap on detections per image (the
detector's own ``max_det`` caps them), tested against pycocotools itself; it is not
Ultralytics' (which interpolates the envelope continuously), so compare candidate and
champion with this module only, never across implementations.

Weighted sets, for :mod:`driftloop.evaluation.bootstrap`: a resample where an image appears
w times is evaluated with integer weights instead of copies: cumulative TP/FP counts are
weighted cumulative sums. That gives exactly the AP of the explicitly duplicated set (within
a run of identical predictions precision moves monotonically, so the interpolated envelope
only sees the run's end points) — up to exact confidence ties between *different* images,
where the copies of one image stay together instead of interleaving (pycocotools is
order-dependent on ties too). The work is ``O(resamples × (true positives × IoU thresholds +
distinct (image, run of false positives) pairs))`` in numpy, batched over resamples to bound
memory; false positives below a class's last true positive cost nothing.

numpy is imported inside functions so that importing this module (e.g. for :data:`METRICS`
in the gate) stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
        # Float arrays are fine as long as every value is a whole number (e.g. 3.0).
        non_integer_classes = not np.issubdtype(cls.dtype, np.integer) and not np.all(
            np.equal(np.mod(cls.astype(np.float64), 1), 0)
        )
        if cls.size and non_integer_classes:
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
class ClassPredictions:
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
    def build(cls, img: np.ndarray, tp: np.ndarray, n_images: int) -> ClassPredictions:
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
class FlatRecords:
    n_images: int
    classes: tuple[int, ...]
    gt: Any  # (n_images, C) int64
    preds: tuple[ClassPredictions, ...]


def flatten_records(
    records: Sequence[ImageRecord], classes: Sequence[int] | None = None
) -> FlatRecords:
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
        preds.append(ClassPredictions.build(img[mask], tp[mask], len(records)))
    return FlatRecords(len(records), tuple(classes), gt, tuple(preds))


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


def _ap_weighted(preds: ClassPredictions, weights: np.ndarray, ngt: np.ndarray, thr: Sequence[int]):
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


def weighted_map(flat: FlatRecords, weights: np.ndarray, thr: Sequence[int]) -> np.ndarray:
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


def thresholds_for(metric: str) -> tuple[int, ...]:
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
    flat = flatten_records(recs)
    return float(weighted_map(flat, np.ones((1, len(recs)), np.int64), thr)[0])


def metric_from_records(records: Iterable[ImageRecord | Mapping[str, Any]], metric: str) -> float:
    """``"map50"`` or ``"map50_95"`` of a scored evaluation set."""
    thr = thresholds_for(metric)
    return map_from_records(records, 0 if thr == (0,) else None)


# --------------------------------------------------------------------------------------------
# per-set scores


def map_scores(records: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    """(mAP@0.5, mAP@0.5:0.95) of scored records: pycocotools' 101-point AP, averaged over
    the classes with ground truth — the numbers the promotion gate's bootstrap CI
    (:mod:`driftloop.evaluation.bootstrap`) is centred on. NaN when no class has GT."""
    return metric_from_records(records, "map50"), metric_from_records(records, "map50_95")


def per_class_scores(records: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, float]]:
    """AP@0.5 and AP@0.5:0.95 of each class with ground truth (records restricted to it)."""
    classes = sorted({int(k) for r in records for k, n in r["gt_counts"].items() if int(n) > 0})
    out = {}
    for c in classes:
        only = [
            {
                "image_id": r["image_id"],
                "gt_counts": {k: n for k, n in r["gt_counts"].items() if int(k) == c},
                "predictions": [p for p in r["predictions"] if int(p[2]) == c],
            }
            for r in records
        ]
        ap50, ap50_95 = map_scores(only)
        out[c] = {"ap50": ap50, "ap50_95": ap50_95}
    return out
