"""A whole synthetic world: every object of every day, written to a sink."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from driftloop import storage
from driftloop.synth.frames import DEFAULT_SIZE, labeled_files
from driftloop.synth.inference import partition_files
from driftloop.synth.scenarios import GroundTruth, WorldSpec, ground_truth_of, world_spec
from driftloop.synth.sinks import Sink

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


def day_objects(
    spec: WorldSpec, day_index: int, *, image_size: int = DEFAULT_SIZE
) -> Iterator[tuple[str, bytes, str]]:
    """``(key, bytes, content type)`` of one day, in write order: labeled frames, the
    Parquet parts, and the ``_SUCCESS`` marker last (readers wait for it)."""
    yield from labeled_files(spec, day_index, image_size)
    for key, data in partition_files(spec, day_index):
        yield key, data, PARQUET_CONTENT_TYPE
    yield storage.success_key(spec.date_of(day_index)), b"", "text/plain"


def world_objects(
    spec: WorldSpec, *, image_size: int = DEFAULT_SIZE
) -> Iterator[tuple[str, bytes, str]]:
    for i in range(spec.days):
        yield from day_objects(spec, i, image_size=image_size)


def write_world(sink: Sink, spec: WorldSpec, *, image_size: int = DEFAULT_SIZE) -> GroundTruth:
    for key, data, content_type in world_objects(spec, image_size=image_size):
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
) -> GroundTruth:
    """Generate a scenario's world into ``sink`` and return its ground truth.

    ``days`` days ending at ``end_date`` (inclusive); ``drift_day`` is the 0-based index of
    the first drifted day (ignored by ``stable`` and ``corrupt``; default: 14 days before
    the end, or half-way for short worlds). Same arguments, byte-identical objects.
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
    )
    if not hasattr(sink, "write"):
        raise ValueError(f"sink must have a write(key, data, content_type) method, got {sink!r}")
    return write_world(sink, spec, image_size=image_size)
