"""Which frames of a day go to the labelers: per-frame score, quotas, budget, no duplicates.

Pure: no I/O, no clock, no randomness; the same candidates, policy and exclusions give the
same picks in the same order.

**Signals** (each in [0, 1], computed by :mod:`driftloop.labeling.signals`):

- ``uncertainty`` ``1 - |2c - 1|``, ``c`` the served model's mean confidence on the frame
  (the inference log's ``confidence_mean``): 1 at c = 0.5, 0 at c = 0 or 1 — least confident;
- ``disagreement`` ``1 - F1`` of the challenger's boxes against the champion's on a frame
  both scored (shadow, canary, guard; :func:`driftloop.promotion.rollout_agreement.agreement_f1`);
  0 on frames one model scored;
- ``novelty`` the percentile of the frame's mean distance to its k nearest reference
  embeddings among the reference frames' own (leave-one-out) distances: ~U(0, 1) for a frame
  like the reference, 1 beyond all of it; 0 without a reference;
- ``new_camera`` 1 when the frame's camera is absent from the reference (the champion's
  training window), else 0.

**Score**: ``sum(w_s * s) / sum(w_s)`` with the policy's weights (``labeling.weights``), in
[0, 1]. **Selection** (:func:`select`), at most ``budget_per_day`` frames:

1. frames in ``exclude`` (queued in an earlier batch, or already labeled) never compete;
2. quotas, in the order of :data:`~driftloop.config.labeling_policy.SIGNALS`: for each signal,
   ``floor(quota * budget)`` frames not yet picked whose signal is > 0, highest signal first
   (ties: higher score, then frame id); ``new_camera`` takes the new cameras' frames in turn,
   camera by camera (each camera's best-scored first), so one new camera does not take all;
3. the rest of the budget: frames with a score > 0, highest score first (ties: frame id).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from driftloop.config.labeling_policy import SIGNALS, Labeling

#: signals are rounded to this many decimals before ranking: the same input ranks the same
#: on every platform (BLAS summation order must not reorder near-ties)
DECIMALS = 6
#: a signal at or above this value is named among a frame's reasons
REASON_LEVEL = 0.5


@dataclass(frozen=True)
class Candidate:
    """A served frame that could be labeled, with its signals."""

    frame_id: str
    camera_id: str
    uncertainty: float = 0.0
    disagreement: float = 0.0
    novelty: float = 0.0
    new_camera: bool = False

    def __post_init__(self) -> None:
        for name in ("uncertainty", "disagreement", "novelty"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValueError(
                    f"frame {self.frame_id!r}: {name} must be in [0, 1], got {value!r}"
                )

    def signals(self) -> dict[str, float]:
        return {
            "uncertainty": round(float(self.uncertainty), DECIMALS),
            "disagreement": round(float(self.disagreement), DECIMALS),
            "novelty": round(float(self.novelty), DECIMALS),
            "new_camera": 1.0 if self.new_camera else 0.0,
        }


@dataclass(frozen=True)
class Pick:
    """A frame chosen for labeling and why."""

    frame_id: str
    camera_id: str
    score: float
    picked_by: str  # "quota:<signal>" or "score"
    signals: dict[str, float]
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "frame_id": self.frame_id,
            "camera_id": self.camera_id,
            "score": self.score,
            "picked_by": self.picked_by,
            "signals": dict(self.signals),
            "reasons": list(self.reasons),
        }


def score_of(signals: Mapping[str, float], policy: Labeling) -> float:
    """The weighted mean of the signals (weights: ``policy.weights``), in [0, 1]."""
    weights = {s: float(getattr(policy.weights, s)) for s in SIGNALS}
    total = sum(weights.values())
    return round(sum(weights[s] * signals[s] for s in SIGNALS) / total, DECIMALS)


def reasons_of(signals: Mapping[str, float], camera_id: str) -> tuple[str, ...]:
    """Human-readable reasons: the signals at or above :data:`REASON_LEVEL`, strongest first."""
    words = {
        "uncertainty": "the model is unsure (uncertainty {:.2f})",
        "disagreement": "champion and challenger disagree (disagreement {:.2f})",
        "novelty": "far from the reference in embedding space (novelty {:.2f})",
    }
    out = []
    if signals["new_camera"]:
        out.append(f"camera {camera_id} is not in the reference")
    ranked = sorted(words, key=lambda s: (-signals[s], s))
    out += [words[s].format(signals[s]) for s in ranked if signals[s] >= REASON_LEVEL]
    return tuple(out)


def _round_robin_by_camera(ranked: Sequence[Candidate]) -> list[Candidate]:
    """``ranked`` reordered to take one frame of each camera in turn (cameras by name)."""
    queues: dict[str, list[Candidate]] = {}
    for c in ranked:
        queues.setdefault(c.camera_id, []).append(c)
    order: list[Candidate] = []
    depth = 0
    while len(order) < len(ranked):
        for camera in sorted(queues):
            if depth < len(queues[camera]):
                order.append(queues[camera][depth])
        depth += 1
    return order


def select(
    candidates: Iterable[Candidate], policy: Labeling, exclude: Iterable[str] = ()
) -> list[Pick]:
    """The day's picks (see the module doc), best score first (ties: frame id). A frame id
    listed twice among the candidates is an error naming it."""
    seen: set[str] = set()
    excluded = set(exclude)
    pool: list[Candidate] = []
    for c in candidates:
        if c.frame_id in seen:
            raise ValueError(f"frame {c.frame_id!r} is a candidate twice")
        seen.add(c.frame_id)
        if c.frame_id not in excluded:
            pool.append(c)
    signals = {c.frame_id: c.signals() for c in pool}
    scores = {c.frame_id: score_of(signals[c.frame_id], policy) for c in pool}
    by_score = sorted(pool, key=lambda c: (-scores[c.frame_id], c.frame_id))
    budget = policy.budget_per_day
    chosen: dict[str, str] = {}  # frame id -> picked_by

    for signal in SIGNALS:
        quota = math.floor(float(getattr(policy.quotas, signal)) * budget + 1e-9)
        if quota <= 0:
            continue
        ranked = sorted(
            (c for c in by_score if c.frame_id not in chosen and signals[c.frame_id][signal] > 0),
            key=lambda c: (-signals[c.frame_id][signal], -scores[c.frame_id], c.frame_id),
        )
        if signal == "new_camera":
            ranked = _round_robin_by_camera(ranked)
        for c in ranked[: min(quota, budget - len(chosen))]:
            chosen[c.frame_id] = f"quota:{signal}"

    for c in by_score:
        if len(chosen) >= budget:
            break
        if c.frame_id not in chosen and scores[c.frame_id] > 0:
            chosen[c.frame_id] = "score"

    picks = [
        Pick(
            c.frame_id,
            c.camera_id,
            scores[c.frame_id],
            chosen[c.frame_id],
            signals[c.frame_id],
            reasons_of(signals[c.frame_id], c.camera_id),
        )
        for c in by_score
        if c.frame_id in chosen
    ]
    return picks
