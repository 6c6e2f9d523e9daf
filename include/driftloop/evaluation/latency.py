"""Inference latency of detectors: the gate's paired comparison, and plain interleaved timings.

The gate asks one question: is the candidate's p95 latency (INT8 ONNX, the serving artifact)
more than ``1 + latency_tolerance`` times the champion's? Two p95s measured at different
moments on a busy host differ by whatever the host did meanwhile; two models of the same
architecture at the same image size were once rejected on 3.5245 against 3.5185 ms. So the
comparison is paired, and answered with an interval:

* **paired, interleaved rounds** (:func:`time_paired_rounds`): after a warm-up, each round
  runs both models on the same input image, in ABBA order (candidate, champion, champion,
  candidate), the next round in BAAB order, so every model is as often first as last and as
  often follows itself as the other; a load burst lands on both models of a round. Both
  sessions have the same thread settings (one intra-op thread by default); only the model call
  is timed (inputs are preprocessed beforehand) and Python's garbage collector is paused
  while timing.
* **a confidence interval on the ratio** ``p95(candidate) / p95(champion)``
  (:func:`p95_ratio_interval`): a paired bootstrap over rounds — each resample draws rounds
  with replacement, the same rounds for both models, in circular blocks of consecutive
  rounds (load is correlated in time, and a block keeps a burst together) — and the
  percentile interval of the resampled ratios. Seeded: the same timings give the same
  interval.

:func:`compare_onnx_latency` does both for two ONNX files and adds each file's
:class:`~driftloop.evaluation.graph_signature.GraphSignature`; the result is a
:class:`LatencyComparison`, what the ``evaluate`` step records and the gate decides on.

:mod:`driftloop.evaluation.latency_table` times any number of models (per-model p50/p95, no
interval) for benchmarks that tabulate several artifacts.

numpy, onnxruntime and the detector module are imported inside functions, so that importing
:class:`LatencyComparison` (the gate does) stays cheap.
"""

from __future__ import annotations

import gc
import logging
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from driftloop.evaluation.detector import Runner

log = logging.getLogger(__name__)

#: the order of one round: candidate (A) and champion (B); odd rounds run the mirror image
ROUND_ORDERS = (
    ("candidate", "champion", "champion", "candidate"),
    ("champion", "candidate", "candidate", "champion"),
)
RUNS_PER_ROUND = 2  # timed runs of each model in one round
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
QUANTILE = 95.0
METHOD = (
    "paired interleaved rounds (ABBA/BAAB, same input per round, same thread settings); "
    "CI of p95(candidate)/p95(champion) by a paired circular-block bootstrap over rounds"
)


# --------------------------------------------------------------------------------------------
# the result


