"""The training entrypoint's arguments, the same for both backends.

``python -m driftloop.training.train`` runs in the training pod (KubernetesPodOperator) or the
local backend's virtualenv (:mod:`driftloop.retrain.local_training`) with the arguments
:func:`training_arguments` builds from the plan, the snapshot and the base model
:func:`resolve_base` chose: the champion's weights, pinned to the SHA-256 its verified
``model.json`` records (``--base-sha256``), or an allow-listed model yaml. Hyper-parameters are
limited to :data:`driftloop.training.allowlists.TUNABLE_HYPERPARAMETERS`: the bounded Params
(epochs, imgsz, batch) and the snapshot cannot be overridden through them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from driftloop.config.settings import Settings
from driftloop.training.allowlists import (
    CHAMPION_BASE,
    check_base_name,
    check_hyperparameters,
    check_sha256,
)
from driftloop.training.train import DEFAULT_BASE, DEFAULT_EXPERIMENT

#: Ultralytics arguments by kind of start; the run's ``hyperparameters`` Param overrides them.
#: From scratch, a small dataset learns fastest with AdamW at 5e-3 and no warm-up. A fine-tune
#: starts from the champion's optimum: at that rate 6 epochs cost the demo's champion 0.07
#: mAP@0.5:0.95 and the gate rejected it; a 10x lower rate keeps what it knows.
DEFAULT_HYPERPARAMETERS = {
    "scratch": {"optimizer": "AdamW", "lr0": 0.005, "warmup_epochs": 0},
    "fine-tune": {"optimizer": "AdamW", "lr0": 0.0005, "warmup_epochs": 0},
}
#: the champion's weights inside its training run
CHAMPION_WEIGHTS = "weights/best.pt"


@dataclass(frozen=True)
class ResolvedBase:
    """What the trainer starts from: a model yaml (``sha256`` None) or weights with the
    SHA-256 they must have."""

    uri: str
    sha256: str | None = None

    def __str__(self) -> str:
        return self.uri


def hyperparameters_for(base: str, requested: Mapping[str, Any] | None) -> dict[str, Any]:
    """The defaults for training from a model yaml or fine-tuning weights, then ``requested``
    (only tunable keys: DisallowedInput, a ValueError naming the key, otherwise)."""
    requested = check_hyperparameters(requested, source="Param hyperparameters:")
    kind = "scratch" if str(base).endswith((".yaml", ".yml")) else "fine-tune"
    return {**DEFAULT_HYPERPARAMETERS[kind], **requested}


def training_arguments(
    plan: Mapping[str, Any],
    snapshot_doc: Mapping[str, Any],
    base: ResolvedBase | str,
    run_id: str,
    xcom_path: str,
) -> list[str]:
    """The entrypoint's arguments: the same for the local backend and the training pod."""
    if not isinstance(base, ResolvedBase):
        base = ResolvedBase(check_base_name(str(base), source="base model"))
        if base.uri == CHAMPION_BASE:
            raise ValueError("base 'champion' must be resolved first (resolve_base)")
    hyperparameters = hyperparameters_for(base.uri, plan.get("hyperparameters"))
    pinned = (
        []
        if base.sha256 is None
        else ["--base-sha256", check_sha256(base.sha256, source="base SHA-256")]
    )
    return [
        "--data", snapshot_doc["uri"],
        "--base", base.uri,
        *pinned,
        "--epochs", str(plan["epochs"]),
        "--imgsz", str(plan["imgsz"]),
        "--batch", str(plan.get("batch", 16)),
        "--experiment", DEFAULT_EXPERIMENT,
        "--run-name", f"retrain {plan['days'][-1]}",
        "--tags", f"airflow.run_id={run_id}", f"trigger={plan['trigger']['kind']}",
        "--xcom-path", xcom_path,
        "--hyp", *(f"{k}={v}" for k, v in sorted(hyperparameters.items())),
    ]  # fmt: skip


def resolve_base(settings: Settings, plan: Mapping[str, Any]) -> ResolvedBase:
    """The ``base`` Param as the trainer loads it: an allow-listed model yaml as it is;
    ``champion``: the champion's weights with the SHA-256 its ``model.json`` records (the
    record itself checked against the version's ``model_record_sha256`` tag), or the default
    yaml when there is no champion yet. Anything else is refused, naming the Param."""
    from driftloop.drift import tracking
    from driftloop.promotion import registry
    from driftloop.retrain.model_card import verified_model_record

    requested = check_base_name(str(plan["base"]), source="Param base:")
    if requested != CHAMPION_BASE:
        return ResolvedBase(requested)
    client = tracking.client(settings.mlflow_tracking_uri)
    champion = registry.version_with_alias(client, settings.registered_model, registry.CHAMPION)
    if champion is None:
        return ResolvedBase(DEFAULT_BASE)  # a first model trains from the yaml
    record, _ = verified_model_record(client, settings.registered_model, str(champion.version))
    sha256 = (record.get("artifacts") or {}).get(CHAMPION_WEIGHTS)
    if not sha256:
        raise ValueError(
            f"{settings.registered_model} v{champion.version} (champion): its model.json "
            f"records no SHA-256 of {CHAMPION_WEIGHTS}; its weights cannot be fine-tuned"
        )
    return ResolvedBase(f"runs:/{champion.run_id}/{CHAMPION_WEIGHTS}", sha256)
