"""MLflow logging of one training run (training image side), the MLflow 3 way.

What :mod:`driftloop.training.train` records, and where a reader finds it in the MLflow UI:

- parameters (every resolved Ultralytics argument) and per-epoch metrics (``step`` = epoch,
  1-based), with one progress line per epoch on stdout (the task log);
- the dataset snapshot as a run **input** (``mlflow.log_input``): source = the snapshot's
  ``s3://…/datasets/<sha256>/`` URI, digest = its SHA-256 (cut to MLflow's 36-character limit;
  the full hash is the input's ``sha256`` tag and is in the source URI);
- the code version: ``mlflow.source.git.commit`` from the git checkout the package runs from,
  else ``$DRIFTLOOP_GIT_SHA`` (the training image's build argument);
- Ultralytics' plots (``results.png``, confusion matrix, PR curves, batch mosaics) under
  ``plots/``;
- the FP32 and INT8 ONNX exports as MLflow **models** (ONNX flavor, a tensor signature read
  from the graph, a real letterboxed image as input example), so ``mlflow.onnx`` /
  ``mlflow.pyfunc`` load them and the registry can register them (``models:/m-…``).

Imports of mlflow, onnx and numpy happen inside the functions: ``train --help`` stays fast.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("driftloop.training.tracking")

GIT_SHA_ENV = "DRIFTLOOP_GIT_SHA"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
GIT_DIRTY_TAG = "driftloop.git_dirty"
_GIT_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
#: the dataset input's name in the run (one name, many digests: one per snapshot)
DATASET_NAME = "driftloop-yolo-dataset"
#: MLflow refuses dataset digests longer than this (``MAX_DATASET_DIGEST_SIZE``)
MAX_DATASET_DIGEST = 36
#: logged-model names of the two exports (what the MLflow UI lists under the run's models)
FP32_MODEL_NAME = "detector-fp32"
INT8_MODEL_NAME = "detector-int8"
PLOTS_DIR = "plots"
PLOT_SUFFIXES = (".png", ".jpg")
#: the input example's pixels are k/255; 4 decimals keep them within 1/50 of a grey level and
#: halve the size of the JSON example MLflow writes (twice) next to the model
EXAMPLE_DECIMALS = 4

#: Ultralytics' per-epoch metric names → ours (MLflow forbids parentheses)
METRIC_NAMES = {
    "metrics/precision(B)": "metrics/precision",
    "metrics/recall(B)": "metrics/recall",
    "metrics/mAP50(B)": "metrics/mAP50",
    "metrics/mAP50-95(B)": "metrics/mAP50-95",
}


# --------------------------------------------------------------------------- code version


def git_commit(package_dir: Path | None = None) -> tuple[str | None, bool | None]:
    """``(commit SHA, dirty)`` of the code that runs: the git checkout holding this package
    when there is one (the local backend), else ``$DRIFTLOOP_GIT_SHA`` (the training image,
    which has no ``.git``; ``dirty`` is then unknown, None). ``(None, None)`` when neither
    says; a malformed ``$DRIFTLOOP_GIT_SHA`` is refused."""
    folder = str(package_dir or Path(__file__).resolve().parent)
    try:
        head = subprocess.run(
            ["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", folder, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return head, bool(status.strip())
    except (OSError, subprocess.CalledProcessError):  # no git, or not a checkout
        pass
    from driftloop.config.settings import Settings

    # pydantic is in the training image too (an mlflow-skinny dependency)
    value = (Settings.from_env().git_sha or "").strip().lower()
    if not value:
        return None, None
    if not _GIT_SHA.fullmatch(value):
        raise ValueError(f"${GIT_SHA_ENV}={value!r}: expected a full git commit SHA (40 hex)")
    return value, None


def log_code_version() -> str | None:
    import mlflow

    commit, dirty = git_commit()
    if commit is None:
        log.warning("no code version: not a git checkout and $%s is not set", GIT_SHA_ENV)
        return None
    tags = {GIT_COMMIT_TAG: commit}
    if dirty is not None:
        tags[GIT_DIRTY_TAG] = str(dirty).lower()
    mlflow.set_tags(tags)
    return commit


# --------------------------------------------------------------------------- params, metrics


def clean_metrics(raw: Mapping[str, Any], names: Mapping[str, str] | None = None) -> dict:
    """Finite numbers only, under names MLflow accepts."""
    out = {}
    for key, value in raw.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if number != number or number in (float("inf"), float("-inf")):
            continue
        name = (names or {}).get(key, key)
        out[re.sub(r"[^0-9A-Za-z_\-. /]", "", name)] = number
    return out


def _param_value(value: Any) -> str:
    text = str(value) if not isinstance(value, str) else value
    return text if len(text) <= 500 else text[:497] + "..."


def log_params(params: Mapping[str, Any], already: set[str]) -> None:
    """Log params not logged yet (MLflow params are write-once), in batches of 100."""
    import mlflow

    fresh = {k: _param_value(v) for k, v in params.items() if k not in already}
    items = list(fresh.items())
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start : start + 100]))
    already.update(fresh)


def progress_line(epoch: int, epochs: int, metrics: Mapping[str, float], seconds: float) -> str:
    """``epoch 3/5: box_loss 1.234 cls_loss 2.345 dfl_loss 1.100 | mAP50 0.412 mAP50-95 0.201
    | 12.3 s`` — what the task log shows once per epoch."""
    losses = " ".join(
        f"{key.split('/', 1)[1]} {value:.3f}"
        for key, value in metrics.items()
        if key.startswith("train/")
    )
    scores = " ".join(
        f"{name} {metrics[f'metrics/{name}']:.3f}"
        for name in ("mAP50", "mAP50-95")
        if f"metrics/{name}" in metrics
    )
    return f"epoch {epoch}/{epochs}: {losses or '-'} | {scores or '-'} | {seconds:.1f} s"


def epoch_callback(logged_params: set[str]):
    """Ultralytics callbacks: ``on_train_start`` logs every resolved argument;
    ``on_fit_epoch_end`` logs the epoch's losses, validation metrics and learning rates
    (``step`` = epoch, 1-based, as in results.csv) and prints the epoch's progress line.

    Ultralytics fires ``on_fit_epoch_end`` once more after the last epoch, for the final
    validation of best.pt (at ``epoch + 1``); that call is skipped here — those numbers are
    logged as ``best/*`` from the training result instead, so the per-epoch series has
    exactly one point per epoch trained."""
    import mlflow

    state = {"stopped": False, "began": time.perf_counter()}

    def on_fit_epoch_end(trainer) -> None:
        if state["stopped"]:  # the final validation, not an epoch
            return
        state["stopped"] = bool(trainer.stop)
        metrics = {
            **clean_metrics(trainer.label_loss_items(trainer.tloss, prefix="train")),
            **clean_metrics(trainer.metrics, METRIC_NAMES),
            **clean_metrics(trainer.lr),
        }
        epoch = int(trainer.epoch) + 1
        mlflow.log_metrics(metrics, step=epoch)
        now = time.perf_counter()
        print(progress_line(epoch, int(trainer.epochs), metrics, now - state["began"]), flush=True)
        state["began"] = now

    def on_train_start(trainer) -> None:
        # every resolved Ultralytics argument, except run-local paths
        skip = {"save_dir", "project", "name", "data", "model", "exist_ok", "mode"}
        log_params({k: v for k, v in vars(trainer.args).items() if k not in skip}, logged_params)
        state["began"] = time.perf_counter()

    return {"on_fit_epoch_end": on_fit_epoch_end, "on_train_start": on_train_start}


# --------------------------------------------------------------------------- dataset, plots


def log_dataset_input(uri: str, sha256: str) -> dict[str, str]:
    """The snapshot as the run's training input; returns its ``{"name", "digest"}`` (what
    metrics computed on it name as their dataset)."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    source = uri if "://" in uri else str(Path(uri).resolve())
    dataset = MetaDataset(
        resolve_dataset_source(source), name=DATASET_NAME, digest=sha256[:MAX_DATASET_DIGEST]
    )
    mlflow.log_input(dataset, context="training", tags={"sha256": sha256})
    return {"name": dataset.name, "digest": dataset.digest}


def log_plots(folder: Path) -> list[str]:
    """Ultralytics' plot images of ``folder`` → ``plots/`` of the run; returns their names."""
    import mlflow

    images = sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in PLOT_SUFFIXES)
    for image in images:
        mlflow.log_artifact(str(image), artifact_path=PLOTS_DIR)
    return [p.name for p in images]


# --------------------------------------------------------------------------- ONNX models


def _dims(value_info) -> tuple[int, ...]:
    return tuple(
        d.dim_value if d.HasField("dim_value") else -1
        for d in value_info.type.tensor_type.shape.dim
    )


def onnx_signature(model):
    """The model's tensor signature, read from its graph: names, float32, static shapes
    (``images [1, 3, S, S]`` → ``output0 [1, 4 + nc, N]`` for an Ultralytics export)."""
    import numpy as np
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec
    from onnx import helper

    def schema(values) -> Schema:
        return Schema(
            [
                TensorSpec(
                    np.dtype(helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)),
                    _dims(v),
                    v.name,
                )
                for v in values
            ]
        )

    initializers = {init.name for init in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    return ModelSignature(inputs=schema(inputs), outputs=schema(model.graph.output))


def input_example(image: Path, imgsz: int):
    """A real image as the model sees it: letterboxed, NCHW float32 in [0, 1]."""
    import numpy as np

    from driftloop.evaluation.detector import load_input

    tensor, _ = load_input(image, imgsz)
    return np.round(tensor, EXAMPLE_DECIMALS).astype(np.float32)


def normalize_onnx(path: Path) -> str:
    """Rewrite ``path`` as ``onnx`` serializes it (what ``mlflow.onnx`` writes as the
    model's ``model.onnx``), so the local file, its SHA-256 and the logged model are the same
    bytes; returns that SHA-256."""
    import hashlib

    import onnx

    data = onnx.load(str(path)).SerializeToString()
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def log_onnx_model(
    path: Path, *, name: str, example, metadata: Mapping[str, Any], tags: Mapping[str, str]
) -> dict[str, str]:
    """Log ``path`` as an MLflow model (ONNX flavor) of the active run; returns its
    ``{"model_id", "model_uri"}`` (``models:/m-…``, what the registry registers)."""
    import mlflow.onnx
    import numpy
    import onnx
    import onnxruntime

    model = onnx.load(str(path))
    info = mlflow.onnx.log_model(
        model,
        name=name,
        signature=onnx_signature(model),
        input_example=example,
        # explicit: MLflow would otherwise infer them by loading the model in a subprocess
        pip_requirements=[
            f"onnx=={onnx.__version__}",
            f"onnxruntime=={onnxruntime.__version__}",
            f"numpy=={numpy.__version__}",
        ],
        # the INT8 model is a CPU artifact (QDQ); the FP32 one is its reference
        onnx_execution_providers=["CPUExecutionProvider"],
        save_as_external_data=False,  # one model.onnx, what onnxruntime opens directly
        metadata=dict(metadata),
        tags=dict(tags),
        model_type="object-detection",
    )
    return {"model_id": info.model_id, "model_uri": info.model_uri}
