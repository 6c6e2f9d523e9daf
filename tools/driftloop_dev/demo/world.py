"""The demo's world: what the cameras and the labeling team leave in S3, never what a model saw.

Every day of the world gets its labeled frames (``labeled/dt=D/``: the training and evaluation
data), and the days the demo needs gets its camera traffic (``frames/dt=D/`` + the manifest
``_frames.jsonl``, :mod:`driftloop_dev.synth.traffic`). No day gets a synthetic inference log:
the inference logs the drift checks read are written by ``driftloop serve-batch``
(:mod:`.serving`) from the models' real outputs, and a new model's drift reference is its own
outputs on its training window's frames (``retrain_detector``'s ``reference_profile``). So no
statistic of the demo mixes a model's outputs with the generator's.

The rollout days' traffic is written when the demo serves them (:func:`write_day_traffic`),
sized for the stage (a canary day needs more frames than a shadow day): a camera delivers a
day when it has happened.

Days render in :data:`RENDER_PROCESSES` processes (PNG encoding is most of the work); the S3
writes of a day go to a small thread pool in this process while the next days render.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, wait

from driftloop_dev.synth.frames import DEFAULT_SIZE, labeled_files
from driftloop_dev.synth.scenarios import GroundTruth, WorldSpec, ground_truth_of, world_spec
from driftloop_dev.synth.sinks import Sink
from driftloop_dev.synth.traffic import traffic_files
from driftloop_dev.synth.world import golden_objects

SCENARIO = "abrupt"
#: parallel S3 writes while the next day renders
WRITE_THREADS = 8
#: processes rendering days (spawned: this process has threads, which fork does not copy safely)
RENDER_PROCESSES = 2


def demo_spec(
    *, days: int, drift_day: int, end_date: str, labeled_per_day: int, seed: int = 0
) -> WorldSpec:
    """The ``abrupt`` world (a lighting drop and a new camera from ``drift_day``). Its
    ``rows_per_day`` is the generator's default: no inference-log row is ever written."""
    return world_spec(
        SCENARIO,
        days=days,
        drift_day=drift_day,
        end_date=end_date,
        labeled_per_day=labeled_per_day,
        seed=seed,
    )


class _Writer:
    """Writes ``(key, bytes, content type)`` batches to a sink on a thread pool, one batch in
    flight while the caller renders the next (bounded memory)."""

    def __init__(self, sink: Sink, threads: int = WRITE_THREADS):
        self.sink = sink
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="demo-world")
        self.pending: list[Future] = []
        self.objects = 0

    def write(self, files: Iterable[tuple[str, bytes, str]]) -> None:
        self.flush()
        self.pending = [self.pool.submit(self.sink.write, *item) for item in files]
        self.objects += len(self.pending)

    def flush(self) -> None:
        done, _ = wait(self.pending)
        self.pending = []
        for future in done:
            future.result()  # the first failed write fails the world

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.pool.shutdown(wait=True)


def write_demo_world(
    sink: Sink,
    spec: WorldSpec,
    *,
    traffic_days: Iterable[int],
    frames_per_day: int,
    image_size: int = DEFAULT_SIZE,
) -> tuple[GroundTruth, int]:
    """The golden set, every day's labeled frames and the traffic of ``traffic_days``
    (indexes) with ``frames_per_day`` frames each. Returns the ground truth and the number of
    objects written."""
    with_traffic = set(traffic_days)
    jobs = [
        (spec, index, frames_per_day if index in with_traffic else 0, image_size)
        for index in range(spec.days)
    ]
    context = multiprocessing.get_context("spawn")
    writer = _Writer(sink)
    try:
        with ProcessPoolExecutor(max_workers=RENDER_PROCESSES, mp_context=context) as pool:
            writer.write(golden_objects())
            for files in pool.map(_day_files, *zip(*jobs, strict=True)):
                # a labeled day's _SUCCESS after the day's other objects (batches are in order)
                writer.write([f for f in files if not f[0].endswith("/_SUCCESS")])
                writer.write([f for f in files if f[0].endswith("/_SUCCESS")])
    finally:
        writer.close()
    return ground_truth_of(spec), writer.objects


def _day_files(
    spec: WorldSpec, index: int, frames: int, image_size: int
) -> list[tuple[str, bytes, str]]:
    """A day's labeled frames and, with ``frames`` > 0, its traffic (a render process's job)."""
    files = labeled_files(spec, index, image_size)
    if frames:
        files += traffic_files(spec, index, frames, image_size=image_size)
    return files


def write_day_traffic(
    sink: Sink, spec: WorldSpec, index: int, frames: int, *, image_size: int = DEFAULT_SIZE
) -> int:
    """One day's traffic (``frames`` frames and the manifest, written last); returns the
    number of frames."""
    files = traffic_files(spec, index, frames, image_size=image_size)
    writer = _Writer(sink)
    try:
        writer.write(files[:-1])
        writer.write(files[-1:])  # the manifest after its frames: a reader finds them all
    finally:
        writer.close()
    return frames
