"""A whole synthetic world: every object of every day, written to a sink (the golden set,
labeled days — frames, ``frames.jsonl``, ``_SUCCESS`` —, optional traffic frames,
inference-log partitions)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from itertools import chain

from driftloop.contracts import storage
from driftloop.evaluation.golden import golden_manifest_key
from driftloop_dev.synth.frames import DEFAULT_SIZE, labeled_files
from driftloop_dev.synth.inference import partition_files
from driftloop_dev.synth.scenarios import GroundTruth, WorldSpec, ground_truth_of, world_spec
from driftloop_dev.synth.sinks import Sink
from driftloop_dev.synth.traffic import check_frames_per_day, traffic_files

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


def day_objects(
    spec: WorldSpec, day_index: int, *, image_size: int = DEFAULT_SIZE, frames_per_day: int = 0
) -> Iterator[tuple[str, bytes, str]]:
    """``(key, bytes, content type)`` of one day, in write order: labeled frames, the traffic
    frames and their manifest (``frames_per_day`` > 0), the Parquet parts, and the
    ``_SUCCESS`` marker last (readers wait for it)."""
    yield from labeled_files(spec, day_index, image_size)
    yield from traffic_files(spec, day_index, frames_per_day, image_size=image_size)
    for key, data in partition_files(spec, day_index):
        yield key, data, PARQUET_CONTENT_TYPE
    yield storage.success_key(spec.date_of(day_index)), b"", "text/plain"


def world_objects(
    spec: WorldSpec, *, image_size: int = DEFAULT_SIZE, frames_per_day: int = 0
) -> Iterator[tuple[str, bytes, str]]:
    for i in range(spec.days):
        yield from day_objects(spec, i, image_size=image_size, frames_per_day=frames_per_day)


def golden_objects() -> Iterator[tuple[str, bytes, str]]:
    """The world's golden set v1 (the fixed evaluation set), its manifest last."""
    from driftloop_dev.golden import golden_files

    files, manifest = golden_files()
    yield from files
    yield golden_manifest_key(), storage.dumps_canonical(manifest), "application/json"


def write_world(
    sink: Sink, spec: WorldSpec, *, image_size: int = DEFAULT_SIZE, frames_per_day: int = 0
) -> GroundTruth:
    """Write the world's days and its golden set (the same bytes every time) to ``sink``."""
    check_frames_per_day(spec, frames_per_day)
    for key, data, content_type in chain(
        golden_objects(),
        world_objects(spec, image_size=image_size, frames_per_day=frames_per_day),
    ):
        sink.write(key, data, content_type)
    return ground_truth_of(spec)


def generate_world(
    sink: Sink,
    scenario: str,
    *,
    days: int,
    drift_day: int | None = None,
    end_date: date | str,
    rows_per_day: int = 1000,
    labeled_per_day: int = 8,
    files_per_day: int = 2,
    seed: int = 0,
    image_size: int = DEFAULT_SIZE,
    magnitude: float | None = None,
    frames_per_day: int = 0,
    camera_looks: bool = False,
) -> GroundTruth:
    """Generate a scenario's world into ``sink`` and return its ground truth.

    ``days`` days ending at ``end_date`` (inclusive); ``drift_day`` is the 0-based index of
    the first drifted day (ignored by ``stable`` and ``corrupt``; default: 14 days before
    the end, or half-way for short worlds); ``magnitude`` is the drift's size in sd, required
    by ``brightness-shift`` and refused by the others; ``frames_per_day`` > 0 also writes each
    day's traffic frames for the batch scorer (:mod:`.traffic`); ``camera_looks`` renders the
    labeled frames through their camera (:mod:`.frames`). Same arguments, byte-identical
    objects.
    """
    if (
        not isinstance(image_size, int)
        or isinstance(image_size, bool)
        or not 96 <= image_size <= 1280
    ):
        raise ValueError(f"image_size must be an integer in [96, 1280], got {image_size!r}")
    spec = world_spec(
        scenario,
        days=days,
        drift_day=drift_day,
        end_date=end_date,
        rows_per_day=rows_per_day,
        labeled_per_day=labeled_per_day,
        files_per_day=files_per_day,
        seed=seed,
        magnitude=magnitude,
        camera_looks=camera_looks,
    )
    if not hasattr(sink, "write"):
        raise ValueError(f"sink must have a write(key, data, content_type) method, got {sink!r}")
    return write_world(sink, spec, image_size=image_size, frames_per_day=frames_per_day)
