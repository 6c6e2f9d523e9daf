"""``driftloop_dev.synth``: a seeded, deterministic synthetic world for the drift loop.

It writes what the serving side and the labeling team would write to S3 — daily
inference-log partitions (``inference/dt=D/part-*.parquet`` + ``_SUCCESS``, exactly
:func:`driftloop.contracts.schema.arrow_schema`) and labeled days (``labeled/dt=D/{images,labels}/``,
PNG + YOLO txt, ``frames.jsonl`` with each frame's camera, ``_SUCCESS`` last) — under a named
scenario whose ground truth is known::

    from driftloop_dev.synth import MemorySink, generate_world

    sink = MemorySink()
    truth = generate_world(sink, "abrupt", days=42, drift_day=28,
                           end_date="2024-06-30", rows_per_day=2000)
    truth.drifted_columns   # ('brightness', 'mean_r', ..., 'camera_id', 'embedding')

Scenarios (:data:`SCENARIOS`): ``stable``, ``abrupt``, ``gradual``, ``class-mix``,
``confidence-decay``, ``brightness-shift`` (a shift of ``magnitude`` sd) and ``corrupt`` (six
broken partitions, one defect each).

Layers: :mod:`.scenarios` (definitions, validation, ground truth; no heavy imports),
:mod:`.inference` (numpy rows -> Arrow table -> Parquet bytes, defects), :mod:`.frames`
(scenes -> PNG + labels), :mod:`.traffic` (a day's camera frames + manifest for
``driftloop serve-batch``), :mod:`.world` (all objects of a world -> a sink),
:mod:`.sinks` (S3, memory, directory). Command line: ``python -m driftloop_dev.synth``.

Importing this package is cheap (numpy, pyarrow and PIL load on first use of the
generator), so DAG files may read :data:`SCENARIOS` at parse time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from driftloop_dev.synth.scenarios import (
    DEFECTS,
    SCENARIOS,
    DayParams,
    GroundTruth,
    Scenario,
    WorldSpec,
    ground_truth,
    ground_truth_of,
    world_spec,
)
from driftloop_dev.synth.sinks import DirectorySink, MemorySink, S3Sink, Sink

if TYPE_CHECKING:  # pragma: no cover
    from driftloop_dev.synth.frames import labeled_files, render, sample_scene
    from driftloop_dev.synth.inference import inference_table, partition_files
    from driftloop_dev.synth.traffic import traffic_files, write_traffic
    from driftloop_dev.synth.world import day_objects, generate_world, world_objects, write_world

_LAZY = {
    "generate_world": "driftloop_dev.synth.world",
    "write_world": "driftloop_dev.synth.world",
    "world_objects": "driftloop_dev.synth.world",
    "day_objects": "driftloop_dev.synth.world",
    "inference_table": "driftloop_dev.synth.inference",
    "partition_files": "driftloop_dev.synth.inference",
    "labeled_files": "driftloop_dev.synth.frames",
    "render": "driftloop_dev.synth.frames",
    "sample_scene": "driftloop_dev.synth.frames",
    "traffic_files": "driftloop_dev.synth.traffic",
    "write_traffic": "driftloop_dev.synth.traffic",
}

__all__ = [
    "DEFECTS",
    "SCENARIOS",
    "DayParams",
    "DirectorySink",
    "GroundTruth",
    "MemorySink",
    "S3Sink",
    "Scenario",
    "Sink",
    "WorldSpec",
    # lazily imported (numpy / pyarrow / PIL)
    "day_objects",
    "generate_world",
    "ground_truth",
    "ground_truth_of",
    "inference_table",
    "labeled_files",
    "partition_files",
    "render",
    "sample_scene",
    "traffic_files",
    "world_objects",
    "world_spec",
    "write_traffic",
    "write_world",
]
assert set(_LAZY) <= set(__all__)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'driftloop_dev.synth' has no attribute {name!r}")
