"""The training entrypoint's arguments, the same for both backends.

``python -m driftloop.training.train`` runs in the training pod (KubernetesPodOperator) or the
local backend's virtualenv (:mod:`driftloop.retrain.local_training`) with the arguments
:func:`training_arguments` builds from the plan, the snapshot and the base model
:func:`resolve_base` chose (the champion's weights when there is one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftloop.config.settings import Settings
from driftloop.training.train import DEFAULT_BASE, DEFAULT_EXPERIMENT

#: Ultralytics arguments by kind of start; the run's ``hyperparameters`` Param overrides them.
#: From scratch, a small dataset learns fastest with AdamW at 5e-3 and no warm-up. A fine-tune
#: starts from the champion's optimum: at that rate 6 epochs cost the demo's champion 0.07
#: mAP@0.5:0.95 and the gate rejected it; a 10x lower rate keeps what it knows.
DEFAULT_HYPERPARAMETERS = {
    "scratch": {"optimizer": "AdamW", "lr0": 0.005, "warmup_epochs": 0},
    "fine-tune": {"optimizer": "AdamW", "lr0": 0.0005, "warmup_epochs": 0},
}


def hyperparameters_for(base: str, requested: Mapping[str, Any] | None) -> dict[str, Any]:
    """The defaults for training from a model yaml or fine-tuning weights, then ``requested``."""
    kind = "scratch" if str(base).endswith((".yaml", ".yml")) else "fine-tune"
    return {**DEFAULT_HYPERPARAMETERS[kind], **dict(requested or {})}


def training_arguments(
    plan: Mapping[str, Any], snapshot_doc: Mapping[str, Any], base: str, run_id: str, xcom_path: str
) -> list[str]:
    """The entrypoint's arguments: the same for the local backend and the training pod."""
    hyperparameters = hyperparameters_for(base, plan.get("hyperparameters"))
    return [
        "--data", snapshot_doc["uri"],
        "--base", base,
        "--epochs", str(plan["epochs"]),
        "--imgsz", str(plan["imgsz"]),
        "--batch", str(plan.get("batch", 16)),
        "--experiment", DEFAULT_EXPERIMENT,
        "--run-name", f"retrain {plan['days'][-1]}",
        "--tags", f"airflow.run_id={run_id}", f"trigger={plan['trigger']['kind']}",
        "--xcom-path", xcom_path,
        "--hyp", *(f"{k}={v}" for k, v in sorted(hyperparameters.items())),
    ]  # fmt: skip


def resolve_base(settings: Settings, plan: Mapping[str, Any]) -> str:
    """Fine-tune from the champion's weights when there is one, else train from the yaml."""
    from driftloop.drift import tracking
    from driftloop.promotion import registry

    requested = plan["base"]
    if requested != "champion":
        return requested
    client = tracking.client(settings.mlflow_tracking_uri)
    champion = registry.version_with_alias(client, settings.registered_model, registry.CHAMPION)
    if champion is None:
        return DEFAULT_BASE  # no champion yet: a first model trains from the yaml
    return f"runs:/{champion.run_id}/weights/best.pt"