def _finite(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class LatencyComparison:
    """Candidate vs champion latency from paired rounds.

    ``ratio``/``low``/``high``: ``p95(candidate) / p95(champion)`` over all rounds and its
    ``confidence`` percentile interval (``n_resamples`` resamples in blocks of
    ``block_rounds`` rounds, ``seed``). ``candidate``/``champion``: each model's
    ``{"p50_ms", "p95_ms", "mean_ms", "n"}``. ``candidate_graph``/``champion_graph``: the
    :meth:`GraphSignature.to_dict` of each serving artifact (None when not computed).
    """

    ratio: float
    low: float
    high: float
    confidence: float
    rounds: int
    n_resamples: int
    block_rounds: int
    seed: int | None
    candidate: dict[str, Any]
    champion: dict[str, Any]
    runs_per_round: int = RUNS_PER_ROUND
    warmup: int = 0
    threads: int | None = None
    method: str = METHOD
    candidate_graph: dict[str, Any] | None = None
    champion_graph: dict[str, Any] | None = None

    @property
    def same_graph(self) -> bool | None:
        """Whether both artifacts have the same graph signature (None: unknown)."""
        from driftloop.evaluation.graph_signature import same_graph

        return same_graph(self.candidate_graph, self.champion_graph)

    @property
    def flops_ratio(self) -> float | None:
        """Candidate FLOPs / champion FLOPs (None when either is unknown or incomplete)."""
        cand, champ = self.candidate_graph or {}, self.champion_graph or {}
        if not (cand.get("macs_complete") and champ.get("macs_complete")):
            return None
        a, b = _finite(cand.get("flops")), _finite(champ.get("flops"))
        return a / b if a is not None and b else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("ratio", "low", "high"):
                value = _finite(value)
            out[f.name] = value
        out["same_graph"] = self.same_graph
        out["flops_ratio"] = self.flops_ratio
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LatencyComparison:
        """From :meth:`to_dict` (a ledger row); missing numbers become NaN / 0, which the gate
        refuses, never a default that could pass."""

        def num(key: str) -> float:
            value = _finite(raw.get(key))
            return float("nan") if value is None else value

        def count(key: str) -> int:
            value = _finite(raw.get(key))
            return int(value) if value is not None else 0

        return cls(
            ratio=num("ratio"),
            low=num("low"),
            high=num("high"),
            confidence=num("confidence"),
            rounds=count("rounds"),
            n_resamples=count("n_resamples"),
            block_rounds=count("block_rounds"),
            seed=raw.get("seed"),
            candidate=dict(raw.get("candidate") or {}),
            champion=dict(raw.get("champion") or {}),
            runs_per_round=count("runs_per_round"),
            warmup=count("warmup"),
            threads=raw.get("threads"),
            method=str(raw.get("method") or ""),
            candidate_graph=raw.get("candidate_graph"),
            champion_graph=raw.get("champion_graph"),
        )

    def summary(self) -> str:
        """One line: ``p95 ratio 1.004, 95 % CI [0.981, 1.027], 300 paired rounds``."""
        low, high, ratio = _finite(self.low), _finite(self.high), _finite(self.ratio)
        ci = "n/a" if low is None or high is None else f"[{low:.3f}, {high:.3f}]"
        return (
            f"p95 ratio candidate/champion {'n/a' if ratio is None else f'{ratio:.3f}'}, "
            f"{self.confidence:.0%} CI {ci}, {self.rounds} paired rounds"
        )


# --------------------------------------------------------------------------------------------
# timing


def _percentile(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _stats(values) -> dict[str, float]:
    flat = [float(v) for v in values]
    return {
        "p50_ms": _percentile(flat, 50),
        "p95_ms": _percentile(flat, QUANTILE),
        "mean_ms": statistics.fmean(flat),
        "n": len(flat),
    }


def _inputs(sizes, images: Sequence[str | Path]) -> dict[tuple[int, int], list]:
    from driftloop.evaluation.detector import load_input

    cache: dict[tuple[int, int], list] = {}
    for size in sizes:
        if size not in cache:
            cache[size] = [load_input(p, size)[0] for p in images]
    return cache


class _GcPaused:
    """Python's cyclic garbage collector off while timing (a collection inside a timed call
    is noise that lands on one model only); restored as it was."""

    def __enter__(self):
        self.was_enabled = gc.isenabled()
        gc.collect()
        gc.disable()

    def __exit__(self, *exc):
        if self.was_enabled:
            gc.enable()


def time_paired_rounds(
    candidate: tuple[Runner, tuple[int, int]],
    champion: tuple[Runner, tuple[int, int]],
    images: Sequence[str | Path],
    *,
    rounds: int,
    warmup: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-round timings (ms) of two models, ``(candidate, champion)`` arrays of shape
    ``(rounds, 2)``.

    Each model is a ``(runner, input size (H, W))``. After ``warmup`` untimed rounds, round
    ``r`` runs both models on image ``r mod len(images)`` (each at its own input size) in
    the order :data:`ROUND_ORDERS` ``[r mod 2]``; only the model call is timed."""
    import numpy as np

    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if not images:
        raise ValueError("no images to time the models on")
    runners = {"candidate": candidate, "champion": champion}
    inputs = _inputs([size for _, size in runners.values()], images)
    timings = {name: np.empty((rounds, RUNS_PER_ROUND), dtype=np.float64) for name in runners}
    log.info(
        "timing candidate and champion in paired rounds: %d warm-up + %d timed rounds "
        "(ABBA/BAAB) on %d images",
        warmup,
        rounds,
        len(images),
    )
    with _GcPaused():
        for i in range(warmup + rounds):
            r = i - warmup
            k = i % len(images)
            slot = dict.fromkeys(runners, 0)
            for name in ROUND_ORDERS[i % 2]:
                run, size = runners[name]
                tensor = inputs[size][k]
                began = time.perf_counter()
                run(tensor)
                elapsed = (time.perf_counter() - began) * 1000.0
                if r >= 0:
                    timings[name][r, slot[name]] = elapsed
                slot[name] += 1
    return timings["candidate"], timings["champion"]


def default_block_rounds(rounds: int) -> int:
    """Block length of the bootstrap: about the cube root of the number of rounds (the usual
    order for block bootstraps), at least 1."""
    return max(1, round(rounds ** (1.0 / 3.0)))


def p95_ratio_interval(
    candidate_ms,
    champion_ms,
    *,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = DEFAULT_SEED,
    block_rounds: int | None = None,
) -> tuple[float, float, float, int]:
    """``(ratio, low, high, block_rounds)``: ``p95(candidate) / p95(champion)`` over all
    timings and its percentile interval from a paired circular-block bootstrap over rounds.

    ``candidate_ms``/``champion_ms``: ``(rounds, runs per round)`` arrays (or one timing per
    round, 1-D); row ``r`` of both is the same round. A resample draws
    ``ceil(rounds / block)`` block starts uniformly (``numpy.random.default_rng(seed)``),
    takes ``block`` consecutive rounds from each (wrapping around), keeps ``rounds`` of them,
    and uses the same rounds for both models."""
    import numpy as np

    from driftloop.evaluation.bootstrap import percentile_interval

    cand = np.asarray(candidate_ms, dtype=np.float64)
    champ = np.asarray(champion_ms, dtype=np.float64)
    cand = cand.reshape(len(cand), -1)
    champ = champ.reshape(len(champ), -1)
    if cand.shape[0] != champ.shape[0]:
        raise ValueError(
            f"paired rounds differ: {cand.shape[0]} candidate rounds, {champ.shape[0]} champion"
        )
    rounds = cand.shape[0]
    if rounds < 2:
        raise ValueError(f"a latency interval needs at least 2 rounds, got {rounds}")
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not (np.all(np.isfinite(cand)) and np.all(np.isfinite(champ))):
        raise ValueError("latency timings contain NaN or infinite values")
    if np.any(champ <= 0) or np.any(cand <= 0):
        raise ValueError("latency timings must be positive")
    block = default_block_rounds(rounds) if block_rounds is None else int(block_rounds)
    if not 1 <= block <= rounds:
        raise ValueError(f"block_rounds must be in [1, {rounds}], got {block}")
    point = float(np.percentile(cand, QUANTILE) / np.percentile(champ, QUANTILE))
    rng = np.random.default_rng(seed)
    n_blocks = -(-rounds // block)
    starts = rng.integers(0, rounds, size=(n_resamples, n_blocks))
    picked = ((starts[:, :, None] + np.arange(block)) % rounds).reshape(n_resamples, -1)
    picked = picked[:, :rounds]
    cand_p95 = np.percentile(cand[picked].reshape(n_resamples, -1), QUANTILE, axis=1)
    champ_p95 = np.percentile(champ[picked].reshape(n_resamples, -1), QUANTILE, axis=1)
    low, high = percentile_interval(cand_p95 / champ_p95, confidence)
    return point, low, high, block


def compare_latency(
    candidate: tuple[Runner, tuple[int, int]],
    champion: tuple[Runner, tuple[int, int]],
    images: Sequence[str | Path],
    *,
    rounds: int,
    warmup: int = 10,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = DEFAULT_SEED,
    threads: int | None = None,
) -> LatencyComparison:
    """:func:`time_paired_rounds` then :func:`p95_ratio_interval`, as a
    :class:`LatencyComparison` (without graph signatures; ``threads`` is recorded only)."""
    cand_ms, champ_ms = time_paired_rounds(
        candidate, champion, images, rounds=rounds, warmup=warmup
    )
    ratio, low, high, block = p95_ratio_interval(
        cand_ms, champ_ms, confidence=confidence, n_resamples=n_resamples, seed=seed
    )
    result = LatencyComparison(
        ratio=ratio,
        low=low,
        high=high,
        confidence=confidence,
        rounds=rounds,
        n_resamples=n_resamples,
        block_rounds=block,
        seed=seed,
        candidate=_stats(cand_ms.ravel()),
        champion=_stats(champ_ms.ravel()),
        warmup=warmup,
        threads=threads,
    )
    log.info(
        "latency: candidate p95 %.2f ms, champion p95 %.2f ms; %s",
        result.candidate["p95_ms"],
        result.champion["p95_ms"],
        result.summary(),
    )
    return result


def compare_onnx_latency(
    candidate_onnx: str | Path,
    champion_onnx: str | Path,
    images: Sequence[str | Path],
    *,
    rounds: int,
    warmup: int = 10,
    threads: int = 1,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = DEFAULT_SEED,
) -> LatencyComparison:
    """:func:`compare_latency` for two ONNX files — one session each, both with ``threads``
    intra-op threads (1: sequential, the steadiest numbers) — plus both files' graph
    signatures."""
    from dataclasses import replace

    from driftloop.evaluation.detector import input_size, onnx_runner, session
    from driftloop.evaluation.graph_signature import graph_signature

    models = {}
    for name, path in (("candidate", candidate_onnx), ("champion", champion_onnx)):
        sess = session(path, threads=threads)
        models[name] = (onnx_runner(sess), input_size(sess))
    result = compare_latency(
        models["candidate"],
        models["champion"],
        images,
        rounds=rounds,
        warmup=warmup,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
        threads=threads,
    )
    return replace(
        result,
        candidate_graph=graph_signature(candidate_onnx).to_dict(),
        champion_graph=graph_signature(champion_onnx).to_dict(),
    )
