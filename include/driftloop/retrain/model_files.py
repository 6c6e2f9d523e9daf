"""The candidate's and champion's ONNX models in MLflow, as the Airflow side uses them.

The training run logs its FP32 and INT8 exports as MLflow models (``models:/m-…``, see
:mod:`driftloop.training.tracking`); the registry registers the INT8 one. Here: fetching a
model's ``model.onnx`` for evaluation, linking the evaluation's numbers to the logged models
(MLflow 3 model metrics, shown on each model's page), and hashing a logged model's files for
``model.json``. Every ONNX file is checked against the SHA-256 recorded for it before use
(:func:`recorded_onnx_hashes`).
"""

from __future__ import annotations

import re
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


class ModelFileMismatch(ValueError):
    """A downloaded model file is not the one recorded for it; the message names both hashes."""


def download_onnx(uri: str, dest: Path, expected_sha256: str | None = None) -> Path:
    """The local ``.onnx`` file of ``uri``: a logged model (``models:/…``: its folder is
    downloaded, ``model.onnx`` returned) or a plain artifact (``runs:/…/model_int8.onnx`` of a
    version registered before the models were logged). With ``expected_sha256`` (see
    :func:`recorded_onnx_hashes`) the file is hashed and refused unless it matches, before
    onnxruntime opens it."""
    import mlflow.artifacts

    from driftloop.audit.hashing import sha256_file

    dest.mkdir(parents=True, exist_ok=True)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))
    if local.is_dir():
        local = local / ONNX_FILE
        if not local.is_file():
            raise FileNotFoundError(f"{uri}: the model has no {ONNX_FILE}")
    if expected_sha256 is not None:
        actual = sha256_file(local)
        if actual != expected_sha256:
            raise ModelFileMismatch(
                f"ONNX model {uri}: downloaded SHA-256 {actual}, recorded {expected_sha256}"
            )
    return local


#: model-version tags the registration sets from the training result (SHA-256 of each ONNX
#: model's ``model.onnx`` as the training run exported it)
ONNX_SHA256_TAGS = {"int8": "int8_sha256", "fp32": "fp32_sha256"}
_HEX64 = re.compile(r"[0-9a-f]{64}")


def onnx_sha256_tags(version) -> dict[str, str]:
    """``{kind: sha256}`` of the ONNX hashes tagged on a model version (absent ones left out)."""
    tags = version.tags or {}
    found = {kind: tags.get(tag, "") for kind, tag in ONNX_SHA256_TAGS.items()}
    return {kind: sha for kind, sha in found.items() if _HEX64.fullmatch(sha)}


def recorded_onnx_hashes(
    client, name: str, candidate_version: str, champion=None
) -> dict[str, dict[str, str]]:
    """``{"candidate": {kind: sha256}, "champion": {…}}``: what the evaluated ONNX files must
    hash to. The candidate's come from its version's tags (recorded at training and
    registration); the champion's from its ``model.json`` (checked against its
    ``model_record_sha256`` tag), which must agree with its tags. A version without a recorded
    hash of both models raises (naming it): nothing unrecorded is evaluated."""
    from driftloop.retrain.model_card import verified_model_record

    candidate = client.get_model_version(name, str(candidate_version))
    hashes = {"candidate": _required(candidate, onnx_sha256_tags(candidate))}
    if champion is not None:
        record, _ = verified_model_record(client, name, str(champion.version))
        artifacts = record.get("artifacts") or {}
        tagged = onnx_sha256_tags(champion)
        recorded = {}
        for kind in ONNX_SHA256_TAGS:
            sha = artifacts.get(f"models/{kind}/{ONNX_FILE}") or artifacts.get(
                f"onnx/model_{kind}.onnx"
            )
            if sha and tagged.get(kind) and sha != tagged[kind]:
                raise ModelFileMismatch(
                    f"{name} v{champion.version}: model.json records {kind} ONNX SHA-256 {sha}, "
                    f"its {ONNX_SHA256_TAGS[kind]} tag {tagged[kind]}"
                )
            if sha or tagged.get(kind):
                recorded[kind] = sha or tagged[kind]
        hashes["champion"] = _required(champion, recorded)
    return hashes


def _required(version, hashes: Mapping[str, str]) -> dict[str, str]:
    missing = [kind for kind in ONNX_SHA256_TAGS if kind not in hashes]
    if missing:
        raise ModelFileMismatch(
            f"{version.name} v{version.version}: no recorded SHA-256 of its "
            f"{' and '.join(missing)} ONNX model (tags {', '.join(ONNX_SHA256_TAGS[k] for k in missing)})"
        )
    return dict(hashes)


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
