"""Registration of a trained candidate in the MLflow model registry (``register_candidate``).

The training run logged its INT8 and FP32 ONNX exports as MLflow models (``models:/m-…``);
the INT8 one becomes a new version of the registered model, tagged with its FP32 twin, the
dataset hash, the code version, the trigger and the drift reference of its training window.
One version per DAG run, also when the run is repeated (the registry looks up the run's tag).
"""

from __future__ import annotations

from typing import Any

from driftloop.config.settings import Settings
from driftloop.retrain.records import code_version, ledger
from driftloop.retrain.reference_profile import log_reference_artifacts


def register(
    s3, settings: Settings, plan, snapshot_doc, training, reference, run_id: str
) -> dict[str, Any]:
    """The training run's INT8 ONNX model (an MLflow model, ``models:/m-…``) as a new version
    of the registered model, tagged with its FP32 twin, dataset, code version and trigger.
    Returns the version and the browser links of the run and the version."""
    from driftloop.airflow.links import mlflow_model_version_url, mlflow_run_url
    from driftloop.drift import tracking
    from driftloop.promotion import registry

    onnx = training.get("onnx") or {}
    if not onnx.get("int8_model_uri") or not onnx.get("fp32_model_uri"):
        raise ValueError(
            "the training result has no logged ONNX models (onnx.int8_model_uri / "
            "onnx.fp32_model_uri): was it trained with --no-export?"
        )
    client = tracking.client(settings.mlflow_tracking_uri)
    mlflow_run_id = training.get("mlflow_run_id") or training["run_id"]
    # before the version exists: a registered version always has its reference
    log_reference_artifacts(s3, client, mlflow_run_id, reference)
    version, created = registry.register_candidate(
        client,
        settings.registered_model,
        model_uri=onnx["int8_model_uri"],
        run_id=mlflow_run_id,
        airflow_run_id=run_id,
        tags={
            "dataset_sha256": snapshot_doc["sha256"],
            # the code that trained it (the image's commit), else the code registering it
            "code_version": training.get("git_commit") or code_version(settings),
            "trigger": plan["trigger"]["kind"],
            "drift_event_id": plan["trigger"].get("drift_event_id") or "-",
            registry.FP32_MODEL_TAG: onnx["fp32_model_uri"],
            "int8_sha256": onnx.get("int8_sha256", "-"),
            "fp32_sha256": onnx.get("fp32_sha256", "-"),
            tracking.REFERENCE_TAG: reference["uri"],
        },
        description=f"{plan['trigger']['reason']}; data {plan['days'][0]}..{plan['days'][-1]}",
    )
    if created:
        ledger(settings).append(
            "training_run",
            actor=f"airflow:{run_id}",
            subject=f"model:{settings.registered_model}/v{version.version}",
            payload={
                "mlflow_run_id": mlflow_run_id,
                "model_uri": onnx["int8_model_uri"],
                "fp32_model_uri": onnx["fp32_model_uri"],
                "plan": dict(plan),
                "metrics": training.get("metrics", {}),
            },
            input_hashes={
                "dataset": snapshot_doc["sha256"],
                "reference": reference["reference_id"],
                "int8_model": onnx.get("int8_sha256", ""),
                "fp32_model": onnx.get("fp32_sha256", ""),
            },
            idempotency_key=f"retrain_detector/{run_id}/register",
        )
    if not created:
        # a re-run of this DAG run re-trained, but the version registered by its first attempt
        # is the candidate: describe that version, not the new training run's models
        mlflow_run_id = version.run_id
        onnx = {
            "int8_model_uri": version.source,
            "fp32_model_uri": (version.tags or {})[registry.FP32_MODEL_TAG],
        }
        onnx["int8_model_id"] = registry.logged_model_id(onnx["int8_model_uri"])
        onnx["fp32_model_id"] = registry.logged_model_id(onnx["fp32_model_uri"])
        training = {**training, "experiment_id": None}
    experiment_id = (
        training.get("experiment_id") or client.get_run(mlflow_run_id).info.experiment_id
    )
    return {
        "name": settings.registered_model,
        "version": str(version.version),
        "run_id": mlflow_run_id,
        "model_uri": onnx["int8_model_uri"],
        "models": {"int8": onnx["int8_model_uri"], "fp32": onnx["fp32_model_uri"]},
        "model_ids": {"int8": onnx.get("int8_model_id"), "fp32": onnx.get("fp32_model_id")},
        "dataset_input": training.get("dataset_input"),
        "base": training.get("base"),  # as resolved: a model yaml or the champion's weights
        "created": created,
        "run_url": mlflow_run_url(settings.mlflow_tracking_uri, experiment_id, mlflow_run_id),
        "model_url": mlflow_model_version_url(
            settings.mlflow_tracking_uri, settings.registered_model, version.version
        ),
    }
