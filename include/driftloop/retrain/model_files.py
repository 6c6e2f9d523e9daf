"""The candidate's and champion's ONNX models in MLflow, as the Airflow side uses them.

The training run logs its FP32 and INT8 exports as MLflow models (``models:/m-…``, see
:mod:`driftloop.training.tracking`); the registry registers the INT8 one. Here: fetching a
model's ``model.onnx`` for evaluation, linking the evaluation's numbers to the logged models
(MLflow 3 model metrics, shown on each model's page), and hashing a logged model's files for
``model.json``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: the ONNX file inside a model logged with ``mlflow.onnx`` (its ``data`` in MLmodel)
ONNX_FILE = "model.onnx"
#: the evaluation's numbers → (logged model it describes, metric name on that model)
EVALUATION_METRICS = {
    "map50": ("fp32", "eval/mAP50"),
    "map50_95": ("fp32", "eval/mAP50-95"),
    "map50_int8": ("int8", "eval/mAP50"),
    "p50_latency_ms": ("int8", "eval/p50_latency_ms"),
    "p95_latency_ms": ("int8", "eval/p95_latency_ms"),
}


def download_onnx(uri: str, dest: Path) -> Path:
    """The local ``.onnx`` file of ``uri``: a logged model (``models:/…``: its folder is
    downloaded, ``model.onnx`` returned) or a plain artifact (``runs:/…/model_int8.onnx`` of a
    version registered before the models were logged)."""
    import mlflow.artifacts

    dest.mkdir(parents=True, exist_ok=True)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))
    if local.is_dir():
        local = local / ONNX_FILE
        if not local.is_file():
            raise FileNotFoundError(f"{uri}: the model has no {ONNX_FILE}")
    return local


def log_evaluation_metrics(
    client,
    run_id: str,
    model_ids: Mapping[str, str],
    summary: Mapping[str, Any],
    dataset: Mapping[str, str] | None,
) -> list[str]:
    """The candidate's evaluation numbers on its training run, each linked to the logged model
    it measures (FP32 mAP → the FP32 model; INT8 mAP and latency → the INT8 model) and to the
    dataset snapshot it was measured on. Returns the metric keys logged."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(
            key,
            float(summary[field]),
            now,
            0,
            model_id=model_ids[kind],
            dataset_name=(dataset or {}).get("name"),
            dataset_digest=(dataset or {}).get("digest"),
        )
        for field, (kind, key) in EVALUATION_METRICS.items()
        if summary.get(field) is not None and model_ids.get(kind)
    ]
    if metrics:
        client.log_batch(run_id, metrics=metrics)
    return [f"{m.key}@{m.model_id}" for m in metrics]


def logged_model_files(model_id: str, dest: Path) -> dict[str, Path]:
    """Every file of a logged model, downloaded: ``{relative path: local path}``."""
    import mlflow.artifacts

    root = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{model_id}", dst_path=str(dest / model_id)
        )
    )
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}
