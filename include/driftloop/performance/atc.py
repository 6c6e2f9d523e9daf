"""Label-free mAP estimate: Average Thresholded Confidence (Garg et al., ICLR 2022) for a
detector.

ATC, for a classifier: on labeled source data with accuracy ``a``, pick the confidence
threshold ``t`` so that the share of source examples scoring at least ``t`` equals ``a``; on
unlabeled target data, the estimated accuracy is the share of target examples scoring at
least ``t``. Adapted to detection here (the choice, fixed):

* the *example* is an image and its *score* is the image's top detection confidence — the
  inference log's ``confidence_max`` (:func:`top_confidence` is the same number computed from
  a served model's output, as :func:`driftloop.serving.records.inference_row` writes it), so
  the estimate needs nothing but the logs;
* the *accuracy* is mAP@0.5:0.95 of the champion on its own evaluation split (the eval split
  of the snapshot it was trained on), measured exactly as a labeled day is measured;
* hence ``t`` with ``share(score >= t) = mAP@0.5:0.95 (eval)`` on the eval split
  (:func:`fit_threshold`), and a day's estimate is ``share(score >= t)`` over the day's
  champion rows (:func:`estimate`): in [0, 1], monotone in the confidences, and exactly the
  eval mAP (up to one image in ``n``) on the eval split itself.

Why ATC rather than a fitted map from per-image confidence to per-image AP: mAP is not a mean
of per-image APs (it ranks predictions across images), so a per-image regression targets the
wrong quantity; ATC needs one number of the labeled split and is the better-tested of the
two (Garg et al. report it beating regression-style baselines under natural shift). Its
error on real days is measured where a day is both labeled and logged (``estimate_mae``).

Known limit, measured (YOLO11n trained 12 epochs on the synthetic world, 400 served frames a
day, 18 days of ``abrupt``/``brightness-shift``/``gradual``): within 0.03 of the measured
mAP@0.5:0.95 on most days, but under the ``abrupt`` lighting drop the measured mAP fell
0.57 → 0.45 while the confidences did not (estimate 0.63–0.67): MAE 0.063 against 0.035 for
"the eval mAP, always". Confidence cannot see worse localisation; treat an estimate as a
hint between labels, never as evidence of a drop without labels (per-image mean confidence
and a detection-level variant did no better: MAE 0.067, 0.072).
"""

from __future__ import annotations

from collections.abc import Sequence


def fit_threshold(scores: Sequence[float], target: float) -> float:
    """The threshold ``t`` with ``share(scores >= t)`` as close to ``target`` as ``n`` images
    allow (``round(target * n)`` images at or above it): the midpoint between the k-th and
    (k+1)-th highest score; above the highest score for k = 0, the lowest score for k = n."""
    import numpy as np

    values = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))[::-1]
    if values.size == 0:
        raise ValueError("ATC calibration needs at least one image score")
    if not np.all(np.isfinite(values)):
        raise ValueError("ATC calibration: image scores must be finite")
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"ATC calibration: target accuracy must be in [0, 1], got {target}")
    k = round(target * values.size)
    if k == 0:
        return float(np.nextafter(values[0], np.inf))
    if k == values.size:
        return float(values[-1])
    return float((values[k - 1] + values[k]) / 2.0)


def estimate(scores: Sequence[float], threshold: float) -> float | None:
    """The ATC estimate: the share of ``scores`` at or above ``threshold`` (None: no scores)."""
    import numpy as np

    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return None
    if not np.all(np.isfinite(values)):
        raise ValueError("ATC estimate: image scores must be finite")
    return float(np.mean(values >= threshold))


def top_confidence(scores: Sequence[float], best_score: float) -> float:
    """An image's ``confidence_max`` as the inference log holds it: the highest confidence of
    its detections, or the best candidate's when it has none above the serving threshold."""
    return float(max(scores)) if len(scores) else float(best_score)
