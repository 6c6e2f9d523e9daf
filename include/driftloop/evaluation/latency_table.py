"""Latency of several models side by side, without an interval (benchmark tables).

The gate's question (is the candidate slower than the champion?) is answered by
:mod:`driftloop.evaluation.latency` from paired rounds with a confidence interval; this module
times any number of models interleaved and reports each one's percentiles.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.evaluation.latency import _GcPaused, _inputs, _stats

if TYPE_CHECKING:
    from driftloop.evaluation.detector import Runner

log = logging.getLogger(__name__)


def measure_latency_interleaved(
    onnx_paths: Mapping[str, str | Path],
    images: Sequence[str | Path],
    *,
    warmup: int = 10,
    runs: int | None = None,
    threads: int = 1,
) -> dict[str, dict[str, float]]:
    """:func:`time_runners_interleaved` for ONNX files, single-threaded sessions by default
    (``threads=1``) for stable numbers."""
    from driftloop.evaluation.detector import input_size, onnx_runner, session

    if not onnx_paths:
        raise ValueError("no models to time")
    runners = {}
    for name, path in onnx_paths.items():
        sess = session(path, threads=threads)
        runners[name] = (onnx_runner(sess), input_size(sess))
    return time_runners_interleaved(runners, images, warmup=warmup, runs=runs)


def time_runners_interleaved(
    runners: Mapping[str, tuple[Runner, tuple[int, int]]],
    images: Sequence[str | Path],
    *,
    warmup: int = 10,
    runs: int | None = None,
) -> dict[str, dict[str, float]]:
    """Per-model inference latency (the model call only, preprocessed inputs), measured
    interleaved: for each image in turn every model runs once, the models' order rotating
    from image to image, so drifts in machine load hit all models alike.

    ``runners``: name → (runner, input size (H, W)). ``runs`` timed inferences per model
    (default: one per image; images repeat cyclically when ``runs`` exceeds their number),
    after ``warmup`` untimed ones each. Returns ``{name: {"p50_ms", "p95_ms", "mean_ms", "n"}}``.
    """
    if not runners:
        raise ValueError("no models to time")
    if not images:
        raise ValueError("no images to time the models on")
    names = list(runners)
    inputs = _inputs([size for _, size in runners.values()], images)
    n_runs = len(images) if runs is None else int(runs)
    log.info(
        "timing %s interleaved: %d warm-up + %d timed runs each on %d images",
        ", ".join(names),
        warmup,
        n_runs,
        len(images),
    )
    timings: dict[str, list[float]] = {name: [] for name in names}
    with _GcPaused():
        for i in range(warmup + n_runs):
            k = i % len(images)
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                run, size = runners[name]
                tensor = inputs[size][k]
                began = time.perf_counter()
                run(tensor)
                elapsed = (time.perf_counter() - began) * 1000.0
                if i >= warmup:
                    timings[name].append(elapsed)
    result = {name: _stats(values) for name, values in timings.items()}
    log.info(
        "latency over %d runs each: %s",
        n_runs,
        ", ".join(f"{name} p95 {row['p95_ms']:.2f} ms" for name, row in result.items()),
    )
    return result
