"""What a retraining run may ask of the trainer: base models and tunable Ultralytics arguments.

Shared by the Airflow side (the ``base`` and ``hyperparameters`` Params, the training arguments)
and the training entrypoint (``--base``, ``--hyp``), which checks them again: the pod may be
started with arguments that did not come through the DAG. Standard library only (the DAG file
imports the Params at parse time; the training image has no Airflow).

- **Base models**: the champion's weights (resolved by the Airflow side and pinned to their
  recorded SHA-256) or one of :data:`BASE_MODEL_YAMLS`, Ultralytics' bundled model configs the
  project trains from. A yaml is a network description, not code; weights are a pickle, so
  weights are only ever loaded with a hash the registry recorded (and with Ultralytics' safe
  loading on, :data:`SAFE_LOAD_ENV`).
- **Hyper-parameters**: only :data:`TUNABLE_HYPERPARAMETERS` (optimiser, learning-rate
  schedule, loss gains, augmentation). Everything else is refused by name: the bounded Params
  (``epochs``, ``imgsz``, ``batch``), the data and model (``data``, ``model``, ``fraction``,
  ``time``, ``resume``, ``pretrained``, ``single_cls``), where files go (``project``, ``name``,
  ``save_dir``, ``exist_ok``, ``cache``), the device, and whatever a later Ultralytics adds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

#: the Param value that fine-tunes the current champion's weights
CHAMPION_BASE = "champion"
#: Ultralytics model configs (bundled with the package, resolved by name, offline) a run may
#: train from scratch: the nano and small YOLO11 / YOLOv8 detectors
BASE_MODEL_YAMLS: tuple[str, ...] = ("yolo11n.yaml", "yolo11s.yaml", "yolov8n.yaml", "yolov8s.yaml")
#: the environment switch of Ultralytics 8.4 (``ultralytics.utils.SAFE_LOAD``, read when
#: ``ultralytics`` is imported) that makes ``torch_safe_load`` use ``torch.load(weights_only=True)``
#: with an allow-list of Ultralytics/torch model classes instead of unpickling anything
SAFE_LOAD_ENV = {"ULTRALYTICS_SAFE_LOAD": "1"}

OPTIMIZERS = ("SGD", "MuSGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSProp", "auto")
_NUMBER = "number"
_BOOL = "boolean"
_INT_OR_LIST = "freeze"
#: Ultralytics train arguments a run may tune, by kind of value
TUNABLE_HYPERPARAMETERS: dict[str, str] = {
    "optimizer": "optimizer",
    **dict.fromkeys(
        (
            "lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum",
            "warmup_bias_lr", "box", "cls", "cls_pw", "dfl", "nbs", "hsv_h", "hsv_s", "hsv_v",
            "degrees", "translate", "scale", "shear", "perspective", "flipud", "fliplr", "bgr",
            "mosaic", "mixup", "cutmix", "close_mosaic", "multi_scale",
        ),
        _NUMBER,
    ),
    "cos_lr": _BOOL,
    "rect": _BOOL,
    "freeze": _INT_OR_LIST,
}  # fmt: skip
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DisallowedInput(ValueError):
    """A base model or hyper-parameter outside the allow-lists; the message names it."""


def check_base_name(base: str, *, source: str = "base") -> str:
    """``base`` when it is ``champion`` or an allow-listed model yaml; else DisallowedInput."""
    if base == CHAMPION_BASE or base in BASE_MODEL_YAMLS:
        return base
    raise DisallowedInput(
        f"{source} {base!r} is not allowed: give {CHAMPION_BASE!r} (fine-tune the champion's "
        f"recorded weights) or one of the model yamls {', '.join(BASE_MODEL_YAMLS)}"
    )


def check_sha256(value: str, *, source: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise DisallowedInput(f"{source} must be a SHA-256 (64 lowercase hex), got {value!r}")
    return value


def _check_value(key: str, kind: str, value: Any, source: str) -> None:
    def refuse(expected: str) -> None:
        raise DisallowedInput(f"{source} {key}={value!r}: expected {expected}")

    if kind == "optimizer":
        if value not in OPTIMIZERS:
            refuse(f"one of {', '.join(OPTIMIZERS)}")
    elif kind == _BOOL:
        if not isinstance(value, bool):
            refuse("true or false")
    elif kind == _NUMBER:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            refuse("a finite number")
    else:  # freeze: the first N layers, or a list of layer indices
        items = value if isinstance(value, list) else [value]
        if not items or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in items
        ):
            refuse("a non-negative integer or a list of them")


def check_hyperparameters(
    hyperparameters: Mapping[str, Any] | None, *, source: str = "hyperparameters"
) -> dict[str, Any]:
    """``hyperparameters`` when every key is tunable and every value of the right kind;
    DisallowedInput naming the first key that is not (and why)."""
    if hyperparameters is None:
        return {}
    if not isinstance(hyperparameters, Mapping):
        raise DisallowedInput(f"{source} must be a mapping of name: value, got {hyperparameters!r}")
    for key, value in hyperparameters.items():
        kind = TUNABLE_HYPERPARAMETERS.get(key)
        if kind is None:
            raise DisallowedInput(
                f"{source} key {key!r} may not be set: only the tunable Ultralytics arguments "
                f"{', '.join(sorted(TUNABLE_HYPERPARAMETERS))} may (epochs, imgsz and batch are "
                "Params with bounds; the data, model, device and output paths are the run's own)"
            )
        _check_value(key, kind, value, source)
    return dict(hyperparameters)
