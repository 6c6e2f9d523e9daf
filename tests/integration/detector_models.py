"""Tiny real detectors for the integration tests that run models: YOLO11n with random weights,
exported by the project's own exporter, in about 5 s each.

Each detector is YOLO11n (two classes, ``ball`` and ``player``) with random weights of its
seed and the class logits' biases set so that it finds things (no training run: the tests
that use them are about serving and references, not accuracy), exported to ONNX FP32 + static
INT8 by the training image's exporter (``python -m driftloop.training.export`` in
``.venv-train``), calibrated on a stable synthetic world's labeled frames.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from tests.conftest import REPO

TRAIN_PYTHON = REPO / ".venv-train" / "bin" / "python"
MISSING_TRAINING_ENV = (
    f"{TRAIN_PYTHON} is missing: `make train-env` builds the training environment"
)

BUILD = """
import sys
from driftloop.training import yolo_env
yolo_env.configure()
import torch
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel
seed, out, ball, player = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
torch.manual_seed(seed)
yolo = YOLO("yolo11n.yaml")
yolo.model = DetectionModel("yolo11n.yaml", nc=2, verbose=False)
yolo.model.names = {0: "ball", 1: "player"}
for branch in yolo.model.model[-1].cv3:  # the class logits' last conv
    branch[-1].bias.data[:] = torch.tensor([ball, player])
yolo.save(out)
"""


def train_env(root: Path) -> dict[str, str]:
    return {**os.environ, "YOLO_CONFIG_DIR": str(root / "ultralytics"), "YOLO_OFFLINE": "1"}


def export_detectors(
    root: Path, detectors: Mapping[str, tuple[int, float, float]], *, imgsz: int, end: date
) -> dict[str, dict[str, Path]]:
    """``{name: {"fp32": path, "int8": path}}`` of ``detectors`` (``{name: (seed, ball bias,
    player bias)}``), built and exported under ``root``."""
    from driftloop_dev.synth import MemorySink, generate_world

    calibration = root / "calibration"
    calibration.mkdir()
    sink = MemorySink()
    generate_world(
        sink, "stable", days=2, end_date=end, rows_per_day=1, labeled_per_day=16, files_per_day=1
    )
    for key in sink.keys("labeled/"):
        if key.endswith(".png"):
            (calibration / Path(key).name).write_bytes(sink[key])
    found = {}
    for name, (seed, ball, player) in detectors.items():
        weights = root / f"{name}.pt"
        args = [str(seed), str(weights), str(ball), str(player)]
        done = subprocess.run(
            [str(TRAIN_PYTHON), "-c", BUILD, *args],
            env=train_env(root),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        done = subprocess.run(
            [
                str(TRAIN_PYTHON), "-m", "driftloop.training.export", "--weights", str(weights),
                "--imgsz", str(imgsz), "--calibration-dir", str(calibration),
                "--out-dir", str(root / name), "--json",
            ],
            env=train_env(root), capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        found[name] = {kind: Path(result[kind]["path"]) for kind in ("fp32", "int8")}
    return found
