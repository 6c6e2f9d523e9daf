"""The statistics under the rollout guard's checks: paired resampling, statistics, rules.

Why a module of its own: :mod:`driftloop.promotion.rollout_evidence` decides what a stage
shows (which frames, which checks, which verdict); this module is the arithmetic it rests on,
kept vectorised so that a guard period of 200k paired frames is seconds, not minutes.

* **Resampling** (:class:`Resampler`). A stage's frames are paired (both models scored the
  same frame), so every statistic is resampled with the same draws for both models. Frames of
  one hour share their traffic, light and host load — they are not independent — so with at
  least :data:`MIN_CLUSTER_HOURS` distinct hours of log time the bootstrap draws whole HOURS
  (a cluster bootstrap: each resample draws as many hours as there are, with replacement);
  with fewer, there are too few clusters for that, and it draws frames. A resample is a
  vector of counts, one per cluster, drawn exactly as
  :func:`driftloop.evaluation.bootstrap.resample_counts` draws them (in batches from one
  seeded generator, so memory stays bounded and the numbers depend on the seed alone).
* **Statistics** evaluated on weighted frames: :class:`RatioOfSums` (a ratio of sums, or a
  mean when the denominator counts frames), :class:`QuantileRatio` (``p95(subject) /
  p95(baseline)``, the p95 of the duplicated sample exactly as ``numpy.percentile`` takes it)
  and :class:`MapDelta` (mAP@0.5:0.95 delta, :func:`driftloop.evaluation.coco_map.weighted_map`
  with the resample's weights — in frame mode exactly the gate's
  :func:`~driftloop.evaluation.bootstrap.paired_bootstrap_delta`). Intervals are percentile
  intervals (:func:`~driftloop.evaluation.bootstrap.percentile_interval`).
* **Rules** (:func:`check_status`): a check fails only when its whole interval lies beyond
  its tolerance (noise never fails a stage), passes when its point estimate is within it, and
  holds otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from driftloop.evaluation.bootstrap import percentile_interval, resample_counts
from driftloop.evaluation.coco_map import FlatRecords, weighted_map
from driftloop.evaluation.latency import QUANTILE
from driftloop.promotion.gate import EPS

#: fewer distinct hours than this: too few clusters for an hour bootstrap, frames are drawn
MIN_CLUSTER_HOURS = 6
HOUR_US = 3_600_000_000
#: counts (resamples x clusters) per batch: bounds memory at any number of frames
RESAMPLE_BUDGET = 4_000_000
#: :func:`weighted_percentile` accumulates counts over the top TAIL_FACTOR x (1 - q) of the
#: values (at least TAIL_MIN): a resampled p95 lies there but for freak resamples
TAIL_FACTOR = 4.0
TAIL_MIN = 256

STATUSES = ("pass", "fail", "hold", "not_enough_data", "info", "explained")


# --------------------------------------------------------------------------------------------
# resampling


@dataclass(frozen=True, eq=False)
class Resampler:
    """Paired bootstrap resamples of a set of frames: ``cluster[i]`` is frame i's cluster (its
    hour, or the frame itself), ``unit`` says which."""

    cluster: np.ndarray
    n_clusters: int
    unit: str
    n_resamples: int
    seed: int

    @classmethod
    def for_frames(
        cls, ts_us: np.ndarray, *, n_resamples: int, seed: int, unit: str | None = None
    ) -> Resampler:
        """Clusters from the frames' log times (µs since the epoch); ``unit`` None: "hour" with
        at least :data:`MIN_CLUSTER_HOURS` distinct hours, else "frame"."""
        if n_resamples < 1:
            raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
        hours = np.asarray(ts_us, dtype=np.int64) // HOUR_US
        distinct, inverse = np.unique(hours, return_inverse=True)
        if unit is None:
            unit = "hour" if distinct.size >= MIN_CLUSTER_HOURS else "frame"
        if unit == "hour":
            return cls(inverse.reshape(-1), int(distinct.size), unit, n_resamples, seed)
        if unit == "frame":
            return cls(np.arange(hours.size), int(hours.size), unit, n_resamples, seed)
        raise ValueError(f"unit must be 'hour', 'frame' or None, got {unit!r}")

    def batches(self) -> Iterator[np.ndarray]:
        """(r, n_clusters) counts, ``n_resamples`` rows in all; one generator seeded with
        ``seed`` (a single batch draws exactly ``resample_counts(n_clusters, n_resamples,
        seed)``, the gate's draws)."""
        rng = np.random.default_rng(self.seed)
        step = max(1, RESAMPLE_BUDGET // max(1, self.n_clusters))
        for start in range(0, self.n_resamples, step):
            # resample_counts seeds numpy's default_rng, which passes a Generator through
            yield resample_counts(self.n_clusters, min(step, self.n_resamples - start), rng)


class Statistic(Protocol):
    point: float

    def resampled(self, counts: np.ndarray) -> np.ndarray:
        """(r,) values of the statistic for the (r, n_clusters) cluster counts."""


@dataclass(frozen=True, eq=False)
class RatioOfSums:
    """``sum(num) / sum(den)`` over the frames of a mask (den = 1: the mean of num)."""

    num: np.ndarray  # (n_clusters,) per-cluster sums
    den: np.ndarray
    point: float

    @classmethod
    def of(cls, res: Resampler, mask: np.ndarray, num, den=None) -> RatioOfSums:
        mask = np.asarray(mask, dtype=bool)
        cluster = res.cluster[mask]
        num = np.asarray(num, dtype=np.float64)[mask]
        den = np.ones(num.size) if den is None else np.asarray(den, dtype=np.float64)[mask]
        sums = [np.bincount(cluster, weights=v, minlength=res.n_clusters) for v in (num, den)]
        return cls(sums[0], sums[1], _ratio(num.sum(), den.sum()))

    def resampled(self, counts: np.ndarray) -> np.ndarray:
        return _ratio(counts @ self.num, counts @ self.den)


def _ratio(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(np.asarray(den) != 0, np.divide(num, np.where(den != 0, den, 1.0)), np.nan)
    return float(out) if out.ndim == 0 else out


def _count_sums(counts: np.ndarray, per_cluster: np.ndarray) -> np.ndarray:
    """(r,) ``counts @ per_cluster`` for integer counts (einsum: numpy's integer matmul is a
    slow loop)."""
    return np.einsum("rh,h->r", counts, per_cluster)


def _ranks_by_cumsum(weights: np.ndarray, below: np.ndarray, ks) -> list[np.ndarray]:
    """Per row and each k of ``ks``: the index of element k of the duplicated sample, i.e.
    the first index whose cumulative count (``below`` + running sum of ``weights``) exceeds k.
    One sorted search over all rows: row i's running sums are shifted by i x stride."""
    rows, width = weights.shape
    cum = np.cumsum(weights, axis=1, dtype=np.int64)
    stride = int(cum[:, -1].max()) + 1 if cum.size else 1
    shift = np.arange(rows, dtype=np.int64) * stride
    cum += shift[:, None]
    flat = cum.reshape(-1)
    starts = np.arange(rows, dtype=np.int64) * width
    return [
        np.searchsorted(flat, (k - below).astype(np.int64) + shift, side="right") - starts
        for k in ks
    ]


def _ranks_by_search(
    counts: np.ndarray, cluster: np.ndarray, below: np.ndarray, ks
) -> list[np.ndarray]:
    """:func:`_ranks_by_cumsum` for few clusters: a binary search per row over the window,
    whose cumulative count at index j is ``below + counts @ per_cluster[:, j]`` — work in
    clusters x log(window), not in values, per row."""
    width = cluster.size
    per_cluster = np.zeros((counts.shape[1], width), dtype=np.int64)
    per_cluster[cluster, np.arange(width)] = 1
    per_cluster = np.cumsum(per_cluster, axis=1)
    out = []
    for k in ks:
        lo, hi = np.zeros(len(counts), np.int64), np.full(len(counts), width, np.int64)
        while np.any(lo < hi):
            mid = np.minimum((lo + hi) // 2, width - 1)
            reached = below + np.einsum("rh,hr->r", counts, per_cluster[:, mid]) > k
            open_ = lo < hi
            hi = np.where(open_ & reached, mid, hi)
            lo = np.where(open_ & ~reached, mid + 1, lo)
        out.append(lo)
    return out


def weighted_percentile(
    sorted_values: np.ndarray,
    cluster: np.ndarray,
    counts: np.ndarray,
    q: float,
    total: np.ndarray | None = None,
) -> np.ndarray:
    """(r,) ``numpy.percentile(..., q)`` (linear) of each resample's duplicated sample: value
    i repeated ``counts[row, cluster[i]]`` times; ``sorted_values`` ascending. NaN for an
    empty resample.

    Exact, and cheap for a high ``q``: ranks are searched in the top of the sorted values only
    (the top ``TAIL_FACTOR x (1 − q)`` of them; a resample whose percentile lies below that
    window, which is rare, is redone over all values), by a running sum per resample — or,
    with few clusters (hours), by a binary search over per-cluster counts. ``total``: each
    resample's number of values, when the caller has it."""
    r, n = counts.shape[0], sorted_values.size
    if n == 0:
        return np.full(r, np.nan)
    if total is None:
        total = _count_sums(counts, np.bincount(cluster, minlength=counts.shape[1]))
    pos = q / 100.0 * np.maximum(total - 1, 0)
    k0 = np.floor(pos)
    k1 = np.minimum(k0 + 1, np.maximum(total - 1, 0))
    start = max(0, n - max(TAIL_MIN, int(TAIL_FACTOR * (1.0 - q / 100.0) * n)))
    window = cluster[start:]
    by_search = counts.shape[1] * (np.log2(window.size) + 2) < window.size
    if by_search:
        below = total - _count_sums(counts, np.bincount(window, minlength=counts.shape[1]))
    else:
        weights = counts[:, window]
        below = total - weights.sum(axis=1)
    i0, i1 = np.zeros(r, np.int64), np.zeros(r, np.int64)
    inside = k0 >= below
    ks = (k0[inside], k1[inside])
    if by_search:
        found = _ranks_by_search(counts[inside], window, below[inside], ks)
    else:
        found = _ranks_by_cumsum(weights[inside], below[inside], ks)
    i0[inside], i1[inside] = start + found[0], start + found[1]
    if not inside.all():
        zero = np.zeros(int((~inside).sum()))
        found = _ranks_by_cumsum(counts[~inside][:, cluster], zero, (k0[~inside], k1[~inside]))
        i0[~inside], i1[~inside] = found
    low, high = sorted_values[np.minimum(i0, n - 1)], sorted_values[np.minimum(i1, n - 1)]
    return np.where(total > 0, low + (pos - k0) * (high - low), np.nan)


@dataclass(frozen=True, eq=False)
class QuantileRatio:
    """``p95(subject) / p95(baseline)`` over the frames of a mask (paired: the same frames)."""

    subject: tuple[np.ndarray, np.ndarray]  # values ascending, and each one's cluster
    baseline: tuple[np.ndarray, np.ndarray]
    sizes: np.ndarray  # frames of each cluster
    point: float
    q: float = QUANTILE

    @classmethod
    def of(cls, res: Resampler, mask: np.ndarray, subject, baseline) -> QuantileRatio:
        mask = np.asarray(mask, dtype=bool)
        cluster = res.cluster[mask]
        parts = []
        for values in (subject, baseline):
            v = np.asarray(values, dtype=np.float64)[mask]
            order = np.argsort(v, kind="stable")
            parts.append((v[order], cluster[order]))
        point = _ratio(*(np.percentile(v, QUANTILE) if v.size else np.nan for v, _ in parts))
        return cls(parts[0], parts[1], np.bincount(cluster, minlength=res.n_clusters), point)

    def resampled(self, counts: np.ndarray) -> np.ndarray:
        (sv, sc), (bv, bc) = self.subject, self.baseline
        total = _count_sums(counts, self.sizes)  # the same frames for both models
        return _ratio(
            weighted_percentile(sv, sc, counts, self.q, total),
            weighted_percentile(bv, bc, counts, self.q, total),
        )


@dataclass(frozen=True, eq=False)
class MapDelta:
    """mAP(subject) − mAP(baseline) on the labeled frames (``cluster``: each one's cluster)."""

    subject: FlatRecords
    baseline: FlatRecords
    cluster: np.ndarray
    thresholds: tuple[int, ...]
    point: float

    @classmethod
    def of(cls, subject: FlatRecords, baseline: FlatRecords, cluster, thresholds) -> MapDelta:
        cluster = np.asarray(cluster, dtype=np.int64)
        ones = np.ones((1, cluster.size), dtype=np.int64)
        point = weighted_map(subject, ones, thresholds) - weighted_map(baseline, ones, thresholds)
        return cls(subject, baseline, cluster, tuple(thresholds), float(point[0]))

    def resampled(self, counts: np.ndarray) -> np.ndarray:
        weights = counts[:, self.cluster]
        return weighted_map(self.subject, weights, self.thresholds) - weighted_map(
            self.baseline, weights, self.thresholds
        )


def intervals(
    res: Resampler, stats: Mapping[str, Statistic], confidence: float
) -> dict[str, tuple[float, float, float]]:
    """``{name: (point, low, high)}``: every statistic on the same resamples (paired across
    checks too), percentile intervals at ``confidence``. The sums of all
    :class:`RatioOfSums` come from one product per batch."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    samples = {name: np.empty(res.n_resamples) for name in stats}
    sums = [name for name, stat in stats.items() if isinstance(stat, RatioOfSums)]
    others = [name for name in stats if name not in sums]
    vectors = np.column_stack(
        [v for name in sums for v in (stats[name].num, stats[name].den)]  # type: ignore[union-attr]
        or [np.zeros(res.n_clusters)]
    )
    done = 0
    for counts in res.batches() if stats else ():
        rows = slice(done, done + len(counts))
        summed = counts @ vectors
        for j, name in enumerate(sums):
            samples[name][rows] = _ratio(summed[:, 2 * j], summed[:, 2 * j + 1])
        for name in others:
            samples[name][rows] = stats[name].resampled(counts)
        done += len(counts)
    return {
        name: (stat.point, *percentile_interval(samples[name], confidence))
        for name, stat in stats.items()
    }


# --------------------------------------------------------------------------------------------
# rules


@dataclass(frozen=True)
class Rule:
    """How a check is judged: ``bound`` "<=" (the estimate must stay at most ``threshold``),
    ">=" (at least), "within" (inside ``threshold`` = (low, high)) or "info" (reported only);
    ``strict``: passing also needs the interval's near bound within the threshold (the gate's
    non-inferiority rule for mAP)."""

    bound: str
    threshold: float | tuple[float, float]
    strict: bool = False


def _at_least(value: float, threshold: float) -> bool:
    return value >= threshold - EPS * max(1.0, abs(threshold))


def _at_most(value: float, threshold: float) -> bool:
    return value <= threshold + EPS * max(1.0, abs(threshold))


def check_status(rule: Rule, point: float, low: float, high: float) -> str:
    """pass / fail / hold / not_enough_data / info for one check's estimate and interval."""
    if rule.bound == "info":
        return "info"
    if not all(np.isfinite(v) for v in (point, low, high)):
        return "not_enough_data"
    if rule.bound == "within":
        lo, hi = rule.threshold  # type: ignore[misc]
        if not _at_least(high, lo) or not _at_most(low, hi):
            return "fail"
        inside = _at_least(point, lo) and _at_most(point, hi)
        if rule.strict:
            inside = inside and _at_least(low, lo) and _at_most(high, hi)
        return "pass" if inside else "hold"
    thr = float(rule.threshold)  # type: ignore[arg-type]
    if rule.bound == ">=":
        if not _at_least(high, thr):
            return "fail"
        return (
            "pass" if _at_least(point, thr) and (not rule.strict or _at_least(low, thr)) else "hold"
        )
    if rule.bound == "<=":
        if not _at_most(low, thr):
            return "fail"
        return (
            "pass" if _at_most(point, thr) and (not rule.strict or _at_most(high, thr)) else "hold"
        )
    raise ValueError(f"unknown bound {rule.bound!r}")


def finite_or_none(x: Any) -> float | None:
    """A JSON-safe number: NaN and infinities become None."""
    if x is None:
        return None
    value = float(x)
    return value if np.isfinite(value) else None
